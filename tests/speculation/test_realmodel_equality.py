"""Greedy equality of every decoding mode on real models: SmolLM2-135M with the n-gram drafter, and
Qwen2.5-Coder-1.5B with Qwen2.5-Coder-0.5B as the draft model (slow: about 1.6 GB of weights)."""
from __future__ import annotations

import pytest

import pipeinfer
from pipeinfer.speculation import SpeculationPolicy

pytestmark = pytest.mark.realmodel

CODE_PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n    return"


def _generate(path, n, **kw):
    with pipeinfer.Pipeline(str(path), n_ctx=256, n_threads=2, **kw) as p:
        s = p.generate(CODE_PROMPT, max_tokens=n, temperature=0)
        return s.tokens, s.stats.as_dict()


def test_smollm2_ngram_all_modes(real_model_path):
    path = real_model_path("smollm2-135m")
    want, _ = _generate(path, 32)
    for mode, stages in (("speculative", 1), ("pipeinfer", 2), ("pipeinfer", 3)):
        got, stats = _generate(path, 32, mode=mode, stages=stages, draft="ngram",
                               speculation=SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=False))
        assert got == want, (mode, stages)
        assert stats["draft_n"] > 0


def test_smollm2_exact_mode_all_modes(real_model_path):
    """exact=True (llama.cpp's layout and summation orders, which switch with the batch size): every
    verification row is still computed as a one-token step, so speculation keeps greedy output
    unchanged here too (the default layout, row-interleaved weights, is tested above)."""
    path = real_model_path("smollm2-135m")
    want, _ = _generate(path, 32, exact=True)
    for mode, stages in (("speculative", 1), ("pipeinfer", 2)):
        got, stats = _generate(path, 32, mode=mode, stages=stages, draft="ngram", exact=True,
                               speculation=SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=False))
        assert got == want, (mode, stages)
        assert stats["draft_n"] > 0


@pytest.mark.slow
def test_qwen_1_5b_with_0_5b_draft(real_model_path):
    target = real_model_path("qwen2.5-coder-1.5b")
    draft = real_model_path("qwen2.5-coder-0.5b")
    want, _ = _generate(target, 24)
    # draft_ranks=0: the head drafts (synchronously), so drafts exist whatever the machine's load; a draft
    # rank's drafts may all arrive too late on a loaded machine (the head does not wait for them), and
    # its greedy equality is tested in test_draft_rank.py
    for mode, stages in (("speculative", 1), ("pipeinfer", 2)):
        got, stats = _generate(target, 24, mode=mode, stages=stages, draft=str(draft), draft_ranks=0,
                               speculation=SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=False))
        assert got == want, (mode, stages)
        assert stats["draft_n_accepted"] > 0
