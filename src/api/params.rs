//! Keys API request parameters: Go's `Request.ParseForm` semantics, etcd's ordered validation
//! (`parseKeyRequest` in etcd's `v2http/client.go`) and the choice of store operation
//! (spec §1.5, §3, §4.1, §5.1–§5.2, §6, §7).
//!
//! Form reading, exactly as Go 1.19 (etcd 3.4.23 is built with go1.19.8):
//!
//! * The query string is always parsed. The body only for PUT and POST, and only when the
//!   `Content-Type` media type is `application/x-www-form-urlencoded` as decided by Go's
//!   `mime.ParseMediaType` (case-insensitive, parameters allowed). A malformed
//!   `Content-Type` is itself a form error (`mime: invalid media parameter`, …), which etcd
//!   reports as 210 — observed on 3.4.23.
//! * Body pairs come before query pairs and the first occurrence of a name wins.
//! * `url.ParseQuery` keeps going after an error and reports the first bad `%` escape, but a
//!   `;` in a pair *replaces* any earlier error with `invalid semicolon separator in query`
//!   (Go assigns that error unconditionally). A body error wins over a query error.
//! * Values are bytes in Go; pikv converts them to `String` lossily (U+FFFD), which the JSON
//!   renderer writes as `\ufffd`, as Go does for invalid UTF-8.

use crate::store::error::{
    INDEX_NAN, INVALID_FIELD, INVALID_FORM, PREV_VALUE_REQUIRED, REFRESH_TTL_REQUIRED,
    REFRESH_VALUE, TTL_NAN,
};
use crate::store::{Command, V2Error};

use super::path::unescape;

/// Go's `ParseForm` limit for a form body (`maxFormSize`, 10 MiB). A longer form body is
/// rejected with [`body_too_large`]; the glue therefore needs to read at most
/// `BODY_BYTES_MAX + 1` bytes of a body that [`reads_form_body`] says is parsed.
pub const BODY_BYTES_MAX: usize = 10 * 1024 * 1024;

/// The methods the keys handler accepts, in the order of etcd's `Allow:` header for 405s.
pub const KEYS_ALLOWED_METHODS: &str = "HEAD,GET,PUT,POST,DELETE";

/// The error for a form body over [`BODY_BYTES_MAX`]: 210, cause `http: POST too large`
/// (Go closes the connection afterwards, which the glue should replicate).
pub fn body_too_large() -> V2Error {
    V2Error::new(INVALID_FORM, "http: POST too large", 0)
}

/// A parsed keys request, ready to be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysRequest {
    /// GET or HEAD without a watch: read the key.
    Read {
        /// Normalised key.
        key: String,
        /// recursive=true.
        recursive: bool,
        /// sorted=true.
        sorted: bool,
        /// Linearizable read through Raft. Only GET sets it: etcd turns only `GET` with
        /// quorum=true into a quorum read, a HEAD is always answered locally.
        quorum: bool,
    },
    /// GET with wait=true (and no quorum=true): a watch.
    Watch {
        /// Normalised key.
        key: String,
        /// recursive=true.
        recursive: bool,
        /// stream=true.
        stream: bool,
        /// waitIndex; 0 = not given (wait for the next change).
        wait_index: u64,
    },
    /// PUT, POST or DELETE: a command to propose.
    Write {
        /// The store command, with the expiration already fixed on this member's clock.
        command: Command,
        /// noValueOnSuccess=true (rendering only).
        no_value_on_success: bool,
    },
}

/// Decoded form pairs in Go's `url.Values` order (body first, then query).
#[derive(Debug, Default)]
struct Form {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Form {
    /// The first value of `name` (Go's `form[name][0]`).
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    /// Go's `FormValue`: the first value, `""` when absent, as a `String` (lossy).
    fn value(&self, name: &str) -> String {
        String::from_utf8_lossy(self.get(name).unwrap_or(b"")).into_owned()
    }
}

/// Go's `url.parseQuery` into `pairs`, returning the error Go would return, if any.
fn parse_query(s: &[u8], pairs: &mut Vec<(Vec<u8>, Vec<u8>)>) -> Option<String> {
    let mut err: Option<String> = None;
    for piece in s.split(|&b| b == b'&') {
        if piece.contains(&b';') {
            // Unconditional in Go: overrides an earlier escape error.
            err = Some("invalid semicolon separator in query".to_string());
            continue;
        }
        if piece.is_empty() {
            continue;
        }
        let (k, v) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &b""[..]),
        };
        let k = match unescape(k, true) {
            Ok(k) => k,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        let v = match unescape(v, true) {
            Ok(v) => v,
            Err(e) => {
                err.get_or_insert(e);
                continue;
            }
        };
        pairs.push((k, v));
    }
    err
}

fn is_tspecial(c: char) -> bool {
    "()<>@,;:\\\"/[]?=".contains(c)
}

fn is_token_char(c: char) -> bool {
    ('\u{21}'..'\u{7f}').contains(&c) && !is_tspecial(c)
}

/// Go's `mime.consumeToken`.
fn consume_token(v: &str) -> (&str, &str) {
    let pos = v.find(|c: char| !is_token_char(c)).unwrap_or(v.len());
    (&v[..pos], &v[pos..])
}

/// Go's `mime.consumeValue`, reduced to what matters here: the rest after a successfully
/// consumed token or quoted string, `None` where Go returns `("", v)`.
fn consume_value(v: &str) -> Option<&str> {
    let bytes = v.as_bytes();
    if bytes.first() != Some(&b'"') {
        let (tok, rest) = consume_token(v);
        return (!tok.is_empty()).then_some(rest);
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return v.get(i + 1..),
            b'\\' if bytes.get(i + 1).is_some_and(|&n| is_tspecial(n as char)) => i += 2,
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Go's `mime.consumeMediaParam`: `(lower-case name, rest)`, `None` on a parse failure.
fn consume_media_param(v: &str) -> Option<(String, &str)> {
    let rest = v.trim_start().strip_prefix(';')?.trim_start();
    let (param, rest) = consume_token(rest);
    if param.is_empty() {
        return None;
    }
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let rest = consume_value(rest)?;
    Some((param.to_ascii_lowercase(), rest))
}

/// Go's `strings.ToLower` as far as it can matter for media types: ASCII, plus the two
/// non-ASCII characters Go lower-cases to ASCII letters (KELVIN SIGN, I WITH DOT ABOVE).
fn go_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{212a}' => 'k',
            '\u{130}' => 'i',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Go's `mime.checkMediaTypeDisposition`.
fn check_media_type(s: &str) -> Result<(), &'static str> {
    let (typ, rest) = consume_token(s);
    if typ.is_empty() {
        return Err("mime: no media type");
    }
    if rest.is_empty() {
        return Ok(());
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err("mime: expected slash after first token");
    };
    let (sub, rest) = consume_token(rest);
    if sub.is_empty() {
        return Err("mime: expected token after slash");
    }
    if !rest.is_empty() {
        return Err("mime: unexpected content after media subtype");
    }
    Ok(())
}

/// Go 1.19's `mime.ParseMediaType`, reduced to `(media type, error)`: the media type is
/// lower-cased; on a parameter syntax error Go still returns it (and `ParseForm` still reads
/// the body, keeping the error), on the other errors it returns `""`.
pub fn parse_media_type(v: &str) -> (String, Option<&'static str>) {
    // What every form client sends, parsed per request twice: its answer is known (a
    // lower-case media type with no parameters parses to itself).
    if v == FORM_URLENCODED {
        return (FORM_URLENCODED.to_string(), None);
    }
    let base = v.split(';').next().unwrap_or("");
    let media_type = go_lower(base).trim().to_string();
    if let Err(e) = check_media_type(&media_type) {
        return (String::new(), Some(e));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut v = &v[base.len()..];
    loop {
        v = v.trim_start();
        if v.is_empty() {
            break;
        }
        match consume_media_param(v) {
            None => {
                if v.trim() == ";" {
                    // A trailing semicolon is not an error.
                    break;
                }
                return (media_type, Some("mime: invalid media parameter"));
            }
            Some((key, rest)) => {
                // Go 1.19 rejects any repeated name, even with an equal value (observed).
                if seen.contains(&key) {
                    return (String::new(), Some("mime: duplicate parameter name"));
                }
                seen.push(key);
                v = rest;
            }
        }
    }
    (media_type, None)
}

const FORM_URLENCODED: &str = "application/x-www-form-urlencoded";

/// The `Content-Type` Go sees: header values are trimmed, and an empty one is treated as
/// `application/octet-stream` (RFC 7231 §3.1.1.5).
fn effective_content_type(content_type: Option<&str>) -> &str {
    match content_type.map(|c| c.trim_matches([' ', '\t'])) {
        None | Some("") => "application/octet-stream",
        Some(c) => c,
    }
}

/// Whether Go would read the request body as a form: PUT or POST with a form-urlencoded
/// media type. The glue only needs to read the body (up to `BODY_BYTES_MAX + 1` bytes) when
/// this is true; any other body is ignored by etcd.
pub fn reads_form_body(method: &str, content_type: Option<&str>) -> bool {
    matches!(method, "PUT" | "POST")
        && parse_media_type(effective_content_type(content_type)).0 == FORM_URLENCODED
}

/// Go's `Request.ParseForm` for the keys handler.
fn parse_form(
    method: &str,
    raw_query: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Form, String> {
    let mut form = Form::default();
    let mut err: Option<String> = None;
    if matches!(method, "PUT" | "POST") {
        let (media_type, mime_err) = parse_media_type(effective_content_type(content_type));
        err = mime_err.map(str::to_string);
        if media_type == FORM_URLENCODED {
            if body.len() > BODY_BYTES_MAX {
                return Err(body_too_large().cause);
            }
            let body_err = parse_query(body, &mut form.pairs);
            err = err.or(body_err);
        }
    }
    let query_err = parse_query(raw_query.as_bytes(), &mut form.pairs);
    match err.or(query_err) {
        Some(e) => Err(e),
        None => Ok(form),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &[u8]) -> Option<bool> {
    match v {
        b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => Some(true),
        b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseUint(v, 10, 64)`: decimal digits only, no sign, no overflow.
fn parse_uint(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// A validation error: HTTP 400 with index 0.
fn invalid(code: u16, cause: &str) -> V2Error {
    V2Error::new(code, cause, 0)
}

/// etcd's `getBool`: false when absent, an error when present and not a Go boolean.
fn get_bool(form: &Form, name: &str, code: u16, cause: &str) -> Result<bool, V2Error> {
    match form.get(name) {
        None => Ok(false),
        Some(v) => parse_bool(v).ok_or_else(|| invalid(code, cause)),
    }
}

/// etcd's `getUint64` with error 203: 0 when absent.
fn get_index(form: &Form, name: &str, cause: &str) -> Result<u64, V2Error> {
    match form.get(name) {
        None => Ok(0),
        Some(v) => parse_uint(v).ok_or_else(|| invalid(INDEX_NAN, cause)),
    }
}

/// Parses and validates a keys request and decides what it does.
///
/// * `method`: `GET`, `HEAD`, `PUT`, `POST` or `DELETE` (others must have been answered with
///   405 and [`KEYS_ALLOWED_METHODS`] before; they are rejected here with 209).
/// * `key`: the normalised key from [`super::path::keys_key`].
/// * `raw_query`: the query string without `?`, still percent-encoded.
/// * `content_type`, `body`: the request's `Content-Type` header and body (see
///   [`reads_form_body`]; pass an empty body when it was not read).
/// * `now_unix_nanos`: this member's clock, which fixes `expire_at = now + ttl` before the
///   command is proposed.
///
/// Validation follows etcd's order (spec §1.5 checks 1–17) and returns the first failure.
/// The operation is chosen as etcd's v2 applier does (§5.2, §6, §7).
///
/// TTL deviation: etcd computes `now + time.Duration(ttl) * time.Second` in wrapping
/// `int64`, so a ttl above about 9.2e9 s (292 years) gives a nonsense time (a permanent node
/// or a negative ttl). pikv saturates instead: such a node expires at `u64::MAX` ns.
pub fn parse_keys_request(
    method: &str,
    key: &str,
    raw_query: &str,
    content_type: Option<&str>,
    body: &[u8],
    now_unix_nanos: u64,
) -> Result<KeysRequest, V2Error> {
    if !matches!(method, "GET" | "HEAD" | "PUT" | "POST" | "DELETE") {
        return Err(invalid(INVALID_FIELD, "method not allowed"));
    }
    // 1. The form parses.
    let form = parse_form(method, raw_query, content_type, body)
        .map_err(|cause| invalid(INVALID_FORM, &cause))?;
    // 2–9. Indexes and booleans, in etcd's order.
    let prev_index = get_index(&form, "prevIndex", "invalid value for \"prevIndex\"")?;
    let wait_index = get_index(&form, "waitIndex", "invalid value for \"waitIndex\"")?;
    let bool_field = |name: &str, cause: &str| get_bool(&form, name, INVALID_FIELD, cause);
    let recursive = bool_field("recursive", "invalid value for \"recursive\"")?;
    let sorted = bool_field("sorted", "invalid value for \"sorted\"")?;
    let wait = bool_field("wait", "invalid value for \"wait\"")?;
    let dir = bool_field("dir", "invalid value for \"dir\"")?;
    let quorum = bool_field("quorum", "invalid value for \"quorum\"")?;
    let stream = bool_field("stream", "invalid value for \"stream\"")?;
    // 10. wait only with GET (HEAD included in the rejection).
    if wait && method != "GET" {
        return Err(invalid(
            INVALID_FIELD,
            "\"wait\" can only be used with GET requests",
        ));
    }
    // 11. prevValue, if present, is non-empty.
    let prev_value = form.value("prevValue");
    if form.get("prevValue").is_some() && prev_value.is_empty() {
        return Err(invalid(
            PREV_VALUE_REQUIRED,
            "\"prevValue\" cannot be empty",
        ));
    }
    // 12. noValueOnSuccess.
    let no_value_on_success =
        bool_field("noValueOnSuccess", "invalid value for \"noValueOnSuccess\"")?;
    // 13. ttl, if non-empty (`ttl=` means "no TTL").
    let ttl = match form.get("ttl") {
        Some(v) if !v.is_empty() => {
            Some(parse_uint(v).ok_or_else(|| invalid(TTL_NAN, "invalid value for \"ttl\""))?)
        }
        _ => None,
    };
    // 14. prevExist, if present (cause without quotes, as etcd writes it).
    let prev_exist = match form.get("prevExist") {
        None => None,
        Some(v) => Some(
            parse_bool(v).ok_or_else(|| invalid(INVALID_FIELD, "invalid value for prevExist"))?,
        ),
    };
    // 15–17. refresh, and its requirements.
    let refresh = match form.get("refresh") {
        None => false,
        Some(v) => {
            parse_bool(v).ok_or_else(|| invalid(INVALID_FIELD, "invalid value for refresh"))?
        }
    };
    let value = form.value("value");
    if refresh {
        if !value.is_empty() {
            return Err(invalid(REFRESH_VALUE, "A value was provided on a refresh"));
        }
        if ttl.is_none() {
            return Err(invalid(REFRESH_TTL_REQUIRED, "No TTL value set"));
        }
    }

    let key = key.to_string();
    let expire_at = ttl.map(|t| now_unix_nanos.saturating_add(t.saturating_mul(1_000_000_000)));
    let prev_value_opt = (!prev_value.is_empty()).then_some(prev_value);
    let prev_index_opt = (prev_index > 0).then_some(prev_index);
    let has_condition = prev_value_opt.is_some() || prev_index_opt.is_some();

    let command = match method {
        // quorum wins over wait (quirk 6); HEAD is never a quorum read in etcd.
        "GET" if quorum || !wait => {
            return Ok(KeysRequest::Read {
                key,
                recursive,
                sorted,
                quorum,
            })
        }
        "GET" => {
            return Ok(KeysRequest::Watch {
                key,
                recursive,
                stream,
                wait_index,
            })
        }
        "HEAD" => {
            return Ok(KeysRequest::Read {
                key,
                recursive,
                sorted,
                quorum: false,
            })
        }
        "POST" => Command::CreateInOrder {
            dir_key: key,
            value,
            dir,
            expire_at,
        },
        "DELETE" if has_condition => Command::CompareAndDelete {
            key,
            prev_value: prev_value_opt,
            prev_index: prev_index_opt,
        },
        "DELETE" => Command::Delete {
            key,
            dir,
            recursive,
        },
        // PUT
        _ => match prev_exist {
            Some(false) => Command::Create {
                key,
                value,
                dir,
                expire_at,
            },
            Some(true) if !has_condition => Command::Update {
                key,
                value,
                expire_at,
                refresh,
            },
            Some(true) | None if has_condition => Command::CompareAndSwap {
                key,
                value,
                prev_value: prev_value_opt,
                prev_index: prev_index_opt,
                expire_at,
                refresh,
            },
            _ => Command::Set {
                key,
                value,
                dir,
                expire_at,
                refresh,
            },
        },
    };
    Ok(KeysRequest::Write {
        command,
        no_value_on_success,
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A tiny deterministic xorshift generator for the no-panic tests (no rand dependency).
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::Rng;
    use super::*;
    use crate::store::error::*;

    const NOW: u64 = 1_795_370_276_000_000_000;
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    fn put(query: &str, body: &str) -> Result<KeysRequest, V2Error> {
        parse_keys_request("PUT", "/k", query, FORM, body.as_bytes(), NOW)
    }

    fn cmd(r: Result<KeysRequest, V2Error>) -> Command {
        match r {
            Ok(KeysRequest::Write { command, .. }) => command,
            other => panic!("not a write: {other:?}"),
        }
    }

    fn set(value: &str) -> Command {
        Command::Set {
            key: "/k".into(),
            value: value.into(),
            dir: false,
            expire_at: None,
            refresh: false,
        }
    }

    fn err(code: u16, cause: &str) -> Result<KeysRequest, V2Error> {
        Err(V2Error::new(code, cause, 0))
    }

    #[test]
    fn validation_table() {
        // (method, query, body, expected error) — one row per check of §1.5, plus the order.
        let rows: &[(&str, &str, &str, u16, &str)] = &[
            (
                "PUT",
                "value=%zz",
                "",
                INVALID_FORM,
                "invalid URL escape \"%zz\"",
            ),
            (
                "GET",
                "value=%4",
                "",
                INVALID_FORM,
                "invalid URL escape \"%4\"",
            ),
            (
                "DELETE",
                "a=%",
                "",
                INVALID_FORM,
                "invalid URL escape \"%\"",
            ),
            (
                "PUT",
                "",
                "value=%z",
                INVALID_FORM,
                "invalid URL escape \"%z\"",
            ),
            (
                "GET",
                "a=1;b=2",
                "",
                INVALID_FORM,
                "invalid semicolon separator in query",
            ),
            (
                "PUT",
                "prevIndex=x",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=-1",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=%2B5",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=1.0",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=+5",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "prevIndex=18446744073709551616",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "GET",
                "waitIndex=x&wait=true",
                "",
                INDEX_NAN,
                "invalid value for \"waitIndex\"",
            ),
            (
                "GET",
                "recursive=yes",
                "",
                INVALID_FIELD,
                "invalid value for \"recursive\"",
            ),
            (
                "GET",
                "recursive=",
                "",
                INVALID_FIELD,
                "invalid value for \"recursive\"",
            ),
            (
                "GET",
                "sorted=tRUE",
                "",
                INVALID_FIELD,
                "invalid value for \"sorted\"",
            ),
            (
                "GET",
                "wait=2",
                "",
                INVALID_FIELD,
                "invalid value for \"wait\"",
            ),
            (
                "PUT",
                "dir=on",
                "",
                INVALID_FIELD,
                "invalid value for \"dir\"",
            ),
            (
                "GET",
                "quorum=y",
                "",
                INVALID_FIELD,
                "invalid value for \"quorum\"",
            ),
            (
                "GET",
                "stream=no",
                "",
                INVALID_FIELD,
                "invalid value for \"stream\"",
            ),
            (
                "PUT",
                "wait=true",
                "",
                INVALID_FIELD,
                "\"wait\" can only be used with GET requests",
            ),
            (
                "HEAD",
                "wait=true",
                "",
                INVALID_FIELD,
                "\"wait\" can only be used with GET requests",
            ),
            (
                "HEAD",
                "wait=true&quorum=true",
                "",
                INVALID_FIELD,
                "\"wait\" can only be used with GET requests",
            ),
            (
                "DELETE",
                "wait=1",
                "",
                INVALID_FIELD,
                "\"wait\" can only be used with GET requests",
            ),
            (
                "PUT",
                "",
                "prevValue=",
                PREV_VALUE_REQUIRED,
                "\"prevValue\" cannot be empty",
            ),
            (
                "DELETE",
                "prevValue",
                "",
                PREV_VALUE_REQUIRED,
                "\"prevValue\" cannot be empty",
            ),
            (
                "PUT",
                "noValueOnSuccess=x",
                "",
                INVALID_FIELD,
                "invalid value for \"noValueOnSuccess\"",
            ),
            (
                "PUT",
                "",
                "ttl=abc&value=1",
                TTL_NAN,
                "invalid value for \"ttl\"",
            ),
            ("PUT", "ttl=-1", "", TTL_NAN, "invalid value for \"ttl\""),
            ("POST", "ttl=1.5", "", TTL_NAN, "invalid value for \"ttl\""),
            ("DELETE", "ttl=x", "", TTL_NAN, "invalid value for \"ttl\""),
            (
                "PUT",
                "",
                "prevExist=maybe",
                INVALID_FIELD,
                "invalid value for prevExist",
            ),
            (
                "PUT",
                "prevExist=",
                "",
                INVALID_FIELD,
                "invalid value for prevExist",
            ),
            (
                "PUT",
                "refresh=",
                "",
                INVALID_FIELD,
                "invalid value for refresh",
            ),
            (
                "PUT",
                "",
                "ttl=30&refresh=true&value=x",
                REFRESH_VALUE,
                "A value was provided on a refresh",
            ),
            (
                "PUT",
                "",
                "refresh=true",
                REFRESH_TTL_REQUIRED,
                "No TTL value set",
            ),
            (
                "PUT",
                "",
                "refresh=true&ttl=",
                REFRESH_TTL_REQUIRED,
                "No TTL value set",
            ),
            (
                "POST",
                "refresh=1",
                "",
                REFRESH_TTL_REQUIRED,
                "No TTL value set",
            ),
            // Order: the earlier check wins.
            (
                "PUT",
                "prevIndex=x&ttl=y",
                "",
                INDEX_NAN,
                "invalid value for \"prevIndex\"",
            ),
            (
                "PUT",
                "ttl=y&waitIndex=z",
                "",
                INDEX_NAN,
                "invalid value for \"waitIndex\"",
            ),
            (
                "PUT",
                "stream=x&recursive=y",
                "",
                INVALID_FIELD,
                "invalid value for \"recursive\"",
            ),
            (
                "PUT",
                "wait=true&prevValue=",
                "",
                INVALID_FIELD,
                "\"wait\" can only be used with GET requests",
            ),
            (
                "PUT",
                "prevValue=&noValueOnSuccess=x",
                "",
                PREV_VALUE_REQUIRED,
                "\"prevValue\" cannot be empty",
            ),
            (
                "PUT",
                "ttl=x&noValueOnSuccess=x",
                "",
                INVALID_FIELD,
                "invalid value for \"noValueOnSuccess\"",
            ),
            (
                "PUT",
                "prevExist=x&ttl=x",
                "",
                TTL_NAN,
                "invalid value for \"ttl\"",
            ),
            (
                "PUT",
                "refresh=x&prevExist=x",
                "",
                INVALID_FIELD,
                "invalid value for prevExist",
            ),
            (
                "PUT",
                "value=%zz&prevIndex=x",
                "",
                INVALID_FORM,
                "invalid URL escape \"%zz\"",
            ),
            // quorum does not skip the boolean checks.
            (
                "GET",
                "quorum=true&wait=true&recursive=x",
                "",
                INVALID_FIELD,
                "invalid value for \"recursive\"",
            ),
        ];
        for (method, query, body, code, cause) in rows {
            let got = parse_keys_request(method, "/k", query, FORM, body.as_bytes(), NOW);
            assert_eq!(got, err(*code, cause), "{method} ?{query} body {body:?}");
        }
    }

    #[test]
    fn captured_error_bodies_end_to_end() {
        // §8.2 captures: request → V2Error → body bytes.
        let rows: &[(&str, &str, &str, &str)] = &[
            (
                "PUT",
                "",
                "ttl=abc&value=1",
                "{\"errorCode\":202,\"message\":\"The given TTL in POST form is not a number\",\"cause\":\"invalid value for \\\"ttl\\\"\",\"index\":0}\n",
            ),
            (
                "GET",
                "waitIndex=x&wait=true",
                "",
                "{\"errorCode\":203,\"message\":\"The given index in POST form is not a number\",\"cause\":\"invalid value for \\\"waitIndex\\\"\",\"index\":0}\n",
            ),
            (
                "PUT",
                "wait=true",
                "",
                "{\"errorCode\":209,\"message\":\"Invalid field\",\"cause\":\"\\\"wait\\\" can only be used with GET requests\",\"index\":0}\n",
            ),
            (
                "PUT",
                "",
                "prevExist=maybe",
                "{\"errorCode\":209,\"message\":\"Invalid field\",\"cause\":\"invalid value for prevExist\",\"index\":0}\n",
            ),
            (
                "PUT",
                "",
                "prevValue=",
                "{\"errorCode\":201,\"message\":\"PrevValue is Required in POST form\",\"cause\":\"\\\"prevValue\\\" cannot be empty\",\"index\":0}\n",
            ),
            (
                "PUT",
                "value=%zz",
                "",
                "{\"errorCode\":210,\"message\":\"Invalid POST form\",\"cause\":\"invalid URL escape \\\"%zz\\\"\",\"index\":0}\n",
            ),
            (
                "PUT",
                "",
                "ttl=30&refresh=true&value=x",
                "{\"errorCode\":211,\"message\":\"Value provided on refresh\",\"cause\":\"A value was provided on a refresh\",\"index\":0}\n",
            ),
            (
                "PUT",
                "",
                "refresh=true",
                "{\"errorCode\":212,\"message\":\"A TTL must be provided on refresh\",\"cause\":\"No TTL value set\",\"index\":0}\n",
            ),
            (
                "PUT",
                "",
                "value=%\"\\",
                "{\"errorCode\":210,\"message\":\"Invalid POST form\",\"cause\":\"invalid URL escape \\\"%\\\\\\\"\\\\\\\\\\\"\",\"index\":0}\n",
            ),
        ];
        for (method, query, body, want) in rows {
            let e = parse_keys_request(method, "/k", query, FORM, body.as_bytes(), NOW)
                .expect_err("must fail");
            assert_eq!(e.http_status(), 400);
            let got = String::from_utf8(crate::api::render::error_body(&e)).unwrap();
            assert_eq!(got, *want, "{method} ?{query} {body:?}");
        }
        let mut big = b"value=".to_vec();
        big.resize(11 * 1024 * 1024, b'a');
        let e = parse_keys_request("PUT", "/k", "", FORM, &big, NOW).expect_err("too large");
        assert_eq!(
            crate::api::render::error_body(&e),
            b"{\"errorCode\":210,\"message\":\"Invalid POST form\",\"cause\":\"http: POST too large\",\"index\":0}\n"
        );
    }

    #[test]
    fn form_errors_like_go() {
        let cases: &[(&str, &str, Option<&str>, &str)] = &[
            // Observed on etcd 3.4.23 (go1.19.8).
            (
                "value=%zz&b;c",
                "",
                FORM,
                "invalid semicolon separator in query",
            ),
            (
                "b;c&value=%zz",
                "",
                FORM,
                "invalid semicolon separator in query",
            ),
            ("value=%zz", "value=%yy", FORM, "invalid URL escape \"%yy\""),
            (
                "value=%zz",
                "a;b",
                FORM,
                "invalid semicolon separator in query",
            ),
            (
                "value=%zz",
                "a=%qq&a;b&x=%rr",
                FORM,
                "invalid semicolon separator in query",
            ),
            ("", "value=%c2%a0%", FORM, "invalid URL escape \"%\""),
            ("", "value=%\u{a0}", FORM, "invalid URL escape \"%\\u00a0\""),
            ("", "value=%\"\\", FORM, "invalid URL escape \"%\\\"\\\\\""),
            (
                "value=%zz",
                "value=x",
                Some("application/x-www-form-urlencoded; foo"),
                "mime: invalid media parameter",
            ),
            (
                "value=%zz",
                "value=x",
                Some("foo/"),
                "mime: expected token after slash",
            ),
            ("", "value=x", Some("/x"), "mime: no media type"),
            (
                "",
                "value=x",
                Some("foo/bar/baz"),
                "mime: unexpected content after media subtype",
            ),
            (
                "",
                "value=x",
                Some("foo bar"),
                "mime: expected slash after first token",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded; a=1; a=2"),
                "mime: duplicate parameter name",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded; a=1; A=1"),
                "mime: duplicate parameter name",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded; charset=\"utf-8"),
                "mime: invalid media parameter",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded; charset="),
                "mime: invalid media parameter",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded ;;"),
                "mime: invalid media parameter",
            ),
            (
                "",
                "value=x",
                Some("application/x-www-form-urlencoded; ;"),
                "mime: invalid media parameter",
            ),
            // A mime parameter error keeps the body being parsed but the mime error wins.
            (
                "",
                "value=%zz",
                Some("application/x-www-form-urlencoded; x"),
                "mime: invalid media parameter",
            ),
        ];
        for (query, body, ct, cause) in cases {
            let got = parse_keys_request("PUT", "/k", query, *ct, body.as_bytes(), NOW);
            assert_eq!(got, err(INVALID_FORM, cause), "?{query} {body:?} {ct:?}");
        }
    }

    #[test]
    fn content_types() {
        let ok: &[(Option<&str>, &str)] = &[
            (FORM, "x"),
            (
                Some("APPLICATION/X-WWW-FORM-URLENCODED ; charset=utf-8"),
                "x",
            ),
            (Some("application/x-www-form-urlencoded;"), "x"),
            (
                Some("application/x-www-form-urlencoded; charset=\"\" "),
                "x",
            ),
            (
                Some("application/x-www-form-urlencoded; charset=\"a\\\"b\""),
                "x",
            ),
            (Some("  application/x-www-form-urlencoded  "), "x"),
            (Some("application/json"), ""),
            (Some("text/plain"), ""),
            (Some("text"), ""),
            (Some("multipart/form-data; boundary=xyz"), ""),
            (None, ""),
            (Some(""), ""),
            (Some("  "), ""),
        ];
        for (ct, want) in ok {
            let got = parse_keys_request("PUT", "/k", "", *ct, b"value=x", NOW);
            assert_eq!(cmd(got), set(want), "{ct:?}");
            assert_eq!(reads_form_body("PUT", *ct), !want.is_empty(), "{ct:?}");
        }
        assert!(reads_form_body("POST", FORM));
        assert!(!reads_form_body("DELETE", FORM));
        assert!(!reads_form_body("GET", FORM));
        // A malformed parameter still means "form": Go reads the body (and fails).
        assert!(reads_form_body(
            "PUT",
            Some("application/x-www-form-urlencoded; x")
        ));
    }

    #[test]
    fn value_sources() {
        // §5.5 captures.
        assert_eq!(cmd(put("value=fromquery", "")), set("fromquery"));
        assert_eq!(cmd(put("value=query", "value=body")), set("body"));
        assert_eq!(cmd(put("", "value=a&value=b")), set("a"));
        assert_eq!(
            cmd(parse_keys_request(
                "PUT",
                "/k",
                "",
                Some("application/json"),
                b"{\"value\":\"x\"}",
                NOW
            )),
            set("")
        );
        assert_eq!(cmd(put("", "")), set(""));
        // §1.3: value=a&b=c d+e (the shell sends a literal '&'): value "a" only; '+' is space.
        assert_eq!(cmd(put("", "value=a&b=c d+e")), set("a"));
        assert_eq!(cmd(put("", "value=a%26b%3Dc+d%2Be")), set("a&b=c d+e"));
        assert_eq!(cmd(put("=x&&value=a+b%2Bc", "")), set("a b+c"));
        assert_eq!(cmd(put("value", "")), set(""));
        // Invalid UTF-8 kept as U+FFFD; the §1.3 example.
        assert_eq!(
            cmd(put("", "value=%FF%00%01%09%0A%0D%E2%80%A8%22%5C%7F")),
            set("\u{fffd}\u{0}\u{1}\t\n\r\u{2028}\"\\\u{7f}")
        );
        // Raw invalid bytes in the body too.
        assert_eq!(
            cmd(parse_keys_request(
                "PUT",
                "/k",
                "",
                FORM,
                b"value=\xff\xfe",
                NOW
            )),
            set("\u{fffd}\u{fffd}")
        );
        // DELETE ignores the body: a plain delete.
        assert_eq!(
            cmd(parse_keys_request(
                "DELETE",
                "/k",
                "",
                FORM,
                b"prevValue=wrong",
                NOW
            )),
            Command::Delete {
                key: "/k".into(),
                dir: false,
                recursive: false
            }
        );
        // GET ignores the body as well (no form error from it).
        assert!(parse_keys_request("GET", "/k", "", FORM, b"recursive=%zz", NOW).is_ok());
    }

    #[test]
    fn body_limit() {
        let mut big = b"value=".to_vec();
        big.resize(BODY_BYTES_MAX + 1, b'a');
        assert_eq!(
            parse_keys_request("PUT", "/k", "", FORM, &big, NOW),
            Err(body_too_large())
        );
        assert_eq!(
            body_too_large(),
            V2Error::new(210, "http: POST too large", 0)
        );
        big.truncate(BODY_BYTES_MAX);
        let Command::Set { value, .. } = cmd(parse_keys_request("PUT", "/k", "", FORM, &big, NOW))
        else {
            panic!()
        };
        assert_eq!(value.len(), BODY_BYTES_MAX - 6);
        // Not a form body: the size does not matter (Go never reads it).
        big.resize(BODY_BYTES_MAX + 10, b'a');
        assert!(parse_keys_request("PUT", "/k", "", None, &big, NOW).is_ok());
    }

    #[test]
    fn operation_choice() {
        let k = || "/k".to_string();
        let rows: Vec<(&str, &str, Command)> = vec![
            ("PUT", "value=v", set("v")),
            ("PUT", "value=v&prevIndex=0", set("v")),
            (
                "PUT",
                "value=v&dir=true&ttl=5",
                Command::Set {
                    key: k(),
                    value: "v".into(),
                    dir: true,
                    expire_at: Some(NOW + 5_000_000_000),
                    refresh: false,
                },
            ),
            (
                "PUT",
                "ttl=30&refresh=true",
                Command::Set {
                    key: k(),
                    value: "".into(),
                    dir: false,
                    expire_at: Some(NOW + 30_000_000_000),
                    refresh: true,
                },
            ),
            (
                "PUT",
                "prevExist=false&prevValue=six&refresh=true&ttl=1",
                Command::Create {
                    key: k(),
                    value: "".into(),
                    dir: false,
                    expire_at: Some(NOW + 1_000_000_000),
                },
            ),
            (
                "PUT",
                "dir=true&prevExist=false",
                Command::Create {
                    key: k(),
                    value: "".into(),
                    dir: true,
                    expire_at: None,
                },
            ),
            (
                "PUT",
                "value=x&prevExist=1",
                Command::Update {
                    key: k(),
                    value: "x".into(),
                    expire_at: None,
                    refresh: false,
                },
            ),
            // Quirk 5: dir is ignored by update, the (absent) value is "".
            (
                "PUT",
                "dir=true&prevExist=true",
                Command::Update {
                    key: k(),
                    value: "".into(),
                    expire_at: None,
                    refresh: false,
                },
            ),
            (
                "PUT",
                "dir=true&prevExist=true&ttl=",
                Command::Update {
                    key: k(),
                    value: "".into(),
                    expire_at: None,
                    refresh: false,
                },
            ),
            (
                "PUT",
                "ttl=30&refresh=true&prevExist=true",
                Command::Update {
                    key: k(),
                    value: "".into(),
                    expire_at: Some(NOW + 30_000_000_000),
                    refresh: true,
                },
            ),
            (
                "PUT",
                "value=two&prevValue=one",
                Command::CompareAndSwap {
                    key: k(),
                    value: "two".into(),
                    prev_value: Some("one".into()),
                    prev_index: None,
                    expire_at: None,
                    refresh: false,
                },
            ),
            (
                "PUT",
                "value=four&prevIndex=1&prevValue=nope&prevExist=true",
                Command::CompareAndSwap {
                    key: k(),
                    value: "four".into(),
                    prev_value: Some("nope".into()),
                    prev_index: Some(1),
                    expire_at: None,
                    refresh: false,
                },
            ),
            (
                "PUT",
                "value=x&prevIndex=7&ttl=0",
                Command::CompareAndSwap {
                    key: k(),
                    value: "x".into(),
                    prev_value: None,
                    prev_index: Some(7),
                    expire_at: Some(NOW),
                    refresh: false,
                },
            ),
            (
                "POST",
                "value=Job1&prevExist=false&prevValue=x&prevIndex=3",
                Command::CreateInOrder {
                    dir_key: k(),
                    value: "Job1".into(),
                    dir: false,
                    expire_at: None,
                },
            ),
            (
                "POST",
                "dir=true&ttl=60",
                Command::CreateInOrder {
                    dir_key: k(),
                    value: "".into(),
                    dir: true,
                    expire_at: Some(NOW + 60_000_000_000),
                },
            ),
            (
                "DELETE",
                "dir=true&recursive=true",
                Command::Delete {
                    key: k(),
                    dir: true,
                    recursive: true,
                },
            ),
            (
                "DELETE",
                "prevIndex=0&recursive=true",
                Command::Delete {
                    key: k(),
                    dir: false,
                    recursive: true,
                },
            ),
            (
                "DELETE",
                "prevValue=body&recursive=true",
                Command::CompareAndDelete {
                    key: k(),
                    prev_value: Some("body".into()),
                    prev_index: None,
                },
            ),
            (
                "DELETE",
                "prevIndex=8",
                Command::CompareAndDelete {
                    key: k(),
                    prev_value: None,
                    prev_index: Some(8),
                },
            ),
        ];
        for (method, query, want) in rows {
            let got = parse_keys_request(method, "/k", query, None, b"", NOW);
            assert_eq!(cmd(got), want, "{method} ?{query}");
        }
        // The same parameters from the body.
        assert_eq!(
            cmd(put("", "value=two&prevValue=one")),
            cmd(put("value=two&prevValue=one", ""))
        );
    }

    #[test]
    fn reads_and_watches() {
        let read = |recursive, sorted, quorum| KeysRequest::Read {
            key: "/k".into(),
            recursive,
            sorted,
            quorum,
        };
        let watch = |recursive, stream, wait_index| KeysRequest::Watch {
            key: "/k".into(),
            recursive,
            stream,
            wait_index,
        };
        let rows = vec![
            ("GET", "", read(false, false, false)),
            ("GET", "recursive=true&sorted=1", read(true, true, false)),
            ("GET", "quorum=True", read(false, false, true)),
            // Quirk 6: quorum wins over wait.
            ("GET", "wait=true&quorum=true", read(false, false, true)),
            ("GET", "wait=false", read(false, false, false)),
            ("GET", "wait=true", watch(false, false, 0)),
            (
                "GET",
                "wait=t&recursive=T&stream=TRUE&waitIndex=42",
                watch(true, true, 42),
            ),
            ("GET", "wait=true&waitIndex=0", watch(false, false, 0)),
            (
                "GET",
                "wait=true&waitIndex=18446744073709551615",
                watch(false, false, u64::MAX),
            ),
            ("HEAD", "", read(false, false, false)),
            // HEAD is never a quorum read in etcd (only GET becomes QGET).
            ("HEAD", "quorum=true&sorted=true", read(false, true, false)),
            // Write-only parameters are validated but otherwise ignored by reads.
            (
                "GET",
                "ttl=5&prevExist=true&value=x",
                read(false, false, false),
            ),
        ];
        for (method, query, want) in rows {
            let got = parse_keys_request(method, "/k", query, FORM, b"", NOW);
            assert_eq!(got, Ok(want), "{method} ?{query}");
        }
    }

    #[test]
    fn bools_and_uints() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t.as_bytes()), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f.as_bytes()), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "1 ", " 1", "2", "on"] {
            assert_eq!(parse_bool(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_uint(b"0"), Some(0));
        assert_eq!(parse_uint(b"007"), Some(7));
        assert_eq!(parse_uint(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+5",
            "-1",
            " 1",
            "1 ",
            "1_000",
            "0x10",
            "18446744073709551616",
            "1.0",
        ] {
            assert_eq!(parse_uint(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn ttl_handling() {
        let exp = |q: &str| match cmd(put(q, "")) {
            Command::Set { expire_at, .. } => expire_at,
            c => panic!("{c:?}"),
        };
        assert_eq!(exp(""), None);
        assert_eq!(exp("ttl="), None);
        assert_eq!(exp("ttl=0"), Some(NOW));
        assert_eq!(exp("ttl=5"), Some(NOW + 5_000_000_000));
        assert_eq!(exp("ttl=5&ttl=x"), Some(NOW + 5_000_000_000));
        assert_eq!(exp("ttl=&ttl=5"), None);
        assert_eq!(exp("ttl=18446744073709551615"), Some(u64::MAX));
        assert_eq!(exp("ttl=9223372036"), Some(NOW + 9_223_372_036_000_000_000));
        assert_eq!(exp("ttl=18446744073"), Some(u64::MAX));
        // noValueOnSuccess is carried through.
        assert_eq!(
            put("noValueOnSuccess=true&value=nv", ""),
            Ok(KeysRequest::Write {
                command: set("nv"),
                no_value_on_success: true
            })
        );
    }

    #[test]
    fn unknown_method_is_an_error_not_a_panic() {
        assert!(parse_keys_request("PATCH", "/k", "", FORM, b"", NOW).is_err());
        assert_eq!(KEYS_ALLOWED_METHODS, "HEAD,GET,PUT,POST,DELETE");
    }

    #[test]
    fn no_panic_on_random_input() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let pieces: &[&[u8]] = &[
            b"value",
            b"ttl",
            b"prevIndex",
            b"prevValue",
            b"prevExist",
            b"refresh",
            b"dir",
            b"wait",
            b"quorum",
            b"waitIndex",
            b"recursive",
            b"true",
            b"1",
            b"x",
            b"=",
            b"&",
            b";",
            b"%",
            b"%2",
            b"%zz",
            b"%E2%80",
            b"+",
            b"\xff",
            b"\x00",
            b"18446744073709551616",
            b"18446744073709551615",
            b"",
            b" ",
        ];
        let methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", ""];
        let cts = [
            None,
            FORM,
            Some("application/x-www-form-urlencoded; a=\"\\"),
            Some("a/b; c"),
            Some("\u{212a}/\u{130}"),
            Some(";;="),
        ];
        for _ in 0..20_000 {
            let random = |rng: &mut Rng| {
                let n = rng.below(12);
                let mut v = Vec::new();
                for _ in 0..n {
                    v.extend_from_slice(pieces[rng.below(pieces.len())]);
                }
                v
            };
            let q = random(&mut rng);
            let body = random(&mut rng);
            let query = String::from_utf8_lossy(&q);
            let method = methods[rng.below(methods.len())];
            let ct = cts[rng.below(cts.len())];
            let now = if rng.below(2) == 0 {
                u64::MAX
            } else {
                rng.next()
            };
            let _ = parse_keys_request(method, "/k", &query, ct, &body, now);
            // Random bytes as the content type too.
            let raw_ct = String::from_utf8_lossy(&body);
            let _ = parse_keys_request("PUT", "/k", &query, Some(&raw_ct), &q, now);
        }
    }
}
