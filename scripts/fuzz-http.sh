#!/usr/bin/env bash
# Schema-driven HTTP fuzzing: starts a throwaway cluster (one router, one synthetic-engine
# worker, one tools worker with an `echo` command tool) on free loopback ports and runs
# schemathesis against the OpenAPI document the router serves at /openapi.json, with the API
# key, for every operation. Passes when no response is a 5xx and every node is still running.
#
# Environment: FUZZ_EXAMPLES (test cases per operation, default 100), FUZZ_SEED, ST (the
# schemathesis executable, default .venv-fuzz/bin/st), CARGO_TARGET_DIR.
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

free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"; }
http=$(free_port SOCK_STREAM)
gossip=$(free_port SOCK_DGRAM)

"$bin/auxot-router" setup --data-dir "$work/data" --json > "$work/creds.json"
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/creds.json" "$1"; }
key=$(field api_key)
token=$(field join_token)
cat > "$work/tools.toml" <<TOML
[[command]]
name = "echo"
description = "Answers with its input."
parameters = { type = "object", properties = { text = { type = "string" } } }
program = "cat"
TOML

"$bin/auxot-router" serve --data-dir "$work/data" --http-addr "127.0.0.1:$http" \
  --gossip-addr "127.0.0.1:$gossip" --quic-addr 127.0.0.1:0 > "$work/router.log" 2>&1 &
pids+=($!)
"$bin/auxot-worker" join "127.0.0.1:$gossip" --token "$token" --engine synthetic --name synthetic \
  --gossip-addr "127.0.0.1:$(free_port SOCK_DGRAM)" --quic-addr "127.0.0.1:$(free_port SOCK_DGRAM)" \
  > "$work/worker.log" 2>&1 &
pids+=($!)
"$bin/auxot-worker" join "127.0.0.1:$gossip" --token "$token" --tools "$work/tools.toml" --name tools \
  --gossip-addr "127.0.0.1:$(free_port SOCK_DGRAM)" --quic-addr "127.0.0.1:$(free_port SOCK_DGRAM)" \
  > "$work/tools.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$http/health" 2>/dev/null | grep -q '"workers":1,"tools_workers":1'; then
    break
  fi
  sleep 0.5
done

started=$(date +%s)
status=0
"$st" run "http://127.0.0.1:$http/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error \
  --max-examples "$examples" --seed "$seed" --workers 1 \
  --request-timeout 60 --generation-database none --no-color \
  --report junit --report-junit-path "$work/junit.xml" | tee "$work/st.log" || status=$?
elapsed=$(( $(date +%s) - started ))

cases=$(grep -Eo '[0-9]+ generated' "$work/st.log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
alive=yes
for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || alive=no; done
echo
echo "schemathesis: $cases test cases in ${elapsed}s (max $examples per operation, seed $seed); exit $status; every node still running: $alive"
if [ "$alive" != yes ]; then
  echo "a node died during the run; the router's log:" >&2
  tail -n 40 "$work/router.log" >&2
  exit 1
fi
exit "$status"
