"""llama.cpp (llama-cpp-python) on a GGUF file: the reference `make bench` measures the engine
against. Benchmark only, never part of the product.

Usage: llama-reference.py MODEL.gguf
Prints "ready" once the model is loaded, then answers each JSON line on stdin,
{"prompts": [...], "max_tokens": N}, with one JSON line: the prompts run one at a time ("c1"),
then all at once ("c4", "c4_wall"); each run {"ttft", "total", "tokens"} in seconds. Greedy
decoding, the chat template from the GGUF file, all CPU cores. llama-cpp-python runs one
sequence at a time (its server queues requests behind a lock), so "all at once" queues too.
"""

import json
import os
import sys
import threading
import time

from llama_cpp import Llama

model = Llama(
    model_path=sys.argv[1],
    n_threads=os.cpu_count(),
    n_ctx=2048,
    verbose=False,
)
lock = threading.Lock()


def run(prompt, max_tokens, submitted):
    with lock:
        first = None
        tokens = 0
        for chunk in model.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
        ):
            if chunk["choices"][0]["delta"].get("content"):
                if first is None:
                    first = time.perf_counter() - submitted
                tokens += 1
        return {"ttft": first or 0.0, "total": time.perf_counter() - submitted, "tokens": tokens}


# Warm up (the first call builds caches).
run("Hello", 4, time.perf_counter())
print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    prompts, max_tokens = command["prompts"], command["max_tokens"]
    c1 = [run(p, max_tokens, time.perf_counter()) for p in prompts]
    results = [None] * len(prompts)
    started = time.perf_counter()

    def worker(i):
        results[i] = run(prompts[i], max_tokens, started)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"c1": c1, "c4": results, "c4_wall": time.perf_counter() - started}), flush=True)
