"""Every mode chooses tokens through the one TokenChooser: a logit bias forbidding the top token and
repetition penalties change greedy output identically in iterative, speculative and pipeinfer modes,
on one and two stages (MPI: tests/runtime/test_pipeline_mpi.py), equal to a plain step-by-step loop
over the processed logits; logprobs are the log-softmax of the processed logits of plain decoding at
each position, in every mode."""
from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pytest

import pipeinfer
from pipeinfer.sampling import SamplingParams, TokenChooser, log_softmax

PROMPT = [5, 17, 99, 3, 250, 5, 17, 99, 3, 250, 5, 17]  # repeats, so the n-gram drafter drafts
N = 14
MODES = [("iterative", None, 1), ("iterative", None, 2), ("speculative", "ngram", 1), ("speculative", "ngram", 2),
         ("pipeinfer", "ngram", 1), ("pipeinfer", "ngram", 2)]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=3)
    return str(path)


@pytest.fixture(scope="module")
def plain(tiny):
    with pipeinfer.Pipeline(tiny, n_ctx=128, n_threads=1) as p:
        yield p


def reference(plain: pipeinfer.Pipeline, params: SamplingParams, n: int) -> Dict[str, Any]:
    """Plain decoding one position at a time from full-sequence logits: the chooser over each row."""
    ch = TokenChooser(params, eog_ids=plain.tokenizer.eog_ids)
    gen: List[int] = list(PROMPT)
    rows = []
    for _ in range(n):
        row = plain.eval_logits(gen)[-1]
        rows.append(ch.processed(row, gen))
        tok, _ = ch.choose(row, gen, ())
        if plain.tokenizer.is_eog(tok):
            break
        gen.append(tok)
    return {"tokens": gen[len(PROMPT):], "processed": rows, "records": ch.logprobs}


def generate(tiny: str, mode: str, draft: Any, stages: int, **kw: Any) -> pipeinfer.Stream:
    pol = pipeinfer.SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=False)
    with pipeinfer.Pipeline(tiny, n_ctx=128, n_threads=1, stages=stages, mode=mode, draft=draft,
                            speculation=pol if draft else None) as p:
        return p.generate(PROMPT, max_tokens=N, **kw)


def test_bias_forbidding_the_top_token_changes_greedy_output_in_every_mode(tiny, plain):
    free = plain.generate(PROMPT, max_tokens=N, temperature=0).tokens
    assert free, "the synthetic model must generate something"
    bias = {free[0]: -100.0}
    want = reference(plain, SamplingParams(temperature=0, logit_bias=bias), N)["tokens"]
    assert want[:1] != free[:1]
    for mode, draft, stages in MODES:
        got = generate(tiny, mode, draft, stages, temperature=0, logit_bias=bias)
        assert got.tokens == want, (mode, stages)
        if draft:
            assert got.stats.draft_n > 0, (mode, stages)


def test_penalties_change_greedy_output_identically_in_every_mode(tiny, plain):
    kw = dict(temperature=0, repeat_penalty=1.8, presence_penalty=0.7, frequency_penalty=0.4)
    free = plain.generate(PROMPT, max_tokens=N, temperature=0).tokens
    want = reference(plain, SamplingParams(**kw), N)["tokens"]
    assert want != free
    for mode, draft, stages in MODES:
        assert generate(tiny, mode, draft, stages, **kw).tokens == want, (mode, stages)


@pytest.mark.parametrize("temperature", [0.0, 0.9])
def test_logprobs_are_the_log_softmax_of_the_processed_logits_in_every_mode(tiny, plain, temperature):
    kw: Dict[str, Any] = dict(temperature=temperature, seed=11, logprobs=3, repeat_penalty=1.3, logit_bias={7: 2.0})
    for mode, draft, stages in MODES:
        s = generate(tiny, mode, draft, stages, **kw)
        assert s.logprobs is not None and len(s.logprobs) == len(s.tokens) > 0, (mode, stages)
        # plain decoding of the same tokens gives the processed logits of each position
        ref = TokenChooser(SamplingParams(**{**kw, "temperature": 0}), eog_ids=plain.tokenizer.eog_ids)
        gen = list(PROMPT)
        for i, rec in enumerate(s.logprobs):
            want = log_softmax(ref.processed(plain.eval_logits(gen)[-1], gen))
            assert rec.token == s.tokens[i]
            np.testing.assert_allclose(rec.logprob, want[rec.token], rtol=0, atol=1e-6)
            top = np.argsort(-want, kind="stable")[:3]
            assert [t for t, _ in rec.top] == [int(t) for t in top], (mode, stages, i)
            np.testing.assert_allclose([v for _, v in rec.top], want[top], rtol=0, atol=1e-6)
            gen.append(rec.token)


def test_greedy_logprobs_pick_the_top_token(plain):
    s = plain.generate(PROMPT, max_tokens=6, temperature=0, logprobs=2)
    for tok, rec in zip(s.tokens, s.logprobs):
        assert rec.top[0][0] == tok and rec.logprob == rec.top[0][1]
        assert rec.logprob <= 0.0
    assert plain.generate(PROMPT, max_tokens=2, temperature=0).logprobs is None


def test_stop_token_ids_min_tokens_and_ignore_eos(plain):
    free = plain.generate(PROMPT, max_tokens=N, temperature=0, ignore_eos=True)
    assert len(free.tokens) == N and not any(plain.tokenizer.is_eog(t) for t in free.tokens)
    stop_at = free.tokens[3]
    s = plain.generate(PROMPT, max_tokens=N, temperature=0, ignore_eos=True, stop_token_ids=[stop_at])
    assert s.tokens == free.tokens[: free.tokens.index(stop_at)] and s.finish_reason == "stop"
    m = plain.generate(PROMPT, max_tokens=N, temperature=0, ignore_eos=True, stop_token_ids=[stop_at],
                       min_tokens=free.tokens.index(stop_at) + 1)
    assert len(m.tokens) > free.tokens.index(stop_at)
    assert stop_at not in m.tokens[: free.tokens.index(stop_at) + 1]
