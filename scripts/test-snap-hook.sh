#!/usr/bin/env bash
# Tests snap/hooks/configure and snap/bin/pikv-daemon with a stand-in `snapctl` on PATH
# (settings in a temp dir, `services`/`restart` recorded) and the real pikv binary.
#   scripts/test-snap-hook.sh [pikv binary, default target/release/pikv]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$(readlink -f "${1:-$here/target/release/pikv}")
[ -x "$bin" ] || { echo "test-snap-hook.sh: no pikv binary at $bin (cargo build --release)" >&2; exit 1; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
export SNAP=$t/snap SNAP_COMMON=$t/common
mkdir -p "$SNAP/bin" "$SNAP_COMMON" "$t/settings" "$t/path"
ln -s "$bin" "$SNAP/bin/pikv"
cat >"$t/path/snapctl" <<STANDIN
#!/bin/sh
case "\$1" in
    get) cat "$t/settings/\$2" 2>/dev/null || true ;;
    services) echo "Service    Startup  Current  Notes"; echo "pikv.pikv  enabled  \$(cat $t/state)  -" ;;
    restart) echo "\$2" >>"$t/restarts" ;;
    *) echo "snapctl stand-in: unexpected \$*" >&2; exit 1 ;;
esac
STANDIN
chmod +x "$t/path/snapctl"
export PATH="$t/path:$PATH"
fail() { echo "test-snap-hook.sh: FAIL: $*" >&2; exit 1; }
set_key() { printf '%s' "$2" >"$t/settings/$1"; }
hook() { sh "$here/snap/hooks/configure"; }

# 1. Valid settings, service not running yet: env file written, no restart.
echo inactive >"$t/state"
set_key name node-1
set_key initial-cluster "node-1=http://10.10.10.11:2380"
set_key initial-advertise-peer-urls "http://10.10.10.11:2380"
set_key listen-client-urls "http://0.0.0.0:2379"
set_key advertise-client-urls "http://10.10.10.11:2379"
set_key initial-cluster-token "it's a token"
hook || fail "valid settings refused"
env_file=$SNAP_COMMON/pikv.env
grep -qx "export ETCD_NAME='node-1'" "$env_file" || fail "ETCD_NAME not written: $(cat "$env_file")"
grep -qx "export ETCD_INITIAL_CLUSTER='node-1=http://10.10.10.11:2380'" "$env_file" || fail "ETCD_INITIAL_CLUSTER"
[ "$(. "$env_file"; printf %s "$ETCD_INITIAL_CLUSTER_TOKEN")" = "it's a token" ] || fail "quote not kept"
[ ! -f "$t/restarts" ] || fail "restarted a service that was not running"
[ "$(stat -c %a "$env_file")" = 600 ] || fail "env file mode $(stat -c %a "$env_file")"

# 2. A bad value: refused with pikv's message, old settings kept, no restart.
echo active >"$t/state"
cp "$env_file" "$t/before"
set_key initial-cluster-state bogus
if out=$(hook 2>&1); then fail "bogus initial-cluster-state accepted"; fi
grep -q 'settings refused, nothing changed' <<<"$out" || fail "message: $out"
grep -q 'bogus' <<<"$out" || fail "message does not name the value: $out"
cmp -s "$env_file" "$t/before" || fail "refused settings changed the env file"
[ ! -f "$SNAP_COMMON/pikv.env.new" ] || fail "left pikv.env.new behind"
[ ! -f "$t/restarts" ] || fail "restarted after refused settings"
rm "$t/settings/initial-cluster-state"

# 3. A name not in the initial cluster is refused too (pikv's own check).
set_key name node-9
if out=$(hook 2>&1); then fail "name outside initial-cluster accepted"; fi
grep -q 'node-9' <<<"$out" || fail "message: $out"
set_key name node-1

# 4. A change while running: written and the service restarted once.
set_key heartbeat-interval 200
hook || fail "heartbeat-interval=200 refused"
grep -qx "export ETCD_HEARTBEAT_INTERVAL='200'" "$env_file" || fail "ETCD_HEARTBEAT_INTERVAL"
[ "$(cat "$t/restarts")" = pikv.pikv ] || fail "restart: $(cat "$t/restarts" 2>/dev/null)"

# 5. The same settings again: nothing to do, no second restart.
hook || fail "unchanged settings refused"
[ "$(wc -l <"$t/restarts")" = 1 ] || fail "restarted for unchanged settings"

# 6. The daemon wrapper: data in $SNAP_COMMON, settings applied (serves on a loopback port).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$env_file" <<ENV
export ETCD_NAME='node-1'
export ETCD_LISTEN_CLIENT_URLS='http://127.0.0.1:$port'
export ETCD_ADVERTISE_CLIENT_URLS='http://127.0.0.1:$port'
ENV
sh "$here/snap/bin/pikv-daemon" 2>"$t/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$t"' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf -XPUT "http://127.0.0.1:$port/v2/keys/snap" -d value=ok >/dev/null || fail "daemon does not serve: $(cat "$t/daemon.log")"
[ -d "$SNAP_COMMON/node-1.pikv/member" ] || fail "data dir not in \$SNAP_COMMON/node-1.pikv"
kill "$pid"; wait "$pid" || true
echo "test-snap-hook.sh: ok (6 cases)"
