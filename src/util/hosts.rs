//! Host names to addresses, `/etc/hosts` first. A statically linked glibc cannot load the
//! NSS modules `getaddrinfo` uses (and under qemu there are no armhf ones to load), so names
//! the classic tutorials put in `/etc/hosts` (node-1..node-4) would not resolve in the static
//! binary. pikv reads the file itself and only then asks `getaddrinfo` (DNS).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

/// The system hosts file.
pub const HOSTS_FILE: &str = "/etc/hosts";

/// Addresses of `host` (an IP literal, IPv6 with or without brackets, or a name) at `port`.
/// A name is looked up in [`HOSTS_FILE`], then with `getaddrinfo`.
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    resolve_with(host, port, Path::new(HOSTS_FILE))
}

/// [`resolve`] with another hosts file (tests).
pub fn resolve_with(host: &str, port: u16, hosts_file: &Path) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    // An unreadable hosts file is the same as one without the name: DNS may still know it.
    if let Ok(text) = std::fs::read_to_string(hosts_file) {
        let found = lookup(&text, bare);
        if !found.is_empty() {
            return Ok(found
                .into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect());
        }
    }
    match (bare, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("cannot resolve host {host:?}: no addresses"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!(
            "cannot resolve host {host:?}: not in {} and {e}",
            hosts_file.display()
        )),
    }
}

/// The addresses `hosts` (the text of a hosts file) gives `name`, in file order. Names are
/// case-insensitive, as the resolver treats them.
pub fn lookup(hosts: &str, name: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let Some(addr) = fields.next() else { continue };
        // A zone index (fe80::1%eth0) cannot be expressed in an IpAddr: skip such lines.
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        if fields.any(|n| n.eq_ignore_ascii_case(name)) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
127.0.0.1\tlocalhost
# the boards
10.10.10.11 node-1 node-1.lan   # first
10.10.10.12   Node-2
fe80::1%eth0 node-3
::1 localhost ip6-localhost
10.10.10.11 node-1
garbage line
";

    #[test]
    fn names_resolve_from_the_hosts_text() {
        assert_eq!(
            lookup(HOSTS, "node-1"),
            vec!["10.10.10.11".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(lookup(HOSTS, "NODE-1.LAN").len(), 1);
        assert_eq!(
            lookup(HOSTS, "node-2"),
            vec!["10.10.10.12".parse::<IpAddr>().unwrap()]
        );
        assert!(
            lookup(HOSTS, "node-3").is_empty(),
            "zone-indexed line skipped"
        );
        assert_eq!(lookup(HOSTS, "localhost").len(), 2);
        assert!(lookup(HOSTS, "first").is_empty(), "comments are not names");
        assert!(lookup(HOSTS, "node-9").is_empty());
    }

    #[test]
    fn resolve_prefers_the_hosts_file_and_takes_literals() {
        let dir = std::env::temp_dir().join(format!("pikv-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("hosts");
        std::fs::write(&file, HOSTS).unwrap();
        let got = resolve_with("node-2", 2380, &file).unwrap();
        assert_eq!(got, vec!["10.10.10.12:2380".parse::<SocketAddr>().unwrap()]);
        let v6 = resolve_with("[::1]", 2379, &file).unwrap();
        assert_eq!(v6, vec!["[::1]:2379".parse::<SocketAddr>().unwrap()]);
        let err = resolve_with("no-such-board.invalid", 2380, &file).unwrap_err();
        assert!(err.contains("no-such-board.invalid"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // The system's own file: under qemu with the static armv7 binary this is the path that
    // must work without NSS modules.
    #[test]
    fn localhost_resolves_through_the_system_hosts_file() {
        let text = std::fs::read_to_string(HOSTS_FILE).unwrap_or_default();
        if lookup(&text, "localhost").is_empty() {
            eprintln!("{HOSTS_FILE} has no localhost line; checking the getaddrinfo path only");
        }
        let got = resolve("localhost", 2379).unwrap();
        assert!(got.iter().all(|a| a.ip().is_loopback()), "{got:?}");
    }
}
