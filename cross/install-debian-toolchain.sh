#!/bin/sh
# Installs, on a Debian or Ubuntu machine without a container engine, what `make armv7`,
# `make aarch64` and `make armv7-test` need: Debian's rustc/cargo (the "-web" packages, 1.85
# in bookworm), the armhf and arm64 std of the same version, the GNU cross linkers and
# qemu-user-static. A no-op when everything is there. Run as root (or with sudo).
#
#   PIKV_RUST_WEB_VERSION=1.85.0+dfsg3-1~deb12u3 cross/install-debian-toolchain.sh
#
# pins the version. By default it is 1.85 (the project's rust-version, so that these builds
# also prove the code still builds with it) when the archive still has it, else the archive's
# candidate; the armhf/arm64 std of exactly that version comes with it.
set -eu

have_std() {
    [ -f "/usr/lib/rustlib/$1/lib/libstd-"*.rlib ] 2>/dev/null || ls /usr/lib/rustlib/"$1"/lib/libstd-*.rlib >/dev/null 2>&1
}

want=${PIKV_RUST_WEB_VERSION:-1.85}
need=0
/usr/bin/rustc --version 2>/dev/null | grep -qF "rustc $want" || need=1
for tool in /usr/bin/rustc /usr/bin/cargo arm-linux-gnueabihf-gcc aarch64-linux-gnu-gcc qemu-arm-static qemu-aarch64-static; do
    command -v "$tool" >/dev/null 2>&1 || need=1
done
have_std armv7-unknown-linux-gnueabihf || need=1
have_std aarch64-unknown-linux-gnu || need=1
if [ "$need" = 0 ]; then
    echo "cross toolchain: already installed ($(/usr/bin/rustc --version))"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "cross/install-debian-toolchain.sh: needs apt-get (Debian or Ubuntu); elsewhere use" >&2
    echo "  cross build --release --target armv7-unknown-linux-gnueabihf   (Docker or Podman)" >&2
    exit 1
fi

$SUDO dpkg --add-architecture armhf
$SUDO dpkg --add-architecture arm64
# A mirror caught mid-sync fails one index ("File has unexpected size"); a retry a little
# later gets a consistent one. After the last try go on with what was fetched: the install
# below names any package that is really missing.
for try in 1 2 3 4; do
    $SUDO apt-get update -qq && break
    if [ "$try" = 4 ]; then
        echo "cross toolchain: apt-get update failed 4 times; going on with the indexes it got" >&2
    else
        echo "cross toolchain: apt-get update failed (try $try of 4); retrying in $((try * 10)) s" >&2
        sleep $((try * 10))
    fi
done
MSRV_VERSION=1.85.0+dfsg3-1~deb12u3
if [ -n "${PIKV_RUST_WEB_VERSION:-}" ]; then
    V=$PIKV_RUST_WEB_VERSION
elif apt-cache madison rustc-web | grep -qF "$MSRV_VERSION"; then
    V=$MSRV_VERSION
else
    V=$(apt-cache policy rustc-web | sed -n 's/ *Candidate: //p')
fi
if [ -z "$V" ] || [ "$V" = "(none)" ]; then
    echo "cross/install-debian-toolchain.sh: no rustc-web package in this archive" >&2
    echo "  (Debian bookworm has it; on Ubuntu use rustup and cross instead)" >&2
    exit 1
fi
echo "cross toolchain: Debian rustc-web $V"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades --no-install-recommends \
    "rustc-web=$V" "cargo-web=$V" "libstd-rust-web-dev=$V" \
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
    gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
    qemu-user-static binutils-arm-linux-gnueabihf file >/dev/null

# The target std comes from the foreign-architecture package of the same version, unpacked
# over / (installing it through dpkg would pull a foreign rustc too).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for arch in armhf arm64; do
    # (as _apt, the download user, can write there)
    chmod 777 "$tmp"
    (cd "$tmp" && apt-get download -qq "libstd-rust-web-dev:$arch=$V")
done
$SUDO rm -rf /usr/lib/rustlib/armv7-unknown-linux-gnueabihf /usr/lib/rustlib/aarch64-unknown-linux-gnu
for deb in "$tmp"/libstd-rust-web-dev_*_armhf.deb "$tmp"/libstd-rust-web-dev_*_arm64.deb; do
    $SUDO dpkg-deb -x "$deb" /
done
have_std armv7-unknown-linux-gnueabihf && have_std aarch64-unknown-linux-gnu || {
    echo "cross/install-debian-toolchain.sh: the armhf/arm64 std did not land in /usr/lib/rustlib" >&2
    exit 1
}
echo "cross toolchain: ready ($(/usr/bin/rustc --version))"
