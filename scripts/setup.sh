#!/usr/bin/env bash
# Installs what pikv's tests need: etcd 3.4 (the reference server), etcdctl, python-etcd, wrk,
# libfaketime (the clock-jump tests), and the armv7 cross toolchain with qemu
# (cross/install-debian-toolchain.sh).
# A no-op when everything is already there. Needs root (or sudo) on Debian/Ubuntu for apt.
set -euo pipefail

need_apt=()
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
# `make snap`: the snap command (snap pack) and unsquashfs to check what it packed.
command -v snap >/dev/null 2>&1 || need_apt+=(snapd)
command -v unsquashfs >/dev/null 2>&1 || need_apt+=(squashfs-tools)
command -v file >/dev/null 2>&1 || need_apt+=(file)
# tests/it/clock_jump.rs: libfaketime preloaded into pikv to jump its wall clock.
command -v faketime >/dev/null 2>&1 || need_apt+=(faketime)
# `make check-systemd`: systemd-analyze verify (systemd need not be running).
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]} with apt-get" >&2
    # A mirror caught mid-sync fails one index; retry, then go on with what was fetched (the
    # install names any package that is really missing).
    for try in 1 2 3 4; do
        $SUDO apt-get update -qq && break
        if [ "$try" = 4 ]; then
            echo "setup: apt-get update failed 4 times; going on with the indexes it got" >&2
        else
            echo "setup: apt-get update failed (try $try of 4); retrying in $((try * 10)) s" >&2
            sleep $((try * 10))
        fi
    done
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Debian's etcd-server package starts an etcd service; stop it so that it does not hold
# port 2379 (the tests pick free ports, but a user's first `pikv` run wants 2379).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
    $SUDO systemctl stop etcd || true
    $SUDO systemctl disable etcd >/dev/null 2>&1 || true
fi

if ! python3 -c 'import etcd' >/dev/null 2>&1; then
    echo "setup: installing python-etcd with pip" >&2
    python3 -m pip install -q python-etcd
fi

# rustfmt and clippy for `make test` (fmt --check, clippy -D warnings).
if command -v rustup >/dev/null 2>&1; then
    cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
    cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
fi

# The armv7/aarch64 toolchain for `make armv7-test` (Debian's rustc 1.85, cross linkers,
# qemu-user-static); a no-op when installed.
sh "$(dirname "$0")/../cross/install-debian-toolchain.sh"

# Verify, naming whatever is still missing.
missing=()
for tool in etcd etcdctl curl wrk python3 cargo snap unsquashfs file systemd-analyze faketime; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import etcd' >/dev/null 2>&1 || missing+=("python-etcd (pip)")
cargo fmt --version >/dev/null 2>&1 || missing+=("rustfmt")
cargo clippy --version >/dev/null 2>&1 || missing+=("clippy")
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: still missing: ${missing[*]}" >&2
    exit 1
fi
case "$(etcd --version 2>/dev/null | head -1)" in
    *"Version: 3.4."*) ;;
    *) echo "setup: warning: the reference server should be etcd 3.4; found: $(etcd --version 2>/dev/null | head -1)" >&2 ;;
esac
