# pikv developer targets. `make help` lists them. Every target checks the tools it needs and
# stops with a message naming the missing one and the command that installs it.
SHELL := /bin/bash
CARGO ?= cargo
SHARED ?= ../shared
ETCD ?= /usr/bin/etcd
PREFIX ?= /usr/local
DESTDIR ?=
# systemd searches /usr/local/lib/systemd/system too.
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system

# Cross builds without a container engine use Debian's rustc (1.85, the project's
# rust-version) with the armhf/arm64 std: cross/install-debian-toolchain.sh installs them.
# Both RUSTC and the full cargo path are needed: PATH finds rustup's first.
DEBIAN_CARGO := /usr/bin/cargo
DEBIAN_TARGET_DIR := $(CURDIR)/target/debian
ARMV7 := armv7-unknown-linux-gnueabihf
AARCH64 := aarch64-unknown-linux-gnu
INSTALL_TOOLCHAIN := cross/install-debian-toolchain.sh (as root)
DEBIAN_ENV := RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$(DEBIAN_TARGET_DIR) \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc \
	CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER=qemu-arm-static \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
	CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static

define need
	@command -v $(1) >/dev/null 2>&1 || { echo "make: missing tool '$(1)': $(2)" >&2; exit 1; }
endef

# `cross` only when it is installed and a container engine answers (cross needs one).
define have_cross
command -v cross >/dev/null 2>&1 && { docker info >/dev/null 2>&1 || podman info >/dev/null 2>&1; }
endef

# $(1): target triple, $(2): its C cross compiler.
define cross_build
	@if $(have_cross); then \
		set -x; cross build --release --target $(1); \
	else \
		for t in /usr/bin/rustc $(DEBIAN_CARGO) $(2); do \
			command -v $$t >/dev/null 2>&1 || { echo "make: missing tool '$$t' (no cross with a container engine either): run $(INSTALL_TOOLCHAIN)" >&2; exit 1; }; \
		done; \
		ls /usr/lib/rustlib/$(1)/lib/libstd-*.rlib >/dev/null 2>&1 || { echo "make: missing the $(1) std for /usr/bin/rustc: run $(INSTALL_TOOLCHAIN)" >&2; exit 1; }; \
		set -x; $(DEBIAN_ENV) $(DEBIAN_CARGO) build --release --target $(1); \
	fi
endef

.PHONY: help build setup test unit-test armv7-test packaging-test check-systemd bench static armv7 aarch64 snap docker-context install sizes

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

build: ## cargo build --release (target/release/pikv)
	$(call need,$(CARGO),install Rust (https://rustup.rs))
	$(CARGO) build --release

setup: ## install what the tests need (etcd 3.4, etcdctl, python-etcd, curl, wrk, armv7 toolchain)
	$(call need,bash,install bash)
	bash scripts/setup.sh

test: setup unit-test armv7-test packaging-test ## every check: fmt, clippy, all tests, the same for armv7 under qemu, the snap

unit-test: ## fmt check, clippy -D warnings, every test on this machine (integration tests run against pikv)
	$(call need,$(CARGO),install Rust (https://rustup.rs))
	@$(CARGO) fmt --version >/dev/null 2>&1 || { echo "make: missing tool 'rustfmt': rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "make: missing tool 'clippy': rustup component add clippy" >&2; exit 1; }
	$(call need,etcd,run 'make setup' (Debian package etcd-server))
	$(call need,etcdctl,run 'make setup' (Debian package etcd-client))
	$(call need,curl,run 'make setup')
	$(call need,faketime,run 'make setup' (Debian package faketime))
	$(call need,python3,install python3)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

armv7-test: ## unit, simulation (300 seeds) and single-node integration tests built for armv7, run under qemu-arm-static
	$(call need,qemu-arm-static,run $(INSTALL_TOOLCHAIN) (Debian package qemu-user-static))
	$(call need,arm-linux-gnueabihf-gcc,run $(INSTALL_TOOLCHAIN))
	$(call need,$(DEBIAN_CARGO),run $(INSTALL_TOOLCHAIN))
	@ls /usr/lib/rustlib/$(ARMV7)/lib/libstd-*.rlib >/dev/null 2>&1 || { echo "make: missing the $(ARMV7) std for /usr/bin/rustc: run $(INSTALL_TOOLCHAIN)" >&2; exit 1; }
	$(CARGO) build
	$(DEBIAN_ENV) PIKV_IT_RUNNER=qemu-arm-static PIKV_IT_NATIVE_PIKV=$(CURDIR)/target/debug/pikv $(DEBIAN_CARGO) test --release --target $(ARMV7) --lib --test it
	$(DEBIAN_ENV) PIKV_SIM_SEEDS=$${PIKV_SIM_SEEDS:-300} $(DEBIAN_CARGO) test --release --target $(ARMV7) --test sim
	@bin=$(DEBIAN_TARGET_DIR)/$(ARMV7)/release/pikv; kind=$$(file -b $$bin); size=$$(stat -c %s $$bin); \
	echo "armv7 binary: $$size bytes: $$kind"; \
	case "$$kind" in *"ELF 32-bit LSB executable, ARM, EABI5"*"statically linked"*) ;; \
		*) echo "make armv7-test: $$bin is not a static 32-bit ARM EABI5 executable" >&2; exit 1;; esac; \
	[ $$size -le 3145728 ] || { echo "make armv7-test: $$bin is $$size bytes, over the 3 MB bound" >&2; exit 1; }

SNAP_ARCH ?= amd64
SNAP_BIN_amd64 := target/x86_64-unknown-linux-gnu/release/pikv
SNAP_BIN_armhf := $(DEBIAN_TARGET_DIR)/$(ARMV7)/release/pikv
SNAP_BIN_arm64 := $(DEBIAN_TARGET_DIR)/$(AARCH64)/release/pikv
SNAP_BUILD_amd64 := static
SNAP_BUILD_armhf := armv7
SNAP_BUILD_arm64 := aarch64

snap: ## the snap (SNAP_ARCH=amd64|armhf|arm64) packed from the static binary into dist/, contents checked
	$(call need,snap,apt-get install snapd (only the snap command is used; no daemon needed))
	$(call need,unsquashfs,apt-get install squashfs-tools)
	$(MAKE) $(SNAP_BUILD_$(SNAP_ARCH))
	bash scripts/build-snap.sh $(SNAP_BIN_$(SNAP_ARCH)) $(SNAP_ARCH) dist

packaging-test: snap check-systemd ## the snap's configure hook (stand-in snapctl) and daemon wrapper, the unit, make install
	$(call need,curl,run 'make setup')
	$(call need,faketime,run 'make setup' (Debian package faketime))
	bash scripts/test-snap-hook.sh $(SNAP_BIN_amd64)
	@d=$$(mktemp -d) && $(MAKE) --no-print-directory install DESTDIR=$$d PREFIX=/opt/pikv >/dev/null && \
	test -x $$d/opt/pikv/bin/pikv && test -f $$d/etc/default/pikv && \
	grep -qx 'ExecStart=/opt/pikv/bin/pikv' $$d/opt/pikv/lib/systemd/system/pikv.service && \
	echo "make install: binary, unit (ExecStart=/opt/pikv/bin/pikv) and /etc/default/pikv in DESTDIR" && rm -rf $$d

check-systemd: build ## systemd-analyze verify on systemd/pikv.service, failing on any warning
	$(call need,systemd-analyze,apt-get install systemd)
	bash scripts/check-systemd.sh

install: build ## binary to $(PREFIX)/bin, systemd unit, /etc/default/pikv (an existing one is kept)
	install -D -m 755 target/release/pikv $(DESTDIR)$(PREFIX)/bin/pikv
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed 's|^ExecStart=/usr/local/bin/pikv$$|ExecStart=$(PREFIX)/bin/pikv|' systemd/pikv.service > $(DESTDIR)$(SYSTEMDUNITDIR)/pikv.service
	chmod 644 $(DESTDIR)$(SYSTEMDUNITDIR)/pikv.service
	@if [ -e $(DESTDIR)/etc/default/pikv ]; then echo "make install: keeping $(DESTDIR)/etc/default/pikv"; \
	else install -D -m 644 systemd/pikv.default $(DESTDIR)/etc/default/pikv; fi

docker-context: static armv7 aarch64 ## stage the static binaries for the Dockerfile (dist/docker/<arch>/pikv)
	install -D -m 0755 $(SNAP_BIN_amd64) dist/docker/amd64/pikv
	install -D -m 0755 $(SNAP_BIN_armhf) dist/docker/armv7/pikv
	install -D -m 0755 $(SNAP_BIN_arm64) dist/docker/arm64/pikv
	@echo "now: docker buildx build --platform linux/amd64,linux/arm/v7,linux/arm64 -t pikv ."

static: ## fully static x86_64 binary (target/x86_64-unknown-linux-gnu/release/pikv)
	$(call need,$(CARGO),install Rust (https://rustup.rs))
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target x86_64-unknown-linux-gnu
	@file target/x86_64-unknown-linux-gnu/release/pikv 2>/dev/null || true

armv7: ## static armv7 binary: cross when it and a container engine are there, else Debian's toolchain
	$(call cross_build,$(ARMV7),arm-linux-gnueabihf-gcc)
	@file target/$(ARMV7)/release/pikv $(DEBIAN_TARGET_DIR)/$(ARMV7)/release/pikv 2>/dev/null | grep -v 'No such' || true

aarch64: ## static aarch64 binary (64-bit Pi OS), same two paths as armv7
	$(call cross_build,$(AARCH64),aarch64-linux-gnu-gcc)
	@file target/$(AARCH64)/release/pikv $(DEBIAN_TARGET_DIR)/$(AARCH64)/release/pikv 2>/dev/null | grep -v 'No such' || true

sizes: static armv7 aarch64 ## build every binary and print its stripped size
	@for f in target/x86_64-unknown-linux-gnu/release/pikv $(DEBIAN_TARGET_DIR)/$(ARMV7)/release/pikv \
		$(DEBIAN_TARGET_DIR)/$(AARCH64)/release/pikv target/$(ARMV7)/release/pikv target/$(AARCH64)/release/pikv; do \
		[ -f $$f ] && printf '%10d  %s\n' $$(stat -c %s $$f) $$f; \
	done; true

# CLUSTER_BENCH_ARGS: extra flags for bench/cluster_bench.py (e.g. --quick, --catchup-reps 5).
CLUSTER_BENCH_ARGS ?=

bench: build ## side-by-side benchmarks of pikv and etcd 3.4 (../shared/bench, then bench/cluster_bench.py)
	$(call need,python3,install python3)
	$(call need,wrk,run 'make setup' (Debian package wrk))
	@test -f $(SHARED)/bench/v2bench.py || { echo "make: missing $(SHARED)/bench/v2bench.py (set SHARED=...)" >&2; exit 1; }
	@if [ -x $(ETCD) ]; then \
		set -x; python3 $(SHARED)/bench/v2bench.py --server etcd='$(ETCD) --enable-v2' \
			--server pikv=$(CURDIR)/target/release/pikv --sizes 1,3 --json bench-pikv-vs-etcd.json && \
		python3 bench/cluster_bench.py --server etcd='$(ETCD) --enable-v2' \
			--server pikv=$(CURDIR)/target/release/pikv --json bench-cluster.json $(CLUSTER_BENCH_ARGS); \
	else \
		echo "make bench: $(ETCD) not installed; measuring pikv alone (run 'make setup' for the etcd comparison)" >&2; \
		set -x; python3 $(SHARED)/bench/v2bench.py --server pikv=$(CURDIR)/target/release/pikv \
			--sizes 1,3 --json bench-pikv-vs-etcd.json && \
		python3 bench/cluster_bench.py --server pikv=$(CURDIR)/target/release/pikv \
			--json bench-cluster.json $(CLUSTER_BENCH_ARGS); \
	fi
