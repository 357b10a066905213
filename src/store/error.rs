//! etcd's v2 error codes as data: one table for the messages, one for the HTTP statuses
//! (etcd's `v2error/error.go`). Everything that reaches a client as a keys error is a
//! [`V2Error`]; the API layer renders it and nothing else decides codes or statuses.

use std::fmt;

/// Key not found (404).
pub const KEY_NOT_FOUND: u16 = 100;
/// Compare failed (412).
pub const TEST_FAILED: u16 = 101;
/// Not a file (403).
pub const NOT_FILE: u16 = 102;
/// Not a directory (400).
pub const NOT_DIR: u16 = 104;
/// Key already exists (412).
pub const NODE_EXIST: u16 = 105;
/// Root is read only (400).
pub const ROOT_READ_ONLY: u16 = 107;
/// Directory not empty (403).
pub const DIR_NOT_EMPTY: u16 = 108;
/// prevValue present but empty (400).
pub const PREV_VALUE_REQUIRED: u16 = 201;
/// ttl is not a number (400).
pub const TTL_NAN: u16 = 202;
/// prevIndex/waitIndex is not a number (400).
pub const INDEX_NAN: u16 = 203;
/// A boolean or method check failed (400).
pub const INVALID_FIELD: u16 = 209;
/// The form could not be parsed (400).
pub const INVALID_FORM: u16 = 210;
/// A value was given with refresh=true (400).
pub const REFRESH_VALUE: u16 = 211;
/// refresh=true without a ttl (400).
pub const REFRESH_TTL_REQUIRED: u16 = 212;
/// The request could not be committed or served in time (500).
pub const RAFT_INTERNAL: u16 = 300;
/// The requested watch index is older than the event history (HTTP 400).
pub const EVENT_INDEX_CLEARED: u16 = 401;

/// An etcd v2 keys error: code, cause and the etcd index it was produced at.
///
/// `index` is the store's current index for store errors (100-108, 401) and 0 for
/// request-validation (2xx) and Raft (300) errors, as etcd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Error {
    /// etcd's numeric error code.
    pub code: u16,
    /// The detail etcd puts in `cause`; empty means the member is omitted.
    pub cause: String,
    /// The etcd index reported in the body and in `X-Etcd-Index`.
    pub index: u64,
}

impl V2Error {
    /// An error with the given code, cause and index.
    pub fn new(code: u16, cause: impl Into<String>, index: u64) -> V2Error {
        V2Error {
            code,
            cause: cause.into(),
            index,
        }
    }

    /// etcd's fixed message text for this error's code.
    pub fn message(&self) -> &'static str {
        message_for(self.code)
    }

    /// The HTTP status etcd answers this error with.
    pub fn http_status(&self) -> u16 {
        status_for(self.code)
    }
}

/// etcd's message for an error code (`errors` map in etcd's v2error).
pub fn message_for(code: u16) -> &'static str {
    match code {
        100 => "Key not found",
        101 => "Compare failed",
        102 => "Not a file",
        103 => "Reached the max number of peers in the cluster",
        104 => "Not a directory",
        105 => "Key already exists",
        106 => "The prefix of given key is a keyword in etcd",
        107 => "Root is read only",
        108 => "Directory not empty",
        109 => "Peer address has existed",
        110 => "The request requires user authentication",
        200 => "Value is Required in POST form",
        201 => "PrevValue is Required in POST form",
        202 => "The given TTL in POST form is not a number",
        203 => "The given index in POST form is not a number",
        204 => "Value or TTL is required in POST form",
        205 => "The given timeout in POST form is not a number",
        206 => "Name is required in POST form",
        207 => "Index or value is required",
        208 => "Index and value cannot both be specified",
        209 => "Invalid field",
        210 => "Invalid POST form",
        211 => "Value provided on refresh",
        212 => "A TTL must be provided on refresh",
        300 => "Raft Internal Error",
        301 => "During Leader Election",
        400 => "watcher is cleared due to etcd recovery",
        401 => "The event in requested index is outdated and cleared",
        402 => "Standby Internal Error",
        403 => "Invalid active size",
        404 => "Standby remove delay",
        500 => "Client Internal Error",
        _ => "Unknown error",
    }
}

/// The HTTP status etcd uses for an error code; codes without a mapping use 400.
pub fn status_for(code: u16) -> u16 {
    match code {
        100 => 404,
        101 | 105 => 412,
        102 | 108 => 403,
        110 => 401,
        300 | 301 => 500,
        _ => 400,
    }
}

impl fmt::Display for V2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message())?;
        if !self.cause.is_empty() {
            write!(f, " ({})", self.cause)?;
        }
        write!(f, " [{}]", self.index)
    }
}

impl std::error::Error for V2Error {}
