//! Starting and stopping a member: open the data dir, check or record its identity, start
//! the node, storage and API threads, wait for a signal, stop cleanly; and tell systemd
//! (`util::notify`) when it serves, that it is alive, and when it stops.

use crate::api::server::{self as api_server, ApiContext, MemberInfo};
use crate::cli::config::{ClusterState, ServerConfig};
use crate::node::{self, bootstrap, NodeParts};
use crate::storage::lmdb::LmdbStorage;
use crate::storage::{Identity, MemberRecord};
use crate::store::V2Store;
use crate::transport::tcp::{LinkHealth, PeerConfig, TcpTransport};
use crate::transport::{NoPeers, Transport};
use crate::util::clock;
use crate::util::notify::{self, Notifier};
use crate::watch::WatchHub;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not start or stopped with an error.
#[derive(Debug)]
pub struct ServerError(pub String);

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

impl From<crate::storage::StorageError> for ServerError {
    fn from(e: crate::storage::StorageError) -> Self {
        ServerError(e.to_string())
    }
}

/// Threads running the client-connection tasks: one per core on small boards, at most two
/// (the node, WAL and apply threads need the rest).
fn executor_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 2))
}

// The executor lives as long as the process; its threads park when there is nothing to do.
//
// They run it under futures-lite's `block_on`, not async-io's (`smol::block_on`): then no
// executor thread ever takes the reactor, and async-io's own thread is the one that waits in
// epoll. With async-io's, these threads and the peers thread took turns holding the reactor
// and waking each other for events that were not theirs, and the async-io thread polled
// for a turn every 50 us under load. Measured, 3 members, 64 connections: two clusters
// loaded at once (old and new, sides swapped), new/old 1.16, 1.09, 1.13, 1.10, 1.23, 1.15;
// one cluster alone, 4 interleaved pairs, within the noise (14233 vs 14346 PUT/s medians).
fn start_executor() -> Result<Arc<smol::Executor<'static>>, ServerError> {
    let executor = Arc::new(smol::Executor::new());
    for i in 0..executor_threads() {
        let ex = Arc::clone(&executor);
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || smol::future::block_on(ex.run(std::future::pending::<()>())))
            .map_err(|e| ServerError(format!("cannot start the HTTP executor thread: {e}")))?;
    }
    Ok(executor)
}

/// Says at start which peer URLs name a host that does not resolve (`/etc/hosts` first, then
/// DNS): a board missing from `/etc/hosts` is the usual reason a member cannot be reached.
fn warn_unresolvable_peers(initial_cluster: &[(String, String)]) {
    for (name, url) in initial_cluster {
        let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
        let hostport = rest.split('/').next().unwrap_or(rest);
        let Some((host, port)) = crate::cli::argv::split_host_port(hostport) else {
            continue;
        };
        let port = port.parse().unwrap_or(0);
        if let Err(e) = crate::util::hosts::resolve(host, port) {
            log::warn!("peer URL {url} of member {name}: {e}");
        }
    }
}

/// The checks of the member's place in `--initial-cluster` that need no disk or network
/// (`pikv check-config` runs them too), and the ids they give.
pub fn check_config(config: &ServerConfig) -> Result<(), ServerError> {
    bootstrap_identity(config).map(|_| ())
}

fn bootstrap_identity(config: &ServerConfig) -> Result<(Identity, Vec<MemberRecord>), ServerError> {
    let members =
        bootstrap::initial_members(&config.initial_cluster, &config.initial_cluster_token);
    let me = members.iter().find(|m| m.0 == config.name).ok_or_else(|| {
        ServerError(format!(
            "couldn't find local name {:?} in the initial cluster configuration",
            config.name
        ))
    })?;
    // etcd: the peer URLs this member advertises must be the ones --initial-cluster gives it.
    let mut advertised = config.initial_advertise_peer_urls.clone();
    advertised.sort();
    if advertised != me.2 {
        return Err(ServerError(format!(
            "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={} (the member's advertised peer URLs must match its --initial-cluster entry)",
            me.0,
            me.2.join(","),
            advertised.join(",")
        )));
    }
    let mut seen = std::collections::BTreeMap::new();
    for m in &members {
        if let Some(other) = seen.insert(m.1, &m.0) {
            return Err(ServerError(format!(
                "--initial-cluster: members {other} and {} have the same peer URLs",
                m.0
            )));
        }
    }
    let identity = Identity {
        cluster_id: bootstrap::cluster_id(&members.iter().map(|m| m.1).collect::<Vec<_>>()),
        member_id: me.1,
    };
    let records = members
        .into_iter()
        .map(|(name, id, peer_urls)| MemberRecord {
            id,
            name,
            peer_urls,
        })
        .collect();
    Ok((identity, records))
}

// A data dir knows its cluster: on restart the flags' --initial-cluster is ignored, as etcd
// does, except that a data dir of another multi-member cluster is refused (its member would
// only be refused by every peer). Data dirs of single-member clusters from before the
// membership record have none: the member is the whole cluster.
fn resolve_membership(
    config: &ServerConfig,
    found: Option<Identity>,
    recorded: Vec<MemberRecord>,
    derived: (Identity, Vec<MemberRecord>),
) -> Result<(Identity, Vec<MemberRecord>, bool), ServerError> {
    let Some(found) = found else {
        return Ok((derived.0, derived.1, true));
    };
    // A member that joined a running cluster has ids the flags do not derive (etcd
    // ignores --initial-cluster once the data dir exists).
    let joined = config.initial_cluster_state == ClusterState::Existing || !config.join.is_empty();
    if joined && !recorded.is_empty() {
        return Ok((found, recorded, false));
    }
    let members = if recorded.is_empty() {
        vec![MemberRecord {
            id: found.member_id,
            name: config.name.clone(),
            peer_urls: config.initial_advertise_peer_urls.clone(),
        }]
    } else {
        recorded
    };
    if found != derived.0 {
        // Flags that differ only in this member's own peer URLs are this member moved to
        // a new address (it readdresses itself once running); flags naming peers the data
        // dir never knew describe another cluster.
        let recorded_urls: Vec<Vec<String>> = members
            .iter()
            .map(|m| {
                let mut u = m.peer_urls.clone();
                u.sort();
                u
            })
            .collect();
        let others_known = derived
            .1
            .iter()
            .filter(|m| m.name != config.name)
            .all(|m| recorded_urls.contains(&m.peer_urls));
        let moved = members.len() > 1 && derived.1.len() == members.len() && others_known;
        if (members.len() > 1 || derived.1.len() > 1) && !moved {
            return Err(ServerError(format!(
                "data dir {} belongs to member {:x} of cluster {:x}, but --initial-cluster describes member {:x} of cluster {:x}: give this member its own data dir (or an empty one to join afresh)",
                config.data_dir.display(),
                found.member_id,
                found.cluster_id,
                derived.0.member_id,
                derived.0.cluster_id
            )));
        }
        log::info!(
            "data dir {} belongs to member {:x} of cluster {:x}; the --initial-cluster flags are ignored",
            config.data_dir.display(),
            found.member_id,
            found.cluster_id
        );
    }
    Ok((found, members, false))
}

// A member restarted with other peer URLs than the cluster records for it has moved (a
// board that got a new address): its record with the new URLs.
fn moved_record(config: &ServerConfig, me: u64, members: &[MemberRecord]) -> Option<MemberRecord> {
    let recorded = members.iter().find(|m| m.id == me)?;
    let mut now = config.initial_advertise_peer_urls.clone();
    now.sort();
    let mut before = recorded.peer_urls.clone();
    before.sort();
    (members.len() > 1 && now != before).then(|| MemberRecord {
        peer_urls: now,
        ..recorded.clone()
    })
}

// A member removed while it was down learns it from the first peer it dials, and stops as
// a member that applied its own removal does (the node watcher ends the process).
fn removal_notice(http: &crate::peer_http::PeerHttpContext) -> crate::transport::tcp::Removal {
    let storage = Arc::clone(&http.storage);
    let node = Arc::clone(&http.node);
    crate::transport::tcp::Removal {
        is_removed: Arc::new(move |id| {
            match storage.read().and_then(|view| view.removed_members()) {
                Ok(removed) => removed.contains(&id),
                Err(e) => {
                    log::warn!("cannot read the removed members: {e}");
                    false
                }
            }
        }),
        removed_self: Arc::new(move |reason| {
            let Some(handle) = node.get() else {
                return;
            };
            if !handle
                .status
                .removed
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                log::warn!(
                    "{reason}: this member was removed while it was away: stopping; its id is never used again (to bring this board back, empty its data dir, then add it as a new member or start it with --join)"
                );
                handle.shutdown();
            }
        }),
    }
}

fn start_transport(
    config: &ServerConfig,
    identity: Identity,
    members: &[MemberRecord],
    deliver: node::Deliver,
    health: &mut Option<Arc<LinkHealth>>,
    http: crate::peer_http::PeerHttpContext,
) -> Result<Box<dyn Transport>, String> {
    let alone = members.len() < 2;
    let peers = members
        .iter()
        .filter(|m| m.id != identity.member_id)
        .map(|m| (m.id, m.peer_urls.clone()))
        .collect();
    let removal = removal_notice(&http);
    let transport = TcpTransport::start(
        PeerConfig {
            member_id: identity.member_id,
            cluster_id: identity.cluster_id,
            listen: config.listen_peer_urls.iter().map(|u| u.addr).collect(),
            peers,
            http: Some(crate::peer_http::peer_http(http)),
            removal: Some(removal),
        },
        deliver,
    );
    let transport = match transport {
        Ok(t) => t,
        // A lone member serves clients without its peer port (as before it could grow);
        // it only cannot be joined until restarted with a free one.
        Err(e) if alone => {
            log::warn!("{e}: this member serves alone and cannot be joined until restarted");
            return Ok(Box::new(NoPeers));
        }
        Err(e) => return Err(e.to_string()),
    };
    *health = Some(transport.health());
    for u in &config.listen_peer_urls {
        log::info!("serving peer traffic on {}", u.url);
    }
    Ok(Box::new(transport))
}

/// `--force-new-cluster` on a data dir that holds no member. etcd then bootstraps as if the
/// flag were not given; pikv refuses, because the flag is given to restore data, and a
/// mistyped path or a backup cut short would otherwise start an empty cluster in its place.
fn no_member_to_force(config: &ServerConfig) -> ServerError {
    ServerError(format!(
        "--force-new-cluster: data dir {} holds no member (give the data dir of a member or \
         a backup made by `pikv backup`; without the flag an empty data dir bootstraps a new \
         cluster)",
        config.data_dir.display()
    ))
}

/// `--force-new-cluster` on a bootstrapped data dir: makes it a one-member cluster
/// (`node::force`) and returns its identity. Without the flag, refuses a backup (it would
/// start as the member it was copied from, beside that member).
fn maybe_force_new_cluster(
    config: &ServerConfig,
    storage: &LmdbStorage,
    found: Option<Identity>,
) -> Result<Option<Identity>, ServerError> {
    if !config.force_new_cluster {
        if let Some(source) = storage.backup_source()? {
            return Err(ServerError(format!(
                "data dir {} is a backup (of {source}) made by `pikv backup`: start it with \
                 --force-new-cluster, as a new one-member cluster",
                config.data_dir.display()
            )));
        }
        return Ok(None);
    }
    let Some(found) = found else {
        return Err(no_member_to_force(config));
    };
    let me = MemberRecord {
        id: found.member_id,
        name: config.name.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
    };
    let Some(forced) = node::force::force_new_cluster(storage, &me)? else {
        return Err(no_member_to_force(config));
    };
    let removed: Vec<String> = forced.removed.iter().map(|id| format!("{id:x}")).collect();
    log::info!(
        "--force-new-cluster: member {:x} of cluster {:x} is now the cluster's only member \
         (removed: {}); the {} write-ahead log entries after applied entry {} were committed \
         and applied (all it held, as etcd does); the log goes on after entry {}, etcd index {}",
        found.member_id,
        found.cluster_id,
        if removed.is_empty() {
            "none".to_string()
        } else {
            removed.join(", ")
        },
        forced.from_wal,
        forced.applied_before,
        forced.last_index,
        forced.etcd_index
    );
    Ok(Some(found))
}

/// Runs the server until SIGTERM/SIGINT, telling systemd (when it started pikv with
/// `$NOTIFY_SOCKET`) when it is ready, that it is alive, and when it stops.
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    let notifier = Arc::new(Notifier::from_env());
    let derived = bootstrap_identity(&config)?;
    warn_unresolvable_peers(&config.initial_cluster);
    // Before the open, which would create an empty data dir.
    if config.force_new_cluster && !config.data_dir.join("member").join("data.mdb").is_file() {
        return Err(no_member_to_force(&config));
    }
    let storage = Arc::new(LmdbStorage::open(
        &config.data_dir,
        config.quota_backend_bytes,
    )?);
    // A snapshot that was being received when the process ended is worth nothing now.
    let spool = storage.path().join(crate::peer_http::INCOMING_SNAPSHOT);
    if let Err(e) = std::fs::remove_file(&spool) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(ServerError(format!("remove {}: {e}", spool.display())));
        }
    }
    let mut recovered = storage.recover()?;
    let forced = maybe_force_new_cluster(&config, &storage, recovered.identity)?;
    if forced.is_some() {
        recovered = storage.recover()?;
    }
    if recovered.identity.is_none() && config.initial_cluster_state == ClusterState::Existing {
        // An empty data dir of a member added to a running cluster: learn who it is and
        // the state from its peers first.
        crate::join::join_existing(&config, &storage)?;
        recovered = storage.recover()?;
    } else if recovered.identity.is_none() && !config.join.is_empty() {
        // `--join` with an empty data dir: be added, then the same.
        if crate::join::join_by_asking(&config, &storage)?.is_some() {
            recovered = storage.recover()?;
        }
    }
    let (identity, members, fresh) = match forced {
        // The data dir is the cluster now: --initial-cluster is ignored, as etcd does.
        Some(identity) => (identity, recovered.members, false),
        None => resolve_membership(&config, recovered.identity, recovered.members, derived)?,
    };
    if fresh {
        storage.save_identity(&identity, &members)?;
    }
    let store = Arc::new(V2Store::new());
    // One read transaction at a time on this thread (LMDB's reader slots are per thread).
    let current = V2Store::current_index(&storage.read()?)?;
    let history = node::batch::load_history(&storage)?;
    let hub = Arc::new(WatchHub::new(current, history));
    // etcd's request timeout: 5 s plus two election timeouts.
    let request_timeout = Duration::from_millis(5000 + 2 * config.election_timeout_ms);
    let mut peer_health = None;
    let unapplied_adds = node::members::UnappliedAdds::default();
    let node_slot = Arc::new(std::sync::OnceLock::new());
    let http = crate::peer_http::PeerHttpContext {
        storage: Arc::clone(&storage),
        cluster_id: identity.cluster_id,
        unapplied: Arc::clone(&unapplied_adds),
        node: Arc::clone(&node_slot),
        own: (
            identity.member_id,
            config.name.clone(),
            config.advertise_client_urls.clone(),
        ),
    };
    let running = node::start(
        NodeParts {
            storage: Arc::clone(&storage),
            store: Arc::clone(&store),
            hub: Arc::clone(&hub),
            member_id: identity.member_id,
            cluster_id: identity.cluster_id,
            request_timeout,
            snapshot_count: config.snapshot_count,
            members: members.clone(),
            heartbeat_interval: Duration::from_millis(config.heartbeat_interval_ms),
            election_timeout: Duration::from_millis(config.election_timeout_ms),
            early_answers: !config.serializable_reads,
            readdress: moved_record(&config, identity.member_id, &members),
            publish: Some(crate::store::Command::Publish {
                member: identity.member_id,
                name: config.name.clone(),
                client_urls: config.advertise_client_urls.clone(),
            }),
            unapplied_adds: Arc::clone(&unapplied_adds),
        },
        |deliver| start_transport(&config, identity, &members, deliver, &mut peer_health, http),
    )?;
    let _ = node_slot.set(running.handle.clone());
    let addrs: Vec<_> = config.listen_client_urls.iter().map(|u| u.addr).collect();
    let servers = api_server::bind(&addrs).map_err(ServerError)?;
    let ctx = Arc::new(ApiContext {
        storage,
        store,
        hub: Arc::clone(&hub),
        node: running.handle.clone(),
        cluster_id: identity.cluster_id,
        member: MemberInfo {
            id: identity.member_id,
            name: config.name.clone(),
            peer_urls: config.initial_advertise_peer_urls.clone(),
            client_urls: config.advertise_client_urls.clone(),
        },
        cors: config.cors.clone(),
        serializable_reads: config.serializable_reads,
        strict_reconfig_check: config.strict_reconfig_check,
        peer_health,
        start_time: clock::now_unix_nanos(),
    });
    let executor = start_executor()?;
    api_server::serve(&executor, servers, ctx).map_err(ServerError)?;
    for u in &config.listen_client_urls {
        log::info!("serving client requests on {}", u.url);
    }
    log::info!(
        "member {:x} ({}) of cluster {:x} is ready, data dir {}",
        identity.member_id,
        config.name,
        identity.cluster_id,
        config.data_dir.display()
    );
    // Only now: every listener is bound and the node (a single member: the leader) answers,
    // so whatever systemd starts after pikv finds it serving.
    let urls: Vec<&str> = config
        .listen_client_urls
        .iter()
        .map(|u| u.url.as_str())
        .collect();
    notifier.ready(&format!("serving client requests on {}", urls.join(", ")));
    if notifier.is_enabled() {
        if let Some(interval) = notify::watchdog_interval_from_env() {
            let handle = running.handle.clone();
            notify::spawn_watchdog(Arc::clone(&notifier), interval, move |timeout| {
                handle.ping(timeout)
            })
            .map_err(|e| ServerError(format!("cannot start the watchdog thread: {e}")))?;
        }
    }
    // If the node thread stops on its own (the disk failed), the process must exit so that
    // its supervisor restarts it from what is durable.
    let node_thread = running.node_thread;
    let status = Arc::clone(&running.handle.status);
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("node-watch".into())
        .spawn(move || {
            let why = match node_thread.join() {
                // Removed from the cluster: nothing left to serve (etcd exits too). The
                // peers' queues get a moment to carry the last messages out.
                Ok(Ok(())) if status.removed.load(std::sync::atomic::Ordering::SeqCst) => {
                    std::thread::sleep(Duration::from_millis(200));
                    log::info!("stopped: this member is no longer in the cluster");
                    std::process::exit(0);
                }
                Ok(Ok(())) => {
                    let _ = stopped_tx.send(());
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "the node thread panicked".to_string(),
            };
            log::error!("stopping: {why}");
            eprintln!("pikv: {why}");
            std::process::exit(1);
        })
        .map_err(|e| ServerError(format!("cannot start the node watcher thread: {e}")))?;
    crate::util::signal::wait_for_termination();
    log::info!("stopping");
    // Before anything stops: from here on the watchdog thread sends no ping.
    notifier.stopping("stopping");
    hub.close_all();
    let cut = crate::api::http1::wait_for_streams(Duration::from_millis(500));
    if cut > 0 {
        log::warn!("stopping with {cut} watch responses not yet ended");
    }
    running.handle.shutdown();
    // Let the node answer what it still holds; a batch being committed is safe to cut
    // (LMDB survives a process exit mid-commit).
    let _ = stopped_rx.recv_timeout(Duration::from_secs(5));
    Ok(())
}
