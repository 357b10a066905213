#!/usr/bin/env bash
# Checks systemd/pikv.service with `systemd-analyze verify` and fails on any complaint about
# it: systemd only warns about unknown keys or bad values (and then ignores them), so a
# clean exit status alone proves little.
#
# verify wants the ExecStart binary to exist, and the unit names the installed path
# (/usr/local/bin/pikv). The script therefore verifies a copy, in a temp dir, whose
# ExecStart is the freshly built target/release/pikv (built when missing; PIKV_BIN picks
# another binary). It needs no running systemd: it works in containers and CI machines
# where systemd is not PID 1.
#
# Usage: scripts/check-systemd.sh        (SYSTEMD_ANALYZE=... to use another systemd-analyze)
set -euo pipefail
cd "$(dirname "$0")/.."

me=check-systemd.sh
unit=systemd/pikv.service
installed_exec=/usr/local/bin/pikv
analyze=${SYSTEMD_ANALYZE:-systemd-analyze}

if ! command -v "$analyze" >/dev/null 2>&1; then
    echo "$me: missing tool 'systemd-analyze': install it: apt-get install systemd" >&2
    exit 1
fi
[ -f "$unit" ] || { echo "$me: $unit not found" >&2; exit 1; }
if [ "$(grep -c "^ExecStart=$installed_exec\$" "$unit")" != 1 ]; then
    echo "$me: $unit must have exactly one line 'ExecStart=$installed_exec' (the line this script rewrites)" >&2
    exit 1
fi

bin=${PIKV_BIN:-$PWD/target/release/pikv}
if [ ! -x "$bin" ] && [ -z "${PIKV_BIN:-}" ]; then
    echo "$me: $bin not built yet: cargo build --release" >&2
    ${CARGO:-cargo} build --release
fi
[ -x "$bin" ] || { echo "$me: $bin is not an executable file" >&2; exit 1; }
case "$bin" in /*) ;; *) bin=$PWD/$bin ;; esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Same file name: verify takes the unit's name from it.
sed "s|^ExecStart=$installed_exec\$|ExecStart=$bin|" "$unit" >"$tmp/pikv.service"

opts=(--man=no)
# systemd 250+ can keep problems of other units (multi-user.target, ...) out of the verdict.
if "$analyze" --help 2>/dev/null | grep -q -- '--recursive-errors'; then
    opts+=(--recursive-errors=no)
fi

echo "$me: $analyze verify ${opts[*]} $unit (ExecStart=$bin)"
set +e
out=$(SYSTEMD_LOG_COLOR=0 "$analyze" verify "${opts[@]}" "$tmp/pikv.service" 2>&1)
rc=$?
set -e
# systemd names the unit ("pikv.service: ...") or its file ("/tmp/.../pikv.service:33: ...").
about_unit=$(grep -e 'pikv' <<<"$out" || true)
others=$(grep -v -e 'pikv' <<<"$out" || true)
if [ -n "$others" ]; then
    echo "$me: systemd-analyze said, about other units (not counted):"
    sed 's/^/    /' <<<"$others"
fi
if [ "$rc" != 0 ] || [ -n "$about_unit" ]; then
    echo "$me: FAILED: $unit (exit status $rc):" >&2
    sed "s|$tmp/||g; s/^/    /" <<<"${about_unit:-$out}" >&2
    exit 1
fi

# The exposure score is informational (systemd 250+ can score a unit file offline).
if "$analyze" security --help 2>/dev/null | grep -q -- '--offline'; then
    score=$("$analyze" security --offline=yes "$tmp/pikv.service" 2>/dev/null | grep 'Overall exposure' || true)
    [ -n "$score" ] && echo "$me: $score"
fi
echo "$me: OK: $unit passes systemd-analyze verify with no warnings"
