#!/usr/bin/env bash
# Packs pikv's snap from a static binary with `snap pack` (Debian's snapd package provides the
# command; no snapd daemon is needed), then checks what it packed: the file list
# (unsquashfs -l) and that meta/snap.yaml inside is the one snap pack validated.
#   scripts/build-snap.sh <static pikv binary> <amd64|armhf|arm64> <output dir>
set -euo pipefail
bin=${1:?usage: build-snap.sh <static pikv binary> <arch> <output dir>}
arch=${2:?arch: amd64, armhf or arm64}
out=${3:?output dir}
here=$(cd "$(dirname "$0")/.." && pwd)
for tool in snap unsquashfs file; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "build-snap.sh: missing tool '$tool': apt-get install snapd squashfs-tools file" >&2
        exit 1
    }
done
case "$(file -b "$bin")" in
    *"statically linked"*|*"static-pie linked"*) ;;
    *) echo "build-snap.sh: $bin is not a static binary (make static / make armv7)" >&2; exit 1 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -1)

prime=$(mktemp -d)
trap 'rm -rf "$prime"' EXIT
chmod 0755 "$prime"
install -D -m 0755 "$bin" "$prime/bin/pikv"
install -D -m 0755 "$here/snap/bin/pikv-daemon" "$prime/bin/pikv-daemon"
install -D -m 0755 "$here/snap/hooks/configure" "$prime/meta/hooks/configure"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" "$here/snap/meta/snap.yaml" >"$prime/meta/snap.yaml"

mkdir -p "$out"
snap pack --check-skeleton "$prime"
snap_file=$(snap pack "$prime" "$out" | sed -n 's/^built: //p')
[ -f "$snap_file" ] || { echo "build-snap.sh: snap pack produced no file" >&2; exit 1; }

listing=$(unsquashfs -l "$snap_file")
for f in bin/pikv bin/pikv-daemon meta/snap.yaml meta/hooks/configure; do
    grep -q "squashfs-root/$f\$" <<<"$listing" || { echo "build-snap.sh: $snap_file lacks $f" >&2; exit 1; }
done
unsquashfs -cat "$snap_file" meta/snap.yaml | cmp -s - "$prime/meta/snap.yaml" || {
    echo "build-snap.sh: meta/snap.yaml in $snap_file is not the one packed" >&2
    exit 1
}
for want in "name: pikv" "version: '$version'" "confinement: strict" "architectures: \[$arch\]" \
    "daemon: notify" "plugs: \[network, network-bind\]" "base: core22"; do
    unsquashfs -cat "$snap_file" meta/snap.yaml | grep -q "$want" || {
        echo "build-snap.sh: meta/snap.yaml lacks '$want'" >&2
        exit 1
    }
done
echo "$snap_file ($(stat -c %s "$snap_file") bytes): $(grep -c squashfs-root/ <<<"$listing") entries, meta/snap.yaml checked"
