"""Iterative vs speculative vs PipeInfer on a 2-stage pipeline (stages as threads), per model/drafter
and per prompt kind (drafts do well / badly). Each benchmark checks that its greedy output equals
iterative decoding, then records tok/s, TTFT and ITL in extra_info; ratios against iterative and
speculative of the same model and prompt are printed at the end of the session.

    pytest bench/bench_modes.py --benchmark-only -s
"""
from __future__ import annotations

import pytest

import pipeinfer
from pipeinfer.speculation import SpeculationPolicy

N_GEN = 48
PROMPTS = {
    "good": "Count: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,",
    "bad": "Write a surprising short story about a lighthouse keeper who",
}
CASES = {
    "smollm2-135m+ngram": ("smollm2-135m", "ngram"),
    "qwen2.5-coder-1.5b+0.5b": ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"),
}
_RESULTS: dict = {}
_WANT: dict = {}


def _run(model, draft, mode, prompt):
    with pipeinfer.Pipeline(model, n_ctx=512, n_threads=1, stages=2, mode=mode,
                            draft=None if mode == "iterative" else draft,
                            speculation=SpeculationPolicy(n_draft=4, p_accept=0.1, max_in_flight=3)) as p:
        p.generate(prompt, max_tokens=2, temperature=0)  # warm the pages
        p.reset()
        s = p.generate(prompt, max_tokens=N_GEN, temperature=0)
        return s.tokens, s.metrics()


@pytest.mark.realmodel
@pytest.mark.parametrize("mode", ["iterative", "speculative", "pipeinfer"])
@pytest.mark.parametrize("kind", list(PROMPTS))
@pytest.mark.parametrize("case", list(CASES))
def test_mode(benchmark, real_model, machine_info, case, kind, mode):
    model, draft = CASES[case]
    model = real_model(model)
    if draft != "ngram":
        draft = real_model(draft)
    key = (case, kind)
    if key not in _WANT:
        _WANT[key], _ = _run(model, draft, "iterative", PROMPTS[kind])
    box = {}

    def once():
        box["tokens"], box["m"] = _run(model, draft, mode, PROMPTS[kind])

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert box["tokens"] == _WANT[key]
    m = box["m"]
    benchmark.group = f"{case} / {kind} drafts"
    benchmark.extra_info.update(machine_info)
    for k in ("predicted_per_second", "ttft_ms", "ttft_no_prefill_ms", "itl_ms_p50", "itl_ms_p99", "acceptance_rate",
              "mean_accepted_length", "runs_cancelled", "layers_skipped"):
        benchmark.extra_info[k] = m.get(k)
    _RESULTS[(case, kind, mode)] = m["predicted_per_second"]


def teardown_module(module):
    for case in CASES:
        for kind in PROMPTS:
            r = {mode: _RESULTS.get((case, kind, mode)) for mode in ("iterative", "speculative", "pipeinfer")}
            if all(r.values()):
                print(f"\n{case} [{kind} drafts] tok/s: " + ", ".join(f"{k} {v:.1f}" for k, v in r.items())
                      + f" | pipeinfer/speculative {r['pipeinfer'] / r['speculative']:.2f}x"
                      + f" | pipeinfer/iterative {r['pipeinfer'] / r['iterative']:.2f}x")
