//! The TCP transport over real loopback sockets: two members exchange messages; a member of
//! another cluster is refused; hostile bytes close only their own connection; a peer that
//! is down costs the sender nothing and is redialled when it comes up; a peer that stops
//! reading only fills its own bounded queue. Plus the pure helpers (URLs, backoff, log
//! throttle). Each test waits on conditions with a deadline, never on a fixed long sleep.

use super::outbound::Backoff;
use super::*;
use crate::raft::{Entry, MessageBody, Payload};
use crate::transport::codec;
use crate::transport::frame;
use crate::transport::handshake::{Hello, HelloReply};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;

const A: NodeId = 0xa1;
const B: NodeId = 0xb2;
const C: NodeId = 0xc3;
const CLUSTER: u64 = 0xc1;
const DEADLINE: Duration = Duration::from_secs(3);

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A loopback address nothing listens on (bound, then closed), for a peer started later.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind(loopback()).unwrap();
    l.local_addr().unwrap()
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

struct Member {
    t: TcpTransport,
    inbox: mpsc::Receiver<Message>,
}

impl Member {
    fn start(me: NodeId, cluster_id: u64, listen: SocketAddr, peers: &[(NodeId, String)]) -> Self {
        let (tx, inbox) = mpsc::channel();
        let config = PeerConfig {
            member_id: me,
            cluster_id,
            listen: vec![listen],
            peers: peers.iter().map(|(id, u)| (*id, vec![u.clone()])).collect(),
            http: None,
            removal: None,
        };
        let t = TcpTransport::start(
            config,
            Box::new(move |m| {
                let _ = tx.send(m);
            }),
        )
        .unwrap();
        Member { t, inbox }
    }

    fn addr(&self) -> SocketAddr {
        self.t.local_addrs()[0]
    }

    fn receive(&self, n: usize) -> Vec<Message> {
        let end = Instant::now() + DEADLINE;
        let mut got = Vec::new();
        while got.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            match self.inbox.recv_timeout(left) {
                Ok(m) => got.push(m),
                Err(_) => panic!("received {} of {n} messages: {got:?}", got.len()),
            }
        }
        got
    }

    fn assert_nothing_received(&self) {
        if let Ok(m) = self.inbox.recv_timeout(Duration::from_millis(100)) {
            panic!("unexpected delivery {m:?}");
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn heartbeat(from: NodeId, to: NodeId, seq: u64) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Heartbeat {
            commit: 0,
            seq,
            clock: 0,
        },
    }
}

fn append(from: NodeId, to: NodeId, data_bytes: usize) -> Message {
    Message {
        from,
        to,
        term: 1,
        body: MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                term: 1,
                index: 1,
                payload: Payload::Command(vec![7; data_bytes]),
            }],
            commit: 0,
            clock: 0,
        },
    }
}

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| match m.body {
            MessageBody::Heartbeat { seq, .. } => seq,
            _ => u64::MAX,
        })
        .collect()
}

/// Two members started with each other as peers; returns once both links are up.
fn pair() -> (Member, Member) {
    let b_addr = closed_port();
    let a = Member::start(A, CLUSTER, loopback(), &[(B, url(b_addr))]);
    // A name, resolved through /etc/hosts at each dial.
    let a_url = format!("http://localhost:{}", a.addr().port());
    let b = Member::start(B, CLUSTER, b_addr, &[(A, a_url)]);
    wait_until("both links are up", || {
        a.t.is_connected(B) && b.t.is_connected(A)
    });
    (a, b)
}

#[test]
fn two_members_exchange_messages_in_order() {
    let (mut a, mut b) = pair();
    a.t.unreachable();
    a.t.send((0..5).map(|i| heartbeat(A, B, i)).collect());
    a.t.send(vec![heartbeat(A, B, 5)]);
    assert_eq!(seqs(&b.receive(6)), vec![0, 1, 2, 3, 4, 5]);
    b.t.send((10..13).map(|i| heartbeat(B, A, i)).collect());
    let back = a.receive(3);
    assert_eq!(seqs(&back), vec![10, 11, 12]);
    assert!(back.iter().all(|m| m.from == B && m.to == A));
    assert_eq!(a.t.unreachable(), Vec::<NodeId>::new());
    wait_until("A counted its writes", || a.t.stats().messages_sent == 6);
    assert_eq!(b.t.stats().messages_delivered, 6);
    // A destination that is no peer is dropped (warned once), and counted.
    a.t.send(vec![heartbeat(A, 0xdead, 1), heartbeat(A, 0xdead, 2)]);
    assert_eq!(a.t.stats().messages_dropped, 2);
    a.t.shutdown();
    a.t.shutdown();
    wait_until("B sees A's connection closed", || !b.t.is_connected(A));
    // Stopped: a send is dropped, not written (the node thread's direct line closed with
    // the link's task).
    let before = a.t.stats();
    a.t.send(vec![heartbeat(A, B, 99)]);
    let after = a.t.stats();
    assert_eq!(after.messages_sent, before.messages_sent);
    assert_eq!(after.messages_dropped, before.messages_dropped + 1);
}

#[test]
fn peers_added_later_are_dialled_and_accepted_and_removed_ones_dropped() {
    let mut a = Member::start(A, CLUSTER, loopback(), &[]);
    let mut b = Member::start(B, CLUSTER, loopback(), &[]);
    // Before A knows B, B's dial is refused and A's messages to B go nowhere.
    b.t.set_peers(&[(A, vec![url(a.addr())])]).unwrap();
    wait_until("A refused the unknown B", || {
        a.t.stats().handshakes_refused >= 1
    });
    a.t.set_peers(&[(B, vec![url(b.addr())])]).unwrap();
    wait_until("both links are up", || {
        a.t.is_connected(B) && b.t.is_connected(A)
    });
    a.t.send(vec![heartbeat(A, B, 7)]);
    assert_eq!(seqs(&b.receive(1)), vec![7]);
    b.t.send(vec![heartbeat(B, A, 8)]);
    assert_eq!(seqs(&a.receive(1)), vec![8]);
    // The same peers again change nothing: the link stays up.
    a.t.set_peers(&[(B, vec![url(b.addr())])]).unwrap();
    assert!(a.t.is_connected(B));
    // A bad URL is refused naming the member, and nothing changes.
    let bad = a.t.set_peers(&[(B, vec!["ftp://x:1".into()])]).unwrap_err();
    assert!(bad.contains("b2"), "{bad}");
    assert!(a.t.is_connected(B));
    // Removed: A sends to B no more, and B's connection to A is closed.
    a.t.set_peers(&[]).unwrap();
    assert!(!a.t.is_connected(B));
    a.t.send(vec![heartbeat(A, B, 9)]);
    b.assert_nothing_received();
    wait_until("B's link to A is gone", || !b.t.is_connected(A));
}

#[test]
fn a_member_of_another_cluster_is_refused() {
    let mut b = Member::start(B, CLUSTER, loopback(), &[(A, url(closed_port()))]);
    let mut a = Member::start(A, CLUSTER + 1, loopback(), &[(B, url(b.addr()))]);
    wait_until("B refused A", || b.t.stats().handshakes_refused >= 1);
    wait_until("A knows it was refused", || {
        a.t.send(vec![heartbeat(A, B, 1)]);
        a.t.unreachable().contains(&B)
    });
    assert!(!a.t.is_connected(B));
    b.assert_nothing_received();
    assert_eq!(b.t.stats().messages_delivered, 0);
    wait_until("B's own dial to A (nobody there) failed", || {
        b.t.unreachable().contains(&A)
    });
}

fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

fn raw_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut f = vec![0; frame::HEADER_BYTES];
    s.read_exact(&mut f).unwrap();
    let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
    f.resize(frame::HEADER_BYTES + len, 0);
    s.read_exact(&mut f[frame::HEADER_BYTES..]).unwrap();
    frame::decode(&f).unwrap().unwrap().0.to_vec()
}

/// A raw connection that said a valid hello for `from` and got it accepted.
fn raw_peer(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    let mut s = raw(addr);
    let hello = Hello::new(CLUSTER, from, to).encode();
    s.write_all(&frame::encode(&hello).unwrap()).unwrap();
    let reply = HelloReply::decode(&raw_frame(&mut s)).unwrap();
    assert!(reply.accepted, "{}", reply.reason);
    s
}

fn messages_frame(messages: &[Message]) -> Vec<u8> {
    let payload = bincode::encode_to_vec(messages, codec::CONFIG).unwrap();
    frame::encode(&payload).unwrap()
}

/// The other side closes the connection (EOF or reset) before the deadline.
fn assert_closed(mut s: TcpStream, case: &str) {
    let mut sink = [0u8; 64];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{case}: connection not closed: {e}"),
        }
    }
}

#[test]
fn hostile_bytes_close_only_their_connection() {
    let a_addr = closed_port();
    let b = Member::start(B, CLUSTER, loopback(), &[(A, url(a_addr))]);
    let b_addr = b.addr();

    // Before any handshake: text from a stray client, a frame claiming 4 GiB.
    let mut s = raw(b_addr);
    s.write_all(b"GET /v2/keys HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_closed(s, "garbage");
    let mut s = raw(b_addr);
    s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, frame::FRAME_VERSION, 0, 0, 0, 0])
        .unwrap();
    assert_closed(s, "4 GiB frame");

    // After a valid handshake: an undecodable payload, a bad checksum, a forged sender,
    // a message for another member, a frame claiming 4 GiB.
    let mut s = raw_peer(b_addr, A, B);
    s.write_all(&frame::encode(&[0xFF; 40]).unwrap()).unwrap();
    assert_closed(s, "garbage payload");
    let mut s = raw_peer(b_addr, A, B);
    let mut bad = messages_frame(&[heartbeat(A, B, 1)]);
    bad[frame::HEADER_BYTES] ^= 1;
    s.write_all(&bad).unwrap();
    assert_closed(s, "bad checksum");
    let mut s = raw_peer(b_addr, A, B);
    s.write_all(&messages_frame(&[
        heartbeat(A, B, 1),
        heartbeat(0xee, B, 2),
    ]))
    .unwrap();
    assert_closed(s, "forged sender");
    let mut s = raw_peer(b_addr, A, B);
    s.write_all(&messages_frame(&[heartbeat(A, 0xdd, 1)]))
        .unwrap();
    assert_closed(s, "someone else's message");
    let mut s = raw_peer(b_addr, A, B);
    s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, frame::FRAME_VERSION, 0, 0, 0, 0])
        .unwrap();
    assert_closed(s, "4 GiB frame after the handshake");

    // The reader thread counts a bad connection as it ends, which may be just after the
    // peer saw the close.
    wait_until("B counted the 7 bad connections", || {
        b.t.stats().connections_closed_bad_input >= 7
    });
    let stats = b.t.stats();
    assert_eq!(stats.connections_closed_bad_input, 7, "{stats:?}");
    assert_eq!(stats.messages_delivered, 0);
    b.assert_nothing_received();

    // A hello for someone else is refused with an answer, not just a close.
    let mut s = raw(b_addr);
    let hello = Hello::new(CLUSTER, A, 0xdd).encode();
    s.write_all(&frame::encode(&hello).unwrap()).unwrap();
    let reply = HelloReply::decode(&raw_frame(&mut s)).unwrap();
    assert!(!reply.accepted);
    assert_eq!(
        reply.reason,
        "the connection is for member dd, this is member b2"
    );
    assert_closed(s, "misrouted hello");

    // B still takes a proper peer afterwards.
    let mut a = Member::start(A, CLUSTER, a_addr, &[(B, url(b_addr))]);
    wait_until("A's link is up", || a.t.is_connected(B));
    a.t.send(vec![heartbeat(A, B, 42)]);
    assert_eq!(seqs(&b.receive(1)), vec![42]);
}

// A newer connection from the same member replaces the older one (a rebooted peer whose
// old connection never closed): B holds one connection per peer at most.
#[test]
fn a_newer_connection_supersedes_the_older() {
    let b = Member::start(B, CLUSTER, loopback(), &[(A, url(closed_port()))]);
    let mut old = raw_peer(b.addr(), A, B);
    let mut new = raw_peer(b.addr(), A, B);
    assert_closed(old.try_clone().unwrap(), "superseded connection");
    // Whatever the kernel does with this write, B no longer reads that connection.
    let _ = old.write_all(&messages_frame(&[heartbeat(A, B, 1)]));
    new.write_all(&messages_frame(&[heartbeat(A, B, 2)]))
        .unwrap();
    assert_eq!(seqs(&b.receive(1)), vec![2]);
    b.assert_nothing_received();
}

#[test]
fn a_peer_that_is_down_costs_nothing_and_is_redialled() {
    let b_addr = closed_port();
    let mut a = Member::start(A, CLUSTER, loopback(), &[(B, url(b_addr))]);
    let started = Instant::now();
    for i in 0..10_000 {
        a.t.send(vec![heartbeat(A, B, i)]);
    }
    let took = started.elapsed();
    assert!(took < Duration::from_millis(500), "10k sends took {took:?}");
    assert_eq!(a.t.unreachable(), vec![B]);
    wait_until("A's first dial failed", || {
        a.t.send(vec![heartbeat(A, B, 0)]);
        a.t.unreachable() == vec![B] && a.t.stats().messages_dropped >= 10_000
    });

    let b = Member::start(B, CLUSTER, b_addr, &[(A, url(a.addr()))]);
    wait_until("A redialled B", || a.t.is_connected(B));
    a.t.send((20_000..20_003).map(|i| heartbeat(A, B, i)).collect());
    // Nothing queued while B was down arrives: it was dropped, not delivered late.
    assert_eq!(seqs(&b.receive(3)), vec![20_000, 20_001, 20_002]);
    b.assert_nothing_received();
}

/// A peer that completes the handshake and then never reads.
fn stalled_peer() -> (SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _hello = raw_frame(&mut s);
        let reply = frame::encode(&HelloReply::accept().encode()).unwrap();
        s.write_all(&reply).unwrap();
        let _ = released.recv();
    });
    (addr, release)
}

#[test]
fn a_peer_that_never_reads_only_fills_its_queue() {
    let (b_addr, _release) = stalled_peer();
    let mut a = Member::start(A, CLUSTER, loopback(), &[(B, url(b_addr))]);
    wait_until("A's link is up", || a.t.is_connected(B));
    let mut sending = Duration::ZERO;
    let mut unreachable = false;
    let total = 100_000;
    for _ in 0..total / 1000 {
        let chunk: Vec<Message> = (0..1000).map(|_| append(A, B, 512)).collect();
        let started = Instant::now();
        a.t.send(chunk);
        sending += started.elapsed();
        unreachable |= a.t.unreachable().contains(&B);
    }
    assert!(
        sending < Duration::from_secs(1),
        "100k sends took {sending:?}"
    );
    assert!(unreachable);
    // Everything is sent (into the kernel's buffers), queued, in the one frame being
    // written, or dropped: nothing else holds messages.
    let stats = a.t.stats();
    let in_flight_max = codec::BATCH_BYTES_TARGET / codec::bytes_bound(&append(A, B, 512)) + 1;
    let held = (stats.messages_sent + stats.messages_dropped) as usize;
    assert!(
        held + QUEUE_MESSAGES_MAX + in_flight_max >= total,
        "{stats:?}"
    );
    assert!(stats.messages_dropped > 0, "{stats:?}");
    assert!(a.t.is_connected(B), "a slow peer is not a lost one (yet)");
}

#[test]
fn a_port_in_use_fails_start_naming_it() {
    let taken = TcpListener::bind(loopback()).unwrap();
    let addr = taken.local_addr().unwrap();
    let config = PeerConfig {
        member_id: A,
        cluster_id: CLUSTER,
        listen: vec![addr],
        peers: vec![],
        http: None,
        removal: None,
    };
    let err = TcpTransport::start(config, Box::new(|_| {})).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("listen tcp {addr}: bind: address already in use")
    );
}

#[test]
fn bad_member_lists_fail_start() {
    let start = |peers: Vec<(NodeId, Vec<String>)>| {
        let config = PeerConfig {
            member_id: A,
            cluster_id: CLUSTER,
            listen: vec![],
            peers,
            http: None,
            removal: None,
        };
        TcpTransport::start(config, Box::new(|_| {})).map(|_| ())
    };
    let err = |peers| start(peers).unwrap_err().to_string();
    let u = |s: &str| vec![s.to_string()];
    assert_eq!(
        err(vec![(B, u("https://b:2380"))]),
        "peer URL https://b:2380 of member b2: https:// peer URLs are not supported (no TLS between peers): use http://"
    );
    assert_eq!(
        err(vec![(B, u("http://b"))]),
        "peer URL http://b of member b2: URL address does not have the form \"host:port\": http://b"
    );
    assert_eq!(
        err(vec![(B, u("http://b:0"))]),
        "peer URL http://b:0 of member b2: port \"0\" is not a TCP port to dial"
    );
    assert_eq!(
        err(vec![(A, u("http://a:2380"))]),
        "member a1 cannot be a peer of member a1"
    );
    assert_eq!(
        err(vec![(B, u("http://b:1")), (B, u("http://b:2"))]),
        "member b2 is listed twice"
    );
    assert_eq!(err(vec![(B, vec![])]), "member b2 has no peer URLs");
    assert!(start(vec![
        (B, u("http://[::1]:2380")),
        (0xc3, u("http://node-3:2380"))
    ])
    .is_ok());
}

#[test]
fn peer_urls_parse_like_initial_cluster() {
    let p = parse_peer_url("http://[fe80::1]:2380").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("fe80::1", 2380));
    let p = parse_peer_url("http://node-1:12380").unwrap();
    assert_eq!((p.host.as_str(), p.port), ("node-1", 12380));
    assert!(parse_peer_url("http://:2380").is_err());
    assert!(parse_peer_url("http://node-1:99999").is_err());
    assert!(parse_peer_url("unix://sock").is_err());
}

#[test]
fn backoff_doubles_to_its_cap_with_bounded_jitter() {
    let mut b = Backoff::new(A, B);
    let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
    let bases = [50, 100, 200, 400, 800, 1000, 1000, 1000].map(Duration::from_millis);
    for (d, base) in delays.iter().zip(bases) {
        assert!(*d >= base && *d <= base + base / 4, "{d:?} for {base:?}");
    }
    b.reset();
    assert!(b.next_delay() < Duration::from_millis(63));
    b.refused();
    assert!(b.next_delay() >= BACKOFF_MAX);
    // Same ids, same delays: nothing global.
    let mut again = Backoff::new(A, B);
    assert_eq!(
        (0..8).map(|_| again.next_delay()).collect::<Vec<_>>(),
        delays
    );
    // Another pair of members jitters differently.
    let mut other = Backoff::new(B, A);
    assert_ne!(
        (0..8).map(|_| other.next_delay()).collect::<Vec<_>>(),
        delays
    );
}

#[test]
fn repeated_failures_are_logged_once_a_minute_or_on_change() {
    let mut t = LogThrottle::default();
    let t0 = Instant::now();
    assert!(t.should_log_at("refused", t0));
    assert!(!t.should_log_at("refused", t0 + Duration::from_secs(59)));
    assert!(t.should_log_at("timeout", t0 + Duration::from_secs(59)));
    assert!(t.should_log_at("refused", t0 + Duration::from_secs(60)));
    assert!(!t.should_log_at("refused", t0 + Duration::from_secs(119)));
    assert!(t.should_log_at("refused", t0 + Duration::from_secs(120)));
}

#[test]
fn http_requests_on_the_peer_port_go_to_the_handler_and_frames_still_work() {
    let (tx, inbox) = mpsc::channel();
    let http = super::PeerHttp(std::sync::Arc::new(
        |method: &str, target: &str, mut s: TcpStream| {
            let body = format!("{method} {target}");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        },
    ));
    let config = PeerConfig {
        member_id: B,
        cluster_id: CLUSTER,
        listen: vec![loopback()],
        peers: vec![(A, vec![url(closed_port())])],
        http: Some(http),
        removal: None,
    };
    let t = TcpTransport::start(
        config,
        Box::new(move |m| {
            let _ = tx.send(m);
        }),
    )
    .unwrap();
    let addr = t.local_addrs()[0];
    let mut s = raw(addr);
    s.write_all(b"GET /members HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("GET /members"), "{reply}");
    let mut s = raw(addr);
    s.write_all(b"POST /raft/snapshot?from=1 HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("POST /raft/snapshot?from=1"), "{reply}");
    // An endless request head is cut off, not buffered.
    let mut s = raw(addr);
    let _ = s.write_all(b"GET /");
    let _ = s.write_all(&[b'a'; 8192]);
    assert_closed(s, "endless head");
    // The port still speaks frames.
    let mut s = raw_peer(addr, A, B);
    s.write_all(&messages_frame(&[heartbeat(A, B, 1)])).unwrap();
    let got = inbox.recv_timeout(DEADLINE).unwrap();
    assert_eq!(got.from, A);
}

#[test]
fn a_removed_member_is_told_so_and_an_unknown_one_is_only_refused() {
    let start = |me: NodeId, listen: SocketAddr, peers: Vec<(NodeId, Vec<String>)>, removal| {
        let config = PeerConfig {
            member_id: me,
            cluster_id: CLUSTER,
            listen: vec![listen],
            peers,
            http: None,
            removal: Some(removal),
        };
        TcpTransport::start(config, Box::new(|_| {})).unwrap()
    };
    let (told_tx, told) = mpsc::channel::<(NodeId, String)>();
    let removal_of = |me: NodeId, removed: Vec<NodeId>| {
        let told_tx = Mutex::new(told_tx.clone());
        Removal {
            is_removed: Arc::new(move |id| removed.contains(&id)),
            removed_self: Arc::new(move |why| {
                let _ = told_tx.lock().unwrap().send((me, why.to_string()));
            }),
        }
    };
    // A knows B was removed; C is simply not A's peer.
    let a = start(A, loopback(), vec![], removal_of(A, vec![B]));
    let a_url = url(a.local_addrs()[0]);
    let _b = start(
        B,
        loopback(),
        vec![(A, vec![a_url.clone()])],
        removal_of(B, vec![]),
    );
    let _c = start(C, loopback(), vec![(A, vec![a_url])], removal_of(C, vec![]));
    let (who, why) = told.recv_timeout(DEADLINE).unwrap();
    assert_eq!(who, B, "{why}");
    assert!(
        why.contains("member b2 has been permanently removed from the cluster"),
        "{why}"
    );
    // C keeps being refused, and is never told it was removed.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok((who, why)) = told.try_recv() {
        assert_eq!(who, B, "{why}");
    }
    assert!(a.stats().handshakes_refused >= 2, "{:?}", a.stats());
}

fn numbered_append(from: NodeId, to: NodeId, number: u64, data_bytes: usize) -> Message {
    let mut m = append(from, to, data_bytes);
    if let MessageBody::Append { prev_index, .. } = &mut m.body {
        *prev_index = number;
    }
    m
}

fn number(m: &Message) -> u64 {
    match m.body {
        MessageBody::Append { prev_index, .. } => prev_index,
        _ => u64::MAX,
    }
}

#[test]
fn direct_writes_stop_at_a_full_socket_and_what_follows_keeps_its_order() {
    use super::direct::{Direct, Sent};
    let listener = std::net::TcpListener::bind(loopback()).unwrap();
    let conn = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut reader, _) = listener.accept().unwrap();
    conn.set_nonblocking(true).unwrap();
    let shared = Shared::default();
    let direct = Direct::default();
    let mut queued = Vec::new();

    // Not offered yet: everything queues.
    direct.connected(conn.try_clone().unwrap());
    let sent = direct.send(vec![numbered_append(A, B, 0, 10)], B, &shared, |m| {
        queued.push(m)
    });
    assert!(matches!(sent, Sent::Done));
    assert_eq!(queued.len(), 1);
    queued.clear();

    // Offered: written at once, until the peer's socket (which nobody reads) is full.
    direct.offer(|| true);
    let mut n = 0;
    let kicked = loop {
        assert!(n < 10_000, "the socket never filled");
        let m = numbered_append(A, B, n, 64 * 1024);
        n += 1;
        if let Sent::Kick = direct.send(vec![m], B, &shared, |m| queued.push(m)) {
            break n - 1;
        }
    };
    assert!(
        queued.is_empty(),
        "the frame that did not fit is the rest, not queued"
    );
    assert_eq!(shared.sent.load(Ordering::Relaxed), kicked);
    // No longer offered: later messages queue behind the rest.
    for i in 0..3 {
        let m = numbered_append(A, B, n + i, 10);
        assert!(matches!(
            direct.send(vec![m], B, &shared, |m| queued.push(m)),
            Sent::Done
        ));
    }
    assert_eq!(queued.len(), 3);
    let rest = direct.reclaim();
    assert!(!rest.bytes.is_empty());
    assert_eq!(rest.messages, 1);
    // Reclaimed, not offered again: still queues.
    let sent = direct.send(vec![numbered_append(A, B, n + 3, 10)], B, &shared, |m| {
        queued.push(m)
    });
    assert!(matches!(sent, Sent::Done));

    // The peer reads everything: the direct frames, the rest, then the queue, in order.
    let expected = n + 4;
    let read = std::thread::spawn(move || {
        reader.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut numbers = Vec::new();
        while (numbers.len() as u64) < expected {
            let payload = raw_frame(&mut reader);
            numbers.extend(codec::decode_messages(&payload).unwrap().iter().map(number));
        }
        numbers
    });
    conn.set_nonblocking(false).unwrap();
    let mut writer = &conn;
    writer.write_all(&rest.bytes).unwrap();
    writer.write_all(&messages_frame(&queued)).unwrap();
    assert_eq!(read.join().unwrap(), (0..expected).collect::<Vec<_>>());

    // A lost connection drops the rest with it and leaves nothing to write directly.
    direct.offer(|| true);
    assert_eq!(direct.disconnected(), 0);
    let sent = direct.send(vec![numbered_append(A, B, 0, 10)], B, &shared, |m| {
        queued.push(m)
    });
    assert!(matches!(sent, Sent::Done));
    assert_eq!(queued.len(), 5);
}
