//! `/v2/members` (spec §10): the member list as this member applied it, and adding,
//! removing and readdressing members through Raft, with etcd's checks and errors in etcd's
//! order. A change is answered once it is applied here, so a list read after the answer
//! shows it.

use super::json::to_go_json;
use super::reply::Reply;
use super::server::{ApiContext, Incoming};
use crate::raft::ConfChange;
use crate::storage::{format, MemberRecord};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// One member as the API shows it (spec §10.1).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(super) struct Member {
    id: String,
    name: String,
    #[serde(rename = "peerURLs")]
    peer_urls: Vec<String>,
    /// Published client URLs (`[]` until the member published them).
    #[serde(rename = "clientURLs")]
    pub(super) client_urls: Vec<String>,
}

impl Member {
    /// The id as a number.
    pub(super) fn id_value(&self) -> Option<u64> {
        u64::from_str_radix(&self.id, 16).ok()
    }

    /// The published name, empty until the member started.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The peer URLs, sorted.
    pub(super) fn peer_urls(&self) -> &[String] {
        &self.peer_urls
    }
}

fn json(status: u16, mut body: Vec<u8>, newline: bool) -> Reply {
    if newline {
        body.push(b'\n');
    }
    Reply::new(status, body).header("Content-Type", "application/json")
}

fn message(status: u16, text: &str) -> Reply {
    #[derive(Serialize)]
    struct Message<'a> {
        message: &'a str,
    }
    json(status, to_go_json(&Message { message: text }), false)
}

fn internal_error() -> Reply {
    message(500, "Internal Server Error")
}

/// What this member has applied about the cluster: the members (with what each published)
/// and the ids removed for ever.
struct Applied {
    records: Vec<MemberRecord>,
    published: BTreeMap<u64, (String, Vec<String>)>,
    removed: Vec<u64>,
}

fn applied(ctx: &ApiContext) -> Applied {
    let read = ctx.storage.read().and_then(|view| {
        Ok((
            view.members()?,
            crate::store::V2Store::members(&view)?,
            view.removed_members()?,
        ))
    });
    let (mut records, published, removed) = read.unwrap_or_else(|e| {
        log::warn!("cannot read the membership: {e}");
        Default::default()
    });
    // A data dir of a pikv that recorded no membership is a single member: this one.
    if records.is_empty() {
        records.push(MemberRecord {
            id: ctx.member.id,
            name: ctx.member.name.clone(),
            peer_urls: ctx.member.peer_urls.clone(),
        });
    }
    Applied {
        records,
        published,
        removed,
    }
}

impl Applied {
    fn get(&self, id: u64) -> Option<&MemberRecord> {
        self.records.iter().find(|m| m.id == id)
    }

    // Started: it published its name (etcd's IsStarted); this member has, by serving.
    fn started(&self, ctx: &ApiContext, id: u64) -> bool {
        id == ctx.member.id || self.published.get(&id).is_some_and(|(n, _)| !n.is_empty())
    }

    fn peer_url_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.records
            .iter()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
    }
}

fn show(ctx: &ApiContext, applied: &Applied, record: &MemberRecord) -> Member {
    let mut peer_urls = record.peer_urls.clone();
    peer_urls.sort();
    let (name, client_urls) = if record.id == ctx.member.id {
        (ctx.member.name.clone(), ctx.member.client_urls.clone())
    } else {
        applied
            .published
            .get(&record.id)
            .cloned()
            .unwrap_or_default()
    };
    Member {
        id: format!("{:x}", record.id),
        name,
        peer_urls,
        client_urls,
    }
}

/// Every member, sorted by id: this one from its own flags, the others with what they
/// published through the log (name "" and no client URLs until they have, as etcd shows).
pub(super) fn all_members(ctx: &ApiContext) -> Vec<Member> {
    let applied = applied(ctx);
    let mut records = applied.records.clone();
    records.sort_by_key(|m| m.id);
    records.iter().map(|r| show(ctx, &applied, r)).collect()
}

/// Answers a request under `/v2/members` (the caller adds the cluster id header).
pub(super) async fn handle(ctx: &ApiContext, incoming: &Incoming, path: &str) -> Reply {
    let rest = path
        .trim_start_matches("/v2/members")
        .trim_start_matches('/');
    match (incoming.method.as_str(), rest) {
        ("GET", "") => {
            #[derive(Serialize)]
            struct List {
                members: Vec<Member>,
            }
            let list = List {
                members: all_members(ctx),
            };
            json(200, to_go_json(&list), true)
        }
        ("GET", "leader") => {
            let leader = ctx
                .node
                .status
                .leader
                .load(std::sync::atomic::Ordering::SeqCst);
            let id = format!("{leader:x}");
            match all_members(ctx)
                .into_iter()
                .find(|m| leader != 0 && m.id == id)
            {
                Some(m) => json(200, to_go_json(&m), true),
                None => message(503, "During election"),
            }
        }
        ("GET", _) => message(404, "Not found"),
        ("POST", "") => add(ctx, incoming).await,
        ("PUT" | "DELETE", "") => Reply::text(405, "Method Not Allowed\n"),
        ("DELETE", id) => remove(ctx, id).await,
        ("PUT", id) => update(ctx, incoming, id).await,
        _ => Reply::text(405, "Method Not Allowed\n").header("Allow", "GET,POST,DELETE,PUT"),
    }
}

/// The peer URLs of a POST or PUT body, checked as etcd checks them; the error is the
/// reply.
fn peer_urls_of(incoming: &Incoming) -> Result<Vec<String>, Reply> {
    let content_type = incoming.header("Content-Type").unwrap_or_default();
    let media = match content_type.split_once(';') {
        Some((m, _)) => m.trim().to_ascii_lowercase(),
        None => content_type.clone(),
    };
    if media != "application/json" {
        return Err(message(
            415,
            &format!("Bad Content-Type {media}, accept application/json"),
        ));
    }
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(rename = "peerURLs", default)]
        peer_urls: Option<Vec<String>>,
    }
    let body = &incoming.request.body;
    let parsed: Body = if body.iter().all(u8::is_ascii_whitespace) {
        return Err(message(400, "unexpected end of JSON input"));
    } else {
        serde_json::from_slice(body).map_err(|e| message(400, &json_error(&e)))?
    };
    let urls = parsed.peer_urls.unwrap_or_default();
    if urls.is_empty() {
        return Err(message(400, "no valid URLs given"));
    }
    let mut out = Vec::with_capacity(urls.len());
    for raw in urls {
        let url = raw.trim();
        check_peer_url(url).map_err(|m| message(400, &m))?;
        out.push(url.to_string());
    }
    out.sort();
    Ok(out)
}

// Go's url.Parse refuses text without a scheme whose first segment has a colon before
// etcd's own checks see it.
fn check_peer_url(url: &str) -> Result<(), String> {
    let first_segment = url.split('/').next().unwrap_or_default();
    let has_scheme = url
        .split_once(':')
        .is_some_and(|(s, _)| s.starts_with(|c: char| c.is_ascii_alphabetic()));
    if !has_scheme && first_segment.contains(':') {
        return Err(format!(
            "parse \"{url}\": first path segment in URL cannot contain colon"
        ));
    }
    crate::cli::argv::check_url(url).map(|_| ())
}

// Go's encoding/json wording for the errors a client most likely makes.
fn json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".to_string()
    } else if e.is_data() {
        format!("json: cannot unmarshal the request: {e}")
    } else {
        format!("invalid JSON: {e}")
    }
}

fn parse_id(text: &str) -> Result<u64, Reply> {
    u64::from_str_radix(text, 16).map_err(|_| message(404, &format!("No such member: {text}")))
}

// etcd 3.4's strict reconfiguration checks: after the change, the started members must
// still be a majority (adding a second member to a single one is always allowed).
fn ready_to_add(ctx: &ApiContext, applied: &Applied) -> bool {
    let members = applied.records.len() + 1;
    let started = applied
        .records
        .iter()
        .filter(|m| applied.started(ctx, m.id))
        .count();
    (started == 1 && members == 2) || started > members / 2
}

fn ready_to_remove(ctx: &ApiContext, applied: &Applied, id: u64) -> bool {
    let staying: Vec<&MemberRecord> = applied.records.iter().filter(|m| m.id != id).collect();
    let started = staying
        .iter()
        .filter(|m| applied.started(ctx, m.id))
        .count();
    started > staying.len() / 2
}

fn strict(ctx: &ApiContext) -> bool {
    ctx.strict_reconfig_check
}

/// etcd's HealthInterval: a peer counts as connected once its link has been up this long.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

// Connected from here for a while (etcd's isConnectedSince; this member always is).
fn connected(ctx: &ApiContext, id: u64) -> bool {
    if id == ctx.member.id {
        return true;
    }
    let since = ctx.peer_health.as_ref().and_then(|h| h.up_since(id));
    since.is_some_and(|t| t.elapsed() >= HEALTH_INTERVAL)
}

// etcd's "unhealthy cluster" checks: an add needs every member connected (otherwise the
// new, larger quorum may already be out of reach); a removal of a member that is up must
// leave a connected majority.
fn healthy_for_add(ctx: &ApiContext, applied: &Applied) -> bool {
    applied.records.iter().all(|m| connected(ctx, m.id))
}

fn healthy_for_remove(ctx: &ApiContext, applied: &Applied, id: u64) -> bool {
    let link_up = ctx
        .peer_health
        .as_ref()
        .is_some_and(|h| h.up_since(id).is_some());
    if id != ctx.member.id && !link_up {
        // A member that is down is not part of the active quorum.
        return true;
    }
    let n = applied.records.len();
    let active = applied
        .records
        .iter()
        .filter(|m| connected(ctx, m.id))
        .count();
    active > (n - 1) / 2 + 1
}

async fn propose(ctx: &ApiContext, change: ConfChange, record: Option<&MemberRecord>) -> Reply {
    let context = match record.map(|r| format::encode("member record", r)) {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => {
            log::warn!("membership change {change:?}: {e}");
            return internal_error();
        }
        None => Vec::new(),
    };
    match ctx.node.change_membership(change, context).await {
        Ok(()) => Reply::new(204, Vec::new()),
        Err(e) => {
            log::warn!("membership change {change:?} failed: {}", e.cause);
            internal_error()
        }
    }
}

async fn add(ctx: &ApiContext, incoming: &Incoming) -> Reply {
    let peer_urls = match peer_urls_of(incoming) {
        Ok(u) => u,
        Err(reply) => return reply,
    };
    let applied = applied(ctx);
    // etcd's id for a member added at run time: its peer URLs and the time (spec §10.6).
    let now = crate::util::clock::now_unix_nanos() / 1_000_000_000;
    let id = crate::node::bootstrap::member_id(&peer_urls, &now.to_string());
    if strict(ctx) && !ready_to_add(ctx, &applied) {
        log::warn!(
            "refusing to add a member: too few members have started (--strict-reconfig-check)"
        );
        return internal_error();
    }
    if strict(ctx) && !healthy_for_add(ctx, &applied) {
        log::warn!(
            "refusing to add a member: not every member has been connected for {HEALTH_INTERVAL:?} (--strict-reconfig-check)"
        );
        return internal_error();
    }
    // etcd's order: the strict checks, then removed, taken, and the peer URLs.
    if applied.removed.contains(&id) {
        return message(409, "membership: ID removed");
    }
    if applied.get(id).is_some() {
        return message(409, "membership: ID exists");
    }
    if applied.peer_url_taken(&peer_urls, None) {
        return message(409, "membership: peerURL exists");
    }
    let record = MemberRecord {
        id,
        name: String::new(),
        peer_urls: peer_urls.clone(),
    };
    let reply = propose(ctx, ConfChange::AddVoter(id), Some(&record)).await;
    if reply.status != 204 {
        return reply;
    }
    log::info!("added member {id:x} with peer URLs {}", peer_urls.join(","));
    let added = Member {
        id: format!("{id:x}"),
        name: String::new(),
        peer_urls,
        client_urls: Vec::new(),
    };
    json(201, to_go_json(&added), true)
}

async fn remove(ctx: &ApiContext, text: &str) -> Reply {
    let id = match parse_id(text) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let applied = applied(ctx);
    if applied.removed.contains(&id) {
        return message(410, &format!("Member permanently removed: {id:x}"));
    }
    if applied.get(id).is_none() {
        return message(404, &format!("No such member: {id:x}"));
    }
    if strict(ctx) && !ready_to_remove(ctx, &applied, id) {
        log::warn!(
            "refusing to remove member {id:x}: too few members would be left started (--strict-reconfig-check)"
        );
        return internal_error();
    }
    if strict(ctx) && !healthy_for_remove(ctx, &applied, id) {
        log::warn!(
            "refusing to remove member {id:x}: too few members would be left connected (--strict-reconfig-check)"
        );
        return internal_error();
    }
    let reply = propose(ctx, ConfChange::RemoveVoter(id), None).await;
    if reply.status == 204 {
        log::info!("removed member {id:x}");
    }
    reply
}

async fn update(ctx: &ApiContext, incoming: &Incoming, text: &str) -> Reply {
    let id = match parse_id(text) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let applied = applied(ctx);
    let Some(current) = applied.get(id).cloned() else {
        // etcd answers an update of a removed member with a bare 500 (spec §10.5).
        if applied.removed.contains(&id) {
            return internal_error();
        }
        return message(404, &format!("No such member: {id:x}"));
    };
    let peer_urls = match peer_urls_of(incoming) {
        Ok(u) => u,
        Err(reply) => return reply,
    };
    if applied.peer_url_taken(&peer_urls, Some(id)) {
        return message(409, "membership: peerURL exists");
    }
    let record = MemberRecord {
        peer_urls: peer_urls.clone(),
        ..current
    };
    let reply = propose(ctx, ConfChange::UpdateMember(id), Some(&record)).await;
    if reply.status == 204 {
        log::info!("member {id:x} now has peer URLs {}", peer_urls.join(","));
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_with_etcds_messages() {
        assert_eq!(check_peer_url("http://10.0.0.2:2380"), Ok(()));
        assert_eq!(
            check_peer_url("127.0.0.1:22680").unwrap_err(),
            "parse \"127.0.0.1:22680\": first path segment in URL cannot contain colon"
        );
        assert_eq!(
            check_peer_url("ftp://a:1").unwrap_err(),
            "URL scheme must be http, https, unix, or unixs: ftp://a:1"
        );
        assert_eq!(
            check_peer_url("http://a:1/x").unwrap_err(),
            "URL must not contain a path: http://a:1/x"
        );
        assert_eq!(
            check_peer_url("http://a").unwrap_err(),
            "URL address does not have the form \"host:port\": http://a"
        );
    }
}
