#!/usr/bin/env python3
"""cluster_bench.py -- data-dir size, memory and follower catch-up of etcd-v2 servers, side by side.

The companion of ../shared/bench/v2bench.py (same conventions: servers are command templates
given with --server NAME=COMMAND, the etcd server flags are appended, loopback only, data dirs
under a fresh temp dir in $TMPDIR, which must be a real disk, processes measured through
/proc/<pid> and stopped by PID, a table with B/A ratios on stdout and every raw figure in JSON).

Phases, each on a fresh cluster of every server (A then B, the order alternating between
repetitions so that drift on a noisy machine falls on both):

  size-1m          1 member, default flags.  --writes PUTs (default 100000) of a 256-byte value
                   to /v2/keys/k<i % --keys> (default 10000 distinct keys) over --conns
                   (default 64) concurrent HTTP/1.1 keep-alive connections (threads with
                   http.client), all on the leader.  Then, --settle and --settle-late seconds
                   after the last write: the data dir's size (allocated, du-style st_blocks*512,
                   and apparent) and the server's VmRSS / VmHWM (/proc/<pid>/status).
                   NOTE: default flags means default --snapshot-count, which differs:
                   etcd 3.4 snapshots every 100000 applied entries, pikv every 10000.
  size-1m-snap10k  the same with --snapshot-count 10000 on both servers.
  size-3m          the same on a 3-member cluster with default flags, writes through the
                   leader; the leader's data dir and the max over members.
  catchup          a 3-member cluster, --snapshot-count 10000 on BOTH servers (for fairness;
                   --catchup-snapshot-count).  One follower is stopped (SIGTERM, wait for exit),
                   --catchup-writes PUTs (default 30000) to the --keys keys go through the
                   leader, the follower is restarted with the same command line, and the time
                   from the restart is measured until (a) it answers GET /version, (b) GET
                   /health says {"health":"true"}, (c) it has everything: its default
                   (non-quorum; etcd's is local) GET /v2/keys/<last written key> returns the
                   last value AND an X-Etcd-Index >= the leader's index after the writes.
                   Afterwards the follower's and the leader's listings of /v2/keys are compared
                   (every key, value and modifiedIndex must match).  Repeated --catchup-reps
                   times (default 3; the table shows median [min-max]).

--phases picks some of them (default all).  /health is polled on a thread of its own (an
answer may wait: pikv's waits for a read barrier), the key on the main one.  pikv's plain GET
is linearizable (it waits for a read index from the leader) where etcd's is served locally;
add --serializable-reads to pikv's command for local reads.  etcd 3.4 opens its client
listener only once it has published itself through Raft, i.e. after its catch-up, so compare
"restart -> caught up", not the part after /version.

The last write of a batch is sent alone after all the concurrent ones are acknowledged, so
"the last written key" is well defined; every value carries the run tag and write number.

Fails loudly (message, exit status 1) when a server does not start, exits, or a write fails
(a connection error is retried once on a new connection and counted; a non-2xx status is not
retried).  Stops only the processes it started, by PID (SIGTERM, SIGKILL after 10 s), also on
Ctrl+C or SIGTERM, and removes its temp dir (unless --keep).

Ports: free ones picked at random in 20000-32000 (checked by binding), so it does not collide
with v2bench (42379+) or a developer's 2379/2380.
Needs: python3 >= 3.8 (standard library only), the servers.  Root is not needed.
"""
import argparse
import collections
import http.client
import json
import math
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
VALUE_LEN = 256
STD_FLAGS = ["--name", "{name}", "--data-dir", "{data_dir}",
             "--listen-client-urls", "{client_url}", "--advertise-client-urls", "{client_url}",
             "--listen-peer-urls", "{peer_url}", "--initial-advertise-peer-urls", "{peer_url}",
             "--initial-cluster", "{initial_cluster}", "--initial-cluster-state", "new",
             "--initial-cluster-token", "{token}"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
MiB = 2 ** 20
PHASES = ("size-1m", "size-1m-snap10k", "size-3m", "catchup")

_running = []  # Members whose process may be alive (for cleanup on exit / signal)
_used_ports = set()


class BenchError(RuntimeError):
    pass


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def value_for(tag, i):
    head = f"{tag}-{i:07d}-"
    return head + "v" * (VALUE_LEN - len(head))


# ----------------------------------------------------------------------------------------------
# /proc and the file system


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out  # kB (Threads: a count)


def dir_size(path):
    """(apparent bytes, allocated bytes = st_blocks*512) of a tree, hard links counted once."""
    seen = set()
    app = alloc = 0
    for root, dirs, files in os.walk(path):
        for n in files + dirs:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if not os.path.isdir(os.path.join(root, n)):
                app += st.st_size
            alloc += st.st_blocks * 512
    return {"apparent": app, "allocated": alloc}


def dir_detail(path):
    """{relative dir: [apparent, allocated, files]} for the files directly in each directory."""
    out = {}
    for root, dirs, files in os.walk(path):
        app = alloc = 0
        for n in files:
            try:
                st = os.lstat(os.path.join(root, n))
            except FileNotFoundError:
                continue
            app += st.st_size
            alloc += st.st_blocks * 512
        if files:
            out[os.path.relpath(root, path)] = [app, alloc, len(files)]
    return out


def fs_type(path):
    best = ("?", "")
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, typ = line.split()[:3]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                best = (typ, mnt)
    return best[0]


def port_free(port):
    s = socket.socket()
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_ports(n):
    out = []
    for _ in range(10000):
        p = random.randrange(20000, 32000)
        if p in _used_ports or p in out or not port_free(p):
            continue
        out.append(p)
        if len(out) == n:
            _used_ports.update(out)
            return out
    raise BenchError("no free ports found in 20000-32000")


# ----------------------------------------------------------------------------------------------
# HTTP


def request(port, method, path, body=None, timeout=5.0):
    """One request on its own connection: (status, {lower-case header: value}, body bytes)."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=FORM if body is not None else {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def new_conn(port, timeout):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


class Writer(threading.Thread):
    """PUTs /v2/keys/k<i % keys> for its indices on one keep-alive connection."""

    def __init__(self, port, indices, keys, tag, stop, timeout):
        super().__init__(daemon=True)
        self.port, self.indices, self.keys, self.tag = port, indices, keys, tag
        self.stop_ev, self.timeout = stop, timeout
        self.done = 0
        self.reconnects = 0
        self.error = None

    def run(self):
        conn = None
        try:
            for i in self.indices:
                if self.stop_ev.is_set():
                    return
                path = f"/v2/keys/k{i % self.keys}"
                body = ("value=" + value_for(self.tag, i)).encode()
                for attempt in (0, 1):
                    try:
                        if conn is None:
                            conn = new_conn(self.port, self.timeout)
                        conn.request("PUT", path, body=body, headers=FORM)
                        r = conn.getresponse()
                        data = r.read()
                        break
                    except (OSError, http.client.HTTPException) as e:
                        if conn is not None:
                            conn.close()
                        conn = None
                        if attempt:
                            raise BenchError(f"PUT :{self.port}{path} failed twice: {e!r}") from e
                        self.reconnects += 1
                if r.status not in (200, 201):
                    raise BenchError(f"PUT :{self.port}{path} -> HTTP {r.status}: {data[:300]!r}")
                self.done += 1
        except BaseException as e:  # reported by the caller
            self.error = e
            self.stop_ev.set()
        finally:
            if conn is not None:
                conn.close()


def write_load(port, n, keys, conns, tag, check=None, timeout=30.0):
    """n PUTs to k<i % keys> on port: n-1 over `conns` connections, then the last one alone.

    Returns the rate and the last write (key, value, X-Etcd-Index of its response).  Raises on
    the first failed write.  check() is called while waiting (e.g. to see the servers live)."""
    stop = threading.Event()
    workers = [Writer(port, range(t, n - 1, conns), keys, tag, stop, timeout) for t in range(conns)]
    t0 = time.perf_counter()
    try:
        for w in workers:
            w.start()
        while not stop.is_set():
            alive = [w for w in workers if w.is_alive()]
            if not alive:
                break
            alive[0].join(0.2)
            if check:
                check()
    finally:
        if any(w.is_alive() for w in workers):  # an error, a dead server or Ctrl+C: stop them
            stop.set()
            for w in workers:
                w.join(timeout + 5)
    errs = [w.error for w in workers if w.error]
    if errs:
        raise BenchError(f"write failed: {errs[0]}")
    done = sum(w.done for w in workers)
    if done != n - 1:
        raise BenchError(f"only {done} of {n - 1} concurrent writes were acknowledged")
    last = n - 1
    key, val = f"k{last % keys}", value_for(tag, last)
    st, hd, body = request(port, "PUT", f"/v2/keys/{key}", ("value=" + val).encode(), timeout)
    if st not in (200, 201):
        raise BenchError(f"last PUT /v2/keys/{key} -> HTTP {st}: {body[:300]!r}")
    elapsed = time.perf_counter() - t0
    return {"writes": n, "keys": keys, "conns": conns, "elapsed_s": elapsed, "per_s": n / elapsed,
            "reconnects": sum(w.reconnects for w in workers), "last_key": key, "last_value": val,
            "last_put_index": int(hd.get("x-etcd-index", "-1"))}


# ----------------------------------------------------------------------------------------------
# Server processes


class Member:
    def __init__(self, cluster, idx, client_port, peer_port, data_dir):
        self.cluster, self.idx, self.name = cluster, idx, f"m{idx}"
        self.client_port, self.peer_port, self.data_dir = client_port, peer_port, data_dir
        self.proc = None
        self.tail = collections.deque(maxlen=300)
        self.argv = None
        self.starts = 0

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("ETCD_") or k.startswith("PIKV_"))}
        _running.append(self)
        self.starts += 1
        self.tail.append(f"--- start {self.starts}: {shlex.join(self.argv)}")
        # Output goes through a pipe (kept in memory), never a file in or near the data dir.
        self.proc = subprocess.Popen(self.argv, cwd=os.path.dirname(self.data_dir), env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._drain, args=(self.proc, time.perf_counter()), daemon=True).start()

    def _drain(self, proc, t0):
        # Each line is prefixed with the seconds since this start (the servers' own log lines
        # carry no sub-second timestamps), to see where a catch-up spends its time.
        for line in iter(proc.stdout.readline, b""):
            self.tail.append(f"+{time.perf_counter() - t0:.3f}s " + line.decode("utf-8", "replace").rstrip())

    def check(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.cluster.server} member {self.name} (pid {self.pid}) exited with "
                             f"{self.proc.returncode}; last output:\n  " + "\n  ".join(list(self.tail)[-25:]))

    def stop(self, timeout=10.0):
        """SIGTERM, wait for the exit (SIGKILL after timeout). (seconds, exit code, killed)."""
        if self.proc is None:
            return None
        t0 = time.perf_counter()
        killed = False
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.cluster.server} {self.name} (pid {self.pid}) ignored SIGTERM for {timeout:g} s: SIGKILL")
                killed = True
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self in _running:
            _running.remove(self)
        return {"stop_s": time.perf_counter() - t0, "exit_code": self.proc.returncode, "killed": killed}


class Cluster:
    def __init__(self, server, template, size, root, extra):
        self.server, self.template, self.size, self.extra = server, template, size, list(extra)
        ports = free_ports(2 * size)
        self.members = []
        for i in range(size):
            d = os.path.join(root, f"m{i}")
            os.makedirs(d)
            self.members.append(Member(self, i, ports[2 * i], ports[2 * i + 1], os.path.join(d, "data")))
        ic = ",".join(f"{m.name}=http://{HOST}:{m.peer_port}" for m in self.members)
        token = f"cluster-bench-{os.getpid()}-{ports[0]}"
        for m in self.members:
            ph = dict(name=m.name, data_dir=m.data_dir, client_url=f"http://{HOST}:{m.client_port}",
                      peer_url=f"http://{HOST}:{m.peer_port}", client_port=m.client_port,
                      peer_port=m.peer_port, initial_cluster=ic, token=token, index=m.idx)
            toks = shlex.split(template)
            if "{" in template:
                m.argv = [t.format(**ph) for t in toks] + self.extra
            else:
                m.argv = toks + [t.format(**ph) for t in STD_FLAGS] + self.extra

    def start(self):
        t0 = time.perf_counter()
        for m in self.members:
            m.start()
        return t0

    def check(self):
        for m in self.members:
            m.check()

    def wait_ready(self, timeout):
        """Every member answers /version, then a PUT on member 0 succeeds. Seconds from now."""
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        for m in self.members:
            wait_version(m, deadline)
        last = None
        while time.monotonic() < deadline:
            self.check()
            try:
                st, _, body = request(self.members[0].client_port, "PUT", "/v2/keys/bench-ready",
                                      b"value=1", timeout=10.0)
                if st in (200, 201):
                    return time.perf_counter() - t0
                last = f"HTTP {st} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.02)
        raise BenchError(f"{self.server} {self.size}-member cluster: no successful write within "
                         f"{timeout:g} s ({last})")

    def find_leader(self, timeout=15.0):
        if self.size == 1:
            return 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            for m in self.members:
                if not m.alive():
                    continue
                try:
                    st, _, body = request(m.client_port, "GET", "/v2/stats/self", timeout=2.0)
                    if st == 200 and str(json.loads(body).get("state", "")).lower() in ("stateleader", "leader"):
                        return m.idx
                except (OSError, http.client.HTTPException, ValueError):
                    pass
            time.sleep(0.05)
        raise BenchError(f"{self.server}: no member reports state StateLeader in /v2/stats/self")

    def stop(self):
        for m in self.members:
            if m.alive():
                try:
                    os.kill(m.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for m in self.members:
            m.stop()


def wait_version(m, deadline):
    last = None
    while time.monotonic() < deadline:
        m.check()
        try:
            st, _, body = request(m.client_port, "GET", "/version", timeout=2.0)
            if st == 200:
                return
            last = f"HTTP {st}"
        except (OSError, http.client.HTTPException) as e:
            last = repr(e)
        time.sleep(0.01)
    raise BenchError(f"{m.cluster.server} {m.name}: GET /version not answered in time ({last}); "
                     f"last output:\n  " + "\n  ".join(list(m.tail)[-25:]))


def cleanup():
    for m in list(_running):
        try:
            if m.alive():
                os.kill(m.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for m in list(_running):
        try:
            m.stop()
        except Exception as e:  # best effort on the way out
            log(f"cleanup: {e}")


# ----------------------------------------------------------------------------------------------
# Phases


def mem_of(m):
    s = proc_status(m.pid)
    return {"VmRSS_kb": s.get("VmRSS"), "VmHWM_kb": s.get("VmHWM"), "RssAnon_kb": s.get("RssAnon"),
            "Threads": s.get("Threads")}


def look(cl):
    os.sync()
    cl.check()
    return {"mem": [mem_of(m) for m in cl.members], "disk": [dir_size(m.data_dir) for m in cl.members]}


def run_size(server, template, size, extra, a, root, rep):
    d = tempfile.mkdtemp(prefix=f"{server}-{size}m-size-r{rep}-", dir=root)
    cl = Cluster(server, template, size, d, extra)
    res = {"size": size, "extra_flags": extra, "rep": rep, "argv": [m.argv for m in cl.members]}
    try:
        log(f"{server} {size}m {' '.join(extra) or 'default flags'}: start")
        cl.start()
        res["ready_s"] = cl.wait_ready(a.start_timeout)
        leader = cl.find_leader()
        res["leader"] = leader
        lm = cl.members[leader]
        res["before"] = look(cl)
        w = write_load(lm.client_port, a.writes, a.keys, a.conns, f"s{size}r{rep}", check=cl.check)
        t_done = time.monotonic()
        res["write"] = w
        st, hd, body = request(lm.client_port, "GET", f"/v2/keys/{w['last_key']}")
        if st != 200 or json.loads(body)["node"]["value"] != w["last_value"]:
            raise BenchError(f"{server}: GET /v2/keys/{w['last_key']} on the leader after the writes: "
                             f"HTTP {st} {body[:200]!r}")
        res["leader_index"] = int(hd.get("x-etcd-index", "-1"))
        log(f"{server} {size}m: {w['writes']} writes in {w['elapsed_s']:.1f} s ({w['per_s']:.0f}/s), "
            f"index {res['leader_index']}")
        time.sleep(max(0.0, a.settle - (time.monotonic() - t_done)))
        res["early"] = look(cl)
        time.sleep(max(0.0, a.settle_late - (time.monotonic() - t_done)))
        res["late"] = look(cl)
        res["late_detail_leader"] = dir_detail(lm.data_dir)
        ld = res["late"]["disk"][leader]
        lmem = res["late"]["mem"][leader]
        log(f"{server} {size}m: leader data dir {ld['allocated'] / MiB:.1f} MiB allocated "
            f"({ld['apparent'] / MiB:.1f} apparent), VmRSS {lmem['VmRSS_kb'] / 1024:.1f} MiB, "
            f"VmHWM {lmem['VmHWM_kb'] / 1024:.1f} MiB")
    finally:
        cl.stop()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    return res


def listing(port):
    st, hd, body = request(port, "GET", "/v2/keys/?sorted=true", timeout=30.0)
    if st != 200:
        raise BenchError(f"GET /v2/keys/ on :{port} -> HTTP {st}")
    nodes = json.loads(body)["node"].get("nodes", [])
    return {n["key"]: (n.get("value"), n.get("modifiedIndex")) for n in nodes}


def run_catchup(server, template, a, root, rep):
    extra = ["--snapshot-count", str(a.catchup_snapshot_count)]
    d = tempfile.mkdtemp(prefix=f"{server}-3m-catchup-r{rep}-", dir=root)
    cl = Cluster(server, template, 3, d, extra)
    res = {"extra_flags": extra, "rep": rep, "argv": [m.argv for m in cl.members]}
    try:
        log(f"{server} catch-up rep {rep + 1}: start 3 members ({' '.join(extra)})")
        cl.start()
        res["ready_s"] = cl.wait_ready(a.start_timeout)
        leader = cl.find_leader()
        lm = cl.members[leader]
        fm = cl.members[(leader + 1) % 3]
        res["leader"], res["follower"] = leader, fm.idx
        # The follower has everything so far before it goes (its own read of the ready key).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st, _, _ = request(fm.client_port, "GET", "/v2/keys/bench-ready")
            if st == 200:
                break
            time.sleep(0.02)
        res["follower_stop"] = fm.stop()
        log(f"{server} catch-up: follower {fm.name} stopped in {res['follower_stop']['stop_s']:.2f} s "
            f"(exit {res['follower_stop']['exit_code']}); {a.catchup_writes} writes via the leader {lm.name}")
        others = [m for m in cl.members if m is not fm]

        def check_others():
            for m in others:
                m.check()
        w = write_load(lm.client_port, a.catchup_writes, a.keys, a.conns, f"c{rep}", check=check_others)
        res["write"] = w
        st, hd, body = request(lm.client_port, "GET", f"/v2/keys/{w['last_key']}")
        if st != 200 or json.loads(body)["node"]["value"] != w["last_value"]:
            raise BenchError(f"{server}: the leader's GET /v2/keys/{w['last_key']} after the writes: "
                             f"HTTP {st} {body[:200]!r}")
        target = int(hd["x-etcd-index"])
        res["leader_index"] = target
        log(f"{server} catch-up: {w['writes']} writes in {w['elapsed_s']:.1f} s ({w['per_s']:.0f}/s), "
            f"leader index {target}; restarting {fm.name}")
        path = f"/v2/keys/{w['last_key']}"
        health = {}
        done = threading.Event()

        def poll_health():
            # Its own thread: a /health answer may wait (pikv's waits up to 1 s for a read barrier),
            # and that must not delay the polling of the key.
            while not done.is_set():
                try:
                    st, _, body = request(fm.client_port, "GET", "/health", timeout=5.0)
                    if st == 200 and json.loads(body).get("health") in ("true", True):
                        health["t"] = time.perf_counter() - t0
                        return
                except (OSError, http.client.HTTPException, ValueError):
                    pass
                done.wait(0.005)
        hth = threading.Thread(target=poll_health, daemon=True)
        t0 = time.perf_counter()
        fm.start()
        hth.start()
        t_version = t_caught = None
        polls = 0
        last_seen = None
        deadline = time.monotonic() + a.catchup_timeout
        try:
            while t_caught is None:
                if time.monotonic() > deadline:
                    raise BenchError(f"{server}: follower {fm.name} not caught up {a.catchup_timeout:g} s "
                                     f"after its restart (last seen: {last_seen}); last output:\n  "
                                     + "\n  ".join(list(fm.tail)[-25:]))
                fm.check()
                try:
                    if t_version is None:
                        st, _, _ = request(fm.client_port, "GET", "/version", timeout=2.0)
                        if st == 200:
                            t_version = time.perf_counter() - t0
                            continue
                    else:
                        st, hd, body = request(fm.client_port, "GET", path, timeout=10.0)
                        polls += 1
                        idx = int(hd.get("x-etcd-index", "-1"))
                        val = json.loads(body).get("node", {}).get("value") if st == 200 else None
                        last_seen = (st, idx, (val or "")[:16])
                        if st == 200 and val == w["last_value"] and idx >= target:
                            t_caught = time.perf_counter() - t0
                            break
                except (OSError, http.client.HTTPException, ValueError) as e:
                    last_seen = repr(e)
                time.sleep(0.005)
            log(f"{server} catch-up: {fm.name} caught up {t_caught:.3f} s after its restart")
            hth.join(10.0)  # a little longer for /health; None if it never said true
        finally:
            done.set()
        t_health = health.get("t")
        res.update({"restart_to_version_s": t_version, "restart_to_health_s": t_health,
                    "restart_to_caught_up_s": t_caught, "catch_up_after_version_s": t_caught - t_version,
                    "polls": polls})
        cl.check()
        la, fo = listing(lm.client_port), listing(fm.client_port)
        diff = [k for k in set(la) | set(fo) if la.get(k) != fo.get(k)]
        res["listing_keys"] = len(la)
        res["listing_mismatches"] = len(diff)
        if diff:
            raise BenchError(f"{server}: after the catch-up the follower's /v2/keys differs from the "
                             f"leader's in {len(diff)} keys, e.g. {sorted(diff)[:3]}: "
                             f"{[(la.get(k), fo.get(k)) for k in sorted(diff)[:3]]}")
        res["after"] = look(cl)
        tail = list(fm.tail)
        mark = max(i for i, l in enumerate(tail) if l.startswith("--- start "))
        res["follower_output_after_restart"] = tail[mark:mark + 60]
        fd = res["after"]["disk"][fm.idx]
        log(f"{server} catch-up: /version {t_version:.3f} s, /health "
            f"{'-' if t_health is None else f'{t_health:.3f} s'}, caught up {t_caught:.3f} s; follower "
            f"data dir {fd['allocated'] / MiB:.1f} MiB; listings equal ({len(la)} keys)")
    finally:
        cl.stop()
        if not a.keep:
            shutil.rmtree(d, ignore_errors=True)
    return res


# ----------------------------------------------------------------------------------------------
# Summary


def mmm(vals):
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return None
    s = sorted(vals)
    return {"min": s[0], "median": statistics.median(s), "max": s[-1], "n": len(s), "all": vals}


def kb_mib(v):
    return None if v is None else v / 1024


def size_rows(a, size):
    L = lambda r: r["leader"]
    rows = [
        ("write_per_s", f"{a.writes} writes, {a.conns} conns via the leader", "/s", lambda r: r["write"]["per_s"], None),
        ("disk_alloc_mib", f"data dir{', leader' if size > 1 else ''}, allocated (du)", "MiB",
         lambda r: r["late"]["disk"][L(r)]["allocated"] / MiB, 0.2),
        ("disk_app_mib", f"data dir{', leader' if size > 1 else ''}, apparent", "MiB",
         lambda r: r["late"]["disk"][L(r)]["apparent"] / MiB, 0.2),
        ("disk_alloc_early_mib", f"data dir{', leader' if size > 1 else ''}, allocated, {a.settle:g} s after", "MiB",
         lambda r: r["early"]["disk"][L(r)]["allocated"] / MiB, None),
    ]
    if size > 1:
        rows.append(("disk_alloc_max_mib", "data dir, allocated, max member", "MiB",
                     lambda r: max(x["allocated"] for x in r["late"]["disk"]) / MiB, 0.2))
    rows += [
        ("vmrss_mib", f"VmRSS{', leader' if size > 1 else ''}", "MiB", lambda r: kb_mib(r["late"]["mem"][L(r)]["VmRSS_kb"]), None),
        ("vmhwm_mib", f"VmHWM{', leader' if size > 1 else ''}", "MiB", lambda r: kb_mib(r["late"]["mem"][L(r)]["VmHWM_kb"]), None),
    ]
    if size > 1:
        rows += [
            ("vmrss_max_mib", "VmRSS, max member", "MiB", lambda r: kb_mib(max(m["VmRSS_kb"] for m in r["late"]["mem"])), None),
            ("vmhwm_max_mib", "VmHWM, max member", "MiB", lambda r: kb_mib(max(m["VmHWM_kb"] for m in r["late"]["mem"])), None),
        ]
    return rows


def catchup_rows(a):
    return [
        ("write_per_s", f"{a.catchup_writes} writes, {a.conns} conns via the leader", "/s", lambda r: r["write"]["per_s"], None),
        ("stop_s", "follower SIGTERM -> exit", "s", lambda r: r["follower_stop"]["stop_s"], None),
        ("to_version_s", "restart -> GET /version answered", "s", lambda r: r["restart_to_version_s"], None),
        ("to_health_s", "restart -> /health true", "s", lambda r: r["restart_to_health_s"], None),
        ("to_caught_up_s", "restart -> caught up (last value, index)", "s", lambda r: r["restart_to_caught_up_s"], 1.0),
        ("after_version_s", "  of which after /version (catch-up proper)", "s", lambda r: r["catch_up_after_version_s"], None),
        ("follower_disk_mib", "follower data dir after, allocated", "MiB",
         lambda r: r["after"]["disk"][r["follower"]]["allocated"] / MiB, None),
        ("follower_hwm_mib", "follower VmHWM after catch-up", "MiB",
         lambda r: kb_mib(r["after"]["mem"][r["follower"]]["VmHWM_kb"]), None),
        ("leader_hwm_mib", "leader VmHWM after catch-up", "MiB",
         lambda r: kb_mib(r["after"]["mem"][r["leader"]]["VmHWM_kb"]), None),
    ]


def phase_defs(a):
    """(phase key, title, kind, size, extra flags) of the phases selected with --phases."""
    n = f"{a.writes} writes to {a.keys} keys"
    after = f"measured {a.settle_late:g} s after the last write"
    out = [
        ("size-1m", f"1 member, DEFAULT flags (no --snapshot-count: etcd 3.4 defaults to 100000, "
                    f"pikv to 10000), {n}, {after}", "size", 1, []),
        ("size-1m-snap10k", f"1 member, --snapshot-count 10000 on both, {n}, {after}", "size", 1,
         ["--snapshot-count", "10000"]),
        ("size-3m", f"3 members, DEFAULT flags (as above), {n} via the leader, {after}", "size", 3, []),
    ]
    if a.catchup_reps > 0:
        out.append(("catchup", f"3 members, --snapshot-count {a.catchup_snapshot_count} on both: follower "
                               f"stopped, {a.catchup_writes} writes to {a.keys} keys, follower restarted "
                               f"({a.catchup_reps} reps). NOTE: etcd 3.4 serves clients (/version too) "
                               f"only once it has published itself through Raft, so its /version time "
                               f"already includes most of its catch-up", "catchup", 3, None))
    return [p for p in out if p[0] in a.phases]


def summarize(results, servers, a):
    summary = {}
    for key, title, kind, size, extra in phase_defs(a):
        rows = size_rows(a, size) if kind == "size" else catchup_rows(a)
        summary[key] = {}
        for n in servers:
            reps = results.get(key, {}).get(n, [])
            summary[key][n] = {}
            for rk, label, unit, fn, target in rows:
                vals = []
                for r in reps:
                    try:
                        vals.append(fn(r))
                    except (KeyError, TypeError, IndexError):
                        pass
                summary[key][n][rk] = mmm(vals)
    return summary


def fmt(v):
    if v is None:
        return "-"
    av = abs(v)
    if av >= 100:
        return f"{v:.0f}"
    if av >= 10:
        return f"{v:.1f}"
    if av >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def print_table(summary, servers, a):
    w_label, w_col = 52, 24
    two = len(servers) == 2
    ratio_name = f"{servers[1]}/{servers[0]}" if two else ""
    head = "metric".ljust(w_label) + "".join(n.rjust(w_col) for n in servers)
    if two:
        head += ratio_name.rjust(12) + "target".rjust(12)
    for key, title, kind, size, extra in phase_defs(a):
        rows = size_rows(a, size) if kind == "size" else catchup_rows(a)
        print()
        print(title)
        print(head)
        print("-" * len(head))
        for rk, label, unit, fn, target in rows:
            meds, cells = [], []
            for n in servers:
                m = summary[key][n].get(rk)
                meds.append(m["median"] if m else None)
                if not m:
                    cells.append("-")
                elif m["n"] > 1:
                    cells.append(f"{fmt(m['median'])} [{fmt(m['min'])}-{fmt(m['max'])}]")
                else:
                    cells.append(fmt(m["median"]))
            line = f"{label} ({unit})".ljust(w_label) + "".join(c.rjust(w_col) for c in cells)
            if two:
                r = meds[1] / meds[0] if meds[0] and meds[1] is not None else None
                line += (f"{r:.2f}x" if r is not None else "-").rjust(12)
                if target is not None:
                    mark = "-" if r is None else ("ok" if r <= target else "MISSED")
                    line += f"<={target:g}x {mark}".rjust(12)
            print(line)


def binary_info(template):
    toks = shlex.split(template)
    path = shutil.which(toks[0]) or toks[0]
    real = os.path.realpath(path)
    info = {"path": real, "size": os.path.getsize(real) if os.path.exists(real) else 0}
    try:
        v = subprocess.run([real, "--version"], capture_output=True, text=True, timeout=10)
        info["version"] = (v.stdout or v.stderr).strip().splitlines()[:2]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def parse_server(spec):
    name, sep, cmd = spec.partition("=")
    if not sep or " " in name or "/" in name or not name:
        cmd = spec
        name = os.path.basename(shlex.split(spec)[0])
    return name, cmd


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", action="append", metavar="NAME=COMMAND",
                    help="server under test, repeatable (A, B; ratios are B/A), e.g. "
                         "etcd='/usr/bin/etcd --enable-v2' pikv=./target/release/pikv "
                         "(default: those two, pikv from this worktree's target/release)")
    ap.add_argument("--writes", type=int, default=100000, help="writes for the size phases (default 100000)")
    ap.add_argument("--keys", type=int, default=10000, help="distinct keys k0..k<keys-1> (default 10000)")
    ap.add_argument("--conns", type=int, default=64, help="concurrent keep-alive connections (default 64)")
    ap.add_argument("--reps", type=int, default=1, help="repetitions of each size phase (default 1)")
    ap.add_argument("--catchup-reps", type=int, default=3, help="repetitions of the catch-up (default 3; 0 skips)")
    ap.add_argument("--catchup-writes", type=int, default=30000, help="writes while the follower is down (default 30000)")
    ap.add_argument("--catchup-snapshot-count", type=int, default=10000,
                    help="--snapshot-count of every member in the catch-up phase (default 10000)")
    ap.add_argument("--catchup-timeout", type=float, default=300.0, help="seconds the follower may take (default 300)")
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"comma-separated phases to run (default all: {','.join(PHASES)})")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds after the writes for the first look (default 2)")
    ap.add_argument("--settle-late", type=float, default=10.0,
                    help="seconds after the writes for the look the table reports (default 10)")
    ap.add_argument("--start-timeout", type=float, default=60.0, help="seconds a cluster may take to accept a write")
    ap.add_argument("--tmp-root", default=os.environ.get("TMPDIR") or "/tmp",
                    help="where the data dirs go (a real disk, not tmpfs; default $TMPDIR or /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs")
    ap.add_argument("--json", default=None, help="JSON output (default ./cluster-bench-<date>.json)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 10000 writes to 1000 keys, 3000 catch-up writes, 1 catch-up rep, "
                         "shorter settles (a minute or two in all)")
    a = ap.parse_args()
    if a.quick:
        a.writes, a.keys, a.catchup_writes = min(a.writes, 10000), min(a.keys, 1000), min(a.catchup_writes, 3000)
        a.reps, a.catchup_reps = 1, min(a.catchup_reps, 1)
        a.settle, a.settle_late = 1.0, 3.0
    a.phases = [p for p in a.phases.split(",") if p]
    bad = [p for p in a.phases if p not in PHASES]
    if bad:
        sys.exit(f"cluster_bench: unknown phase(s) {bad}; known: {','.join(PHASES)}")
    if a.writes < 2 or a.catchup_writes < 2 or a.keys < 1 or a.conns < 1:
        sys.exit("cluster_bench: --writes/--catchup-writes must be >= 2, --keys and --conns >= 1")
    here = os.path.dirname(os.path.abspath(__file__))
    specs = a.server or ["etcd=/usr/bin/etcd --enable-v2",
                         "pikv=" + os.path.join(os.path.dirname(here), "target", "release", "pikv")]
    servers, templates = [], {}
    for s in specs:
        n, cmd = parse_server(s)
        if n in templates:
            n = f"{n}{len(servers) + 1}"
        exe = shlex.split(cmd)[0]
        if not (shutil.which(exe) or os.access(exe, os.X_OK)):
            sys.exit(f"cluster_bench: server {n}: {exe} is not an executable")
        servers.append(n)
        templates[n] = cmd
    typ = fs_type(a.tmp_root)
    if typ in ("tmpfs", "ramfs"):
        sys.exit(f"cluster_bench: --tmp-root {a.tmp_root} is on {typ}; use a real disk")
    a.json = a.json or f"cluster-bench-{time.strftime('%Y%m%d-%H%M%S')}.json"

    signal.signal(signal.SIGTERM, lambda *x: sys.exit(143))
    root = tempfile.mkdtemp(prefix="cluster-bench-", dir=a.tmp_root)
    out = {"facts": {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "hostname": platform.node(),
                     "nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
                     "loadavg_start": open("/proc/loadavg").read().strip(), "tmp_root": root, "fs": typ},
           "args": vars(a), "servers": {n: {"template": templates[n], **binary_info(templates[n])} for n in servers},
           "notes": ["default flags: etcd 3.4's --snapshot-count is 100000, pikv's 10000",
                     f"catch-up: every member of both servers runs with --snapshot-count {a.catchup_snapshot_count}",
                     "etcd 3.4 opens its client listener only after publishing its attributes through Raft, "
                     "so etcd's restart -> /version already includes most of its catch-up"],
           "results": {}}
    t_begin = time.perf_counter()

    def save():
        out["summary"] = summarize(out["results"], servers, a)
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)

    failed = None
    try:
        for key, title, kind, size, extra in phase_defs(a):
            out["results"][key] = {n: [] for n in servers}
            reps = a.reps if kind == "size" else a.catchup_reps
            for rep in range(reps):
                for n in (servers if rep % 2 == 0 else list(reversed(servers))):
                    if kind == "size":
                        r = run_size(n, templates[n], size, extra, a, root, rep)
                    else:
                        r = run_catchup(n, templates[n], a, root, rep)
                    out["results"][key][n].append(r)
                    save()
    except BenchError as e:
        failed = str(e)
    finally:
        cleanup()
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    out["elapsed_s"] = time.perf_counter() - t_begin
    out["facts"]["loadavg_end"] = open("/proc/loadavg").read().strip()
    if failed:
        out["failed"] = failed
        save()
        print(f"cluster_bench: FAILED: {failed}\n(partial results in {a.json})", file=sys.stderr)
        sys.exit(1)
    save()
    print("\ncluster_bench: median [min-max] over repetitions; " + ", ".join(
        f"{n}: {out['servers'][n]['path']}" for n in servers))
    print_table(out["summary"], servers, a)
    print(f"\nelapsed {out['elapsed_s']:.0f} s; JSON: {a.json}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        cleanup()
        sys.exit(130)
