# pikv developer targets. `make help` lists them. Every target checks the tools it needs and
# stops with a message naming the missing one.
SHELL := /bin/bash
CARGO ?= cargo
SHARED ?= ../shared
ETCD ?= /usr/bin/etcd

define need
	@command -v $(1) >/dev/null 2>&1 || { echo "make: missing tool '$(1)': $(2)" >&2; exit 1; }
endef

.PHONY: help build setup test bench

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 10

build: ## cargo build --release
	$(call need,$(CARGO),install Rust (https://rustup.rs))
	$(CARGO) build --release

setup: ## install what the tests need (etcd 3.4, etcdctl, python-etcd, curl, wrk)
	$(call need,bash,install bash)
	bash scripts/setup.sh

test: setup ## fmt check, clippy -D warnings, every test (integration tests run against pikv)
	$(call need,$(CARGO),install Rust (https://rustup.rs))
	@$(CARGO) fmt --version >/dev/null 2>&1 || { echo "make: missing tool 'rustfmt': rustup component add rustfmt" >&2; exit 1; }
	@$(CARGO) clippy --version >/dev/null 2>&1 || { echo "make: missing tool 'clippy': rustup component add clippy" >&2; exit 1; }
	$(call need,etcd,run 'make setup' (Debian package etcd-server))
	$(call need,etcdctl,run 'make setup' (Debian package etcd-client))
	$(call need,curl,run 'make setup')
	$(call need,python3,install python3)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets

bench: build ## side-by-side benchmark of pikv and etcd 3.4 (../shared/bench)
	$(call need,python3,install python3)
	$(call need,wrk,run 'make setup' (Debian package wrk))
	@test -f $(SHARED)/bench/v2bench.py || { echo "make: missing $(SHARED)/bench/v2bench.py (set SHARED=...)" >&2; exit 1; }
	@if [ -x $(ETCD) ]; then \
		set -x; python3 $(SHARED)/bench/v2bench.py --server etcd='$(ETCD) --enable-v2' \
			--server pikv=$(CURDIR)/target/release/pikv --sizes 1 --json bench-pikv-vs-etcd.json; \
	else \
		echo "make bench: $(ETCD) not installed; measuring pikv alone (run 'make setup' for the etcd comparison)" >&2; \
		set -x; python3 $(SHARED)/bench/v2bench.py --server pikv=$(CURDIR)/target/release/pikv \
			--sizes 1 --json bench-pikv-vs-etcd.json; \
	fi
