//! A small lab of Linux network namespaces that a test builds for itself: every member of a
//! cluster gets its own namespace (its own network stack, so each listens on 2379/2380 at its
//! own address), cabled to a "switch" namespace that holds two bridges:
//!
//! - the peer network `10.77.<run>.0/24` (member `i` is `.i+1`, on its `eth0`): the members'
//!   peer URLs. Unplugging a member's cable — its switch-side veth `p<i>` down — cuts it off
//!   from the other members;
//! - the client network `10.78.<run>.0/24` (`.i+1` on `eth1`), with a veth from the test's own
//!   namespace at `.254`: the test reaches every member here, a partitioned one included, like
//!   a client running on the cut-off board itself. (On one network, unplugging a member would
//!   also cut the test off it, and nothing could be asserted about the minority side.)
//!
//! `<run>` is claimed atomically by creating the root-side veth `pikv<run>r` (link names are
//! unique in a namespace, so two test processes never share a subnet); namespace names carry
//! the test process's pid. Dropping the lab deletes the link, the namespaces and the
//! `/etc/netns/<ns>` files (which `ip netns exec` bind-mounts over `/etc/hosts` etc.), also
//! when a test panics; namespaces left by test processes that no longer exist are removed when
//! the next lab is built.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// The member side's interface on the peer network.
const PEER_IF: &str = "eth0";
/// The member side's interface on the client network.
const CLIENT_IF: &str = "eth1";
/// Where `ip netns` keeps the named namespaces.
const NETNS_DIR: &str = "/run/netns";
const NAME_PREFIX: &str = "pikv-";
/// Per-namespace files that `ip netns exec` bind-mounts over `/etc`'s.
const ETC_NETNS: &str = "/etc/netns";

pub struct Lab {
    run: u8,
    switch: String,
    members: Vec<String>,
    root_link: String,
    etc_dirs: Vec<PathBuf>,
}

/// Runs `ip <args>`; `Err` with its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `ip netns exec <ns> <program> <args>` with the environment changes of `inner`.
pub fn exec_in(ns: &str, inner: &Command) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

/// A lab of `n` members for `test`, or `None` after printing `SKIPPED: <why>` when this machine
/// cannot make network namespaces (not root, no iproute2). With `CI` set that is a failure.
pub fn lab_or_skip(test: &str, n: usize) -> Option<Lab> {
    match Lab::new(n) {
        Ok(lab) => Some(lab),
        Err(e) if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must be able to create network namespaces (run as root): {e}")
        }
        Err(e) => {
            // Straight to the stderr stream, past libtest's capture: a skip must be seen in a
            // normal run, not only with --nocapture.
            use std::io::Write;
            let line = format!("SKIPPED: {test}: cannot create network namespaces: {e}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

impl Lab {
    /// Builds the switch and `n` member namespaces, cabled and addressed.
    pub fn new(n: usize) -> Result<Lab, String> {
        assert!((1..=200).contains(&n), "{n} members");
        remove_stale();
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let base = format!("{NAME_PREFIX}{pid}-{seq}");
        let mut lab = Lab {
            run: 0,
            switch: format!("{base}-sw"),
            members: Vec::new(),
            root_link: String::new(),
            etc_dirs: Vec::new(),
        };
        // From here on, Drop undoes whatever was made.
        ip(&["netns", "add", &lab.switch])?;
        let sw = lab.switch.clone();
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        for br in ["brp", "brc"] {
            ip(&["-n", &sw, "link", "add", br, "type", "bridge"])?;
            ip(&["-n", &sw, "link", "set", br, "up"])?;
        }
        lab.claim_run(seq)?;
        let run = lab.run;
        ip(&[
            "addr",
            "add",
            &format!("10.78.{run}.254/24"),
            "dev",
            &lab.root_link,
        ])?;
        ip(&["link", "set", &lab.root_link, "up"])?;
        for i in 0..n {
            let ns = format!("{base}-m{i}");
            ip(&["netns", "add", &ns])?;
            lab.members.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            for (sw_if, member_if, br, net) in [
                (format!("p{i}"), PEER_IF, "brp", 77),
                (format!("c{i}"), CLIENT_IF, "brc", 78),
            ] {
                ip(&[
                    "-n", &sw, "link", "add", &sw_if, "type", "veth", "peer", "name", member_if,
                    "netns", &ns,
                ])?;
                ip(&["-n", &sw, "link", "set", &sw_if, "master", br])?;
                ip(&["-n", &sw, "link", "set", &sw_if, "up"])?;
                let addr = format!("10.{net}.{run}.{}/24", i + 1);
                ip(&["-n", &ns, "addr", "add", &addr, "dev", member_if])?;
                ip(&["-n", &ns, "link", "set", member_if, "up"])?;
            }
        }
        Ok(lab)
    }

    /// Picks a free `<run>` and creates the root-side veth of the client network for it (its
    /// other end goes straight into the switch, onto the client bridge).
    fn claim_run(&mut self, seq: u64) -> Result<(), String> {
        let taken = Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let start = (u64::from(std::process::id()) * 7 + seq * 13) % 240;
        let mut last = String::new();
        for k in 0..240 {
            let run = (10 + (start + k) % 240) as u8;
            if taken.contains(&format!("10.77.{run}.")) || taken.contains(&format!("10.78.{run}."))
            {
                continue;
            }
            let link = format!("pikv{run}r");
            match ip(&[
                "link",
                "add",
                &link,
                "type",
                "veth",
                "peer",
                "name",
                "uplink",
                "netns",
                &self.switch,
            ]) {
                Ok(()) => {
                    self.run = run;
                    self.root_link = link;
                    ip(&["-n", &self.switch, "link", "set", "uplink", "master", "brc"])?;
                    ip(&["-n", &self.switch, "link", "set", "uplink", "up"])?;
                    return Ok(());
                }
                // Another lab holds this run's link: try the next.
                Err(e) if e.contains("exists") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(format!("no free 10.77.x/10.78.x subnet: {last}"))
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Member `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.members[i]
    }

    /// Member `i`'s address on the peer network.
    pub fn peer_ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.run, i + 1)
    }

    /// Member `i`'s address on the client network (the one the test reaches it on).
    pub fn client_ip(&self, i: usize) -> String {
        format!("10.78.{}.{}", self.run, i + 1)
    }

    /// Unplugs member `i`'s peer cable: its switch-side veth goes down.
    pub fn unplug(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &format!("p{i}"), "down"])
            .unwrap_or_else(|e| panic!("unplug member {i}: {e}"));
    }

    /// Plugs member `i`'s peer cable back in.
    pub fn plug(&self, i: usize) {
        ip(&["-n", &self.switch, "link", "set", &format!("p{i}"), "up"])
            .unwrap_or_else(|e| panic!("plug member {i}: {e}"));
    }

    /// Writes `/etc/netns/<ns>/hosts` for member `i`: `ip netns exec` bind-mounts it over
    /// `/etc/hosts` for the processes it starts there. Removed when the lab is dropped.
    pub fn write_hosts(&mut self, i: usize, text: &str) {
        let dir = PathBuf::from(ETC_NETNS).join(&self.members[i]);
        // Another lab's Drop may remove an empty /etc/netns between the two mkdirs: retry.
        let mut made = std::fs::create_dir_all(&dir);
        for _ in 0..5 {
            if made.is_ok() {
                break;
            }
            made = std::fs::create_dir_all(&dir);
        }
        made.unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        self.etc_dirs.push(dir.clone());
        let path = dir.join("hosts");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes both at once; deleting a namespace frees its
        // links only later, asynchronously.
        if !self.root_link.is_empty() {
            let _ = ip(&["link", "del", &self.root_link]);
        }
        for ns in self.members.iter().chain([&self.switch]) {
            let _ = ip(&["netns", "del", ns]);
        }
        for dir in &self.etc_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        if !self.etc_dirs.is_empty() {
            // Only when empty: other labs' files stay.
            let _ = std::fs::remove_dir(ETC_NETNS);
        }
    }
}

/// Deletes the namespaces (and `/etc/netns` dirs) of labs whose test process is gone (killed
/// before its `Drop` ran). Those of live processes, this one's included, are left alone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !PathBuf::from(format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
            let _ = std::fs::remove_dir_all(PathBuf::from(ETC_NETNS).join(&name));
        }
    }
}
