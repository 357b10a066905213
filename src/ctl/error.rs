//! What can go wrong in `pikv ctl`, and the one place where it becomes etcdctl's stderr
//! text and exit code ([`Failure::report`]).
//!
//! etcdctl's exit codes (`etcdctl/ctlv2/command/error.go`): 0 success, 1 bad arguments, 2 a
//! connection error while syncing the member list, 3 unknown command (urfave/cli's
//! "No help topic"), 4 a server or cluster error, 5 an unhealthy cluster.

use std::fmt;
use std::io::Write;

use super::http::HttpError;
use super::response::V2Error;

/// etcdctl's `ExitBadArgs`.
pub const EXIT_BAD_ARGS: u8 = 1;
/// etcdctl's `ExitBadConnection`.
pub const EXIT_BAD_CONNECTION: u8 = 2;
/// urfave/cli's exit code for an unknown command.
pub const EXIT_NO_COMMAND: u8 = 3;
/// etcdctl's `ExitServerError`.
pub const EXIT_SERVER_ERROR: u8 = 4;

/// An error of etcd's Go client, as `Error()` words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with an etcd error body.
    Server(V2Error),
    /// Every endpoint failed (Go: `*client.ClusterError`), one error per attempt.
    Cluster(Vec<HttpError>),
    /// The total timeout passed (Go: `context.DeadlineExceeded`).
    Deadline,
    /// Anything else, already worded (`key required`, `client: response body is empty`).
    Other(String),
}

impl ClientError {
    /// etcdctl's `isConnectionError`: only connection failures everywhere (or the deadline)
    /// make a failed sync fatal; any other sync failure is ignored.
    pub fn is_connection_error(&self) -> bool {
        match self {
            ClientError::Cluster(errs) => errs.iter().all(HttpError::is_connection_error),
            ClientError::Deadline => true,
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Server(e) => e.fmt(f),
            ClientError::Cluster(errs) => {
                // Go's ClusterError.Error(): each attempt after "; error #i: ", each ending
                // in a newline (so etcdctl's output has the odd line breaks it has).
                f.write_str("client: etcd cluster is unavailable or misconfigured")?;
                for (i, e) in errs.iter().enumerate() {
                    writeln!(f, "; error #{i}: {e}")?;
                }
                Ok(())
            }
            ClientError::Deadline => f.write_str("context deadline exceeded"),
            ClientError::Other(s) => f.write_str(s),
        }
    }
}

/// How a command ends when it does not succeed.
#[derive(Debug)]
pub enum Failure {
    /// etcdctl's `handleError`: `Error:  <err>` (plus the attempts of a cluster error).
    Client {
        /// Exit code.
        code: u8,
        /// The error.
        err: ClientError,
    },
    /// A message written to stderr as it is (it ends in a newline), then `code`.
    Message {
        /// Exit code.
        code: u8,
        /// The whole text.
        text: String,
    },
    /// A usage error (urfave/cli's `Incorrect Usage`): `stdout` gets the text and help,
    /// stderr the bare message, exit 1.
    Usage {
        /// `Incorrect Usage: ...` and the help, for stdout.
        stdout: String,
        /// The flag parser's message.
        message: String,
    },
    /// Output could not be written (a closed pipe); nothing more can be said.
    Io(std::io::Error),
}

impl Failure {
    /// `handleError(c, code, err)`.
    pub fn client(code: u8, err: ClientError) -> Failure {
        Failure::Client { code, err }
    }

    /// A bad-arguments error worded as etcdctl words it (`Error:  key required`).
    pub fn bad_args(what: &str) -> Failure {
        Failure::client(EXIT_BAD_ARGS, ClientError::Other(what.to_string()))
    }

    /// Writes the failure as etcdctl would and returns the exit code.
    pub fn report(self, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
        // Errors writing the error itself cannot be reported anywhere.
        match self {
            Failure::Client { code, err: e } => {
                let _ = writeln!(err, "Error:  {e}");
                if let ClientError::Cluster(errs) = &e {
                    let mut detail = String::new();
                    for (i, x) in errs.iter().enumerate() {
                        detail.push_str(&format!("error #{i}: {x}\n"));
                    }
                    let _ = writeln!(err, "{detail}");
                }
                code
            }
            Failure::Message { code, text } => {
                let _ = err.write_all(text.as_bytes());
                code
            }
            Failure::Usage { stdout, message } => {
                let _ = out.write_all(stdout.as_bytes());
                let _ = writeln!(err, "{message}");
                EXIT_BAD_ARGS
            }
            Failure::Io(e) => {
                let _ = writeln!(err, "pikv ctl: cannot write the output: {e}");
                EXIT_BAD_ARGS
            }
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_errors_print_as_etcdctl_prints_them() {
        let f = Failure::client(
            EXIT_SERVER_ERROR,
            ClientError::Cluster(vec![
                HttpError::Refused {
                    addr: "127.0.0.1:1".into(),
                },
                HttpError::Refused {
                    addr: "127.0.0.1:2".into(),
                },
            ]),
        );
        let (mut o, mut e) = (Vec::new(), Vec::new());
        assert_eq!(f.report(&mut o, &mut e), 4);
        assert_eq!(
            String::from_utf8_lossy(&e),
            "Error:  client: etcd cluster is unavailable or misconfigured; \
             error #0: dial tcp 127.0.0.1:1: connect: connection refused\n\
             ; error #1: dial tcp 127.0.0.1:2: connect: connection refused\n\n\
             error #0: dial tcp 127.0.0.1:1: connect: connection refused\n\
             error #1: dial tcp 127.0.0.1:2: connect: connection refused\n\n"
        );
        assert!(o.is_empty());
    }
}
