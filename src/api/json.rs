//! Go `encoding/json` compatible output.
//!
//! etcd's bodies are produced by Go's encoder with HTML escaping on (the default), and a
//! byte-for-byte differential test sees every difference, so strings are escaped exactly as
//! Go 1.19 does (spec §1.3):
//!
//! * `<`, `>`, `&` → `\u003c`, `\u003e`, `\u0026`; U+2028/U+2029 → `\u2028`/`\u2029`;
//! * `"` and `\` → `\"` and `\\`; `\n`, `\r`, `\t` → their short escapes;
//! * every other control character below 0x20 → `\u00xx` with lower-case hex (Go 1.19 has no
//!   `\b`/`\f` short forms, unlike serde_json);
//! * DEL (0x7f) and all other characters raw.
//!
//! Go replaces each *invalid* UTF-8 byte by the six characters `\ufffd`. pikv values are Rust
//! `String`s, already converted lossily when the request was parsed, so the invalid bytes are
//! U+FFFD characters by the time they are rendered; to produce etcd's bytes for them every
//! U+FFFD is written as `\ufffd`. The one visible deviation: a client that sends a genuine,
//! validly encoded U+FFFD gets `\ufffd` back where etcd writes the raw character; both decode
//! to the same string.

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use std::io;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `\u00xx` for a byte below 0x20.
fn push_u00(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(b"\\u00");
    out.push(HEX[(b >> 4) as usize]);
    out.push(HEX[(b & 0xf) as usize]);
}

/// The escape Go writes for `c`, if it escapes it at all.
fn escape_for(c: char) -> Option<&'static [u8]> {
    Some(match c {
        '"' => b"\\\"",
        '\\' => b"\\\\",
        '\n' => b"\\n",
        '\r' => b"\\r",
        '\t' => b"\\t",
        '<' => b"\\u003c",
        '>' => b"\\u003e",
        '&' => b"\\u0026",
        '\u{2028}' => b"\\u2028",
        '\u{2029}' => b"\\u2029",
        '\u{fffd}' => b"\\ufffd",
        _ => return None,
    })
}

/// Bytes [`write_escaped`] must look at: the ASCII that Go escapes, and the lead bytes of
/// U+2028, U+2029 (0xE2) and U+FFFD (0xEF). Everything else is copied as it is, in runs: a
/// value is scanned a byte at a time without decoding its characters.
const LOOK: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t[0xEF] = true;
    t
};

/// Appends the string body of `s` (without the surrounding quotes), escaped like Go.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !LOOK[b as usize] {
            i += 1;
            continue;
        }
        // `s` is UTF-8: a lead byte starts a whole character, so its next bytes are here.
        let (len, c) = match b {
            0xE2 | 0xEF => match s[i..].chars().next() {
                Some(c) => (c.len_utf8(), c),
                None => break,
            },
            _ => (1, b as char),
        };
        match escape_for(c) {
            Some(e) => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(e);
            }
            None if (c as u32) < 0x20 => {
                out.extend_from_slice(&bytes[start..i]);
                push_u00(out, b);
            }
            None => {
                // Another character with the same lead byte: copied with the run.
                i += len;
                continue;
            }
        }
        i += len;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `s` as a quoted JSON string exactly as Go's `encoding/json` would write it.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// A serde_json [`Formatter`] producing Go's compact `encoding/json` output (string escaping
/// as in [`write_json_string`]), so any `Serialize` type can be rendered like etcd does.
///
/// Only strings differ from serde_json's compact output; integers, booleans and `null` are
/// identical. Floats are not Go-compatible for very large/small exponents (Go switches to
/// exponent form at 1e21 / 1e-6), which no pikv body needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        // serde_json has already split off `"`, `\` and control characters (they arrive in
        // write_char_escape); the fragment may still hold the HTML and line-separator
        // characters Go escapes.
        let mut buf = Vec::with_capacity(fragment.len());
        write_escaped(&mut buf, fragment);
        writer.write_all(&buf)
    }

    fn write_char_escape<W>(&mut self, writer: &mut W, char_escape: CharEscape) -> io::Result<()>
    where
        W: ?Sized + io::Write,
    {
        let mut buf = Vec::with_capacity(6);
        match char_escape {
            CharEscape::Quote => buf.extend_from_slice(b"\\\""),
            CharEscape::ReverseSolidus => buf.extend_from_slice(b"\\\\"),
            CharEscape::Solidus => buf.push(b'/'),
            CharEscape::Backspace => push_u00(&mut buf, 0x08),
            CharEscape::FormFeed => push_u00(&mut buf, 0x0c),
            CharEscape::LineFeed => buf.extend_from_slice(b"\\n"),
            CharEscape::CarriageReturn => buf.extend_from_slice(b"\\r"),
            CharEscape::Tab => buf.extend_from_slice(b"\\t"),
            CharEscape::AsciiControl(b) => push_u00(&mut buf, b),
        }
        writer.write_all(&buf)
    }
}

/// Serialises `v` with [`GoFormatter`]; fails only if `v`'s `Serialize` implementation does
/// (for example a map with non-string keys).
pub fn try_to_go_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    v.serialize(&mut ser)?;
    Ok(out)
}

/// Serialises `v` like Go's `json.Marshal` (no trailing newline; append `\n` for bodies Go
/// writes with a `json.Encoder`).
///
/// The types pikv serialises cannot fail; should one ever do so this logs the error and
/// returns `null` rather than panicking in a request handler.
pub fn to_go_json<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    match try_to_go_json(v) {
        Ok(out) => out,
        Err(e) => {
            log::error!("JSON serialisation failed: {e}");
            b"null".to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    const CASES: &[(&str, &str)] = &[
        ("", r#""""#),
        ("plain", r#""plain""#),
        ("a&b=c d+e", r#""a\u0026b=c d+e""#),
        ("<>&", r#""\u003c\u003e\u0026""#),
        ("\u{2028}\u{2029}", r#""\u2028\u2029""#),
        ("\"\\", r#""\"\\""#),
        ("\t\n\r", r#""\t\n\r""#),
        (
            "\u{0}\u{1}\u{8}\u{c}\u{1f}",
            r#""\u0000\u0001\u0008\u000c\u001f""#,
        ),
        ("\u{7f}", "\"\u{7f}\""),
        ("\u{fffd}", r#""\ufffd""#),
        ("✓ é /", "\"✓ é /\""),
        // Other characters behind the lead bytes of the escaped ones are copied.
        (
            "\u{feff}x\u{2027}\u{202a}a\u{fffc}",
            "\"\u{feff}x\u{2027}\u{202a}a\u{fffc}\"",
        ),
        ("a\u{2028}b<c\u{1}", r#""a\u2028b\u003cc\u0001""#),
    ];

    #[test]
    fn write_json_string_cases() {
        for (input, want) in CASES {
            assert_eq!(quoted(input), *want, "{input:?}");
        }
    }

    // The escaping as Go states it, a character at a time: the byte scan must agree.
    fn reference_escape(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for c in s.chars() {
            match escape_for(c) {
                Some(e) => out.extend_from_slice(e),
                None if (c as u32) < 0x20 => push_u00(&mut out, c as u8),
                None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            }
        }
        out
    }

    #[test]
    fn byte_scan_matches_the_character_reference() {
        let pool = [
            'a',
            ' ',
            '"',
            '\\',
            '<',
            '>',
            '&',
            '\n',
            '\u{0}',
            '\u{1f}',
            '\u{7f}',
            'é',
            '✓',
            '\u{2027}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{fffd}',
            '\u{fffc}',
            '\u{feff}',
            '\u{10348}',
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            let mut s = String::new();
            for _ in 0..(seed % 12) {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                s.push(pool[(seed >> 33) as usize % pool.len()]);
            }
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let mut got = Vec::new();
            write_escaped(&mut got, &s);
            assert_eq!(got, reference_escape(&s), "{s:?}");
        }
    }

    #[test]
    fn formatter_matches_write_json_string() {
        for (input, want) in CASES {
            let got = String::from_utf8(to_go_json(input)).unwrap();
            assert_eq!(got, *want, "{input:?}");
        }
    }

    #[test]
    fn spec_encoding_example() {
        // §1.3: value=%FF%00%01%09%0A%0D%E2%80%A8%22%5C%7F, after the lossy UTF-8 conversion
        // the parser applies.
        let v = String::from_utf8_lossy(b"\xff\x00\x01\x09\x0a\x0d\xe2\x80\xa8\x22\x5c\x7f");
        assert_eq!(
            quoted(&v),
            "\"\\ufffd\\u0000\\u0001\\t\\n\\r\\u2028\\\"\\\\\u{7f}\""
        );
    }

    #[test]
    fn structs_and_maps() {
        #[derive(Serialize)]
        struct S<'a> {
            name: &'a str,
            n: u64,
            ok: bool,
            list: Vec<&'a str>,
        }
        let s = S {
            name: "<a>",
            n: 7,
            ok: true,
            list: vec!["x&y"],
        };
        assert_eq!(
            String::from_utf8(to_go_json(&s)).unwrap(),
            r#"{"name":"\u003ca\u003e","n":7,"ok":true,"list":["x\u0026y"]}"#
        );
        let mut m = std::collections::BTreeMap::new();
        m.insert("k<", 1);
        assert_eq!(
            String::from_utf8(to_go_json(&m)).unwrap(),
            r#"{"k\u003c":1}"#
        );
    }
}
