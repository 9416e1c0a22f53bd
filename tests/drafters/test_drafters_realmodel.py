"""Drafters on the real models: SmolLM2's draft chain equals llama.cpp's greedy tokens, the Qwen 0.5B draft is
accepted for the 1.5B target by make_drafter and saves evaluations in a control-loop-like call sequence.

Note: on quantized real models the engine's logits depend on how the context was batched (a multi-token
batch and single-token decodes differ in the last bits, which the layers amplify: about 0.3 in a logit on
Qwen2.5-Coder-0.5B), so trees from KV reuse and from recomputation agree exactly only where no decision is
a near tie; exact tree identity is tested on the f32 synthetic models (test_model_drafter.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeinfer import _core
from pipeinfer.drafters import DraftLimits, ModelDrafter, make_drafter

pytestmark = pytest.mark.realmodel

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("run", [0, 1, 2])
def test_smollm2_chain_equals_llamacpp_greedy(real_model_path, run):
    r = json.loads((DATA / "greedy_smollm2-135m.json").read_text())["runs"][run]
    with ModelDrafter(real_model_path("smollm2-135m"), n_ctx=128, n_threads=2) as d:
        tree = d.propose(r["prompt_ids"], DraftLimits(n_draft=8, p_accept=0.0))
        assert tree.chain_tokens() == r["generated_ids"][:8]
        assert all(0.0 < n.p <= 1.0 for n in tree.nodes)
        # drafting on from the tip of that chain reuses its KV: one new context token evaluated
        before = d.stats.context_evaluated
        tree2 = d.propose(r["prompt_ids"] + tree.chain_tokens(), DraftLimits(n_draft=4, p_accept=0.0))
        assert d.stats.reused == 7 and d.stats.context_evaluated - before == 1
        assert tree2.chain_tokens() == r["generated_ids"][8:12]


def test_qwen_draft_for_qwen_target_saves_evaluations(real_model_path):
    target_meta = _core.GGUFFile(str(real_model_path("qwen2.5-coder-1.5b"))).metadata()
    prompt = json.loads((DATA / "greedy_qwen2.5-coder-0.5b.json").read_text())["runs"][1]["prompt_ids"]
    d = make_drafter(real_model_path("qwen2.5-coder-0.5b"), target_meta, n_ctx=128, n_threads=2)
    try:
        assert isinstance(d, ModelDrafter) and d.n_vocab == len(target_meta["tokenizer.ggml.tokens"])
        d.begin(prompt)
        ctx = list(prompt)
        for _ in range(3):  # the target accepts every draft, then adds its own (bonus) token
            chain = d.propose(ctx, DraftLimits(n_draft=3)).chain_tokens()
            assert len(chain) == 3
            last, ctx = ctx, ctx + chain + [chain[-1]]
        s = d.stats
        # calls 2 and 3 take over 2 drafted tokens each (the 3rd was never evaluated) and evaluate 2 tokens
        # (the 3rd draft and the bonus token) instead of 4
        assert s.reused == 2 * 2
        assert s.context_evaluated == len(prompt) + 2 * 2
        assert d._pipe.kv_seq_pos_max(0) == len(last) - 1
    finally:
        d.close()
