"""One batched serving step's speed with the requests' KV cells interleaved vs in blocks per request.

R requests (sequences 0..R-1, prompts of different lengths) decode side by side, one row each per step,
as the server's batcher runs them. Two pipelines of the same model and threads hold them:
- `interleaved`: one slot with R sequence ids (no sequence groups: the whole cache is one group), so
  the rows of each step take neighbouring cells and the requests' cells interleave one by one, as every
  serving slot's did before the cache handed cells out in blocks per slot;
- `blocked`: R slots of one sequence each, so each request's cells come from blocks of its own
  (kv/kv-cache.h).
Both compute the same thing (each sequence sees only its own cells, and attention's order does not
depend on where cells sit), so the greedy tokens of every request must be equal; the script checks
that. The layouts alternate step by step (A B A B) and the ratio of each round's total is printed;
quote the load average it prints.

    python bench/bench_kv_blocks.py -m smollm2-135m -t 2 --rows 16 --steps 64 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import List

import numpy as np

from pipeinfer import _core


def model_path(name: str) -> str:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from conftest import _REAL_MODEL_FILES, _cache_dir  # the test suite's catalog of local models

    path = _cache_dir() / _REAL_MODEL_FILES[name]
    if not path.exists():
        raise SystemExit(f"{path} not found (pipeinfer pull {name})")
    return str(path)


class Requests:
    """R sequences decoding side by side on one pipeline: prefilled one by one, then one row each per
    step, all in one batch."""

    def __init__(self, p: _core.Pipeline, prompts: List[List[int]]) -> None:
        self.p = p
        p.kv_clear()
        self.nxt, self.pos = [], []
        for s, prompt in enumerate(prompts):
            k = len(prompt)
            flags = np.zeros(k, np.uint8)
            flags[-1] = 1
            logits = p.decode(np.asarray(prompt, np.int32), np.arange(k, dtype=np.int32), [[s]] * k, flags,
                              exact_rows=True)
            self.nxt.append(int(np.argmax(logits[-1])))
            self.pos.append(k)
        self.out = [[t] for t in self.nxt]

    def step(self) -> float:
        """One batched decode step; returns its seconds."""
        rows = len(self.nxt)
        t0 = time.perf_counter()
        logits = self.p.decode(np.asarray(self.nxt, np.int32), np.asarray(self.pos, np.int32),
                               [[s] for s in range(rows)], np.ones(rows, np.uint8), exact_rows=True)
        dt = time.perf_counter() - t0
        self.nxt = [int(t) for t in np.argmax(logits, axis=1)]
        self.pos = [x + 1 for x in self.pos]
        for s in range(rows):
            self.out[s].append(self.nxt[s])
        return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="smollm2-135m")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=16, help="requests decoding side by side")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--ctx-per-slot", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    path = model_path(a.model)
    rng = np.random.default_rng(0)
    prompts = [rng.integers(100, 20000, 12 + 3 * i).tolist() for i in range(a.rows)]
    n_ctx = a.rows * a.ctx_per_slot
    pipes = {
        "interleaved": _core.Pipeline(path, n_ctx=n_ctx, n_threads=a.threads, n_seq_max=a.rows, repack=True),
        "blocked": _core.Pipeline(path, n_ctx=n_ctx, n_threads=a.threads, n_slots=a.rows, repack=True),
    }
    Requests(pipes["blocked"], prompts).step()  # warm-up (repacked weights, caches)
    ratios, totals = [], {k: 0.0 for k in pipes}
    for r in range(a.rounds):
        reqs = {k: Requests(p, prompts) for k, p in pipes.items()}
        t = {k: 0.0 for k in pipes}
        for _ in range(a.steps):  # the layouts alternate step by step, so load changes hit both alike
            for k in pipes:
                t[k] += reqs[k].step()
        assert reqs["interleaved"].out == reqs["blocked"].out, "greedy tokens differ between the layouts"
        ratios.append(t["interleaved"] / t["blocked"])
        for k in pipes:
            totals[k] += t[k]
        print(f"round {r}: step ms interleaved {1e3 * t['interleaved'] / a.steps:.2f}  "
              f"blocked {1e3 * t['blocked'] / a.steps:.2f}  blocked speed-up {ratios[-1]:.2f}x", flush=True)
    n = a.rounds * a.steps
    print(f"{a.rows} rows, {a.threads} threads, {a.steps} steps x {a.rounds}: step ms blocked "
          f"{1e3 * totals['blocked'] / n:.2f} vs interleaved {1e3 * totals['interleaved'] / n:.2f}; blocked "
          f"speed-up median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"load average {os.getloadavg()[0]:.2f}")
    for p in pipes.values():
        p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
