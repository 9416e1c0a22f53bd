"""Decode speed of real models (tokens/s), single process and as an iterative pipeline.

Every benchmark first checks its output: the greedy tokens must equal those of the single-process
engine on the same prompt. Figures go to extra_info (tok/s, bytes sent per token per hop, per-stage
busy and idle seconds, CPUs available).

    pytest bench/bench_decode.py --benchmark-only -s
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from pipeinfer import _core

PROMPT = [504, 3575, 282, 4649, 314]  # "The capital of France is" in the SmolLM2 vocabulary
N_GEN = 32
MODELS = {"smollm2-135m": PROMPT, "qwen2.5-coder-0.5b": [785, 6722, 315, 9625, 374]}


def _greedy(p, prompt, n):
    p.kv_clear()
    k = len(prompt)
    flags = np.zeros(k, np.uint8)
    flags[-1] = 1
    logits = p.decode(np.asarray(prompt, np.int32), np.arange(k, dtype=np.int32), np.zeros(k, np.int32), flags)[-1]
    out, pos = [], k
    one = np.ones(1, np.uint8)
    zero = np.zeros(1, np.int32)
    for _ in range(n):
        tok = int(np.argmax(logits))
        out.append(tok)
        logits = p.decode(np.array([tok], np.int32), np.array([pos], np.int32), zero, one)[0]
        pos += 1
    return out


_REFERENCE: dict = {}


def _reference(path, prompt):
    if path not in _REFERENCE:
        _REFERENCE[path] = _greedy(_core.Pipeline(path, n_ctx=256, n_threads=1), prompt, N_GEN)
    return _REFERENCE[path]


@pytest.mark.realmodel
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_decode_single_process(benchmark, real_model, machine_info, name, n_threads):
    path = real_model(name)
    prompt = MODELS[name]
    p = _core.Pipeline(path, n_ctx=256, n_threads=n_threads)
    assert _greedy(p, prompt, N_GEN) == _reference(path, prompt)
    t = {}

    def run():
        t0 = time.perf_counter()
        _greedy(p, prompt, N_GEN)
        t["s"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(machine_info)
    benchmark.extra_info["tok_per_s"] = N_GEN / benchmark.stats.stats.median
    benchmark.group = f"decode {name}"


@pytest.mark.realmodel
@pytest.mark.parametrize("stages", [1, 2])
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_iterative_pipeline_local(benchmark, real_model, machine_info, name, stages):
    """Plain pipeline-parallel decoding, one token in flight, stages as threads (1 thread each)."""
    path = real_model(name)
    prompt = MODELS[name]
    p = _core.Pipeline(path, n_ctx=256, n_threads=1, n_stages=stages)
    try:
        assert _greedy(p, prompt, N_GEN) == _reference(path, prompt)
        before = p.stats()
        benchmark.pedantic(lambda: _greedy(p, prompt, N_GEN), rounds=3, warmup_rounds=0)
        after = p.stats()
        tokens = 3 * (N_GEN + len(prompt))
        benchmark.extra_info.update(machine_info)
        benchmark.extra_info["tok_per_s"] = N_GEN / benchmark.stats.stats.median
        benchmark.extra_info["bytes_per_token_per_hop"] = [
            (a["bytes_sent"] - b["bytes_sent"]) / tokens for a, b in zip(after[:-1], before[:-1])
        ]
        benchmark.extra_info["stage_busy_s"] = [a["busy_s"] - b["busy_s"] for a, b in zip(after, before)]
        benchmark.extra_info["stage_idle_s"] = [a["idle_s"] - b["idle_s"] for a, b in zip(after, before)]
        benchmark.group = f"iterative pipeline {name}"
    finally:
        p.close()
