//! `pikv ctl --help` and `pikv ctl <command> --help`: urfave/cli's layout (NAME, USAGE,
//! COMMANDS, OPTIONS), wrapped to fit an 80-column terminal (etcdctl's own lines run to
//! 150 columns, so pikv's help is not byte-identical to etcdctl's).

use super::args::{FlagDef, Kind};
use super::commands::{CommandDef, COMMANDS};

/// The widest line any help text may have.
pub const WIDTH_MAX: usize = 80;

/// Words of `text` filled into lines of at most `width` columns (a longer word gets a
/// line of its own).
fn fill(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A two-column table: `   name   text`, the text wrapped under itself.
fn table(rows: &[(String, String)]) -> String {
    let name_w = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let col = 3 + name_w + 2;
    let mut out = String::new();
    for (name, text) in rows {
        let lines = fill(text, WIDTH_MAX.saturating_sub(col).max(20));
        for (i, l) in lines.iter().enumerate() {
            let left = if i == 0 { name.as_str() } else { "" };
            let row = format!("   {left:<name_w$}  {l}");
            out.push_str(row.trim_end());
            out.push('\n');
        }
    }
    out
}

fn flag_names(f: &FlagDef) -> String {
    f.names
        .iter()
        .map(|n| {
            let dashes = if n.chars().count() == 1 { "-" } else { "--" };
            let value = if f.kind == Kind::Bool { "" } else { " value" };
            format!("{dashes}{n}{value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn flag_rows(flags: &[FlagDef]) -> Vec<(String, String)> {
    flags
        .iter()
        .map(|f| (flag_names(f), f.usage.to_string()))
        .collect()
}

/// The global help (`pikv ctl --help`, or no command).
pub fn global(prog: &str, flags: &[FlagDef]) -> String {
    let mut s = format!(
        "NAME:\n   {prog} - an etcdctl-compatible client for etcd's v2 API (pikv or etcd)\n\n\
         USAGE:\n   {prog} [global options] command [command options] [arguments...]\n\n\
         VERSION:\n   {}\n\nCOMMANDS:\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut rows: Vec<(String, String)> = COMMANDS
        .iter()
        .map(|c| {
            let usage = if c.run.is_some() {
                c.usage.to_string()
            } else {
                format!("{} (not in pikv ctl yet)", c.usage)
            };
            (c.name.to_string(), usage)
        })
        .collect();
    rows.push((
        "help, h".to_string(),
        "Shows a list of commands or help for one command".to_string(),
    ));
    s.push_str(&table(&rows));
    s.push_str("\nGLOBAL OPTIONS:\n");
    let mut rows = flag_rows(flags);
    rows.push(("--help, -h".to_string(), "show help".to_string()));
    s.push_str(&table(&rows));
    s.push_str(&format!(
        "\nENVIRONMENT:\n   \
         ETCDCTL_ENDPOINTS, ETCDCTL_PEERS  endpoints when no flag gives them\n\n\
         Exit status: 0 ok, 1 bad arguments, 2 cannot reach the cluster to sync,\n\
         3 unknown command, 4 an error from the server or no endpoint answered.\n\
         The same binary invoked as `pikvctl` runs `pikv ctl`.\n\n\
         etcdctl v3 spellings (put, get --prefix, del, endpoint health, member list\n\
         -w table) work over the v2 API with ETCDCTL_API=3, a v3-only command or a\n\
         v3-only flag: `ETCDCTL_API=3 {prog} --help` lists them.\n"
    ));
    s
}

/// The help of one command.
pub fn command(prog: &str, c: &CommandDef) -> String {
    let mut s = String::from("NAME:\n");
    for l in fill(&format!("{prog} {} - {}", c.name, c.usage), WIDTH_MAX - 3) {
        s.push_str(&format!("   {l}\n"));
    }
    s.push_str(&format!("\nUSAGE:\n   {prog} {}", c.name));
    if !c.flags.is_empty() {
        s.push_str(" [command options]");
    }
    if !c.args_usage.is_empty() {
        s.push(' ');
        s.push_str(c.args_usage);
    }
    s.push('\n');
    if c.run.is_none() {
        s.push_str("\n   Not implemented in pikv ctl yet.\n");
    }
    if !c.description.is_empty() {
        s.push_str("\nDESCRIPTION:\n");
        for l in c.description.lines() {
            if l.is_empty() {
                s.push('\n');
            } else {
                s.push_str(&format!("   {l}\n"));
            }
        }
    }
    if !c.flags.is_empty() {
        s.push_str("\nOPTIONS:\n");
        s.push_str(&table(&flag_rows(c.flags)));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_width(what: &str, text: &str) {
        for l in text.lines() {
            assert!(
                l.chars().count() <= WIDTH_MAX,
                "{what}: line of {} columns: {l:?}",
                l.chars().count()
            );
        }
    }

    #[test]
    fn every_help_fits_80_columns() {
        for prog in ["pikv ctl", "pikvctl"] {
            check_width("global help", &global(prog, super::super::GLOBAL_FLAGS));
            for c in COMMANDS {
                let h = command(prog, c);
                check_width(c.name, &h);
                // Wrapped text: compare word sequences.
                let words = h.split_whitespace().collect::<Vec<_>>().join(" ");
                for f in c.flags {
                    assert!(words.contains(f.usage), "{}: {} missing", c.name, f.usage);
                }
            }
        }
    }

    #[test]
    fn global_help_lists_every_command_and_flag() {
        let h = global("pikv ctl", super::super::GLOBAL_FLAGS);
        for c in COMMANDS {
            assert!(h.contains(&format!("\n   {} ", c.name)), "{}", c.name);
        }
        for f in super::super::GLOBAL_FLAGS {
            assert!(h.contains(&flag_names(f)), "{:?}", f.names);
        }
    }
}
