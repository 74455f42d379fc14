"""llama.cpp (llama-cpp-python) on a GGUF file: the reference `make bench` measures the engine
against. Benchmark only, never part of the product.

Usage: llama-reference.py MODEL.gguf
Prints "ready" once the model is loaded, then answers each JSON line on stdin,
{"prompts": [...], "max_tokens": N, "threads": T}, with one JSON line: the prompts run one at a
time ("c1"), then all at once ("c4", "c4_wall"); each run {"ttft", "total", "tokens"} in seconds.
Greedy decoding, the chat template from the GGUF file, T compute threads (one model is loaded
per thread count asked for, on first use). llama-cpp-python runs one sequence at a time (its
server queues requests behind a lock), so "all at once" queues too.

Every generation runs on a thread of its own, never on the main thread: measured here, with two
compute threads on a busy 2-core machine, generations driven from the main thread were up to 15x
slower than the same ones from another thread.
"""

import json
import sys
import threading
import time

from llama_cpp import Llama

models = {}
lock = threading.Lock()


def model(threads):
    if threads not in models:
        models[threads] = Llama(
            model_path=sys.argv[1],
            n_threads=threads,
            n_threads_batch=threads,
            n_ctx=2048,
            verbose=False,
        )
        # Warm up (the first call builds caches).
        run(threads, "Hello", 4, time.perf_counter())
    return models[threads]


def run(threads, prompt, max_tokens, submitted):
    with lock:
        first = None
        tokens = 0
        for chunk in models[threads].create_chat_completion(
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


def on_thread(function):
    result = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


def measure(command):
    prompts, max_tokens, threads = command["prompts"], command["max_tokens"], command["threads"]
    model(threads)
    c1 = [run(threads, p, max_tokens, time.perf_counter()) for p in prompts]
    results = [None] * len(prompts)
    started = time.perf_counter()

    def worker(i):
        results[i] = run(threads, prompts[i], max_tokens, started)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(len(prompts))]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return {"c1": c1, "c4": results, "c4_wall": time.perf_counter() - started}


print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps(on_thread(lambda: measure(json.loads(line)))), flush=True)
