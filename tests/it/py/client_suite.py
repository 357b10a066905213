#!/usr/bin/env python3
"""python-etcd (PyPI `python-etcd`) against a running server: usage `client_suite.py PORT`.

Exercises read, write, test-and-set (prevValue, prevIndex, prevExist), delete, directories
(dir=True, recursive), in-order keys (append=True), refresh, watch (wait=True in a thread,
then a write), TTL expiry (and its `expire` event from history), client.leader,
client.machines, client.members, client.version, client.stats and client.store_stats.
Every check is an assert; the script prints one line per passed section and `ALL OK`.
"""
import sys
import threading
import time

import etcd

# `client_suite.py PORT [PORT ...]`: the suite runs through the first member; with several
# (a cluster) writes are also spread over all of them and read back on the next one.
PORTS = [int(p) for p in sys.argv[1:]]
PORT = PORTS[0]
URL = "http://127.0.0.1:%d" % PORT
ALL = ["http://127.0.0.1:%d" % p for p in PORTS]
CLUSTER = len(PORTS) > 1
c = etcd.Client(host="127.0.0.1", port=PORT)


def ok(what):
    print("ok", what, flush=True)


def raises(exc, fn, *a, **kw):
    try:
        fn(*a, **kw)
    except exc as e:
        return e
    raise AssertionError("%s did not raise %s" % (fn.__name__, exc.__name__))


def wait_until(what, pred, limit=15.0):
    deadline = time.time() + limit
    while not pred():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


# ---- write / read
r = c.write("/py/k", "v1")
assert r.value == "v1" and r.key == "/py/k" and r.newKey, r
assert r.action == "set"
assert r.createdIndex == r.modifiedIndex and r.modifiedIndex > 0
assert c.read("/py/k").value == "v1"
assert c.get("/py/k").value == "v1"
assert "/py/k" in c and "/py/nothere" not in c
r2 = c.write("/py/k", "v2")
assert not r2.newKey and r2._prev_node.value == "v1", r2
assert r2.etcd_index == r2.modifiedIndex, (r2.etcd_index, r2.modifiedIndex)
e = raises(etcd.EtcdKeyNotFound, c.read, "/py/missing")
assert "Key not found" in str(e), e
ok("write/read")

# ---- test-and-set: prevValue, prevIndex, prevExist
r = c.test_and_set("/py/k", "v3", "v2")
assert r.value == "v3" and r.action == "compareAndSwap"
raises(ValueError, c.test_and_set, "/py/k", "v4", "wrong")
idx = c.read("/py/k").modifiedIndex
r = c.write("/py/k", "v4", prevIndex=idx)
assert r.value == "v4" and r.action == "compareAndSwap"
raises(ValueError, c.write, "/py/k", "v5", prevIndex=idx)
raises(etcd.EtcdAlreadyExist, c.write, "/py/k", "v5", prevExist=False)
r = c.write("/py/new", "n", prevExist=False)
assert r.action == "create" and r.newKey
r = c.write("/py/new", "n2", prevExist=True)
assert r.action == "update" and r.value == "n2"
raises(etcd.EtcdKeyNotFound, c.write, "/py/none", "x", prevExist=True)
# update() of a read result is a compare-and-swap on the old value
obj = c.read("/py/new")
obj.value = "n3"
assert c.update(obj).value == "n3"
ok("test-and-set")

# ---- delete
r = c.delete("/py/k")
assert r.action == "delete", r
raises(etcd.EtcdKeyNotFound, c.read, "/py/k")
raises(etcd.EtcdKeyNotFound, c.delete, "/py/k")
r = c.delete("/py/new", prevValue="n3")
assert r.action == "compareAndDelete", r
ok("delete")

# ---- directories
r = c.write("/py/dir", None, dir=True)
assert r.dir and r.newKey
raises(etcd.EtcdNotFile, c.write, "/py/dir", None, dir=True)
c.write("/py/dir/a", "1")
c.write("/py/dir/sub/b", "2")
c.write("/py/dir/_hidden", "h")
d = c.read("/py/dir", recursive=True, sorted=True)
assert d.dir
leaves = sorted((n.key, n.value) for n in d.leaves)
assert leaves == [("/py/dir/a", "1"), ("/py/dir/sub/b", "2")], leaves
top = c.read("/py/dir", sorted=True)
assert sorted(n["key"] for n in top._children) == ["/py/dir/a", "/py/dir/sub"], top._children
raises(etcd.EtcdNotDir, c.read, "/py/dir/a/x")
raises(etcd.EtcdNotFile, c.delete, "/py/dir")
raises(etcd.EtcdDirNotEmpty, c.delete, "/py/dir", dir=True)
r = c.delete("/py/dir", recursive=True)
assert r.action == "delete" and r.dir
raises(etcd.EtcdKeyNotFound, c.read, "/py/dir")
c.write("/py/empty", None, dir=True)
c.delete("/py/empty", dir=True)
raises(etcd.EtcdRootReadOnly, c.delete, "/", recursive=True)
ok("directories")

# ---- in-order keys
j1 = c.write("/py/queue", "job1", append=True)
j2 = c.write("/py/queue", "job2", append=True)
assert j1.key == "/py/queue/%020d" % j1.modifiedIndex, j1.key
assert j2.modifiedIndex > j1.modifiedIndex
q = c.read("/py/queue", sorted=True)
assert [n.value for n in q.leaves] == ["job1", "job2"]
ok("in-order")

# ---- watch in a thread, then write
base = c.store_stats["watchers"]
got = {}


def watcher():
    try:
        got["r"] = c.watch("/py/w", timeout=20)
    except Exception as ex:  # noqa: BLE001 - reported below
        got["e"] = ex


t = threading.Thread(target=watcher)
t.start()
wait_until("the watch to be parked", lambda: c.store_stats["watchers"] > base)
w = c.write("/py/w", "woke")
t.join(20)
assert not t.is_alive(), "watch did not return"
assert "e" not in got, got
assert got["r"].value == "woke" and got["r"].action == "set"
assert got["r"].modifiedIndex == w.modifiedIndex
# watch from history (index) returns at once
h = c.watch("/py/w", index=w.modifiedIndex)
assert h.value == "woke"
# recursive watch from history
c.write("/py/wd/x", "1")
h = c.watch("/py/wd", index=w.modifiedIndex + 1, recursive=True)
assert h.key == "/py/wd/x"
ok("watch")

# ---- TTL: set, refresh, expiry and its expire event
r = c.write("/py/t", "x", ttl=100)
# The ttl shown is what remains when the reply is rendered; qemu on a busy machine is slow.
assert 90 <= r.ttl <= 100 and r.expiration, r
r = c.refresh("/py/t", ttl=200)
assert r.value == "x" and 190 <= r.ttl <= 200, r
r = c.write("/py/short", "s", ttl=1)
created = r.modifiedIndex
assert r.ttl is None or r.ttl <= 1, r

def gone():
    try:
        c.read("/py/short")
        return False
    except etcd.EtcdKeyNotFound:
        return True

wait_until("/py/short to expire", gone)
ev = c.watch("/py/short", index=created + 1)
assert ev.action == "expire", ev
assert ev._prev_node.value == "s"
ok("ttl")

# ---- cluster information
if not CLUSTER:
    machines = c.machines
    assert machines == [URL], machines
    leader = c.leader
    assert leader["name"] == "a", leader
    assert leader["clientURLs"] == [URL], leader
    members = c.members
    assert list(members.keys()) == [leader["id"]], members
    st = c.stats
    assert st["name"] == "a" and st["id"] == leader["id"], st
    assert st["state"] == "StateLeader", st
else:
    # Members publish their client URLs through the log after they start.
    wait_until("every member published", lambda: sorted(c.machines) == sorted(ALL))
    leader = c.leader
    assert leader["clientURLs"][0] in ALL, leader
    members = c.members
    assert len(members) == len(PORTS), members
    assert leader["id"] in members, (leader, members)
    st = c.stats
    assert st["state"] in ("StateLeader", "StateFollower"), st
    assert (st["state"] == "StateLeader") == (st["id"] == leader["id"]), (st, leader)
assert isinstance(c.version, str) and c.version, c.version
assert isinstance(c.cluster_version, str) and c.cluster_version
assert "watchers" in c.store_stats
ok("cluster info (version %s)" % c.version)

# ---- a cluster: writes on every member, each read back on the next one
if CLUSTER:
    clients = [etcd.Client(host="127.0.0.1", port=p) for p in PORTS]
    for i, w in enumerate(clients):
        r = w.write("/py/spread/%d" % i, "from %d" % i)
        back = clients[(i + 1) % len(clients)].read("/py/spread/%d" % i, quorum=True)
        assert back.value == "from %d" % i and back.modifiedIndex == r.modifiedIndex, back
    ok("spread over %d members" % len(PORTS))

print("ALL OK", flush=True)
