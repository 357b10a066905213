//! systemd's service notification protocol (`sd_notify(3)`), written here instead of linking
//! libsystemd: a static binary cannot count on the library, and the protocol is one datagram
//! of `KEY=value` lines sent to the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! pikv sends `READY=1` once it serves clients (what `Type=notify` waits for), `STOPPING=1`
//! when a termination signal starts the shutdown, and `WATCHDOG=1` every half
//! `$WATCHDOG_USEC` while the node thread answers (what `WatchdogSec=` checks). Without
//! `$NOTIFY_SOCKET` every call does nothing. A failed send is logged once and never stops the
//! server: systemd is a supervisor, not a dependency of serving.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one send may block. A datagram socket blocks while the receiver's queue is full;
/// a stuck service manager must not stall the shutdown or the watchdog thread for long.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a notification could not be set up or sent.
#[derive(Debug)]
pub struct NotifyError {
    /// What failed: "open a socket for", "send READY=1 to", ...
    pub op: String,
    /// The socket as `$NOTIFY_SOCKET` names it.
    pub socket: String,
    /// The reason.
    pub reason: String,
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} the systemd notify socket {}: {}",
            self.op, self.socket, self.reason
        )
    }
}

impl std::error::Error for NotifyError {}

/// Where notifications go, when `$NOTIFY_SOCKET` names somewhere.
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// The name as given, for messages.
    name: String,
}

/// Guarded together so that no `WATCHDOG=1` can slip out after `STOPPING=1`.
#[derive(Default)]
struct State {
    stopping: bool,
    warned: bool,
}

/// Sends sd_notify messages to one socket, or nowhere.
pub struct Notifier {
    target: Option<Target>,
    state: Mutex<State>,
}

impl Notifier {
    /// A notifier that sends nothing (no `$NOTIFY_SOCKET`).
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            state: Mutex::new(State::default()),
        }
    }

    /// The notifier `$NOTIFY_SOCKET` asks for: disabled when it is unset or empty, or (with a
    /// warning) when it names something pikv cannot send to.
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::new(&v).unwrap_or_else(|e| {
                log::warn!("{e}; not notifying systemd");
                Notifier::disabled()
            }),
            _ => Notifier::disabled(),
        }
    }

    /// A notifier for the socket `name`, in `$NOTIFY_SOCKET`'s syntax: an absolute path, or
    /// `@name` for a name in Linux's abstract socket namespace.
    pub fn new(name: &OsStr) -> Result<Notifier, NotifyError> {
        let shown = name.to_string_lossy().into_owned();
        let err = |op: &str, reason: String| NotifyError {
            op: op.to_string(),
            socket: shown.clone(),
            reason,
        };
        let bytes = name.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(name).map_err(|e| err("use", e.to_string())),
            Some(b'@') => abstract_addr(&bytes[1..]).map_err(|e| err("use", e.to_string())),
            // vsock: addresses (systemd 253+) and relative paths are not sd_notify sockets
            // pikv can reach; libsystemd refuses relative paths as well.
            _ => Err(err(
                "use",
                "expected an absolute path or an @abstract name".to_string(),
            )),
        }?;
        let socket =
            UnixDatagram::unbound().map_err(|e| err("open a socket for", e.to_string()))?;
        socket
            .set_write_timeout(Some(SEND_TIMEOUT))
            .map_err(|e| err("set a send timeout for", e.to_string()))?;
        Ok(Notifier {
            target: Some(Target {
                socket,
                addr,
                name: shown,
            }),
            state: Mutex::new(State::default()),
        })
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends one datagram holding `message` (newline-separated `KEY=value` assignments).
    /// Does nothing when disabled.
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        let Some(t) = &self.target else {
            return Ok(());
        };
        let first = message.lines().next().unwrap_or("");
        let sent = t
            .socket
            .send_to_addr(message.as_bytes(), &t.addr)
            .map_err(|e| NotifyError {
                op: format!("send {first} to"),
                socket: t.name.clone(),
                reason: e.to_string(),
            })?;
        if sent != message.len() {
            return Err(NotifyError {
                op: format!("send {first} to"),
                socket: t.name.clone(),
                reason: format!("sent {sent} of {} bytes", message.len()),
            });
        }
        Ok(())
    }

    /// `READY=1`: the server serves clients. `status` is shown by `systemctl status`.
    pub fn ready(&self, status: &str) {
        let message = format!(
            "READY=1\nSTATUS={}\nMAINPID={}",
            one_line(status),
            std::process::id()
        );
        let mut state = self.lock();
        self.send_or_warn(&mut state, &message);
    }

    /// `STOPPING=1`: the shutdown has begun. No watchdog ping is sent after this.
    pub fn stopping(&self, status: &str) {
        let message = format!("STOPPING=1\nSTATUS={}", one_line(status));
        let mut state = self.lock();
        state.stopping = true;
        self.send_or_warn(&mut state, &message);
    }

    /// `WATCHDOG=1`, unless the shutdown has begun. Returns false once it has (the caller
    /// stops pinging).
    pub fn watchdog(&self) -> bool {
        let mut state = self.lock();
        if state.stopping {
            return false;
        }
        self.send_or_warn(&mut state, "WATCHDOG=1");
        true
    }

    // A poisoned lock only means another thread panicked while sending; the flags are still
    // meaningful (and with panic = "abort" in release this never happens).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    // The first failure is logged; later ones would repeat it every watchdog interval.
    fn send_or_warn(&self, state: &mut State, message: &str) {
        if let Err(e) = self.send(message) {
            if !state.warned {
                state.warned = true;
                log::warn!("{e} (further notify errors are not logged)");
            }
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

// A newline inside STATUS= would start a new assignment.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The watchdog ping interval that `$WATCHDOG_USEC` and `$WATCHDOG_PID` ask for, or `None`
/// (watchdog off, or the variables are bad: logged as a warning).
pub fn watchdog_interval_from_env() -> Option<Duration> {
    let var = |k: &str| match std::env::var(k) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!(
            "{k}={} is not a number; the systemd watchdog is off",
            v.to_string_lossy()
        )),
    };
    let parsed = var("WATCHDOG_USEC").and_then(|usec| {
        let pid = var("WATCHDOG_PID")?;
        watchdog_interval(usec.as_deref(), pid.as_deref(), std::process::id())
    });
    parsed.unwrap_or_else(|warning| {
        log::warn!("{warning}");
        None
    })
}

/// The ping interval for `WATCHDOG_USEC=usec` and `WATCHDOG_PID=pid` in process `our_pid`:
/// half the timeout, as sd_watchdog_enabled(3) advises, so one late ping is not fatal.
/// `Ok(None)`: no watchdog, or one meant for another process. `Err`: a warning to log.
pub fn watchdog_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    our_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let timeout = match usec.parse::<u64>() {
        // u64::MAX is systemd's "infinity", which sd_watchdog_enabled refuses too.
        Ok(n) if n > 0 && n < u64::MAX => n,
        _ => {
            return Err(format!(
                "WATCHDOG_USEC={usec:?} is not a positive number of microseconds; the systemd watchdog is off"
            ))
        }
    };
    if let Some(pid) = pid {
        match pid.parse::<u32>() {
            Ok(p) if p == our_pid => {}
            // Set for another process (our parent, say) and inherited: not ours to ping.
            Ok(_) => return Ok(None),
            Err(_) => {
                return Err(format!(
                    "WATCHDOG_PID={pid:?} is not a process id; the systemd watchdog is off"
                ))
            }
        }
    }
    Ok(Some(
        Duration::from_micros(timeout / 2).max(Duration::from_millis(1)),
    ))
}

/// What the watchdog's probe found out about the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It answered in time: ping.
    Alive,
    /// It did not answer in time: skip this ping (if that lasts, systemd restarts pikv,
    /// which is what the watchdog is for).
    Unresponsive,
    /// It is gone for good (stopped or died): stop pinging.
    Gone,
}

/// Starts the thread that sends `WATCHDOG=1` every `interval` for as long as `probe` (given
/// how long it may take) reports the server alive, and stops for good once the shutdown has
/// begun or the probe reports it gone.
pub fn spawn_watchdog<P>(
    notifier: Arc<Notifier>,
    interval: Duration,
    mut probe: P,
) -> io::Result<std::thread::JoinHandle<()>>
where
    P: FnMut(Duration) -> Liveness + Send + 'static,
{
    std::thread::Builder::new()
        .name("watchdog".into())
        // The probe is a channel round trip; the default 2 MiB stack is wasted here.
        .stack_size(64 << 10)
        .spawn(move || {
            let mut next = Instant::now();
            let mut late = false;
            loop {
                match probe(interval) {
                    Liveness::Alive => {
                        if late {
                            log::info!("the node answers again; pinging the systemd watchdog");
                            late = false;
                        }
                        if !notifier.watchdog() {
                            return;
                        }
                    }
                    Liveness::Unresponsive => {
                        if !late {
                            log::warn!(
                                "the node thread did not answer within {interval:?}; not pinging the systemd watchdog"
                            );
                            late = true;
                        }
                    }
                    Liveness::Gone => return,
                }
                // Ticks keep their schedule even when a probe took a while.
                next += interval;
                let now = Instant::now();
                if next < now {
                    next = now;
                }
                std::thread::sleep(next - now);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A datagram socket bound at a fresh temp path, standing in for systemd's.
    struct Manager {
        socket: UnixDatagram,
        path: PathBuf,
    }

    impl Manager {
        fn bind(tag: &str) -> Manager {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir()
                .join(format!("pikv-notify-{tag}-{}-{n}.sock", std::process::id()));
            let _ = std::fs::remove_file(&path);
            let socket = UnixDatagram::bind(&path).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Manager { socket, path }
        }
        fn notifier(&self) -> Notifier {
            Notifier::new(self.path.as_os_str()).unwrap()
        }
        fn recv(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
        fn nothing_within(&self, d: Duration) -> bool {
            self.socket.set_read_timeout(Some(d)).unwrap();
            let mut buf = [0u8; 4096];
            let r = self.socket.recv(&mut buf);
            self.socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            r.is_err()
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn ready_stopping_and_watchdog_are_the_exact_messages() {
        let m = Manager::bind("msgs");
        let n = m.notifier();
        assert!(n.is_enabled());
        n.ready("serving on http://127.0.0.1:2379");
        assert_eq!(
            m.recv(),
            format!(
                "READY=1\nSTATUS=serving on http://127.0.0.1:2379\nMAINPID={}",
                std::process::id()
            )
        );
        assert!(n.watchdog());
        assert_eq!(m.recv(), "WATCHDOG=1");
        n.stopping("stopping");
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=stopping");
    }

    #[test]
    fn no_watchdog_ping_after_stopping() {
        let m = Manager::bind("stop");
        let n = m.notifier();
        n.stopping("bye");
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=bye");
        assert!(!n.watchdog());
        assert!(m.nothing_within(Duration::from_millis(100)));
    }

    #[test]
    fn status_stays_one_assignment() {
        let m = Manager::bind("nl");
        m.notifier().stopping("a\nWATCHDOG=1\r");
        assert_eq!(m.recv(), "STOPPING=1\nSTATUS=a WATCHDOG=1 ");
    }

    #[test]
    fn abstract_socket_names_work() {
        let name = format!("pikv-notify-test-{}", std::process::id());
        let addr = abstract_addr(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
        assert!(n.watchdog());
        let mut buf = [0u8; 64];
        let len = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn disabled_sends_nothing_and_succeeds() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert!(n.send("READY=1").is_ok());
        n.ready("x");
        assert!(n.watchdog());
    }

    #[test]
    fn unusable_socket_names_are_refused_naming_them() {
        for bad in ["relative/notify", "vsock:2:1234"] {
            let e = Notifier::new(OsStr::new(bad)).err().unwrap();
            assert!(e.to_string().contains(bad), "{e}");
        }
        let long = format!("/{}", "x".repeat(200));
        let e = Notifier::new(OsStr::new(&long)).err().unwrap();
        assert!(e.to_string().contains(&long), "{e}");
    }

    #[test]
    fn a_failed_send_names_the_socket_and_is_not_fatal() {
        let path = std::env::temp_dir().join(format!("pikv-notify-absent-{}", std::process::id()));
        let n = Notifier::new(path.as_os_str()).unwrap();
        let e = n.send("READY=1\nSTATUS=x").err().unwrap();
        let text = e.to_string();
        assert!(text.contains("send READY=1 to"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        // The high-level calls log (once) and carry on.
        n.ready("x");
        assert!(n.watchdog());
        assert!(n.lock().warned);
    }

    #[test]
    fn watchdog_usec_parsing() {
        let me = 4242;
        let ok = |usec, pid| watchdog_interval(usec, pid, me);
        assert_eq!(ok(None, None), Ok(None));
        assert_eq!(
            ok(Some("200000"), None),
            Ok(Some(Duration::from_millis(100)))
        );
        assert_eq!(
            ok(Some("30000000"), Some("4242")),
            Ok(Some(Duration::from_secs(15)))
        );
        // Meant for another process: silently off.
        assert_eq!(ok(Some("30000000"), Some("1")), Ok(None));
        // Tiny timeouts still leave the thread some sleep.
        assert_eq!(ok(Some("1"), None), Ok(Some(Duration::from_millis(1))));
        // A WATCHDOG_PID without WATCHDOG_USEC asks for nothing.
        assert_eq!(ok(None, Some("x")), Ok(None));
        for bad in ["", "0", "-5", "1.5", "30s", " 100", "18446744073709551615"] {
            let w = ok(Some(bad), None).unwrap_err();
            assert!(w.contains("WATCHDOG_USEC") && w.contains("off"), "{w}");
        }
        let w = ok(Some("1000"), Some("self")).unwrap_err();
        assert!(w.contains("WATCHDOG_PID=\"self\""), "{w}");
    }

    #[test]
    fn watchdog_thread_pings_only_while_alive_and_stops_when_gone() {
        let m = Manager::bind("dog");
        let n = Arc::new(m.notifier());
        // Alive twice, unresponsive once, alive once more, then gone.
        let script = [
            Liveness::Alive,
            Liveness::Alive,
            Liveness::Unresponsive,
            Liveness::Alive,
            Liveness::Gone,
        ];
        let mut i = 0;
        let t = spawn_watchdog(Arc::clone(&n), Duration::from_millis(10), move |_| {
            let l = script.get(i).copied().unwrap_or(Liveness::Alive);
            i += 1;
            l
        })
        .unwrap();
        t.join().unwrap();
        for _ in 0..3 {
            assert_eq!(m.recv(), "WATCHDOG=1");
        }
        assert!(m.nothing_within(Duration::from_millis(50)));
    }

    #[test]
    fn watchdog_thread_ends_at_shutdown() {
        let m = Manager::bind("dogstop");
        let n = Arc::new(m.notifier());
        let t = spawn_watchdog(Arc::clone(&n), Duration::from_millis(5), |_| {
            Liveness::Alive
        })
        .unwrap();
        assert_eq!(m.recv(), "WATCHDOG=1");
        n.stopping("stopping");
        t.join().unwrap();
        // Drain the pings sent before STOPPING=1; nothing may follow it.
        loop {
            let msg = m.recv();
            if msg.starts_with("STOPPING=1") {
                break;
            }
            assert_eq!(msg, "WATCHDOG=1");
        }
        assert!(m.nothing_within(Duration::from_millis(50)));
    }
}
