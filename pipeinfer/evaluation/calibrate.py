"""The simulator's costs, fitted from traced runs (timelines of `pipeinfer bench cluster`).

This module owns the fitting: from the per-stage run spans and the head's events of one or more
traced generations on the same pipeline it estimates each stage's compute time as a function of the
batch size, the hop latency, and the head's time between taking a result and launching the next
run. It must not simulate (simulate.py) or run anything.

Fits (all spans of the runs given; skipped runs excluded):
- stage s: duration = fixed_s + per_token_s * n_tokens, least squares (both clipped at 0).
- hop latency: the median of (start on stage s+1) - (end on stage s) over runs that found stage s+1
  idle, and of (result seen by the head) - (end on the last stage) over runs the head was waiting for.
- head: its own time per launched run: the decoding time minus the time it waited (for results or
  drafts) minus its stage-0 compute, over the runs it launched; half charged at launch, half per result.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from pipeinfer.evaluation.simulate import Link, SimConfig, StageCost

__all__ = ["fit_linear", "from_traces"]


def fit_linear(bs: Sequence[float], ts: Sequence[float]) -> "tuple[float, float]":
    """Least-squares (fixed, slope) of t = fixed + slope * b, both clipped at 0."""
    b = np.asarray(bs, dtype=np.float64)
    t = np.asarray(ts, dtype=np.float64)
    if len(b) == 0:
        raise ValueError("fit_linear needs at least one sample")
    if len(set(b.tolist())) < 2:
        return max(float(t.mean()), 0.0), 0.0
    slope, fixed = np.polyfit(b, t, 1)
    if fixed < 0:
        return 0.0, max(float((t * b).sum() / (b * b).sum()), 0.0)
    if slope < 0:
        return max(float(t.mean()), 0.0), 0.0
    return float(fixed), float(slope)


def from_traces(records: Sequence[Mapping[str, Any]], act_bytes_per_token: float = 0.0) -> Dict[str, Any]:
    """Fits a SimConfig to the timelines of `records` (runner records with a "timeline" and
    "stages_detail", all on the same pipeline). Returns {"config": SimConfig, "fit": details}."""
    timelines = [r["timeline"] for r in records if r.get("timeline")]
    if not timelines:
        raise ValueError("no traced record to calibrate from (run with trace=True)")
    n_stages = len(timelines[0]["stages"])
    samples: List[List[tuple]] = [[] for _ in range(n_stages)]
    hop: List[float] = []
    result_hop: List[float] = []
    head: List[float] = []
    control: List[float] = []  # the head's own time per launched run (neither waiting nor computing stage 0)
    for tl in timelines:
        t_end = tl["t_prefill_end"]
        spans = [{sp[0]: sp for sp in stage if sp[1] >= t_end} for stage in tl["stages"]]
        for s, by_id in enumerate(spans):
            for rid, t0, t1, n, layers, skipped in by_id.values():
                if not skipped:
                    samples[s].append((n, t1 - t0))
        for s in range(n_stages - 1):
            ends = sorted(sp[2] for sp in spans[s + 1].values())
            for rid, sp in spans[s].items():
                nxt = spans[s + 1].get(rid)
                if nxt is None or sp[5] or nxt[5]:
                    continue
                prev_end = max((e for e in ends if e <= nxt[1]), default=-np.inf)
                if prev_end <= sp[2]:  # stage s+1 was idle when the run left stage s
                    hop.append(nxt[1] - sp[2])
        events = tl["head"]
        launched = [f["run"] for t, kind, f in events if kind == "launch"]
        if events and launched:
            busy = events[-1][0] - t_end - sum(f.get("waited", 0.0) for t, kind, f in events)
            busy -= sum(sp[2] - sp[1] for rid, sp in spans[0].items() if rid in set(launched))
            control.append(max(0.0, busy) / len(launched))
        results = [(t, f["run"]) for t, kind, f in events if kind == "result"]
        for t, rid in results:
            last = spans[-1].get(rid)
            if last is not None and not last[5]:
                result_hop.append(t - last[2])
        # the head's time from a result to the stage-0 start of the next run launched right after it
        stage0 = spans[0]
        for i, (t, kind, f) in enumerate(events):
            if kind != "result":
                continue
            nxt = next((e for e in events[i + 1:] if e[1] in ("launch", "result")), None)
            if nxt is not None and nxt[1] == "launch" and nxt[2]["run"] in stage0:
                head.append(stage0[nxt[2]["run"]][1] - t)
    stages = []
    fit: Dict[str, Any] = {"stages": []}
    for s in range(n_stages):
        if not samples[s]:
            raise ValueError(f"no span of stage {s} to fit")
        fixed, slope = fit_linear([n for n, _ in samples[s]], [d for _, d in samples[s]])
        detail = timelines and records[0].get("stages_detail", [])
        n_layers = 1
        if detail and s < len(detail):
            n_layers = max(1, int(detail[s]["layer_end"]) - int(detail[s]["layer_begin"]))
        stages.append(StageCost(fixed, slope, n_layers))
        fit["stages"].append({"fixed_s": fixed, "per_token_s": slope, "n_layers": n_layers, "samples": len(samples[s])})
    latency = float(np.median(hop)) if hop else 0.0
    res_lat = float(np.percentile(result_hop, 25)) if result_hop else latency
    head_s = float(np.median(head)) if head else 0.0
    control_s = float(np.median(control)) if control else 0.0
    fit.update(hop_latency_s=latency, result_latency_s=res_lat, head_s=head_s, control_per_run_s=control_s,
               hop_samples=len(hop), head_samples=len(head))
    # The head's own work per run (Python: verification, drafting on the head, the policy, bookkeeping)
    # is charged half at each launch and half at each result; the result hop's extra latency over the
    # other hops is head time too (it polls).
    cfg = SimConfig(stages=stages, link=Link(latency), act_bytes_per_token=act_bytes_per_token,
                    head_submit_s=control_s / 2, head_result_s=control_s / 2 + max(0.0, res_lat - latency))
    return {"config": cfg, "fit": fit}
