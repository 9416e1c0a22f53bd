"""What happens when a generation reaches the end of the context: it stops with finish_reason
"length", or with context_shift=True the older half of the context (after the first n_keep tokens)
is dropped and generation goes on, in every decoding mode."""
from __future__ import annotations

import pytest

import pipeinfer
from oracle_drafters import OracleDrafter
from pipeinfer.config import shifted_context
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42, 7, 130]
NO_EOG = {0: -1e6, 1: -1e6, 2: -1e6}
N_CTX = 32


@pytest.fixture(scope="module")
def path(tiny_model):
    p, _ = tiny_model("llama", "q8_0", n_layer=2, seed=3)
    return str(p)


def test_shifted_context_keeps_head_and_newer_half():
    toks = list(range(10))
    assert shifted_context(toks, 2) == [0, 1, 6, 7, 8, 9]
    assert shifted_context(toks, 0) == [5, 6, 7, 8, 9]
    assert shifted_context(list(range(11)), 1) == [0, 6, 7, 8, 9, 10]


def test_full_context_stops_with_length(path):
    with pipeinfer.Pipeline(path, n_ctx=N_CTX, n_threads=1) as p:
        s = p.generate(PROMPT, max_tokens=None, temperature=0, logit_bias=NO_EOG)
        assert s.finish_reason == "length"
        assert len(PROMPT) + len(s.tokens) == N_CTX


def _shift_reference(path, n_keep, n_gen):
    """The greedy tokens of a context-shifting generation, rebuilt by hand: generate until the context
    is full, shorten the tokens as the shift does, and continue from a fresh evaluation of them."""
    out = []
    ctx = list(PROMPT)
    with pipeinfer.Pipeline(path, n_ctx=N_CTX, n_threads=1) as p:
        while len(out) < n_gen:
            room = min(N_CTX - len(ctx), n_gen - len(out))
            new = p.generate(ctx, max_tokens=room, temperature=0, logit_bias=NO_EOG).tokens
            out += new
            ctx += new
            if len(ctx) >= N_CTX:
                ctx = shifted_context(ctx, n_keep)
    return out


@pytest.mark.parametrize("n_keep", [0, 3])
def test_context_shift_continues_as_a_fresh_shortened_context(path, n_keep):
    n_gen = 3 * N_CTX  # several shifts
    want = _shift_reference(path, n_keep, n_gen)
    with pipeinfer.Pipeline(path, n_ctx=N_CTX, n_threads=1, context_shift=True, n_keep=n_keep) as p:
        s = p.generate(PROMPT, max_tokens=n_gen, temperature=0, logit_bias=NO_EOG)
    assert s.finish_reason == "length"
    assert s.tokens == want


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_context_shift_with_speculation_equals_plain(path, mode):
    n_gen = 2 * N_CTX
    with pipeinfer.Pipeline(path, n_ctx=N_CTX, n_threads=1, context_shift=True) as p:
        want = p.generate(PROMPT, max_tokens=n_gen, temperature=0, logit_bias=NO_EOG).tokens
    with pipeinfer.Pipeline(path, n_ctx=N_CTX, n_threads=1, context_shift=True, stages=2, mode=mode,
                            draft="ngram", speculation=SpeculationPolicy(n_draft=3, adaptive=False)) as p:
        s = p.generate(PROMPT, max_tokens=n_gen, temperature=0, logit_bias=NO_EOG)
    assert s.tokens == want


def test_context_shift_options_are_checked(path):
    with pytest.raises(ValueError, match="context_shift must be a bool"):
        pipeinfer.Pipeline(path, n_ctx=N_CTX, context_shift="yes")
    with pytest.raises(ValueError, match="n_keep must be in"):
        pipeinfer.Pipeline(path, n_ctx=N_CTX, n_keep=-1)
