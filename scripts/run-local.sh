#!/usr/bin/env bash
# Starts a local auxot cluster: one router and one worker serving the bundled SmolLM2 model on
# this machine. Creates the cluster in .auxot/ on first use. Ctrl-C stops both.
#
# Environment: AUXOT_HTTP_PORT (default 8080), AUXOT_MODEL (default the bundled GGUF),
# CARGO_TARGET_DIR (where the binaries were built).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${CARGO_TARGET_DIR:-target}/release
model=${AUXOT_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
http_port=${AUXOT_HTTP_PORT:-8080}
state=.auxot
data=$state/data
creds=$state/local-credentials.json

mkdir -p "$state"
if [ -f "$data/cluster.json" ] && ! grep -q '"version": 2' "$data/cluster.json"; then
  echo "$data was made by an older auxot; remove $state to start over (or run: auxot-router migrate --data-dir $data)" >&2
  exit 1
fi
if [ ! -f "$data/cluster.json" ]; then
  # The API key is printed only once by setup; keep a private copy for this local cluster.
  (umask 077 && "$bin/auxot-router" setup --data-dir "$data" --key-name local --json > "$creds")
fi
if [ ! -f "$creds" ]; then
  echo "$data holds a cluster but $creds is missing; remove $state to start over" >&2
  exit 1
fi
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$creds" "$1"; }
api_key=$(field api_key)
# The worker reads its join token from a private file: a command-line argument would be visible
# to every user in `ps`.
token_file=$state/join-token
if [ ! -f "$token_file" ]; then
  (umask 077 && field join_token > "$token_file")
fi

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "stopping..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

export HF_HOME=${HF_HOME:-$state/hf-home}
"$bin/auxot-router" serve --data-dir "$data" --http-addr "127.0.0.1:$http_port" \
  --gossip-addr 127.0.0.1:7946 --advertise-host 127.0.0.1 > "$state/router.log" 2>&1 &
pids+=($!)
"$bin/auxot-worker" join 127.0.0.1:7946 --token-file "$token_file" --model "$model" \
  --gossip-addr 127.0.0.1:7947 --quic-addr 127.0.0.1:7948 --advertise-host 127.0.0.1 > "$state/worker.log" 2>&1 &
pids+=($!)

echo "starting router (log: $state/router.log) and worker (log: $state/worker.log)..." >&2
for _ in $(seq 1 120); do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "a node exited during start-up; its log:" >&2
      tail -n 20 "$state/router.log" "$state/worker.log" >&2
      exit 1
    fi
  done
  if curl -fsS "http://127.0.0.1:$http_port/health" 2>/dev/null | grep -q '"workers":[1-9]'; then
    break
  fi
  sleep 0.5
done

cat <<MSG

auxot is running: router http://127.0.0.1:$http_port, one worker serving $(basename "$model")

API key: $api_key

Try it:
  curl http://127.0.0.1:$http_port/api/openai/chat/completions \\
    -H "Authorization: Bearer $api_key" \\
    -H "Content-Type: application/json" \\
    -d '{"model": "auto", "temperature": 0, "max_tokens": 64, "messages": [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]}'

This local cluster listens on loopback only. To add GPU hosts, run the router on a reachable
address (README: "A multi-node cluster") and join them with the token in $token_file:
  auxot-worker join <router-host>:7946 --token-file <copy of $token_file> --model <model>
Admin key (tokens, workers): in $creds.

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
echo "a node stopped; see $state/*.log" >&2
