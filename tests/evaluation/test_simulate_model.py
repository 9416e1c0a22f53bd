"""The simulator (pipeinfer.evaluation.simulate): the engine's own decoders on a virtual pipeline, on
inputs whose results can be worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from oracle_drafters import WrongDrafter
from pipeinfer.drafters import NoisyDrafter
from pipeinfer.evaluation.drafting import ReplayDrafter
from pipeinfer.evaluation.simulate import Link, SimConfig, SimTarget, StageCost, simulate
from pipeinfer.speculation import SpeculationPolicy, Target

P = 8  # prompt tokens
TRUTH = [int(t) for t in np.random.default_rng(0).integers(0, 1000, 300)]
FIXED = dict(n_draft=4, max_in_flight=3, adaptive=False)


def _cfg(**kw):
    base = dict(stages=[StageCost(1e-3, 1e-4, 4), StageCost(2e-3, 1e-4, 4)], link=Link(1e-4))
    base.update(kw)
    return SimConfig(**base)


def _oracle(error=0.0, seed=1):
    return NoisyDrafter(ReplayDrafter(TRUTH, 1000), error, seed=seed)


def test_sim_target_implements_the_target_protocol():
    assert isinstance(SimTarget(_cfg(), TRUTH, 64), Target)


def test_iterative_throughput_is_one_over_stage_and_link_times():
    r = simulate(_cfg(head_submit_s=2e-4, head_result_s=3e-4), "iterative", None, TRUTH, P, 50)
    per_token = (1e-3 + 1e-4) + (2e-3 + 1e-4) + 2 * 1e-4 + 2e-4 + 3e-4  # stages + 2 hops + head
    assert r.token_times[1] == pytest.approx(per_token)
    assert r.predicted_per_second == pytest.approx(50 / (49 * per_token))
    assert r.itl_ms_mean == pytest.approx(1e3 * per_token)
    assert r.stats["runs_launched"] == 49 and r.stats["runs_cancelled"] == 0


def test_bandwidth_adds_message_time_per_hop():
    # 1000 B of activations at 8 Mbit/s = 1 ms; a 4000 B result row = 4 ms
    cfg = _cfg(link=Link(0.0, 8e6), act_bytes_per_token=1000, result_bytes_per_row=4000)
    r = simulate(cfg, "iterative", None, TRUTH, P, 10)
    assert r.token_times[1] == pytest.approx(1.1e-3 + 2.1e-3 + 1e-3 + 4e-3)


def test_one_stage_synchronous_with_perfect_drafts():
    # every run verifies 1 + 4 tokens and yields 5; a run costs 1 ms + 5 * 0.1 ms
    r = simulate(_cfg(stages=[StageCost(1e-3, 1e-4)], link=Link()), "speculative", _oracle(), TRUTH, P, 51,
                 SpeculationPolicy(**FIXED))
    assert r.stats["runs_launched"] == 10
    assert r.token_times[-1] == pytest.approx(10 * 1.5e-3)
    # every verified round accepted its 4 drafts (the last one is cut when the 51st token arrives)
    assert r.stats["draft_n"] == 40 and r.stats["draft_n_accepted"] == 4 * r.stats["verifications"] >= 36


def test_synchronous_with_useless_drafts_yields_one_token_per_run():
    r = simulate(_cfg(), "speculative", _oracle(1.0), TRUTH, P, 50, SpeculationPolicy(**FIXED))
    assert r.stats["draft_n_accepted"] == 0 and r.stats["runs_launched"] == 49
    # each run carries 5 tokens: 1.5 ms + 2.5 ms + 2 hops
    assert r.token_times[1] == pytest.approx(1.5e-3 + 2.5e-3 + 2e-4)


def test_pipeinfer_never_accepts_wrong_drafts_and_cancels_them():
    # WrongDrafter drafts after any context (a replayed oracle drafts nothing once its context left the
    # truth), so micro-batches are chained behind wrong ones and must be cancelled
    r = simulate(_cfg(), "pipeinfer", WrongDrafter(TRUTH, n_vocab=1000), TRUTH, P, 50, SpeculationPolicy(**FIXED))
    assert r.stats["draft_n_accepted"] == 0 and r.stats["runs_cancelled"] > 0
    assert len(r.token_times) == 50 and all(b >= a for a, b in zip(r.token_times, r.token_times[1:]))


def test_pipeinfer_perfect_drafts_beat_iterative_on_two_stages():
    it = simulate(_cfg(), "iterative", None, TRUTH, P, 50).predicted_per_second
    pi = simulate(_cfg(), "pipeinfer", _oracle(), TRUTH, P, 50, SpeculationPolicy(**FIXED))
    assert pi.predicted_per_second > 2 * it and pi.stats["runs_cancelled"] == 0


def test_same_inputs_same_result_and_config_checks():
    a = simulate(_cfg(), "pipeinfer", _oracle(0.4), TRUTH, P, 60).token_times
    b = simulate(_cfg(), "pipeinfer", _oracle(0.4), TRUTH, P, 60).token_times
    assert a == b
    with pytest.raises(ValueError, match="mode"):
        simulate(_cfg(), "greedy", None, TRUTH, P, 10)
    with pytest.raises(ValueError, match="drafter"):
        simulate(_cfg(), "pipeinfer", None, TRUTH, P, 10)
    with pytest.raises(ValueError, match="truth"):
        simulate(_cfg(), "iterative", None, TRUTH[:20], P, 50)
    with pytest.raises(ValueError, match="stages"):
        SimConfig(stages=[])
    assert Link(0, 1e9).transfer_s(125) == pytest.approx(1e-6)
    assert Link().transfer_s(10**9) == 0.0 and math.isinf(Link().bandwidth_bps)


def test_cancellation_stops_runs_early_on_the_workers():
    # a slow last stage: cancelled runs stop at a layer boundary, so the stages work less than they
    # would for every launched run
    cfg = _cfg(stages=[StageCost(1e-4), StageCost(2e-3, 1e-4, 8), StageCost(4e-3, 1e-4, 8)])
    r = simulate(cfg, "pipeinfer", WrongDrafter(TRUTH, n_vocab=1000), TRUTH, P, 40,
                 SpeculationPolicy(n_draft=2, max_in_flight=4, adaptive=False))
    full = sum(c.time(n) for n in r.launched for c in cfg.stages[1:])
    assert r.stats["runs_cancelled"] > 0 and sum(r.stage_busy_s[1:]) < 0.9 * full


def test_the_simulator_runs_the_engines_decoder_and_emits_its_tokens(tiny_model):
    """The same decoder, drafter and policy on the native pipeline and on the simulated one: both emit
    the target's greedy tokens (the simulator checks every emitted token against its truth)."""
    import pipeinfer

    path, _ = tiny_model("llama", "q8_0", n_layer=3)
    prompt = [5, 17, 99, 3, 250, 42]
    with pipeinfer.Pipeline(str(path), n_ctx=128) as p:
        want = p.generate(prompt, max_tokens=24, temperature=0).tokens
    truth = prompt + want
    noisy = lambda: NoisyDrafter(ReplayDrafter(truth, 320), 0.3, seed=2)  # noqa: E731
    with pipeinfer.Pipeline(str(path), n_ctx=128, stages=2, mode="pipeinfer", draft=noisy(), draft_ranks=0) as p:
        real = p.generate(prompt, max_tokens=24, temperature=0).tokens
    sim = simulate(_cfg(), "pipeinfer", noisy(), truth, len(prompt), 24)
    assert real == want and len(sim.token_times) == 24 and sim.stats["draft_n"] > 0
