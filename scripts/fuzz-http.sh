#!/usr/bin/env bash
# Schema-driven HTTP fuzzing: starts a throwaway cluster (one router, one synthetic-engine
# worker, one tools worker with an `echo` command tool) on free loopback ports and runs
# schemathesis against the OpenAPI document the router serves at /openapi.json, over every
# operation it lists: API routes with the API key, admin routes with the admin key (the
# document's security schemes, mapped to keys in tests/fuzz/schemathesis.toml). Passes when no
# response is a 5xx, the router never dropped a connection, and every node is still running.
#
# Environment: FUZZ_EXAMPLES (test cases per operation and phase, default 100), FUZZ_SEED,
# FUZZ_ST_ARGS (more schemathesis options, for example `--mode positive`), ST
# (the schemathesis executable, default .venv-fuzz/bin/st), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release
st=${ST:-.venv-fuzz/bin/st}
examples=${FUZZ_EXAMPLES:-100}
seed=${FUZZ_SEED:-9}
work=$(mktemp -d)
pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup INT TERM EXIT

# A router's gossip port takes UDP (gossip) and TCP (enrollment): find one free for both.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
kinds = {"udp": [socket.SOCK_DGRAM], "tcp": [socket.SOCK_STREAM], "both": [socket.SOCK_DGRAM, socket.SOCK_STREAM]}[sys.argv[1]]
while True:
    first = socket.socket(socket.AF_INET, kinds[0])
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    try:
        for kind in kinds[1:]:
            socket.socket(socket.AF_INET, kind).bind(("127.0.0.1", port))
        print(port)
        break
    except OSError:
        continue
PY
}
# Copies of the binaries: CARGO_TARGET_DIR may be shared with other checkouts, whose builds
# replace release/auxot-* at any time.
cp "$bin/auxot-router" "$bin/auxot-worker" "$work/"
bin=$work

http=$(free_port tcp)
gossip=$(free_port both)

(umask 077 && "$bin/auxot-router" setup --data-dir "$work/data" --json > "$work/creds.json")
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/creds.json" "$1"; }
# Keys go to schemathesis through the environment (its config reads them), the join token to the
# workers through a private file: nothing secret on a command line.
AUXOT_FUZZ_API_KEY=$(field api_key)
AUXOT_FUZZ_ADMIN_KEY=$(field admin_key)
export AUXOT_FUZZ_API_KEY AUXOT_FUZZ_ADMIN_KEY
(umask 077 && field join_token > "$work/join-token")
cat > "$work/tools.toml" <<TOML
[[command]]
name = "echo"
description = "Answers with its input."
parameters = { type = "object", properties = { text = { type = "string" } } }
program = "cat"
TOML

"$bin/auxot-router" serve --data-dir "$work/data" --http-addr "127.0.0.1:$http" \
  --gossip-addr "127.0.0.1:$gossip" --quic-addr 127.0.0.1:0 --advertise-host 127.0.0.1 \
  > "$work/router.log" 2>&1 &
pids+=($!)
# A fast synthetic engine: the run is about the router's handling of requests, not generation.
"$bin/auxot-worker" join "127.0.0.1:$gossip" --token-file "$work/join-token" --engine synthetic \
  --synthetic-ttft-ms 5 --synthetic-tokens-per-sec 1000 --name synthetic --advertise-host 127.0.0.1 \
  --gossip-addr "127.0.0.1:$(free_port udp)" --quic-addr "127.0.0.1:$(free_port udp)" \
  > "$work/worker.log" 2>&1 &
pids+=($!)
"$bin/auxot-worker" join "127.0.0.1:$gossip" --token-file "$work/join-token" --tools "$work/tools.toml" \
  --name tools --advertise-host 127.0.0.1 \
  --gossip-addr "127.0.0.1:$(free_port udp)" --quic-addr "127.0.0.1:$(free_port udp)" \
  > "$work/tools.log" 2>&1 &
pids+=($!)

# Workers enroll over TCP, then become routable through gossip: wait until the router routes
# to both, and stop at once if a node exits.
alive() { for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done; }
ready=no
for _ in $(seq 1 120); do
  if ! alive; then
    echo "a node exited during start-up; its logs:" >&2
    tail -n 20 "$work/router.log" "$work/worker.log" "$work/tools.log" >&2
    exit 1
  fi
  if curl -fsS "http://127.0.0.1:$http/health" 2>/dev/null | grep -q '"workers":1,"tools_workers":1'; then
    ready=yes
    break
  fi
  sleep 0.5
done
if [ "$ready" != yes ]; then
  echo "the workers did not become routable in 60 s; the logs:" >&2
  tail -n 20 "$work/router.log" "$work/worker.log" "$work/tools.log" >&2
  exit 1
fi

# The fuzz run trusts the document the router serves: it must be the one in this tree.
if ! curl -fsS "http://127.0.0.1:$http/openapi.json" | cmp -s - router/src/api/openapi.json; then
  echo "the router serves another /openapi.json than router/src/api/openapi.json: was $bin/auxot-router built from this tree?" >&2
  exit 1
fi

started=$(date +%s)
status=0
"$st" --config-file tests/fuzz/schemathesis.toml run "http://127.0.0.1:$http/openapi.json" \
  --checks not_a_server_error \
  --max-examples "$examples" --seed "$seed" --workers 1 \
  --request-timeout 60 --generation-database none --no-color \
  --report junit --report-junit-path "$work/junit.xml" ${FUZZ_ST_ARGS:-} | tee "$work/st.log" || status=$?
elapsed=$(( $(date +%s) - started ))

# Both figures from schemathesis's summary ("Test cases:\n  N generated, ...", "Tested: N").
cases=$(grep -Eo '[0-9]+ generated' "$work/st.log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
operations=$(grep -Eo '^ *Tested: [0-9]+' "$work/st.log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
ok=yes
alive || ok=no
echo
echo "schemathesis: $cases test cases over $operations operations in ${elapsed}s (max $examples per operation and phase, seed $seed); exit $status; every node still running: $ok"
if [ "$ok" != yes ]; then
  echo "a node died during the run; the router's log:" >&2
  tail -n 40 "$work/router.log" >&2
  exit 1
fi
if grep -q ' panicked at ' "$work/router.log"; then
  echo "the router panicked during the run:" >&2
  grep -A5 ' panicked at ' "$work/router.log" >&2
  exit 1
fi
exit "$status"
