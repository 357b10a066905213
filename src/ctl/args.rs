//! etcdctl's command-line syntax: Go's `flag` package under urfave/cli v1 (pure functions,
//! no I/O).
//!
//! * Global flags come before the command, parsed like `flag.FlagSet.Parse`: one or two
//!   dashes, `-f=v` or `-f v`, booleans bare or with `=`, parsing stops at the first
//!   positional argument or `--`; a repeated flag: the last one wins.
//! * A command's own flags may also follow its arguments: urfave/cli moves every argument
//!   that names one of the command's flags (and the value after it) to the front first, and
//!   a `--` with what follows it to the end (its `reorderArgs`), so `set /k v --ttl 5` and
//!   `set -- /k -v` work as with etcdctl.
//! * Errors are worded as Go words them (`flag provided but not defined: -x`,
//!   `invalid value "abc" for flag -ttl: parse error`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::argv::go_int;

/// The Go type of a flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `cli.BoolFlag`.
    Bool,
    /// `cli.StringFlag`.
    Str,
    /// `cli.IntFlag` (Go `strconv.ParseInt` with base 0).
    Int,
    /// `cli.DurationFlag` (Go `time.ParseDuration`).
    Duration,
}

/// One flag: its names (the first is the one looked up), type, and help line parts.
#[derive(Clone, Copy, Debug)]
pub struct FlagDef {
    /// Names without dashes, e.g. `["recursive", "r"]`.
    pub names: &'static [&'static str],
    /// Value type.
    pub kind: Kind,
    /// The help text.
    pub usage: &'static str,
}

/// Shorthand for a [`FlagDef`].
pub const fn flag(names: &'static [&'static str], kind: Kind, usage: &'static str) -> FlagDef {
    FlagDef { names, kind, usage }
}

/// Flags as parsed: values by primary name, and the positional arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    values: BTreeMap<&'static str, String>,
    /// Arguments left after the flags.
    pub args: Vec<String>,
}

/// Why flags could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `-h` or `--help`: show the help, exit 0.
    Help,
    /// A usage error, worded as Go's flag package words it.
    Bad(String),
}

impl Parsed {
    /// A boolean flag (false when not given).
    pub fn bool(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| v == "true")
    }

    /// A string flag, `""` when not given (as urfave/cli returns the default).
    pub fn str(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// An integer flag (checked at parse time), 0 when not given.
    pub fn int(&self, name: &str) -> i64 {
        self.values
            .get(name)
            .and_then(|v| go_int(v).ok())
            .unwrap_or(0)
    }

    /// A duration flag (checked at parse time), `default` when not given. Negative
    /// durations become zero.
    pub fn duration(&self, name: &str, default: Duration) -> Duration {
        self.values
            .get(name)
            .and_then(|v| go_duration(v))
            .unwrap_or(default)
    }

    /// Whether the flag was given at all.
    pub fn given(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration`; negative values become zero (as a timeout, Go treats them as
/// "already expired" or "none", which zero means to the caller too).
pub fn go_duration(s: &str) -> Option<Duration> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body == "0" {
        return Some(Duration::ZERO);
    }
    if body.is_empty() {
        return None;
    }
    let mut rest = body;
    let mut total_ns: f64 = 0.0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut n = int_len;
        let mut frac_len = 0;
        if rest[n..].starts_with('.') {
            n += 1;
            frac_len = rest[n..].bytes().take_while(u8::is_ascii_digit).count();
            n += frac_len;
        }
        if int_len == 0 && frac_len == 0 {
            return None;
        }
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit_ns = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_ns += number * unit_ns;
        rest = &rest[unit_len..];
    }
    if total_ns > 9.223_372_036_854_775e18 {
        return None;
    }
    if neg {
        return Some(Duration::ZERO);
    }
    Some(Duration::from_nanos(total_ns as u64))
}

fn lookup<'a>(defs: &'a [FlagDef], name: &str) -> Option<&'a FlagDef> {
    defs.iter().find(|d| d.names.contains(&name))
}

/// Go's `flag.FlagSet.Parse` over `args` with `defs` (plus `help`/`h`, which urfave/cli
/// adds to every flag set).
pub fn parse_flags(defs: &[FlagDef], args: &[String]) -> Result<Parsed, ParseError> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg.len() < 2 || !arg.starts_with('-') {
            break;
        }
        let dashes = if arg.starts_with("--") { 2 } else { 1 };
        if arg == "--" {
            i += 1;
            break;
        }
        let spec = &arg[dashes..];
        if spec.is_empty() || spec.starts_with('-') || spec.starts_with('=') {
            return Err(ParseError::Bad(format!("bad flag syntax: {arg}")));
        }
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        i += 1;
        let def = match lookup(defs, name) {
            Some(d) => d,
            None if name == "help" || name == "h" => {
                // urfave/cli's help flag is a bool: `--help=false` does not ask for help.
                match value.map(go_bool) {
                    Some(Some(false)) => continue,
                    Some(None) => {
                        return Err(ParseError::Bad(format!(
                            "invalid boolean value {:?} for -{name}: parse error",
                            value.unwrap_or("")
                        )))
                    }
                    _ => return Err(ParseError::Help),
                }
            }
            None => {
                return Err(ParseError::Bad(format!(
                    "flag provided but not defined: -{name}"
                )))
            }
        };
        let primary = def.names[0];
        let value = match (def.kind, value) {
            (Kind::Bool, None) => "true".to_string(),
            (Kind::Bool, Some(v)) => match go_bool(v) {
                Some(b) => b.to_string(),
                None => {
                    return Err(ParseError::Bad(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    )))
                }
            },
            (_, Some(v)) => v.to_string(),
            (_, None) => match args.get(i) {
                Some(v) => {
                    i += 1;
                    v.clone()
                }
                None => {
                    return Err(ParseError::Bad(format!("flag needs an argument: -{name}")));
                }
            },
        };
        let bad = match def.kind {
            Kind::Int => go_int(&value).err(),
            Kind::Duration => go_duration(&value).is_none().then_some("parse error"),
            Kind::Bool | Kind::Str => None,
        };
        if let Some(why) = bad {
            return Err(ParseError::Bad(format!(
                "invalid value {value:?} for flag -{name}: {why}"
            )));
        }
        p.values.insert(primary, value);
    }
    p.args = args[i..].to_vec();
    Ok(p)
}

/// pflag's interspersed syntax (cobra, etcdctl v3): flags of `defs` anywhere among the
/// arguments, a flag's value after it unless it is a boolean or written with `=`; after
/// `--` everything is an argument.
pub fn parse_interspersed(defs: &[FlagDef], args: &[String]) -> Result<Parsed, ParseError> {
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.len() > 1 && a.starts_with('-') {
            flags.push(a.clone());
            let name = a.trim_start_matches('-');
            let takes_value =
                !name.contains('=') && lookup(defs, name).is_some_and(|d| d.kind != Kind::Bool);
            if takes_value {
                if let Some(v) = args.get(i + 1) {
                    flags.push(v.clone());
                    i += 1;
                }
            }
        } else {
            positional.push(a.clone());
        }
        i += 1;
    }
    let mut p = parse_flags(defs, &flags)?;
    p.args = positional;
    Ok(p)
}

/// urfave/cli's `argIsFlag`: `-x`, `--x` or `--x=v` naming one of `defs`.
fn arg_is_flag(defs: &[FlagDef], arg: &str) -> bool {
    if arg == "-" || arg == "--" || !arg.starts_with('-') {
        return false;
    }
    let name = arg.strip_prefix("--").unwrap_or(&arg[1..]);
    let name = name.split('=').next().unwrap_or(name);
    lookup(defs, name).is_some() || name == "help" || name == "h"
}

/// urfave/cli v1's `reorderArgs`: the command's flags (and the argument after each flag
/// written without `=`) first, then `--` and everything after it, the rest in between.
pub fn reorder(defs: &[FlagDef], args: &[String]) -> Vec<String> {
    let mut flags = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    let mut may_be_value = false;
    for (i, arg) in args.iter().enumerate() {
        if may_be_value && !arg_is_flag(defs, arg) {
            may_be_value = false;
            flags.push(arg.clone());
        } else if arg == "--" {
            rest.insert(0, "--".to_string());
            rest.extend(args[i + 1..].iter().cloned());
            break;
        } else if arg_is_flag(defs, arg) {
            flags.push(arg.clone());
            may_be_value = !arg.contains('=');
        } else {
            rest.push(arg.clone());
        }
    }
    flags.extend(rest);
    flags
}

/// A command's flags: reorder, then parse.
pub fn parse_command(defs: &[FlagDef], args: &[String]) -> Result<Parsed, ParseError> {
    parse_flags(defs, &reorder(defs, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: &[FlagDef] = &[
        flag(&["ttl"], Kind::Int, "ttl"),
        flag(&["recursive", "r"], Kind::Bool, "r"),
        flag(&["swap-with-value"], Kind::Str, "v"),
    ];

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn flags_may_follow_the_arguments() {
        let p = parse_command(DEFS, &s(&["/k", "v", "--ttl", "5", "-r"])).expect("parse");
        assert_eq!(p.args, s(&["/k", "v"]));
        assert_eq!(p.int("ttl"), 5);
        assert!(p.bool("recursive"));
        let p = parse_command(DEFS, &s(&["/k", "--", "-v"])).expect("parse");
        assert_eq!(p.args, s(&["/k", "-v"]));
        let p = parse_command(DEFS, &s(&["--swap-with-value=a=b", "/k", "v"])).expect("parse");
        assert_eq!(p.str("swap-with-value"), "a=b");
        // A bool flag followed by an argument: the argument stays an argument.
        let p = parse_command(DEFS, &s(&["-r", "/d"])).expect("parse");
        assert_eq!(p.args, s(&["/d"]));
    }

    #[test]
    fn errors_are_worded_as_go_words_them() {
        let bad = |a: &[&str]| match parse_command(DEFS, &s(a)) {
            Err(ParseError::Bad(m)) => m,
            other => panic!("{a:?}: {other:?}"),
        };
        assert_eq!(
            bad(&["--bogus", "/x"]),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            bad(&["--ttl", "abc", "/x"]),
            "invalid value \"abc\" for flag -ttl: parse error"
        );
        assert_eq!(bad(&["--ttl"]), "flag needs an argument: -ttl");
        // The flag moves in front of the arguments and takes the key as its value, as
        // with etcdctl.
        assert_eq!(
            bad(&["/x", "--ttl"]),
            "invalid value \"/x\" for flag -ttl: parse error"
        );
        assert_eq!(
            bad(&["-r=yes"]),
            "invalid boolean value \"yes\" for -r: parse error"
        );
        assert_eq!(
            parse_command(DEFS, &s(&["/x", "--help"])),
            Err(ParseError::Help)
        );
    }

    #[test]
    fn durations_parse_as_go_does() {
        assert_eq!(go_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration("1"), None);
        assert_eq!(go_duration("s"), None);
    }
}
