//! `--output simple|extended|json`: etcdctl's `printResponseKey` and `printLs`, line for
//! line.

use std::io::{self, Write};

use super::response::{KeysResponse, Node};

/// An output format; anything else is kept as typed, for etcdctl's
/// `Unsupported output format: <x>` (printed on stderr at print time, exit status 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// The value, or `PrevNode.Value: <v>` after a delete.
    Simple,
    /// An RFC 2822-style block: `Key:`, indexes, TTL, then the value.
    Extended,
    /// The response re-encoded as Go's client holds it.
    Json,
    /// Unknown.
    Other(String),
}

impl Format {
    /// From the `--output` value.
    pub fn parse(s: &str) -> Format {
        match s {
            "simple" => Format::Simple,
            "extended" => Format::Extended,
            "json" => Format::Json,
            other => Format::Other(other.to_string()),
        }
    }
}

/// etcdctl's `printResponseKey`.
pub fn print_response_key(
    resp: &KeysResponse,
    format: &Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    let node = resp.node();
    match format {
        Format::Simple => {
            if resp.action != "delete" {
                writeln!(out, "{}", node.value)
            } else {
                let prev = resp.prev_node.clone().unwrap_or_default();
                writeln!(out, "PrevNode.Value: {}", prev.value)
            }
        }
        Format::Extended => {
            writeln!(out, "Key: {}", node.key)?;
            writeln!(out, "Created-Index: {}", node.created_index)?;
            writeln!(out, "Modified-Index: {}", node.modified_index)?;
            if let Some(prev) = &resp.prev_node {
                writeln!(out, "PrevNode.Value: {}", prev.value)?;
            }
            writeln!(out, "TTL: {}", node.ttl)?;
            writeln!(out, "Index: {}", resp.index)?;
            if resp.action != "delete" {
                writeln!(out)?;
                writeln!(out, "{}", node.value)?;
            }
            Ok(())
        }
        Format::Json => writeln!(out, "{}", resp.to_go_json()),
        Format::Other(f) => writeln!(err, "Unsupported output format: {f}"),
    }
}

/// etcdctl's `printLs`: in simple format a file prints its key, a directory its children
/// (recursively when they were fetched), with `/` after directories under `-p`; other
/// formats print the whole response.
pub fn print_ls(
    resp: &KeysResponse,
    format: &Format,
    slash_dirs: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> io::Result<()> {
    if *format != Format::Simple {
        return print_response_key(resp, format, out, err);
    }
    let node = resp.node();
    if !node.dir {
        writeln!(out, "{}", node.key)?;
    }
    for child in node.nodes.iter().flatten() {
        print_tree(child, slash_dirs, out)?;
    }
    Ok(())
}

fn print_tree(n: &Node, slash_dirs: bool, out: &mut dyn Write) -> io::Result<()> {
    if n.dir && slash_dirs {
        writeln!(out, "{}/", n.key)?;
    } else {
        writeln!(out, "{}", n.key)?;
    }
    for child in n.nodes.iter().flatten() {
        print_tree(child, slash_dirs, out)?;
    }
    Ok(())
}
