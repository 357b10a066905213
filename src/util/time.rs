//! Go-compatible time formatting without a date/time dependency.
//!
//! etcd writes times with Go's `time` package, and clients (and the differential tests) see
//! those exact strings, so the formats here reproduce Go's output byte for byte: RFC 3339 with
//! trimmed nanoseconds for `expiration`, `time.Duration.String()` for stats, and the HTTP
//! `Date:` header format.

const NANOS_PER_SEC: u64 = 1_000_000_000;
const SECS_PER_DAY: u64 = 86_400;

/// The civil (proleptic Gregorian) date of a day count since 1970-01-01, as
/// `(year, month 1-12, day 1-31)`.
///
/// Howard Hinnant's `civil_from_days`, restricted to non-negative day counts (Unix nanoseconds
/// in a `u64` never precede the epoch), so the arithmetic stays unsigned and cannot overflow:
/// `u64::MAX` nanoseconds is only about 213 503 days.
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats Unix nanoseconds as Go's `time.RFC3339Nano` in UTC, e.g.
/// `2026-11-22T17:57:56.05541868Z`.
///
/// Like Go, trailing zeros of the fraction are removed and the `.` is dropped entirely when
/// the fraction is zero (`2026-11-22T17:57:56Z`).
pub fn rfc3339_nano_utc(unix_nanos: u64) -> String {
    let secs = unix_nanos / NANOS_PER_SEC;
    let frac = unix_nanos % NANOS_PER_SEC;
    let (y, mo, d) = civil_from_days(secs / SECS_PER_DAY);
    let sod = secs % SECS_PER_DAY;
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Formats a duration in nanoseconds like Go's `time.Duration.String()`:
/// `0s`, `999ns`, `12µs`, `1.5ms`, `1.5s`, `2m54.479278734s`, `1h0m0s`.
///
/// Go's `Duration` is signed; negative durations never occur in pikv, so only the
/// non-negative half is provided (values above `i64::MAX` are formatted as Go would format
/// them if it could hold them).
pub fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < NANOS_PER_SEC {
        // Sub-second durations use the largest unit that keeps the integer part non-zero.
        let (prec, unit) = if nanos < 1_000 {
            (0, "ns")
        } else if nanos < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        let (int, frac) = split_frac(nanos, prec);
        return format!("{int}{frac}{unit}");
    }
    let (secs, frac) = split_frac(nanos, 9);
    let s = secs % 60;
    let mins = secs / 60;
    if mins == 0 {
        return format!("{s}{frac}s");
    }
    let m = mins % 60;
    let hours = mins / 60;
    if hours == 0 {
        return format!("{m}m{s}{frac}s");
    }
    format!("{hours}h{m}m{s}{frac}s")
}

/// Splits `v` into its integer part and Go's `fmtFrac` rendering of the lowest `prec` decimal
/// digits: `.ddd` with trailing zeros removed, or nothing when those digits are all zero.
fn split_frac(v: u64, prec: u32) -> (u64, String) {
    let pow = 10u64.pow(prec);
    let frac = v % pow;
    let int = v / pow;
    if frac == 0 {
        return (int, String::new());
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    (int, format!(".{}", digits.trim_end_matches('0')))
}

/// Formats Unix seconds as an HTTP IMF-fixdate (Go's `http.TimeFormat`), e.g.
/// `Sun, 22 Nov 2026 18:06:37 GMT`.
pub fn http_date(unix_secs: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / SECS_PER_DAY;
    let sod = unix_secs % SECS_PER_DAY;
    let (y, mo, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday, hence the rotated weekday table.
    let wd = WEEKDAYS[(days % 7) as usize];
    let mon = MONTHS[(mo as usize).saturating_sub(1).min(11)];
    format!(
        "{wd}, {d:02} {mon} {y:04} {:02}:{:02}:{:02} GMT",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-22T17:57:56Z, a timestamp from the spec's captures.
    const T0: u64 = 1_795_370_276;

    #[test]
    fn rfc3339_cases() {
        let cases: &[(u64, &str)] = &[
            (0, "1970-01-01T00:00:00Z"),
            (1, "1970-01-01T00:00:00.000000001Z"),
            (
                T0 * NANOS_PER_SEC + 55_418_680,
                "2026-11-22T17:57:56.05541868Z",
            ),
            (T0 * NANOS_PER_SEC, "2026-11-22T17:57:56Z"),
            (T0 * NANOS_PER_SEC + 500_000_000, "2026-11-22T17:57:56.5Z"),
            (951_782_400 * NANOS_PER_SEC, "2000-02-29T00:00:00Z"),
            (4_107_542_399 * NANOS_PER_SEC, "2100-02-28T23:59:59Z"),
            (4_107_542_400 * NANOS_PER_SEC, "2100-03-01T00:00:00Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551615Z"),
        ];
        for (n, want) in cases {
            assert_eq!(rfc3339_nano_utc(*n), *want, "{n}");
        }
    }

    #[test]
    fn duration_cases() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (999, "999ns"),
            (1_000, "1µs"),
            (12_000, "12µs"),
            (12_345, "12.345µs"),
            (1_500_000, "1.5ms"),
            (999_999_999, "999.999999ms"),
            (1_000_000_000, "1s"),
            (1_500_000_000, "1.5s"),
            (174_479_278_734, "2m54.479278734s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_661_000_000_001, "1h1m1.000000001s"),
            (i64::MAX as u64, "2562047h47m16.854775807s"),
        ];
        for (n, want) in cases {
            assert_eq!(go_duration(*n), *want, "{n}");
        }
    }

    #[test]
    fn http_date_cases() {
        assert_eq!(http_date(1_795_370_797), "Sun, 22 Nov 2026 18:06:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        // Must not panic at the extreme.
        let _ = http_date(u64::MAX);
    }
}
