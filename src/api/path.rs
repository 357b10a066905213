//! URL path handling as Go's `net/url` and `net/http.ServeMux` do it (spec §1.4, §2.1).
//!
//! Go decodes the request path *before* the mux looks at it, so `%2F` is a separator and
//! `%2E%2E` is a `..` segment. The mux then answers any path that `path.Clean` would change
//! (`//`, `/./`, `/../`) with a 301 to the cleaned path; a trailing slash is kept and is not a
//! reason to redirect. Only clean paths reach the handlers.
//!
//! Invalid escapes in the path (`%zz`, a truncated `%4`) make Go's `url.ParseRequestURI`
//! fail, and Go's server then answers `400 Bad Request` itself, before any handler, with
//! `Content-Type: text/plain; charset=utf-8`, `Connection: close` and the body
//! `400 Bad Request` (no newline, no CORS or etcd headers; observed on etcd 3.4.23). Control
//! bytes anywhere in the request target fail the same way. [`check_path`] reports both cases
//! as `Err(message)`; the message is Go's error text, useful for logs only, since the client
//! sees just the fixed 400 (see [`BAD_REQUEST_BODY`]).

/// The exact body Go's server sends when the request URL cannot be parsed.
pub const BAD_REQUEST_BODY: &[u8] = b"400 Bad Request";

/// The outcome of checking a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathCheck {
    /// The path is clean; the percent-decoded path, for routing and key extraction.
    ///
    /// Decoded bytes that are not UTF-8 are replaced by U+FFFD (etcd keeps them as raw
    /// bytes; pikv keys are `String`s).
    Clean(String),
    /// Answer `301 Moved Permanently` with this `Location:` value: the cleaned path,
    /// re-escaped as Go's `url.URL.String()` does, plus `?` and the original query string
    /// when the query is non-empty.
    Redirect(String),
}

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

fn unhex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.unescape` for the path (`query == false`) and query-component
/// (`query == true`, where `+` means space) modes.
///
/// The error is Go's `EscapeError` text: `invalid URL escape ` followed by the offending
/// `%` and at most two following bytes quoted by `strconv.Quote`, e.g.
/// `invalid URL escape "%zz"` or `invalid URL escape "%4"`.
pub fn unescape(s: &[u8], query: bool) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(unhex);
                let lo = s.get(i + 2).copied().and_then(unhex);
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                    }
                    _ => {
                        let end = (i + 3).min(s.len());
                        return Err(format!("invalid URL escape {}", go_quote(&s[i..end])));
                    }
                }
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Whether Go's `strconv.IsPrint` holds for a character that can appear in an escape error
/// (at most two bytes after the `%`, so U+0000–U+07FF). Tables of Unicode 13 (Go 1.19):
/// controls, U+00A0, format characters and unassigned code points are not printable.
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if u > 0x7ff {
        // Never reached from the escape error path; treat the rest of the BMP and beyond as
        // printable, which holds for the assigned letters/symbols a client would send.
        return true;
    }
    const NOT_PRINT: &[(u32, u32)] = &[
        (0x80, 0xa0),
        (0xad, 0xad),
        (0x378, 0x379),
        (0x380, 0x383),
        (0x38b, 0x38b),
        (0x38d, 0x38d),
        (0x3a2, 0x3a2),
        (0x530, 0x530),
        (0x557, 0x558),
        (0x58b, 0x58c),
        (0x590, 0x590),
        (0x5c8, 0x5cf),
        (0x5eb, 0x5ee),
        (0x5f5, 0x605),
        (0x61c, 0x61d),
        (0x6dd, 0x6dd),
        (0x70e, 0x70f),
        (0x74b, 0x74c),
        (0x7b2, 0x7bf),
        (0x7fb, 0x7fc),
    ];
    !NOT_PRINT.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// Go's `strconv.Quote` of a byte string: invalid UTF-8 bytes as `\xNN`, non-printable
/// characters with Go's short or `\u` escapes.
pub fn go_quote(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in s.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if go_is_print(c) => out.push(c),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push_str(&format!("\\U{:08x}", c as u32)),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// Go's `path.Clean` for a rooted path (the caller guarantees the leading `/`): drops empty
/// and `.` segments, resolves `..` (never above the root), removes a trailing slash.
pub fn clean_rooted(p: &[u8]) -> Vec<u8> {
    let mut segs: Vec<&[u8]> = Vec::new();
    for seg in p.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(p.len());
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `net/http.cleanPath`: `path.Clean` on a rooted path, keeping a trailing slash.
fn mux_clean(p: &[u8]) -> Vec<u8> {
    let mut rooted = Vec::with_capacity(p.len() + 1);
    if p.first() != Some(&b'/') {
        rooted.push(b'/');
    }
    rooted.extend_from_slice(p);
    let mut np = clean_rooted(&rooted);
    if rooted.last() == Some(&b'/') && np != b"/" {
        np.push(b'/');
    }
    np
}

/// Go's `url.escape(s, encodePath)`: everything except unreserved characters and
/// `$&+,/:;=@` becomes `%XX` (upper-case hex).
fn escape_path(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        let keep = b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(UPPER_HEX[(b >> 4) as usize] as char);
            out.push(UPPER_HEX[(b & 0xf) as usize] as char);
        }
    }
    out
}

/// Go's `http.hexEscapeNonASCII`, applied by `http.Redirect` to the `Location` value: bytes
/// ≥ 0x80 (only possible from a raw query) become `%xx` in lower-case hex
/// (`strconv.AppendInt(b, 16)`).
fn hex_escape_non_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b >= 0x80 {
            out.push_str(&format!("%{b:x}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// What Go's mux decides for a path: `Ok(Ok(decoded))` for a clean path, `Ok(Err(url))` for
/// a redirect to `url` (before `http.Redirect`'s non-ASCII escaping), `Err` for a URL Go's
/// server cannot parse.
fn route(raw_path: &str, raw_query: &str) -> Result<Result<Vec<u8>, String>, String> {
    if raw_path
        .bytes()
        .chain(raw_query.bytes())
        .any(|b| b < 0x20 || b == 0x7f)
    {
        return Err("net/url: invalid control character in URL".to_string());
    }
    if !raw_path.starts_with('/') {
        return Err("invalid URI for request".to_string());
    }
    let decoded = unescape(raw_path.as_bytes(), false)?;
    let cleaned = mux_clean(&decoded);
    if cleaned == decoded {
        return Ok(Ok(decoded));
    }
    // Go builds `url.URL{Path: cleaned, RawQuery: raw_query}.String()`, which re-escapes the
    // path and appends the query only when it is non-empty.
    let mut url = escape_path(&cleaned);
    if !raw_query.is_empty() {
        url.push('?');
        url.push_str(raw_query);
    }
    Ok(Err(url))
}

/// Checks and decodes a request path the way Go's URL parser and `ServeMux` do.
///
/// `raw_path` is the request target up to (not including) the first `?`, `raw_query` what
/// follows it (without the `?`). Returns `Err` with Go's parse error when the server would
/// answer 400 itself (bad `%` escape in the path, control bytes, a target that is not an
/// absolute path); see the module documentation for the exact response.
pub fn check_path(raw_path: &str, raw_query: &str) -> Result<PathCheck, String> {
    Ok(match route(raw_path, raw_query)? {
        Ok(decoded) => PathCheck::Clean(String::from_utf8_lossy(&decoded).into_owned()),
        Err(url) => PathCheck::Redirect(hex_escape_non_ascii(&url)),
    })
}

/// The body Go's `http.Redirect` writes for a GET that [`check_path`] redirects; empty when
/// the path is not redirected. Send it with `Content-Type: text/html; charset=utf-8`.
///
/// Other methods, as observed on etcd 3.4.23: HEAD gets the `Content-Type` but neither a body
/// nor a `Content-Length` header; PUT/POST/DELETE get no `Content-Type` and
/// `Content-Length: 0`. All carry the CORS headers and `Location`.
///
/// It is `<a href="URL">Moved Permanently</a>.` and *two* newlines, because Go passes a
/// string already ending in `\n` to `fmt.Fprintln` (observed: `Content-Length: 53` for
/// `/v2/keys/a%20b?x=1`). `URL` is HTML-escaped and, unlike the `Location` header, keeps
/// non-ASCII query bytes raw, which is why this takes the request's path and query rather
/// than the `Location` value.
pub fn redirect_body(raw_path: &str, raw_query: &str) -> Vec<u8> {
    let Ok(Err(url)) = route(raw_path, raw_query) else {
        return Vec::new();
    };
    let mut href = String::with_capacity(url.len());
    // Go's htmlEscape.
    for c in url.chars() {
        match c {
            '&' => href.push_str("&amp;"),
            '<' => href.push_str("&lt;"),
            '>' => href.push_str("&gt;"),
            '"' => href.push_str("&#34;"),
            '\'' => href.push_str("&#39;"),
            c => href.push(c),
        }
    }
    format!("<a href=\"{href}\">Moved Permanently</a>.\n\n").into_bytes()
}

/// The store key named by a decoded, clean request path, or `None` when the path is not a
/// keys path (`/v2/keysfoo`, `/v2/`).
///
/// etcd computes `path.Join("/1", path[len("/v2/keys"):])` and strips `/1` again, which is
/// POSIX `Clean("/" + rest)`: `/v2/keys` and `/v2/keys/` give `/`, `/v2/keys/a/b/` gives
/// `/a/b`.
pub fn keys_key(decoded_path: &str) -> Option<String> {
    let rest = decoded_path.strip_prefix("/v2/keys")?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let mut rooted = String::with_capacity(rest.len() + 1);
    rooted.push('/');
    rooted.push_str(rest);
    // Cleaning only removes ASCII '/' and '.' segments, so the result stays valid UTF-8.
    Some(String::from_utf8_lossy(&clean_rooted(rooted.as_bytes())).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> PathCheck {
        PathCheck::Clean(s.to_string())
    }
    fn redirect(s: &str) -> PathCheck {
        PathCheck::Redirect(s.to_string())
    }

    #[test]
    fn check_path_cases() {
        let cases: &[(&str, &str, Result<PathCheck, &str>)] = &[
            ("/v2/keys", "", Ok(clean("/v2/keys"))),
            ("/v2/keys/", "", Ok(clean("/v2/keys/"))),
            ("/v2/keys/path/x/", "", Ok(clean("/v2/keys/path/x/"))),
            ("/v2/keys/a%2Fc", "", Ok(clean("/v2/keys/a/c"))),
            ("/v2/keys/a%20b", "", Ok(clean("/v2/keys/a b"))),
            ("/v2/keys/a+b", "", Ok(clean("/v2/keys/a+b"))),
            ("/v2/keys/%E2%9C%93", "", Ok(clean("/v2/keys/✓"))),
            ("/v2/keys/✓", "", Ok(clean("/v2/keys/✓"))),
            ("/v2/keys/%FF", "", Ok(clean("/v2/keys/\u{fffd}"))),
            ("/v2/keys/.hidden", "", Ok(clean("/v2/keys/.hidden"))),
            ("/v2/keys/a..b", "", Ok(clean("/v2/keys/a..b"))),
            // Spec §1.4 capture.
            (
                "/v2/keys//afile",
                "recursive=true",
                Ok(redirect("/v2/keys/afile?recursive=true")),
            ),
            // Observed on etcd 3.4.23.
            ("/v2/keys//a%20b", "x=1", Ok(redirect("/v2/keys/a%20b?x=1"))),
            ("/v2/keys/./a", "", Ok(redirect("/v2/keys/a"))),
            ("/v2/keys/a/../b/", "", Ok(redirect("/v2/keys/b/"))),
            ("/v2/keys/a/..", "", Ok(redirect("/v2/keys"))),
            ("/v2/keys/a/.", "", Ok(redirect("/v2/keys/a"))),
            ("/v2/keys/a//", "", Ok(redirect("/v2/keys/a/"))),
            ("/v2/keys/a%2F%2Fb", "", Ok(redirect("/v2/keys/a/b"))),
            ("/v2/keys/%2E%2E/x", "", Ok(redirect("/v2/x"))),
            ("/../..", "", Ok(redirect("/"))),
            ("//", "", Ok(redirect("/"))),
            ("/v2/keys//a%3Fb", "", Ok(redirect("/v2/keys/a%3Fb"))),
            (
                "/v2/keys//✓",
                "q=✓",
                Ok(redirect("/v2/keys/%E2%9C%93?q=%e2%9c%93")),
            ),
            ("/v2/keys//a", "x&y=%zz", Ok(redirect("/v2/keys/a?x&y=%zz"))),
            ("/", "", Ok(clean("/"))),
            ("/v2/keys/a%zz", "", Err("invalid URL escape \"%zz\"")),
            ("/v2/keys/a%4", "", Err("invalid URL escape \"%4\"")),
            ("/v2/keys/a%", "", Err("invalid URL escape \"%\"")),
            ("/v2/keys/%✓", "", Err("invalid URL escape \"%\\xe2\\x9c\"")),
            (
                "/v2/keys/a\u{1}",
                "",
                Err("net/url: invalid control character in URL"),
            ),
            (
                "/v2/keys/a",
                "x=\u{7f}",
                Err("net/url: invalid control character in URL"),
            ),
            ("v2/keys", "", Err("invalid URI for request")),
            ("", "", Err("invalid URI for request")),
        ];
        for (p, q, want) in cases {
            let want = want.clone().map_err(|e| e.to_string());
            assert_eq!(check_path(p, q), want, "{p:?} {q:?}");
        }
    }

    #[test]
    fn keys_key_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/v2/keys", Some("/")),
            ("/v2/keys/", Some("/")),
            ("/v2/keys/a", Some("/a")),
            ("/v2/keys/a/b/", Some("/a/b")),
            ("/v2/keys/a/c", Some("/a/c")),
            ("/v2/keys/a b", Some("/a b")),
            ("/v2/keys/✓", Some("/✓")),
            ("/v2/keys/_hidden", Some("/_hidden")),
            ("/v2/keysfoo", None),
            ("/v2/", None),
            ("/", None),
            ("/v2/members", None),
        ];
        for (p, want) in cases {
            assert_eq!(keys_key(p).as_deref(), *want, "{p:?}");
        }
    }

    #[test]
    fn redirect_bodies() {
        // Content-Length values observed on etcd 3.4.23 for GET.
        let cases: &[(&str, &str, &str, usize)] = &[
            ("/v2/keys//a%20b", "x=1", "/v2/keys/a%20b?x=1", 53),
            ("/v2/keys/a%2F%2Fb", "", "/v2/keys/a/b", 47),
            ("/v2/keys/a/..", "", "/v2/keys", 43),
            ("/v2/keys//✓", "q=✓", "/v2/keys/%E2%9C%93?q=✓", 59),
            ("/v2/keys//a", "x&y=%zz", "/v2/keys/a?x&amp;y=%zz", 57),
        ];
        for (p, q, href, len) in cases {
            let body = redirect_body(p, q);
            assert_eq!(
                body,
                format!("<a href=\"{href}\">Moved Permanently</a>.\n\n").into_bytes(),
                "{p}"
            );
            assert_eq!(body.len(), *len, "{p}");
        }
        assert_eq!(
            redirect_body("//a", "x=1&y='\"<>"),
            b"<a href=\"/a?x=1&amp;y=&#39;&#34;&lt;&gt;\">Moved Permanently</a>.\n\n"
        );
        assert!(redirect_body("/v2/keys/a", "x=1").is_empty());
        assert!(redirect_body("/v2/keys/%zz", "").is_empty());
    }

    #[test]
    fn quote_cases() {
        let cases: &[(&[u8], &str)] = &[
            (b"%zz", r#""%zz""#),
            (b"%4", r#""%4""#),
            (b"%\xe2\x9c", r#""%\xe2\x9c""#),
            ("%\u{a0}".as_bytes(), r#""%\u00a0""#),
            ("%\u{ad}".as_bytes(), r#""%\u00ad""#),
            ("%\u{378}".as_bytes(), r#""%\u0378""#),
            ("%\u{61d}".as_bytes(), r#""%\u061d""#),
            ("%\u{80}".as_bytes(), r#""%\u0080""#),
            ("%é".as_bytes(), "\"%é\""),
            (b"%\"\\", r#""%\"\\""#),
            (b"%\x07\x0b", r#""%\a\v""#),
            (b"%\x00\x7f", r#""%\x00\x7f""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "{input:?}");
        }
    }

    #[test]
    fn no_panic_on_arbitrary_input() {
        let mut rng = crate::api::params::tests_support::Rng(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"/.%2fFzZ09aA?+&=;\x00\x7f\xc3\xa9 ";
        for _ in 0..20_000 {
            let n = rng.below(24);
            let bytes: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let s = String::from_utf8_lossy(&bytes);
            let (p, q) = s.split_once('?').unwrap_or((&s, ""));
            if let Ok(PathCheck::Clean(d)) = check_path(p, q) {
                let _ = keys_key(&d);
            }
            let _ = check_path(&format!("/{p}"), q);
            let _ = keys_key(&s);
        }
    }
}
