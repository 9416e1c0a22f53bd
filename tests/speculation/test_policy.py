"""The speculation policy's controller: measured costs, predicted arms, corrections by outcome, and the
switch between speculating and not (the switching cases run the real decoders on the simulator)."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer.evaluation.simulate import Link, SimConfig, StageCost, simulate
from pipeinfer.speculation import Drafter, DraftLimits, DraftTree, SpeculationPolicy
from pipeinfer.speculation.costs import Acceptance, Arm, CostModel, LinearFit, epoch_seconds, predict

TRUTH = [int(t) for t in np.random.default_rng(1).integers(0, 1000, 400)]
P = 8


def _costs(lat0=0.08, lat1=0.01, gap=None):
    cm = CostModel(n_stages=4)
    for b in (1, 3, 5, 9):
        cm.observe_latency(b, lat0 + lat1 * b)
    if gap is not None:
        cm.observe_spacing(4, gap)
    return cm


def test_linear_fit_and_acceptance_estimates():
    f = LinearFit(forget=1.0)
    for x in (1, 2, 4):
        f.add(x, 3.0 + 0.5 * x)
    assert f.coefficients() == pytest.approx((3.0, 0.5))
    g = LinearFit(slope_prior=0.1)
    g.add(2, 1.2)  # one size only: slope from the prior
    assert g(2) == pytest.approx(1.2) and g(12) > g(2)
    acc = Acceptance(prior=0.6, weight=2.0, forget=1.0)
    acc.observe(8, True)  # 8 accepted then a rejection, plus the prior 1.2 / 2
    assert acc.value == pytest.approx((1.2 + 8) / (2 + 9))


def test_predictions_follow_the_formulas():
    cm = _costs()
    lat = cm.latency
    assert predict(Arm(0), 0.5, cm) == pytest.approx((1.0, lat(1)))
    tokens, seconds = predict(Arm(4, 0), 0.5, cm)  # synchronous: 1 + a + ... + a^4 per round of 5 tokens
    assert tokens == pytest.approx(1 + 0.5 + 0.25 + 0.125 + 0.0625) and seconds == pytest.approx(lat(5))
    # chaining pays with good drafts, not with useless ones
    assert predict(Arm(4, 3), 0.95, cm)[0] / predict(Arm(4, 3), 0.95, cm)[1] > \
        predict(Arm(4, 0), 0.95, cm)[0] / predict(Arm(4, 0), 0.95, cm)[1]
    t0, s0 = predict(Arm(4, 3), 0.0, cm)
    assert t0 == pytest.approx(1.0) and s0 == pytest.approx(lat(5))


def test_fixed_policy_and_measured_corrections():
    assert SpeculationPolicy(n_draft=5, max_in_flight=3, adaptive=False).plan() == Arm(5, 2)
    pol = SpeculationPolicy(n_draft=4, max_in_flight=2)
    pol.begin(4, chained=False)
    assert pol.plan() == Arm(0)  # nothing measured: the first run measures the pipeline
    pol.costs = _costs()
    pol.acceptance.observe(20, False)
    best = pol.plan()
    assert not best.off and best.depth == 0
    # that arm's epochs keep taking 4x the time the model gives them: the policy turns to another
    for _ in range(10):
        pol.epoch(best, 5, 4 * epoch_seconds(best, pol.costs, 5))
    assert pol._correction(best) < 0.5 and pol.plan() != best


def test_acceptance_of_the_last_generation_is_the_next_ones_prior():
    pol = SpeculationPolicy()
    assert pol.acceptance.value == pytest.approx(0.6)  # nothing observed: the fixed prior
    pol.begin(1, chained=False)
    assert pol.acceptance.value == pytest.approx(0.6)
    for _ in range(20):
        pol.verified(0, rejected=True)
    low = pol.acceptance.value
    assert low < 0.1
    pol.begin(1, chained=False)  # the next generation starts from it, with the prior's weight only
    assert pol.acceptance.value == pytest.approx(low)
    pol.verified(5, rejected=False)  # and moves fast with new evidence
    assert pol.acceptance.value > 0.5


def test_no_arm_beats_plain_decoding_without_accepted_drafts():
    """An arm whose epochs ran faster than modelled (a draft rank sent fewer drafts than it asked for)
    must not look better than plain decoding when no draft is accepted: an epoch takes at least the run
    of its first token."""
    pol = SpeculationPolicy(n_draft=4, max_in_flight=4)
    pol.begin(4, chained=True)
    pol.costs = _costs()
    for _ in range(30):
        pol.acceptance.observe(0, True)
    for arm in pol.arms():
        if not arm.off:  # every speculative epoch took half the model's time
            for _ in range(10):
                pol.epoch(arm, 1, 0.5 * epoch_seconds(arm, pol.costs, 1))
    fast = Arm(4, 3)
    assert pol.corrected_rate(fast, 0.0) > pol.corrected_rate(Arm(0), 0.0)  # the corrections alone would speculate
    assert pol.plan().off


class _PhaseDrafter(Drafter):
    """Drafts the truth from position `good_from` on, wrong tokens before (a text that becomes
    predictable), or the reverse."""

    def __init__(self, good_from=0, good_until=10**9):
        self.good_from, self.good_until = good_from, good_until

    def propose(self, context, limits: DraftLimits) -> DraftTree:
        n = len(context)
        toks = [TRUTH[i] if self.good_from <= i < self.good_until else (TRUTH[i] + 1) % 1000
                for i in range(n, min(n + limits.n_draft, len(TRUTH)))]
        return DraftTree.chain(toks)


# verifying a token costs as much as the run's fixed part: speculation only pays with good drafts
CFG = SimConfig(stages=[StageCost(4e-3, 4e-3, 4), StageCost(4e-3, 4e-3, 4)], link=Link(1e-4))


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_speculation_switches_off_where_it_loses(mode):
    it = simulate(CFG, "iterative", None, TRUTH, P, 120).predicted_per_second
    r = simulate(CFG, mode, _PhaseDrafter(good_from=10**9), TRUTH, P, 120, SpeculationPolicy())
    assert r.predicted_per_second >= 0.95 * it
    assert r.stats["draft_n"] <= 20  # a few probes, then off


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_speculation_comes_back_when_it_pays(mode):
    pol = SpeculationPolicy()
    arms = []
    plan = pol.plan
    pol.plan = lambda: arms.append(plan()) or arms[-1]
    r = simulate(CFG, mode, _PhaseDrafter(good_from=P + 60), TRUTH, P, 200, pol)
    # the first 60 tokens cannot be drafted: mostly one-token epochs without speculation; then the
    # drafts are right, speculation is back and stays on
    assert sum(a.off for a in arms) >= 30
    assert not any(a.off for a in arms[-3:])
    assert r.stats["draft_n_accepted"] >= 50
