#!/usr/bin/env bash
# GPU checks of the worker's engine options (issue 14), for a host with NVIDIA GPUs.
#
# Builds the worker with --features cuda (unless AUXOT_GPU_CHECK_NO_BUILD=1), starts one router
# and, for each case, one worker; waits for it to load, asks each of its models one question
# through the router, and prints per case: load time, the capacity advertised (slots), what
# mistral.rs reserved for the KV cache (from the worker's log), GPU memory used (nvidia-smi),
# completion tokens and tokens per second of one 128-token answer. Nothing is downloaded: give
# local paths.
#
#   GGUF=/models/qwen3-4b-q4_k_m.gguf        a GGUF model                         (required)
#   ST=/models/Qwen3-4B                       a safetensors model directory        (ISQ case)
#   DRAFT=/models/qwen3-0.6b-q8_0.gguf       a small model, same tokenizer as GGUF (speculative:
#                                             refused with mistral.rs 0.8.1, see options.rs)
#   LORA=/adapters/my-lora                    a PEFT adapter directory for ST      (LoRA case)
#   CASES="plain pinned layers kvtokens two isq lora speculative"   the cases to run
#
# What to look for:
#   plain        slots = KV tokens / 4096 (at most 256), not a fixed 32; "engine capacity" line.
#   pinned       --gpu 0: the same on one GPU with no spreading.
#   layers       --device-layers 0:N (N = half the layers): the rest on the CPU, slower tokens/s.
#                With 2+ GPUs, spreading: use CUDA_VISIBLE_DEVICES=0,1 and compare memory per GPU.
#   kvtokens     --kv-cache-tokens 65536: slots = 16; less GPU memory than plain.
#   two          two models on one GPU (0.45 then 0.9 of its memory): both answer, slots add up.
#   isq          --isq Q4K on the safetensors model: far less memory than without, still answers.
#   lora         --lora: the adapter merged, the model id ends in ":<adapter dir name>".
#   speculative  --draft-model: refused with mistral.rs 0.8.1 (its speculative pipeline deadlocks);
#                with a fixed mistral.rs: answers, compare tokens/s with plain (slots 32).
set -uo pipefail
cd "$(dirname "$0")/.."

: "${GGUF:?set GGUF to a local .gguf model}"
cases=${CASES:-plain pinned layers kvtokens two isq lora speculative}
target=${CARGO_TARGET_DIR:-target}
bin=$target/release
if [ "${AUXOT_GPU_CHECK_NO_BUILD:-0}" != 1 ]; then
  cargo build --release -p auxot-router -p auxot-worker --features auxot-worker/cuda || exit 1
fi

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
export HF_HOME=$work/hf-home
"$bin/auxot-router" setup --data-dir "$work/data" --json > "$work/creds.json" || exit 1
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$work/creds.json" "$1"; }
api_key=$(field api_key)
(umask 077 && field join_token > "$work/token")
http=127.0.0.1:18080
"$bin/auxot-router" serve --data-dir "$work/data" --http-addr $http --gossip-addr 127.0.0.1:17946 \
  --advertise-host 127.0.0.1 > "$work/router.log" 2>&1 &
sleep 2

health() { curl -s -H "authorization: Bearer $api_key" "http://$http/health"; }
gpu_mem() { nvidia-smi --query-gpu=index,memory.used --format=csv,noheader | tr '\n' ' '; }

# run_case NAME WORKER_ARGS...: one worker with those arguments, measured, then stopped.
run_case() {
  local name=$1; shift
  local log=$work/worker-$name.log
  echo "=== $name: auxot-worker join ... $*"
  local started=$SECONDS
  "$bin/auxot-worker" join 127.0.0.1:17946 --token-file "$work/token" --name "gpu-$name" \
    --gossip-addr 127.0.0.1:17947 --quic-addr 127.0.0.1:17948 --advertise-host 127.0.0.1 "$@" \
    > "$log" 2>&1 &
  local pid=$!
  local ready=0
  for _ in $(seq 1 900); do
    if ! kill -0 $pid 2>/dev/null; then echo "worker exited:"; tail -20 "$log"; return; fi
    if health | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["workers"] == 1 else 1)' 2>/dev/null; then
      ready=1; break
    fi
    sleep 1
  done
  if [ $ready = 0 ]; then echo "not ready in 15 min"; tail -20 "$log"; kill $pid; wait $pid; return; fi
  echo "loaded in $((SECONDS - started)) s; GPU memory used (MiB): $(gpu_mem)"
  health | python3 -c 'import json,sys
for w in json.load(sys.stdin)["capacity"]:
    print("slots", w["slots"], "models", w["models"], "device", w["device"])'
  grep -E "engine capacity|KV cache|GPU blocks|Applying ISQ|speculative|Loading model according|Model has" "$log" | sed 's/^/  log: /' | tail -12
  for model in $(health | python3 -c 'import json,sys; [print(m) for w in json.load(sys.stdin)["capacity"] for m in w["models"]]'); do
    local t0=$(date +%s.%N)
    local answer
    answer=$(curl -s -H "authorization: Bearer $api_key" -H 'content-type: application/json' \
      "http://$http/api/openai/chat/completions" \
      -d "{\"model\": \"$model\", \"temperature\": 0, \"max_tokens\": 128, \"messages\": [{\"role\": \"user\", \"content\": \"Explain in detail how a CPU cache works.\"}]}")
    local t1=$(date +%s.%N)
    echo "$answer" | python3 -c 'import json,sys
t = float(sys.argv[2]) - float(sys.argv[1])
b = json.load(sys.stdin)
if "usage" not in b:
    print("  ", sys.argv[3], "ERROR", b); sys.exit()
n = b["usage"]["completion_tokens"]
print("  ", sys.argv[3], "->", b["model"], ":", n, "tokens in %.2f s (%.1f tok/s):" % (t, n / t), repr(b["choices"][0]["message"]["content"][:80]))' "$t0" "$t1" "$model"
  done
  kill -TERM $pid; wait $pid 2>/dev/null
  sleep 3
}

layers=$(python3 - "$GGUF" <<'EOF' 2>/dev/null || echo 16
import struct, sys
# block_count from the GGUF metadata (any architecture): `<arch>.block_count`.
f = open(sys.argv[1], "rb")
magic, version, n_tensors, n_kv = struct.unpack("<IIQQ", f.read(24))
def s():
    (n,) = struct.unpack("<Q", f.read(8)); return f.read(n).decode()
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def value(t):
    if t == 8: return s()
    if t == 9:
        (et,) = struct.unpack("<I", f.read(4)); (n,) = struct.unpack("<Q", f.read(8))
        return [value(et) for _ in range(n)]
    raw = f.read(sizes[t])
    return int.from_bytes(raw, "little")
for _ in range(n_kv):
    key = s(); (t,) = struct.unpack("<I", f.read(4)); v = value(t)
    if key.endswith(".block_count"):
        print(v // 2); break
EOF
)

for case in $cases; do
  case $case in
    plain) run_case plain --model "$GGUF" ;;
    pinned) run_case pinned --model "$GGUF" --gpu 0 ;;
    layers) run_case layers --model "$GGUF" --device-layers "0:$layers" ;;
    kvtokens) run_case kvtokens --model "$GGUF" --kv-cache-tokens 65536 ;;
    two) run_case two --model "$GGUF" --model-name first --gpu-memory-utilization 0.45 \
           --model "$GGUF" --model-name second --gpu-memory-utilization 0.9 ;;
    isq) if [ -n "${ST:-}" ]; then
           run_case st-plain --model "$ST"
           run_case isq --model "$ST" --isq Q4K
         else echo "=== isq: skipped (set ST)"; fi ;;
    lora) if [ -n "${ST:-}" ] && [ -n "${LORA:-}" ]; then
            run_case lora --model "$ST" --lora "$LORA"
          else echo "=== lora: skipped (set ST and LORA)"; fi ;;
    speculative) if [ -n "${DRAFT:-}" ]; then
                   run_case speculative --model "$GGUF" --model-name target --draft-model "$DRAFT" --speculative-gamma 8
                 else echo "=== speculative: skipped (set DRAFT)"; fi ;;
    *) echo "unknown case $case" ;;
  esac
done
echo "logs in $work"
trap - EXIT
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null
