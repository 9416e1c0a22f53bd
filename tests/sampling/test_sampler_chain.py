"""The sampler chain: each pure transform against small hand-computed vectors, the chain order, greedy
behaviour, bad logits, seed reproducibility, and a chi-square check that sample() follows probs()."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeinfer.sampling import (
    SamplingParams,
    apply_logit_bias,
    apply_min_p,
    apply_penalties,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    apply_typical_p,
    make_sampler,
    softmax,
)

NEG = -np.inf


def kept(x: np.ndarray) -> list:
    return np.flatnonzero(x > -np.inf).tolist()


def logits_of(probs) -> np.ndarray:
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


# --- pure transforms ---------------------------------------------------------------------------------


def test_softmax_handles_minus_inf_and_rejects_all_removed():
    p = softmax(np.array([0.0, NEG, math.log(3.0)], dtype=np.float32))
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [0.25, 0.0, 0.75], rtol=1e-6)
    with pytest.raises(ValueError, match="no finite logit"):
        softmax(np.array([NEG, NEG]))


def test_top_k_keeps_k_largest_with_lowest_id_on_ties():
    x = np.array([1.0, 3.0, 2.0, 3.0, 0.0], dtype=np.float32)
    assert kept(apply_top_k(x, 1)) == [1]
    assert kept(apply_top_k(x, 2)) == [1, 3]
    assert kept(apply_top_k(x, 3)) == [1, 2, 3]
    assert kept(apply_top_k(x, 0)) == [0, 1, 2, 3, 4]
    assert kept(apply_top_k(x, 9)) == [0, 1, 2, 3, 4]
    ties = np.array([5.0, 1.0, 5.0, 5.0, 5.0])
    assert kept(apply_top_k(ties, 2)) == [0, 2]
    out = apply_top_k(x, 2)
    assert out[1] == 3.0 and out[3] == 3.0  # kept values are untouched
    assert x[0] == 1.0  # input not mutated


def test_top_p_keeps_smallest_set_reaching_p():
    x = logits_of([0.5, 0.2, 0.2, 0.1])
    assert kept(apply_top_p(x, 0.45)) == [0]
    assert kept(apply_top_p(x, 0.6)) == [0, 1]  # tie between ids 1 and 2: lower id first
    assert kept(apply_top_p(x, 0.85)) == [0, 1, 2]
    assert kept(apply_top_p(x, 0.95)) == [0, 1, 2, 3]
    assert kept(apply_top_p(x, 1.0)) == [0, 1, 2, 3]
    assert kept(apply_top_p(x, 1e-9)) == [0]


def test_top_p_ignores_already_removed_tokens():
    x = np.array([NEG, math.log(0.2), math.log(0.8), NEG])
    assert kept(apply_top_p(x, 0.5)) == [2]
    assert kept(apply_top_p(x, 0.9)) == [1, 2]


def test_min_p_threshold_relative_to_max():
    x = logits_of([0.5, 0.2, 0.2, 0.1])
    assert kept(apply_min_p(x, 0.3)) == [0, 1, 2]  # threshold 0.15
    assert kept(apply_min_p(x, 0.5)) == [0]  # threshold 0.25
    assert kept(apply_min_p(x, 0.0)) == [0, 1, 2, 3]
    assert kept(apply_min_p(x, 1.0)) == [0]


def test_typical_p_hand_computed():
    # p = [0.5, 0.3, 0.2]: H = 1.0297; |surprisal - H| = [0.337, 0.174, 0.580] -> order 1, 0, 2;
    # cumulative mass 0.3, 0.8, 1.0; keep through the first prefix whose mass exceeds typical_p.
    x = logits_of([0.5, 0.3, 0.2])
    assert kept(apply_typical_p(x, 0.2)) == [1]
    assert kept(apply_typical_p(x, 0.5)) == [0, 1]
    assert kept(apply_typical_p(x, 0.9)) == [0, 1, 2]
    assert kept(apply_typical_p(x, 1.0)) == [0, 1, 2]


def test_temperature_scales_and_zero_keeps_argmax():
    x = np.array([1.0, 2.0, 2.0, NEG])
    np.testing.assert_allclose(apply_temperature(x, 0.5)[:3], [-2.0, 0.0, 0.0])  # (x - max) / t
    assert apply_temperature(x, 0.5)[3] == NEG
    assert kept(apply_temperature(x, 0.0)) == [1]
    p = softmax(apply_temperature(logits_of([0.8, 0.2]), 0.5))
    np.testing.assert_allclose(p, [0.64 / 0.68, 0.04 / 0.68], rtol=1e-6)


def test_penalties_hand_computed():
    x = np.array([2.0, -1.0, 0.5, 1.0], dtype=np.float32)
    hist = [0, 1, 1, 3]
    out = apply_penalties(x, hist, repeat_penalty=2.0, repeat_last_n=64)
    np.testing.assert_allclose(out, [1.0, -2.0, 0.5, 0.5])
    out = apply_penalties(x, hist, repeat_penalty=2.0, repeat_last_n=64, frequency_penalty=0.1, presence_penalty=0.5)
    np.testing.assert_allclose(out, [0.4, -2.7, 0.5, -0.1], rtol=1e-6)
    np.testing.assert_array_equal(x, [2.0, -1.0, 0.5, 1.0])  # input not mutated


def test_penalty_window_and_disable():
    x = np.array([1.0, 1.0, 1.0])
    np.testing.assert_allclose(apply_penalties(x, [0, 0, 2], repeat_penalty=2.0, repeat_last_n=1), [1.0, 1.0, 0.5])
    np.testing.assert_allclose(apply_penalties(x, [0, 0, 2], repeat_penalty=2.0, repeat_last_n=-1), [0.5, 1.0, 0.5])
    np.testing.assert_allclose(apply_penalties(x, [0, 0, 2], repeat_penalty=2.0, repeat_last_n=0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(apply_penalties(x, [], repeat_penalty=2.0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(
        apply_penalties(x, [0, 0], frequency_penalty=0.25, repeat_last_n=8), [0.5, 1.0, 1.0])


def test_penalties_and_bias_reject_out_of_vocab_ids():
    x = np.zeros(4)
    with pytest.raises(ValueError, match="history token id 4 out of vocabulary .n_vocab=4"):
        apply_penalties(x, [1, 4], repeat_penalty=1.1)
    with pytest.raises(ValueError, match="history token id -1 out of vocabulary"):
        apply_penalties(x, [-1], repeat_penalty=1.1)
    with pytest.raises(ValueError, match="logit_bias: token id 9 out of vocabulary .n_vocab=4"):
        apply_logit_bias(x, {9: 1.0})


def test_logit_bias_adds_and_bans():
    out = apply_logit_bias(np.array([0.0, 1.0, 2.0]), {0: 5.0, 2: -np.inf})
    np.testing.assert_array_equal(out, [5.0, 1.0, NEG])


# --- the chain ----------------------------------------------------------------------------------------


def test_chain_order_top_k_then_top_p_then_temperature():
    # top_k=3 keeps {0,1,2}; renormalized [4/9, 3/9, 2/9] -> top_p=0.7 keeps {0,1};
    # temperature 0.5 squares the ratio: [0.16, 0.09] / 0.25.
    s = make_sampler(SamplingParams(top_k=3, top_p=0.7, min_p=0.0, temperature=0.5, seed=0))
    p = s.probs(logits_of([0.4, 0.3, 0.2, 0.1]))
    np.testing.assert_allclose(p, [0.64, 0.36, 0.0, 0.0], rtol=1e-6)


def test_min_p_acts_before_temperature():
    # min_p=0.3 on the temperature-1 distribution [0.5, 0.2, 0.2, 0.1] removes id 3 (0.1 < 0.15);
    # a temperature of 5 afterwards does not bring it back.
    s = make_sampler(SamplingParams(top_k=0, top_p=1.0, min_p=0.3, temperature=5.0))
    p = s.probs(logits_of([0.5, 0.2, 0.2, 0.1]))
    assert p[3] == 0.0 and (p[:3] > 0).all()


def test_penalties_apply_before_filters():
    # Without penalties top_k=1-ish filtering would keep id 0; the penalty makes id 1 the best.
    s = make_sampler(SamplingParams(temperature=0.0, repeat_penalty=4.0))
    x = np.array([2.0, 1.0, 0.0], dtype=np.float32)
    assert s.sample(x, history=[0]) == 1
    assert s.sample(x, history=[]) == 0


def test_probs_properties_on_large_vocab():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(151_936) * 3).astype(np.float32)
    for params in (SamplingParams(seed=1), SamplingParams(top_k=0, top_p=0.9, min_p=0.0, seed=1),
                   SamplingParams(typical_p=0.8, seed=1), SamplingParams(top_k=0, top_p=1.0, min_p=0.0)):
        p = make_sampler(params).probs(x, history=rng.integers(0, x.size, 100))
        assert p.shape == x.shape and p.dtype == np.float64
        assert abs(p.sum() - 1.0) < 1e-9
        assert (p >= 0).all()
        if params.top_k:
            assert (p > 0).sum() <= params.top_k


def test_greedy_argmax_lowest_id_on_ties_and_one_hot_probs():
    s = make_sampler(SamplingParams(temperature=0.0, seed=5))
    x = np.array([0.1, 0.9, 0.3, 0.9], dtype=np.float32)
    assert s.is_greedy
    assert s.sample(x) == 1
    np.testing.assert_array_equal(s.probs(x), [0.0, 1.0, 0.0, 0.0])
    state = s.rng.bit_generator.state
    for _ in range(3):
        assert s.sample(x) == 1
    assert s.rng.bit_generator.state == state  # greedy consumes no randomness


def test_greedy_respects_logit_bias():
    s = make_sampler(SamplingParams(temperature=0.0, logit_bias={1: -math.inf}))
    assert s.sample(np.array([0.1, 0.9, 0.3, 0.9], dtype=np.float32)) == 3


@pytest.mark.parametrize(
    "logits,match",
    [
        (np.array([0.0, np.nan, 1.0], dtype=np.float32), "NaN .first at index 1"),
        (np.array([0.0, np.inf], dtype=np.float32), "at most 1e.30; found inf at index 1"),
        (np.array([0.0, 2e30]), "at most 1e.30; found 2e.30 at index 1"),
        (np.array([NEG, NEG], dtype=np.float32), "all 2 logits are -inf"),
        (np.zeros((2, 3), dtype=np.float32), "1-D"),
        (np.zeros(0, dtype=np.float32), "1-D"),
        (np.array([1, 2, 3]), "float"),
    ],
)
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_bad_logits_raise_clear_errors(logits, match, temperature):
    s = make_sampler(SamplingParams(temperature=temperature, seed=0))
    with pytest.raises(ValueError, match=match):
        s.sample(logits)
    with pytest.raises(ValueError, match=match):
        s.probs(logits)


def test_bias_that_removes_every_token_is_an_error():
    s = make_sampler(SamplingParams(logit_bias={0: -math.inf, 1: -math.inf}))
    with pytest.raises(ValueError, match="removed every token"):
        s.sample(np.array([1.0, 2.0], dtype=np.float32))


def test_seed_reproducibility_and_reset():
    x = np.zeros(50, dtype=np.float32)  # uniform over 50 tokens: a sequence of 40 draws identifies the stream
    params = SamplingParams(top_k=0, top_p=1.0, min_p=0.0, temperature=1.0, seed=1234)
    a, b = make_sampler(params), make_sampler(params)
    seq_a = [a.sample(x) for _ in range(40)]
    assert seq_a == [b.sample(x) for _ in range(40)]
    a.reset()
    assert seq_a == [a.sample(x) for _ in range(40)]
    c = make_sampler(params, seed=1235)
    assert seq_a != [c.sample(x) for _ in range(40)]


def test_draw_never_returns_zero_probability_ids():
    s = make_sampler(SamplingParams(seed=7))
    q = np.array([0.0, 0.3, 0.0, 0.0, 0.7, 0.0])
    seen = {s.draw(q) for _ in range(300)}
    assert seen == {1, 4}
    with pytest.raises(ValueError, match="sum to 0"):
        s.draw(np.zeros(3))
    with pytest.raises(ValueError, match="finite values >= 0"):
        s.draw(np.array([0.5, -0.1]))


def test_sample_frequencies_match_probs_chi_square():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12).astype(np.float32)
    s = make_sampler(SamplingParams(top_k=8, top_p=0.97, min_p=0.02, temperature=0.9, seed=2024))
    p = s.probs(x)
    support = np.flatnonzero(p > 0)
    assert 3 <= support.size <= 8
    n = 6000
    counts = np.bincount([s.sample(x) for _ in range(n)], minlength=x.size)
    assert counts[p == 0].sum() == 0
    expected = n * p[support]
    chi2 = float(((counts[support] - expected) ** 2 / expected).sum())
    # Upper 0.1% points of the chi-square distribution for df = 2..7 (a fixed seed makes this exact).
    crit = {2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32}[support.size - 1]
    assert chi2 < crit, (chi2, crit, counts[support].tolist(), expected.tolist())


def test_top_p_partial_sort_matches_full_sort_on_large_vectors():
    # apply_top_p sorts only the most likely candidates; compare with a plain full sort.
    rng = np.random.default_rng(5)
    for _ in range(20):
        v = rng.standard_normal(5000) * rng.uniform(0.5, 6.0)
        v[:200] = np.round(v[:200])  # many exact ties
        v[rng.integers(0, v.size, 50)] = NEG
        p = float(rng.uniform(0.05, 0.999))
        ids = np.flatnonzero(v > NEG)
        probs = softmax(v[ids])
        order = np.argsort(-probs, kind="stable")
        n_keep = int(np.searchsorted(np.cumsum(probs[order]), p, side="left")) + 1
        assert kept(apply_top_p(v, p)) == sorted(ids[order[:n_keep]].tolist())


def test_sample_uses_the_same_random_stream_as_draw_of_probs():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(3000).astype(np.float32)
    params = SamplingParams(top_k=0, top_p=0.9, min_p=0.01, temperature=1.3, seed=99)
    a, b = make_sampler(params), make_sampler(params)
    hist = [5, 6, 7]
    assert [a.sample(x, hist) for _ in range(30)] == [b.draw(b.probs(x, hist)) for _ in range(30)]


def test_extreme_but_valid_parameters_stay_finite():
    # Tiny temperature, extreme penalties and biases must not overflow into NaN or raise warnings
    # (pytest turns warnings into errors).
    x = np.array([1e30, -1e305, 5.0, -1e30, 0.0], dtype=np.float64)
    for params in (
        SamplingParams(temperature=1e-300, top_k=0, top_p=1.0, min_p=0.0, seed=1),
        SamplingParams(repeat_penalty=1e6, repeat_last_n=-1, top_k=0, top_p=1.0, min_p=0.0, temperature=100, seed=1),
        SamplingParams(repeat_penalty=1e-6, repeat_last_n=-1, logit_bias={4: 1e6}, top_k=0, seed=1),
    ):
        s = make_sampler(params)
        p = s.probs(x, history=[0, 1, 2, 3, 4])
        assert np.isfinite(p).all() and abs(p.sum() - 1.0) < 1e-12
        assert p[s.sample(x, history=[0, 1, 2, 3, 4])] > 0
