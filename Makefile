# erlnode: build, test (Rust + Elixir interop) and demo.
# Works from a fresh clone as root with only Rust installed: `make test`
# installs Erlang/OTP and Elixir from Debian's packages when missing.

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
ROOT         := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CARGO        ?= cargo
APT_PACKAGES := erlang-nox erlang-dev elixir
TARGET_DIR   := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)
DEBUG_BIN    := $(TARGET_DIR)/debug/erlnode
RELEASE_BIN  := $(TARGET_DIR)/release/erlnode

# Mix without Hex or the network: no deps, a private MIX_HOME.
MIX_OFFLINE := HEX_OFFLINE=1 MIX_HOME=$(ROOT)/erlang/_build/mix_home \
               HEX_HOME=$(ROOT)/erlang/_build/hex_home
MIX_VARS    := MIX_ENV=test $(MIX_OFFLINE)
# The demo loads the library without the test support modules (MIX_ENV=dev).
DEMO_EBIN   := $(ROOT)/erlang/_build/dev/lib/erlnode_ex/ebin

# The OTP matrix: besides the host's release (OTP 25 on bookworm), `make
# test` runs the interop suites against these, each in a Debian root made
# once per machine by scripts/otp-root.sh (27: trixie). `make test-otp
# OTP=29` runs them against sid's OTP 29 alone.
MATRIX_OTP  ?= 27
OTP         ?= 27

.PHONY: all deps build test test-rust test-elixir test-otp test-pubsub test-processhub test-horde otp-stage elixir-lib demo demo-crash demo-lib demo-connect examples bench clean

all: build

## deps: install Erlang/OTP + Elixir (apt, as root) when erl/epmd/elixir/mix is missing
deps:
	@missing=""; \
	for tool in erl epmd elixir mix; do \
	  command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: Erlang/OTP and Elixir are installed"; exit 0; fi; \
	echo "deps: missing:$$missing"; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "deps: not root; install them with:"; \
	  echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PACKAGES)"; \
	  exit 1; \
	fi; \
	apt-get update; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y $(APT_PACKAGES); \
	for tool in erl epmd elixir mix; do \
	  command -v $$tool >/dev/null 2>&1 || { echo "deps: $$tool still missing after install" >&2; exit 1; }; \
	done

## build: release binaries
build:
	$(CARGO) build --release --bins

## test: Rust tests (unit, bins, interop, doc) and the Elixir (ExUnit) suite
## on the host's OTP, then both interop suites on each release of MATRIX_OTP
test: deps
	@status=0; \
	for r in $(MATRIX_OTP); do $(MAKE) --no-print-directory otp-stage OTP=$$r || status=1; done; \
	$(MAKE) --no-print-directory test-rust || status=1; \
	$(MAKE) --no-print-directory test-processhub || status=1; \
	$(MAKE) --no-print-directory test-horde || status=1; \
	$(MAKE) --no-print-directory test-elixir || status=1; \
	$(MAKE) --no-print-directory examples || status=1; \
	for r in $(MATRIX_OTP); do $(MAKE) --no-print-directory test-otp OTP=$$r || status=1; done; \
	if [ $$status != 0 ]; then echo "make test: FAILED (see above)"; fi; \
	exit $$status

# `cargo test` without --all-targets: benches (harness = false) are not tests.
# The interop tests load the compiled Elixir library (erlang/_build/test).
test-rust: elixir-lib
	$(CARGO) build --bins
	$(CARGO) test --no-fail-fast

elixir-lib:
	cd erlang && env $(MIX_VARS) mix compile

## test-pubsub: the Phoenix.PubSub interop tests against the real library;
## PHOENIX_PUBSUB_LIBS=DIR names a folder of its compiled ebins (not shipped)
test-pubsub: deps
	@[ -n "$(PHOENIX_PUBSUB_LIBS)" ] || { echo "test-pubsub: set PHOENIX_PUBSUB_LIBS=DIR (phoenix_pubsub ebins)"; exit 2; }
	PHOENIX_PUBSUB_LIBS=$(abspath $(PHOENIX_PUBSUB_LIBS)) $(CARGO) test --test interop pubsub:: -- --include-ignored --nocapture

# OTP reads ERL_EPMD_PORT only at boot, so the test VM gets a free port here;
# every erlnode the tests start serves its embedded EPMD on it.
test-elixir:
	[ -x "$(DEBUG_BIN)" ] || $(CARGO) build --bins
	cd erlang && port=$$($(ROOT)/scripts/free-port) && \
	  env $(MIX_VARS) ERL_EPMD_PORT=$$port ERLNODE_BIN=$(DEBUG_BIN) mix test

## test-processhub: the interop tests against the real ProcessHub
## (0.4.1-beta): PROCESSHUB_LIBS=DIR names its compiled applications,
## DIR/<app>/ebin for process_hub, blockade, hash_ring (and elector), built
## for the host's OTP; they are not built here (GPL-3.0, on no registry).
## Unset: says so and runs nothing. The recorded-trace conformance test runs
## in `make test` always. PROCESSHUB_LIBS_OTP27=DIR (the same applications
## built for OTP 27) adds the OTP 27 placement test, in the OTP 27 root.
## One scenario at a time: each runs two to four BEAM nodes.
test-processhub:
	@if [ -z "$(PROCESSHUB_LIBS)" ]; then \
	  echo "ProcessHub tests not run: PROCESSHUB_LIBS is unset"; exit 0; \
	fi; \
	libs="$(abspath $(PROCESSHUB_LIBS))"; \
	[ -f "$$libs/process_hub/ebin/process_hub.app" ] || \
	  { echo "test-processhub: $$libs/process_hub/ebin/process_hub.app not found (PROCESSHUB_LIBS=DIR with DIR/<app>/ebin)" >&2; exit 1; }; \
	echo "== ProcessHub tests with PROCESSHUB_LIBS=$$libs"; \
	PROCESSHUB_LIBS="$$libs" PROCESSHUB_LIBS_OTP27="$(if $(PROCESSHUB_LIBS_OTP27),$(abspath $(PROCESSHUB_LIBS_OTP27)))" \
	  $(CARGO) test --test interop processhub:: -- --include-ignored --nocapture --test-threads=1

## test-horde: the interop tests against the real Horde 0.10.0
## (DeltaCrdt 0.6.4, merkle_map 0.2.2, libring 1.7.0, telemetry,
## telemetry_poller): HORDE_LIBS=DIR names their compiled applications,
## DIR/<app>/ebin, built for the host's OTP; they are not built here (on no
## registry these machines reach). Unset: says so and runs nothing. The
## recorded-trace conformance tests (tests/horde_conformance.rs for the
## CRDT, tests/horde_supervisor_conformance.rs for the DynamicSupervisor
## member) run in `make test` always. One test at a time: each runs two
## to four BEAM nodes and up to two erlnode nodes.
test-horde:
	@if [ -z "$(HORDE_LIBS)" ]; then \
	  echo "Horde tests not run: HORDE_LIBS is unset"; exit 0; \
	fi; \
	libs="$(abspath $(HORDE_LIBS))"; \
	[ -f "$$libs/horde/ebin/horde.app" ] || \
	  { echo "test-horde: $$libs/horde/ebin/horde.app not found (HORDE_LIBS=DIR with DIR/<app>/ebin)" >&2; exit 1; }; \
	echo "== Horde tests with HORDE_LIBS=$$libs"; \
	HORDE_LIBS="$$libs" $(CARGO) test --test interop horde:: -- --include-ignored --nocapture --test-threads=1

## test-otp: the interop suites (Rust interop tests, ExUnit) against OTP
## $(OTP) alone, its nodes in a Debian root (made when missing)
test-otp: deps otp-stage
	@root=$$($(ROOT)/scripts/otp-root.sh $(OTP)); \
	stage=$$($(ROOT)/scripts/otp-stage.sh --path $$root); \
	inside=$${stage#$$root}; status=0; \
	echo "== interop tests (Rust) against OTP $(OTP) in $$root"; \
	ERLNODE_TEST_OTP_ROOT=$$root $(CARGO) test --test interop --no-fail-fast || status=1; \
	echo "== ExUnit suite against OTP $(OTP) in $$root"; \
	port=$$($(ROOT)/scripts/free-port); \
	chroot $$root env -i PATH=/usr/bin:/bin HOME=/tmp LANG=C.UTF-8 $(subst $(ROOT),$$inside,$(MIX_VARS)) \
	  ERL_EPMD_PORT=$$port ERLNODE_BIN=$$inside/bin/erlnode \
	  sh -c "cd $$inside/erlang && mix test" || status=1; \
	if [ $$status != 0 ]; then echo "make test-otp OTP=$(OTP): FAILED (see above)"; fi; \
	exit $$status

# Makes the OTP $(OTP) root when missing, copies erlang/, the vectors and
# the debug binary into it and compiles erlang/ with that root's Elixir.
otp-stage: deps
	$(CARGO) build --bins
	root=$$($(ROOT)/scripts/otp-root.sh $(OTP)) && $(ROOT)/scripts/otp-stage.sh $$root $(DEBUG_BIN) >/dev/null

## demo: a live account hops Rust -> Elixir -> Rust -> Rust under traffic from
## several senders (two erlnode nodes + one Elixir node on loopback, embedded
## EPMD); prints each hop's latency and a verdict: nothing lost, nothing
## duplicated, order per sender kept
demo: deps build demo-lib
	ERLNODE_BIN=$(RELEASE_BIN) ERLNODE_EX_EBIN=$(DEMO_EBIN) $(ROOT)/scripts/migration_demo.sh

## demo-crash: three erlnode nodes and one Elixir node, accounts with one
## synchronous replica under call traffic; two nodes SIGKILLed mid-run;
## prints a verdict comparing every acknowledged deposit with the final
## states (DEMO_REPLICA_MODE=async reports the loss async allows)
demo-crash: deps build demo-lib
	ERLNODE_BIN=$(RELEASE_BIN) ERLNODE_EX_EBIN=$(DEMO_EBIN) $(ROOT)/scripts/crash_demo.sh

demo-lib: deps
	cd erlang && env MIX_ENV=dev $(MIX_OFFLINE) mix compile

## examples: examples/counter.rs and examples/cart.rs, each against its
## Elixir twin (erlang/examples/), moving a process Rust -> Elixir -> Rust
## under calls from both sides; each prints a verdict (part of `make test`)
examples: deps demo-lib
	$(CARGO) build --examples
	@status=0; \
	for ex in counter cart; do \
	  echo "== example $$ex"; \
	  ERLNODE_EX_EBIN=$(DEMO_EBIN) timeout 120 $(CARGO) run -q --example $$ex || { echo "example $$ex: FAILED"; status=1; }; \
	done; \
	exit $$status

## demo-connect: erlnode + a local Elixir node on loopback: ping, Node.list, term echo
demo-connect: deps build
	ERLNODE_BIN=$(RELEASE_BIN) $(ROOT)/scripts/demo.sh

## bench: every bench (end-to-end ones against BEAM baselines of the same
## run, then criterion's codec and phash2), ending with one table of
## ratios (scripts/bench-summary.sh); BENCH_QUICK=1: fewer rounds and
## messages, under two minutes once built. Full output: $(BENCH_LOG).
BENCH_LOG      ?= $(TARGET_DIR)/bench.log
E2E_BENCHES    := throughput calls processes handoff global tls_throughput replicas
CRITERION_ARGS := $(if $(BENCH_QUICK),--warm-up-time 0.2 --measurement-time 0.5 --noplot,--noplot)
bench: deps elixir-lib
	$(CARGO) bench --no-run
	: > $(BENCH_LOG)
	for b in $(E2E_BENCHES); do \
	  echo "== cargo bench --bench $$b" | tee -a $(BENCH_LOG); \
	  $(CARGO) bench --bench $$b 2>&1 | tee -a $(BENCH_LOG); \
	done
	for b in codec phash2; do \
	  echo "== cargo bench --bench $$b" | tee -a $(BENCH_LOG); \
	  $(CARGO) bench --bench $$b -- $(CRITERION_ARGS) 2>&1 | tee -a $(BENCH_LOG); \
	done
	$(ROOT)/scripts/bench-summary.sh $(BENCH_LOG)

clean:
	$(CARGO) clean
	rm -rf erlang/_build erlang/deps
