"""Run under mpiexec by tests: every rank builds the same Pipeline with parallel slots; rank 0 runs
several generations at once from threads and prints one JSON line {"tokens": [...]} (prompt order).

    mpiexec -n N python mpi_parallel.py MODEL N_TOKENS PARALLEL [--draft ngram]
"""
import argparse
import json
import threading

import pipeinfer

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("n_tokens", type=int)
ap.add_argument("parallel", type=int)
ap.add_argument("--draft", default=None)
a = ap.parse_args()
PROMPTS = [[5, 17, 99, 3, 250], [7, 7, 31, 200], [123, 4, 56, 78, 9, 10], [250, 1, 2]]

pipe = pipeinfer.Pipeline(a.model, n_ctx=4 * 128, n_threads=1, parallel=a.parallel, draft=a.draft)
if pipe.is_head:
    out = [None] * len(PROMPTS)

    def run(i):
        out[i] = pipe.generate(PROMPTS[i], max_tokens=a.n_tokens, temperature=0).tokens

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"tokens": out, "transport": pipe._native.transport}), flush=True)
pipe.close()
