"""The `simulate` experiment: the engine's decoders on a simulated pipeline of the paper's regime
(a 70B target split over 1-8 nodes, a 1.1B-class drafter, Ethernet-class links), swept over depth,
target/draft cost ratio, links and acceptance.

This module owns the projection scenarios; the pipeline model is simulate.py (which runs the real
decoders and policy), its validation against measured runs is part of the `cluster` experiment
(cluster.validate). A node's speed comes from a one-stage measurement of the case's model here.

Acceptance: the drafter is the oracle of the experiments (a replay of the target's text) corrupted
by NoisyDrafter with error rate 1 - a, so a drafted token continuing a right context is right with
probability a.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, TypedDict

import numpy as np

from pipeinfer.evaluation.simulate import MODES, Link, SimConfig, StageCost, simulate
from pipeinfer.speculation import SpeculationPolicy

if TYPE_CHECKING:
    from pipeinfer.evaluation.experiments import Settings

__all__ = ["exp_simulate", "project", "REGIME_70B"]

# The paper's Dolphin-2.2-70B (Q3_K_M) -> TinyLlama-1.1B (Q4_K_M) pair (spec section 6.1): GGUF sizes,
# hidden size, vocabulary and layers of those models.
REGIME_70B = {"target_bytes": 33.2e9, "draft_bytes": 0.67e9, "n_embd": 8192, "n_vocab": 32000, "n_layer": 80}
# Verifying k more tokens in one run costs this fraction of a one-token run per extra token: a memory-bound
# large model reads its weights once per run (an assumption for the projection, stated in the report).
MEMORY_BOUND_BATCH_RATIO = 0.1
PROJ_LINKS = [("10gbit+0.05ms", 10e9, 0.05e-3), ("1gbit+0.5ms", 1e9, 0.5e-3), ("100mbit+2ms", 100e6, 2e-3)]
N_PROMPT = 16


class _Shared(TypedDict):
    """The `project` arguments every scenario of exp_simulate shares."""

    node_bytes_per_s: float
    n_tokens: int
    seeds: int


def _truth(n: int, seed: int) -> List[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, 32000, n)]


def _drafter(truth: List[int], acceptance: float, seed: int) -> Any:
    from pipeinfer.drafters import NoisyDrafter
    from pipeinfer.evaluation.drafting import ReplayDrafter

    return NoisyDrafter(ReplayDrafter(truth, 32000), 1.0 - acceptance, seed=seed)


def project(*, n_stages: int, acceptance: float, ratio: float = 50.0, link: "tuple[float, float]" = (10e9, 0.05e-3),
            node_bytes_per_s: float, batch_ratio: float = MEMORY_BOUND_BATCH_RATIO, head_s: float = 0.0,
            n_tokens: int = 128, regime: Mapping[str, float] = REGIME_70B, seeds: int = 5) -> Dict[str, Dict[str, float]]:
    """The three modes for the target of `regime` split evenly over n_stages nodes (the head holds the
    first slice and drafts; a drafted token costs the target's time / ratio); means over seeds."""
    t_target = regime["target_bytes"] / node_bytes_per_s  # one token through the whole model, seconds
    per_stage = t_target / n_stages
    stages = [StageCost(per_stage, per_stage * batch_ratio, max(1, int(regime["n_layer"] // n_stages)))
              for _ in range(n_stages)]
    cfg = SimConfig(stages=stages, link=Link(link[1], link[0]), act_bytes_per_token=4 * regime["n_embd"],
                    head_result_s=head_s, draft_per_token_s=t_target / ratio)
    out: Dict[str, Dict[str, float]] = {}
    for mode in MODES:
        rs = []
        for seed in range(seeds):
            truth = _truth(N_PROMPT + n_tokens + 1, seed)
            d = None if mode == "iterative" else _drafter(truth, acceptance, seed)
            rs.append(simulate(cfg, mode, d, truth, N_PROMPT, n_tokens, SpeculationPolicy()).as_dict())
        keys = ("predicted_per_second", "ttft_decode_ms", "itl_ms_mean", "acceptance_rate", "runs_cancelled")
        out[mode] = {k: float(np.mean([r[k] for r in rs])) for k in keys}
    return out


def _node_speed(model: str, prompt: str, n_threads: int) -> Dict[str, float]:
    """Bytes per second one node streams through the model (one stage, one token at a time, measured)."""
    import pipeinfer

    with pipeinfer.Pipeline(model, n_ctx=512, n_threads=n_threads) as pipe:
        pipe.generate(prompt, max_tokens=2, temperature=0, parse_special=True)
        pipe.reset()
        s = pipe.generate(prompt, max_tokens=24, temperature=0, parse_special=True)
        per_token = s.timings.predicted_ms / 1e3 / max(1, s.timings.predicted_n - 1)
    return {"node_bytes_per_s": os.path.getsize(model) / per_token, "per_token_s": per_token}


def exp_simulate(st: Settings) -> Dict[str, Any]:
    from pipeinfer.evaluation.experiments import _cases, _doc, _finish
    from pipeinfer.evaluation.runner import Progress

    case = _cases(st)[0]
    prog = Progress("simulate", 6, st.progress)
    speed = _node_speed(case[2], st.prompt, st.n_threads)
    node_bw = speed["node_bytes_per_s"]
    prog.step(f"node speed {node_bw / 1e9:.1f} GB/s ({case[1]}, {1e3 * speed['per_token_s']:.1f} ms/token)")
    proj: List[Dict[str, Any]] = []
    n_tok = 64 if st.quick else 128
    seeds = 2 if st.quick else 5

    def add(kind: str, x: Any, res: Dict[str, Dict[str, float]], **kw: Any) -> None:
        it = res["iterative"]["predicted_per_second"]
        sp = res["speculative"]["predicted_per_second"]
        for mode, r in res.items():
            proj.append({"projection": kind, "x": x, "mode": mode, **kw, **r,
                         "vs_iterative": r["predicted_per_second"] / it, "vs_speculative": r["predicted_per_second"] / sp})

    common: _Shared = {"node_bytes_per_s": node_bw, "n_tokens": n_tok, "seeds": seeds}
    for a in (0.4, 0.7, 0.9):
        for n in (1, 2, 4, 8):
            add("depth", n, project(n_stages=n, acceptance=a, **common), acceptance=a, batch_ratio=MEMORY_BOUND_BATCH_RATIO)
    prog.step("projection: depth 1-8 nodes")
    for ratio in (2, 4, 8, 16, 50, 100):
        add("ratio", ratio, project(n_stages=8, acceptance=0.7, ratio=ratio, **common), acceptance=0.7)
    prog.step("projection: target/draft ratio 2-100")
    for lname, bw, lat in PROJ_LINKS:
        for a in (0.4, 0.7):
            add("link", lname, project(n_stages=8, acceptance=a, link=(bw, lat), **common), acceptance=a)
    prog.step("projection: links")
    for a in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0):
        add("acceptance", a, project(n_stages=8, acceptance=a, **common), acceptance=a)
    prog.step("projection: acceptance 0-1")
    doc = _doc("simulate", st, [], projections=proj,
               projection_inputs={"regime": REGIME_70B, "node_bytes_per_s": node_bw, "batch_ratio": MEMORY_BOUND_BATCH_RATIO,
                                  "n_tokens": n_tok, "seeds": seeds, "policy": "SpeculationPolicy() (adaptive)"})
    return _finish("simulate", st, doc, prog)
