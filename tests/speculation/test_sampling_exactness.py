"""At temperature > 0 speculation must not change the output distribution (pipeinfer/speculation.py:
rejection sampling with a point-mass proposal and residual resampling, multi-candidate for trees).

Two-sample chi-square test of homogeneity between plain sampling and speculative sampling, on the
marginal distribution of the 3rd and 4th generated tokens (positions where drafts are verified), over
600 seeded generations each. Categories with fewer than 10 expected counts are pooled. The critical
value is the chi-square quantile at alpha = 0.001 (Wilson-Hilferty approximation), so a correct
implementation fails this test with probability about 0.1% per comparison, and the seeds are fixed.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import pipeinfer
from pipeinfer.speculation import SpeculationPolicy, verify_position

PROMPT = [5, 17, 99, 3]
RUNS = 600
SAMPLING = dict(temperature=0.7, top_k=6, top_p=1.0, min_p=0.0)


def _chi2_critical(df: int, z: float = 3.0902) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (z = normal quantile, 0.999)."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def _homogeneity(a: Counter, b: Counter) -> "tuple[float, float]":
    keys = sorted(set(a) | set(b))
    na, nb = sum(a.values()), sum(b.values())
    rows, small = [], [0, 0]
    for k in keys:
        ca, cb = a.get(k, 0), b.get(k, 0)
        if (ca + cb) * min(na, nb) / (na + nb) < 10:
            small[0] += ca
            small[1] += cb
        else:
            rows.append((ca, cb))
    if sum(small):
        rows.append(tuple(small))
    obs = np.array(rows, float)
    exp = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
    stat = float(((obs - exp) ** 2 / exp).sum())
    df = max(1, len(rows) - 1)
    return stat, _chi2_critical(df)


def _samples(pipe, position):
    out = Counter()
    for seed in range(RUNS):
        toks = pipe.generate(PROMPT, max_tokens=position + 1, seed=seed, **SAMPLING).tokens
        if len(toks) > position:
            out[toks[position]] += 1
    return out


@pytest.fixture(scope="module")
def models(tiny_model):
    # the target drafts for itself (greedy drafts): accepted often, rejected often enough too
    target, _ = tiny_model("llama", "f32", n_layer=2, seed=3)
    return str(target), str(target)


@pytest.mark.slow
@pytest.mark.parametrize("mode, stages, n_parallel", [("speculative", 1, 1), ("pipeinfer", 2, 1), ("pipeinfer", 2, 3)])
def test_speculative_sampling_matches_plain_sampling(models, mode, stages, n_parallel):
    target, draft = models
    pol = SpeculationPolicy(n_draft=3, n_parallel=n_parallel, p_accept=0.0, p_split=0.05, adaptive=False)
    with pipeinfer.Pipeline(target, n_ctx=64, n_threads=1) as plain, \
            pipeinfer.Pipeline(target, n_ctx=64, n_threads=1, stages=stages, mode=mode, draft=draft,
                               draft_ranks=0, speculation=pol) as spec:
        for position in (2, 3):
            a = _samples(plain, position)
            b = _samples(spec, position)
            stat, crit = _homogeneity(a, b)
            assert stat < crit, f"position {position}: chi2 {stat:.1f} >= {crit:.1f}; plain {a}, spec {b}"
        # the drafts were really used (otherwise the test would be vacuous)
        s = spec.generate(PROMPT, max_tokens=8, seed=1, **SAMPLING)
        assert s.stats.draft_n > 0 and s.stats.draft_n_accepted > 0


def test_verify_position_is_exact_on_a_toy_distribution():
    """Direct check of the rule: with candidates [2, 0] the emitted token still follows p."""
    p = np.array([0.1, 0.2, 0.4, 0.3])
    rng = np.random.default_rng(0)
    n = 40000
    counts = np.zeros(4)
    for _ in range(n):
        tok, _ = verify_position(p, np.log(p), [2, 0], rng)
        counts[tok] += 1
    expected = p * n
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < _chi2_critical(3)


def test_verify_position_greedy():
    logits = np.array([0.0, 3.0, 1.0, 3.0])
    assert verify_position(None, logits, [3, 1], np.random.default_rng(0)) == (1, 1)
    assert verify_position(None, logits, [2], np.random.default_rng(0)) == (1, -1)
