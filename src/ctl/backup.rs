//! `backup`: etcdctl's copy of a data dir, done by `pikv backup` (the member may keep
//! running: LMDB's copy of one read transaction, and its write-ahead log up to then). It
//! talks to no server. etcd's separate WAL directory has no counterpart: pikv keeps its
//! write-ahead log inside the data dir, so `--wal-dir`/`--backup-wal-dir` are refused
//! rather than ignored; `--with-v3` changes nothing (pikv has one store, always copied).

use super::args::Parsed;
use super::commands::Ctx;
use super::error::Failure;
use std::path::Path;

fn refuse(text: String) -> Failure {
    Failure::Message {
        code: 1,
        text: format!("{text}\n"),
    }
}

/// Copies `--data-dir` to `--backup-dir`; what was copied goes to stderr, as etcdctl logs
/// its progress there (stdout stays empty).
pub fn backup(c: &mut Ctx, p: &Parsed) -> Result<(), Failure> {
    for flag in ["wal-dir", "backup-wal-dir"] {
        if !p.str(flag).is_empty() {
            return Err(refuse(format!(
                "--{flag} is not supported: pikv keeps its write-ahead log inside the data dir, and the backup holds it"
            )));
        }
    }
    let (data_dir, backup_dir) = (p.str("data-dir"), p.str("backup-dir"));
    if data_dir.is_empty() || backup_dir.is_empty() {
        return Err(refuse(
            "backup needs --data-dir (the member's) and --backup-dir (missing or empty)".into(),
        ));
    }
    match crate::backup::backup(Path::new(data_dir), Path::new(backup_dir)) {
        Ok(summary) => {
            writeln!(c.err, "{summary}")?;
            Ok(())
        }
        Err(e) => Err(refuse(format!("backup failed: {e}"))),
    }
}
