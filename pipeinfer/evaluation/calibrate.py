"""Measures the inputs of the pipeline model (simulate.py) on this machine.

This module owns the calibration runs and the fitting: per-stage compute time as a function of the batch
size (from the engine's per-stage busy time over single batches of 1..8 tokens), the head's per-token
overhead and the per-hop link cost (the residual of iterative decoding after compute), the drafter's time
per drafted token, and the message sizes (from the GGUF metadata). It must not simulate.

Fits:
- stage s, batch b: busy_s(b) = fixed_s + per_token_s * b, least squares over the batch sizes (clipped >= 0).
- head overhead h (per token of iterative decoding, one stage): wall time per token - stage_0(1).
- per-hop latency (N stages): (wall per token - sum_s stage_s(1) - h) / N (N hops: N-1 activations + logits).
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["fit_linear", "measure_stage_costs", "calibrate", "sim_config"]


def fit_linear(bs: Sequence[float], ts: Sequence[float]) -> "tuple[float, float]":
    """Least-squares (fixed, slope) of t = fixed + slope * b, both clipped at 0."""
    b = np.asarray(bs, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    if len(set(b.tolist())) < 2:
        return max(float(t.mean()), 0.0), 0.0
    slope, fixed = np.polyfit(b, t, 1)
    if fixed < 0:
        return 0.0, max(float((t * b).sum() / (b * b).sum()), 0.0)
    if slope < 0:
        return max(float(t.mean()), 0.0), 0.0
    return float(fixed), float(slope)


def measure_stage_costs(pipe: Any, ids: Sequence[int], batch_sizes: Sequence[int] = (1, 2, 4, 8),
                        repeats: int = 3) -> List[Dict[str, float]]:
    """Per-stage (fixed_s, per_token_s, n_layers) from the engine's busy time over single batches."""
    samples: List[List[tuple]] = []
    pipe.eval_logits(list(ids[: max(batch_sizes)]))  # warm the pages
    for b in batch_sizes:
        for _ in range(repeats):
            before = pipe.stage_stats()
            pipe.eval_logits(list(ids[:b]))
            after = pipe.stage_stats()
            if not samples:
                samples = [[] for _ in after]
            for s, (x, y) in enumerate(zip(before, after)):
                samples[s].append((b, y["busy_s"] - x["busy_s"]))
    out = []
    for s, st in enumerate(pipe.stage_stats()):
        fixed, slope = fit_linear([b for b, _ in samples[s]], [t for _, t in samples[s]])
        out.append({"fixed_s": fixed, "per_token_s": slope,
                    "n_layers": max(1, int(st.get("layer_end", 1)) - int(st.get("layer_begin", 0)))})
    return out


def _draft_costs(drafter: Any, truth: Sequence[int], n_prompt: int, n_draft: int, steps: int = 12) -> Dict[str, float]:
    from pipeinfer.drafters import DraftLimits

    limits = DraftLimits(n_draft=n_draft)
    drafter.begin(list(truth[:n_prompt]))
    ts = []
    for i in range(steps):
        ctx = list(truth[: n_prompt + 2 * i])
        t0 = time.perf_counter()
        tree = drafter.propose(ctx, limits)
        ts.append((time.perf_counter() - t0) / max(1, len(tree) or n_draft))
    return {"draft_fixed_s": 0.0, "draft_per_token_s": float(np.median(ts))}


def calibrate(model: str, prompt: str, *, stages: int, n_threads: int = 1, n_ctx: int = 1024, n_gen: int = 24,
              draft: Optional[Mapping[str, Any]] = None, head_s: Optional[float] = None,
              policy_n_draft: int = 4) -> Dict[str, Any]:
    """Measures the model inputs with `stages` local stages.

    Args:
        head_s: the head overhead per token from a one-stage calibration (measured here when stages == 1;
            required otherwise, so that the residual is split into head and links).
        draft: drafter spec (drafting.py) whose time per drafted token is measured (None: 0).

    Returns:
        dict with stages (list of fixed_s, per_token_s, n_layers), head_s, hop_latency_s,
        act_bytes_per_token, logits_bytes_per_row, draft_fixed_s, draft_per_token_s, iter_wall_per_token_s
        and the reference tokens (truth: prompt + generated).
    """
    import pipeinfer
    from pipeinfer.evaluation.drafting import build_drafter

    with pipeinfer.Pipeline(model, n_ctx=n_ctx, n_threads=n_threads, stages=stages, transport="local") as pipe:
        meta = pipe.metadata
        arch = meta.get("general.architecture")
        n_embd = int(meta.get(f"{arch}.embedding_length", 0))
        ids = pipe.tokenize(prompt, parse_special=True)
        ids = (ids * 8)[: max(8, len(ids))]
        costs = measure_stage_costs(pipe, ids)
        pipe.generate(prompt, max_tokens=2, temperature=0, parse_special=True)
        pipe.reset()
        s = pipe.generate(prompt, max_tokens=n_gen, temperature=0, parse_special=True)
        wall = s.timings.predicted_ms / 1e3 / max(1, s.timings.predicted_n - 1)
        truth = list(s.prompt_tokens) + list(s.tokens)
        n_prompt = len(s.prompt_tokens)
        n_vocab = pipe.n_vocab
        drafter = build_drafter(draft, meta) if draft else None
    compute1 = sum(c["fixed_s"] + c["per_token_s"] for c in costs)
    if stages == 1:
        head = max(0.0, wall - compute1)
        hop = 0.0
    else:
        if head_s is None:
            raise ValueError("calibrate with stages > 1 needs head_s from a one-stage calibration")
        head = head_s
        hop = max(0.0, (wall - compute1 - head) / stages)
    out: Dict[str, Any] = {
        "stages": costs, "head_s": head, "hop_latency_s": hop, "iter_wall_per_token_s": wall,
        "act_bytes_per_token": 4 * n_embd, "logits_bytes_per_row": 4 * n_vocab, "truth": truth,
        "n_prompt": n_prompt, "draft_fixed_s": 0.0, "draft_per_token_s": 0.0,
    }
    if drafter is not None:
        try:
            out.update(_draft_costs(drafter, truth, n_prompt, policy_n_draft))
        finally:
            drafter.close()
    return out


def sim_config(cal: Mapping[str, Any], *, acceptance: float, policy: Any, n_tokens: int,
               link: Any = None, seed: int = 0) -> Any:
    """A simulate.SimConfig from a calibration (link: a simulate.Link; default: the measured hop latency)."""
    from pipeinfer.evaluation.simulate import Link, SimConfig, StageCost

    stages = [StageCost(c["fixed_s"], c["per_token_s"], int(c["n_layers"])) for c in cal["stages"]]
    return SimConfig(
        stages=stages, link=link if link is not None else Link(cal["hop_latency_s"]),
        act_bytes_per_token=cal["act_bytes_per_token"], logits_bytes_per_row=cal["logits_bytes_per_row"],
        head_submit_s=cal["head_s"] / 2, head_result_s=cal["head_s"] / 2, draft_fixed_s=cal["draft_fixed_s"],
        draft_per_token_s=cal["draft_per_token_s"], acceptance=acceptance, policy=policy, n_tokens=n_tokens,
        seed=seed,
    )
