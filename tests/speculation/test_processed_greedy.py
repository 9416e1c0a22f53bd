"""At temperature 0 the token is the argmax of the processed logits (logit bias, penalties), in every
decoding mode and stage count: speculation verifies against the same processed distribution."""
from __future__ import annotations

import pytest

import pipeinfer
from oracle_drafters import OracleDrafter
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42]
N = 16


@pytest.fixture(scope="module")
def model(tiny_model):
    path, _ = tiny_model("llama", "q8_0", n_layer=3)
    return str(path)


def _run(path, mode, stages, drafter, **sampling):
    with pipeinfer.Pipeline(path, n_ctx=96, stages=stages, mode=mode, draft=drafter,
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        return p.generate(PROMPT, max_tokens=N, temperature=0, **sampling).tokens


def test_bias_against_the_top_token_changes_every_mode_the_same_way(model):
    plain = _run(model, "iterative", 1, None)
    banned = {plain[0]: -100.0, plain[3]: -100.0}
    want = _run(model, "iterative", 1, None, logit_bias=banned)
    assert want[0] != plain[0] and plain[0] not in want and plain[3] not in want
    for mode in ("speculative", "pipeinfer"):
        for stages in (1, 2):
            # an oracle of the *unbiased* text drafts tokens the bias forbids: they must be rejected
            got = _run(model, mode, stages, OracleDrafter(PROMPT + plain), logit_bias=banned)
            assert got == want, (mode, stages)


@pytest.mark.parametrize("penalty", [dict(repeat_penalty=1.5), dict(presence_penalty=1.0), dict(frequency_penalty=0.7)])
def test_penalties_apply_at_temperature_zero_in_every_mode(model, penalty):
    want = _run(model, "iterative", 1, None, repeat_last_n=16, **penalty)
    assert want != _run(model, "iterative", 1, None)
    for mode in ("speculative", "pipeinfer"):
        assert _run(model, mode, 2, OracleDrafter(PROMPT + want), repeat_last_n=16, **penalty) == want, mode


def test_plain_greedy_lets_the_last_stage_choose(model):
    # no processing: the last stage returns ids, not logits rows (4 bytes per row)
    with pipeinfer.Pipeline(model, n_ctx=96, stages=2) as p:
        s = p.generate(PROMPT, max_tokens=N, temperature=0)
        per_token = s.metrics()["bytes_sent_per_token"]
        b = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias={7: -1.0})
        assert b.metrics()["bytes_sent_per_token"] > per_token + 4 * p.n_vocab // 2
