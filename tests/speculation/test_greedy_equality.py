"""Speculation never changes greedy output: for every mode, stage count, drafter (n-gram, an oracle
that is always right, one that is always wrong, a draft model), draft length and tree width, the
tokens equal plain single-process greedy decoding, token for token."""
from __future__ import annotations

import time

import pytest

import pipeinfer
from oracle_drafters import OracleDrafter, WrongDrafter
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42]
N = 24
# keep the random tiny model away from its end-of-generation ids so every run has N tokens
NO_EOG = {0: -1e6, 1: -1e6, 2: -1e6}


@pytest.fixture(scope="module")
def target(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=4)
    with pipeinfer.Pipeline(str(path), n_ctx=160, n_threads=1) as p:
        want = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG).tokens
    assert len(want) == N
    return str(path), want


@pytest.fixture(scope="module")
def draft_model(tiny_model):
    # same vocabulary (same writer), different weights: a plausible but imperfect draft model
    path, _ = tiny_model("qwen2", "q8_0", n_layer=2, seed=7)
    return str(path)


def _drafter(kind, want, n_vocab, draft_model):
    truth = PROMPT + want
    return {"ngram": "ngram", "oracle": OracleDrafter(truth), "wrong": WrongDrafter(truth, n_vocab=n_vocab),
            "model": draft_model}[kind]


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
@pytest.mark.parametrize("stages", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["ngram", "oracle", "wrong", "model"])
def test_modes_stages_drafters(target, draft_model, mode, stages, kind):
    path, want = target
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=stages, mode=mode,
                            draft=_drafter(kind, want, 320, draft_model),
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        s = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG)
        assert s.tokens == want
        st = s.stats.as_dict()
        if kind == "oracle":
            assert st["draft_n_accepted"] > 0
        if kind == "wrong":
            assert st["draft_n_accepted"] == 0
        assert p._native.spec_free == p.policy.n_buffers if mode == "pipeinfer" else True
        assert p._native.kv_seq_pos_max(0) + 1 <= len(PROMPT) + N


KNOBS = [(d, par, pa) for d in (1, 3, 8) for par in (1, 3) for pa in (0.0, 0.5, 0.99) if par <= d]


@pytest.mark.parametrize("n_draft, n_parallel, p_accept", KNOBS)
def test_policy_knobs(target, draft_model, n_draft, n_parallel, p_accept):
    path, want = target
    pol = SpeculationPolicy(n_draft=n_draft, n_parallel=n_parallel, p_accept=p_accept, p_split=0.05,
                            p_recovery=0.4 if p_accept == 0.5 else 0.0, p_decay=0.01 if p_accept == 0.5 else 0.0,
                            adaptive=False)
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=2, draft=draft_model, speculation=pol) as p:
        assert p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG).tokens == want


def test_random_message_delays(target):
    path, want = target
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=3, draft="ngram",
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        p._native.close()
        from pipeinfer import _core

        p._native = _core.Pipeline(path, n_ctx=160, n_threads=1, n_stages=3, max_delay_us=2000, delay_seed=5, repack=True,
                                   n_spec_buffers=p.policy.n_buffers, n_spec_branches=1)
        assert p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG).tokens == want


def test_cancellation_skips_work_with_a_wrong_drafter(tiny_model):
    """Every speculative run of a wrong drafter is invalidated by the result before it and cancelled.
    The head's stage is kept light (1 layer) and the workers heavy (4 wider layers each), so runs queue
    up at the workers and cancellations reach queued runs: stages skip work, and the counters show it.
    (How much is skipped depends on thread scheduling; a few attempts make a zero unlikely even on a
    loaded machine. tests/runtime/test_pipeline_local.py checks the mechanism deterministically.)"""
    path, _ = tiny_model("qwen2", "q8_0", n_layer=13, n_embd=512, n_ff=1536, seed=4)
    path = str(path)
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1) as p:
        no_eog = {**NO_EOG, **{t: -1e6 for t in p.tokenizer.eog_ids}}  # this model's own end ids too
        want = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=no_eog).tokens
    assert len(want) == N
    pol = SpeculationPolicy(n_draft=3, p_accept=0.0, max_in_flight=4, adaptive=False)
    skipped = 0
    for _ in range(8):
        with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, layer_split=[1, 4, 4, 4],
                                draft=WrongDrafter(PROMPT + want, n_vocab=320), speculation=pol) as p:
            s = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=no_eog)
            assert s.tokens == want
            assert s.stats.runs_cancelled > 0
            skipped = sum(st["layers_skipped"] + st["runs_skipped"] for st in s.stage_stats[1:])
            if skipped:
                break
    assert skipped > 0


def test_prompt_cache_after_speculation(target):
    """After a speculative generation the KV cache holds exactly the canonical tokens, so a follow-up
    request reuses them and still matches plain decoding."""
    path, want = target
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=2, draft="ngram",
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        a = p.generate(PROMPT, max_tokens=10, temperature=0, logit_bias=NO_EOG)
        assert a.tokens == want[:10]
        b = p.generate(PROMPT + a.tokens, max_tokens=N - 10, temperature=0, logit_bias=NO_EOG)
        assert b.timings.cached_n >= len(PROMPT)  # at least the prompt; drafted tails may be dropped
        assert b.tokens == want[10:]


class _CostlyWrongDrafter(WrongDrafter):
    """Wrong drafts that take the head 3 ms per token to make (as a draft model would)."""

    cheap = False

    def propose(self, context, limits):
        tree = super().propose(context, limits)
        time.sleep(0.003 * len(tree))
        return tree


def test_adaptive_policy_backs_off_from_a_useless_drafter(target):
    path, want = target
    counts = {}
    for adaptive in (False, True):
        wrong = _CostlyWrongDrafter(PROMPT + want, n_vocab=320)
        with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=2, mode="speculative", draft=wrong,
                                speculation=SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=adaptive)) as p:
            s = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG)
            assert s.tokens == want
            counts[adaptive] = s.stats.draft_n
    assert counts[True] < counts[False] / 3


def test_adaptive_policy_keeps_a_good_drafter(target):
    path, want = target
    with pipeinfer.Pipeline(path, n_ctx=160, n_threads=1, stages=2, mode="speculative",
                            draft=OracleDrafter(PROMPT + want),
                            speculation=SpeculationPolicy(n_draft=4, p_accept=0.0)) as p:
        s = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG)
        assert s.tokens == want
        assert s.stats.as_dict()["mean_accepted_length"] > 3
