"""The discrete-event pipeline model (pipeinfer.evaluation.simulate) on small synthetic inputs whose
results can be worked out by hand."""
from __future__ import annotations

import math

import pytest

from pipeinfer.evaluation.simulate import Link, SimConfig, StageCost, simulate
from pipeinfer.speculation import SpeculationPolicy

FIXED = SpeculationPolicy(n_draft=4, max_in_flight=3, adaptive=False)


def _cfg(**kw):
    base = dict(stages=[StageCost(1e-3, 1e-4, 4), StageCost(2e-3, 1e-4, 4)], link=Link(1e-4), n_tokens=50,
                policy=FIXED)
    base.update(kw)
    return SimConfig(**base)


def test_iterative_throughput_is_one_over_stage_and_link_times():
    cfg = _cfg(head_submit_s=2e-4, head_result_s=3e-4)
    r = simulate(cfg, "iterative")
    per_token = (1e-3 + 1e-4) + (2e-3 + 1e-4) + 2 * 1e-4 + 2e-4 + 3e-4  # stages + 2 hops + head
    assert r.token_times[1] == pytest.approx(per_token)
    assert r.predicted_per_second == pytest.approx(50 / (49 * per_token))
    assert r.itl_ms_mean == pytest.approx(1e3 * per_token)
    assert r.runs_launched == 49 and r.runs_cancelled == 0


def test_bandwidth_adds_message_time_per_hop():
    # 1000 B of activations at 8 Mbit/s = 1 ms; 4000 B of logits = 4 ms
    cfg = _cfg(link=Link(0.0, 8e6), act_bytes_per_token=1000, logits_bytes_per_row=4000)
    r = simulate(cfg, "iterative")
    assert r.token_times[1] == pytest.approx(1.1e-3 + 2.1e-3 + 1e-3 + 4e-3)


def test_one_stage_speculative_with_perfect_drafts():
    # every run verifies 1 + 4 tokens and yields 5; a run costs 1 ms + 5 * 0.1 ms
    cfg = _cfg(stages=[StageCost(1e-3, 1e-4)], link=Link(), acceptance=1.0, n_tokens=51)
    r = simulate(cfg, "speculative")
    assert r.runs_launched == 10
    assert r.token_times[-1] == pytest.approx(10 * 1.5e-3)
    assert r.draft_n == 40 and r.draft_n_accepted == 40


def test_speculative_with_useless_drafts_yields_one_token_per_run():
    cfg = _cfg(acceptance=0.0)
    r = simulate(cfg, "speculative")
    assert r.draft_n_accepted == 0
    assert r.runs_launched == 49
    # each run carries 5 tokens: 1.5 ms + 2.5 ms + 2 hops
    assert r.token_times[1] == pytest.approx(1.5e-3 + 2.5e-3 + 2e-4)


def test_pipeinfer_never_accepts_wrong_drafts_and_cancels():
    r = simulate(_cfg(acceptance=0.0), "pipeinfer")
    assert r.draft_n_accepted == 0
    assert r.runs_cancelled > 0
    assert len(r.token_times) == 50
    assert all(b >= a for a, b in zip(r.token_times, r.token_times[1:]))


def test_pipeinfer_perfect_drafts_beat_iterative_on_two_stages():
    it = simulate(_cfg(acceptance=1.0), "iterative").predicted_per_second
    pi = simulate(_cfg(acceptance=1.0), "pipeinfer")
    assert pi.predicted_per_second > 2 * it
    assert pi.runs_cancelled == 0


def test_cancellation_off_computes_every_run():
    on = simulate(_cfg(acceptance=0.3, seed=3), "pipeinfer")
    off = simulate(_cfg(acceptance=0.3, seed=3, cancel=False), "pipeinfer")
    assert sum(off.stage_busy_s[1:]) >= sum(on.stage_busy_s[1:])


def test_same_seed_same_result_and_config_checks():
    a = simulate(_cfg(acceptance=0.6, seed=7), "pipeinfer").token_times
    b = simulate(_cfg(acceptance=0.6, seed=7), "pipeinfer").token_times
    assert a == b
    with pytest.raises(ValueError, match="acceptance"):
        _cfg(acceptance=1.5)
    with pytest.raises(ValueError, match="mode"):
        simulate(_cfg(), "greedy")
    with pytest.raises(ValueError, match="stages"):
        SimConfig(stages=[])
    assert Link(0, 1e9).transfer_s(125) == pytest.approx(1e-6)
    assert Link().transfer_s(10**9) == 0.0 and math.isinf(Link().bandwidth_bps)
