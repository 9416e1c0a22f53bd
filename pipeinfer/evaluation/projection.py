"""The `simulate` experiment: calibrate the pipeline model here, validate it against measured 1- and
2-stage runs, then project the three modes to deeper pipelines, larger target/draft ratios and slower
links (the paper's 70B/1.1B regime on 8 nodes).

This module owns the choice of validation runs and projection scenarios and the error statistics; the
model itself is simulate.py, its inputs come from calibrate.py, running from runner.py.

Acceptance in the model: for an oracle drafter corrupted at error rate e, the per-token acceptance is
1 - e by construction; for a real drafter it is fitted so that the model's speculative acceptance rate
equals the measured one on the same stage count.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from pipeinfer.evaluation import calibrate as cal_mod
from pipeinfer.evaluation.simulate import MODES, Link, SimConfig, StageCost, simulate
from pipeinfer.speculation import SpeculationPolicy

__all__ = ["exp_simulate", "fit_acceptance", "project", "REGIME_70B"]

# The paper's Dolphin-2.2-70B (Q3_K_M) -> TinyLlama-1.1B (Q4_K_M) pair (spec section 6.1): GGUF sizes,
# hidden size, vocabulary and layers of those models.
REGIME_70B = {"target_bytes": 33.2e9, "draft_bytes": 0.67e9, "n_embd": 8192, "n_vocab": 32000, "n_layer": 80}
# Verifying k more tokens in one run costs this fraction of a one-token run per extra token: a memory-bound
# large model reads its weights once per run (an assumption for the projection, stated in the report).
MEMORY_BOUND_BATCH_RATIO = 0.1
PROJ_LINKS = [("10gbit+0.05ms", 10e9, 0.05e-3), ("1gbit+0.5ms", 1e9, 0.5e-3), ("100mbit+2ms", 100e6, 2e-3)]
POLICY = {"n_draft": 4, "p_accept": 0.1, "max_in_flight": 3}


def _policy(**kw: Any) -> SpeculationPolicy:
    return SpeculationPolicy(**{**POLICY, **kw})


def _sim_mean(cfg: SimConfig, mode: str, seeds: int = 5) -> Dict[str, float]:
    """Mean over seeds of the model's speed, TTFT, ITL and acceptance rate."""
    rs = []
    for s in range(seeds):
        cfg.seed = s
        rs.append(simulate(cfg, mode).as_dict())
    keys = ("predicted_per_second", "ttft_decode_ms", "itl_ms_mean", "acceptance_rate", "runs_cancelled")
    return {k: float(np.mean([r[k] for r in rs])) for k in keys}


def fit_acceptance(cal: Mapping[str, Any], measured_rate: float, n_tokens: int) -> float:
    """The per-token acceptance whose simulated speculative acceptance rate equals measured_rate."""
    lo, hi = 0.0, 1.0
    for _ in range(14):
        mid = (lo + hi) / 2
        cfg = cal_mod.sim_config(cal, acceptance=mid, policy=_policy(), n_tokens=n_tokens)
        if _sim_mean(cfg, "speculative", 3)["acceptance_rate"] < measured_rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def project(*, n_stages: int, acceptance: float, ratio: float = 50.0, link: "tuple[float, float]" = (10e9, 0.05e-3),
            node_bytes_per_s: float, batch_ratio: float = MEMORY_BOUND_BATCH_RATIO, head_s: float = 0.0,
            n_tokens: int = 128, regime: Mapping[str, float] = REGIME_70B, seeds: int = 5) -> Dict[str, Dict[str, float]]:
    """The three modes for the target of `regime` split evenly over n_stages nodes (the head holds the
    first slice and the drafter, whose per-token time is the target's / ratio)."""
    t_target = regime["target_bytes"] / node_bytes_per_s  # one token through the whole model, seconds
    per_stage = t_target / n_stages
    stages = [StageCost(per_stage, per_stage * batch_ratio, max(1, int(regime["n_layer"] // n_stages)))
              for _ in range(n_stages)]
    out = {}
    for mode in MODES:
        cfg = SimConfig(stages=stages, link=Link(link[1], link[0]), act_bytes_per_token=4 * regime["n_embd"],
                        logits_bytes_per_row=4 * regime["n_vocab"], head_submit_s=head_s / 2, head_result_s=head_s / 2,
                        draft_per_token_s=t_target / ratio, acceptance=acceptance, policy=_policy(), n_tokens=n_tokens)
        out[mode] = _sim_mean(cfg, mode, seeds)
    return out


def _validation(st: Any, prog: Any, case: tuple, chk: Any, records: List[Dict[str, Any]]) -> Dict[str, Any]:
    from pipeinfer.evaluation.runner import RunSpec, run

    case_name, name, path, draft = case
    cal1 = cal_mod.calibrate(path, st.prompt, stages=1, n_threads=st.n_threads)
    cal2 = cal_mod.calibrate(path, st.prompt, stages=2, n_threads=st.n_threads, head_s=cal1["head_s"])
    prog.step(f"{case_name}: calibrated (head {1e3 * cal1['head_s']:.2f} ms/token, "
              f"hop {1e3 * cal2['hop_latency_s']:.2f} ms)")
    ref = chk.reference(path, st.prompt, st.gen, st.n_threads)
    truth = chk.truth(path, st.prompt, st.gen, st.n_threads)
    drafters = [{"kind": "replay", "truth": truth, "error_rate": e, "seed": 1} for e in (0.1, 0.5)] + [draft]
    cals = {1: cal1, 2: cal2}
    iter_measured: Dict[int, float] = {}
    iter_model: Dict[int, float] = {}
    for d in drafters:
        dc = _measure_draft(d, path, truth, len(truth) - len(ref))
        for c in cals.values():
            c.update(dc)
        alpha: Optional[float] = 1.0 - d["error_rate"] if d["kind"] == "replay" else None
        for n in (1, 2):
            for mode in MODES:
                if mode == "iterative" and d is not drafters[0]:
                    continue
                spec = RunSpec(model=path, mode=mode, prompt=st.prompt, n_gen=st.gen, stages=n,
                               draft=d if mode != "iterative" else None, n_threads=st.n_threads,
                               labels={"case": case_name, "model_name": name, "source": "measured"})
                rec = run(spec, ref)
                records.append(rec)
                if rec.get("error"):
                    prog.step(f"{case_name} x{n} {mode}: ERROR {rec['error'][:200]}")
                    continue
                if alpha is None and mode == "speculative":
                    alpha = fit_acceptance(cals[n], rec["acceptance_rate"], st.gen)
                a = alpha if alpha is not None else 0.0
                cfg = cal_mod.sim_config(cals[n], acceptance=a, policy=_policy(), n_tokens=st.gen)
                pred = _sim_mean(cfg, mode)
                err = pred["predicted_per_second"] / rec["predicted_per_second"] - 1.0
                if mode == "iterative":
                    iter_measured[n], iter_model[n] = rec["predicted_per_second"], pred["predicted_per_second"]
                # the speed-up over iterative on the same stages cancels the machine's speed drift (shared cores)
                speedup_meas = rec["predicted_per_second"] / iter_measured.get(n, float("nan"))
                speedup_model = pred["predicted_per_second"] / iter_model.get(n, float("nan"))
                records.append({"experiment": "simulate", "case": case_name, "model_name": name, "source": "model",
                                "mode": mode, "stages": n, "transport": "local", "drafter": rec["drafter"],
                                "acceptance": a if mode != "iterative" else None, **pred, "rel_error": err,
                                "measured_per_second": rec["predicted_per_second"],
                                "speedup_measured": speedup_meas, "speedup_model": speedup_model,
                                "speedup_rel_error": speedup_model / speedup_meas - 1.0})
                prog.step(f"{case_name} x{n} {mode} {rec['drafter']}: measured {rec['predicted_per_second']:.1f}, "
                          f"model {pred['predicted_per_second']:.1f} tok/s ({100 * err:+.0f}%; speed-up over iterative "
                          f"measured {speedup_meas:.2f}, model {speedup_model:.2f})")
    for c in cals.values():
        c.pop("truth", None)
    return {"calibration_1": cal1, "calibration_2": cal2}


def _measure_draft(d: Mapping[str, Any], path: str, truth: List[int], n_prompt: int) -> Dict[str, float]:
    from pipeinfer import _core
    from pipeinfer.evaluation.drafting import build_drafter

    drafter = build_drafter(d, _core.GGUFFile(path).metadata())
    try:
        return cal_mod._draft_costs(drafter, truth, n_prompt, POLICY["n_draft"])
    finally:
        drafter.close()


def exp_simulate(st: Any) -> Dict[str, Any]:
    from pipeinfer.evaluation.experiments import _Checker, _cases, _doc, _finish
    from pipeinfer.evaluation.runner import Progress

    cases = _cases(st)
    if st.quick and st.model is None:
        cases = cases[:1]
    prog = Progress("simulate", len(cases) * 16 + 4, st.progress)
    chk = _Checker()
    records: List[Dict[str, Any]] = []
    calibrations = {}
    for case in cases:
        calibrations[case[0]] = _validation(st, prog, case, chk, records)
    model_recs = [r for r in records if r.get("source") == "model"]
    errs = [abs(r["rel_error"]) for r in model_recs]
    serrs = [abs(r["speedup_rel_error"]) for r in model_recs
             if r["mode"] != "iterative" and np.isfinite(r["speedup_rel_error"])]
    validation = {"n": len(errs), "mean_abs_rel_error": float(np.mean(errs)) if errs else None,
                  "max_abs_rel_error": float(np.max(errs)) if errs else None,
                  "mean_abs_speedup_error": float(np.mean(serrs)) if serrs else None,
                  "max_abs_speedup_error": float(np.max(serrs)) if serrs else None}
    # projections from the first case's calibration
    cal1 = calibrations[cases[0][0]]["calibration_1"]
    c0 = cal1["stages"][0]
    model_bytes = os.path.getsize(cases[0][2])
    node_bw = model_bytes / (c0["fixed_s"] + c0["per_token_s"])  # effective bytes/s of one node here
    measured_ratio = c0["per_token_s"] / max(c0["fixed_s"], 1e-12)
    head_s = cal1["head_s"]
    proj: List[Dict[str, Any]] = []
    n_tok = 64 if st.quick else 128
    seeds = 3 if st.quick else 8

    def add(kind: str, x: Any, res: Dict[str, Dict[str, float]], **kw: Any) -> None:
        it = res["iterative"]["predicted_per_second"]
        sp = res["speculative"]["predicted_per_second"]
        for mode, r in res.items():
            proj.append({"projection": kind, "x": x, "mode": mode, **kw, **r,
                         "vs_iterative": r["predicted_per_second"] / it, "vs_speculative": r["predicted_per_second"] / sp})

    for a in (0.4, 0.7, 0.9):
        for n in (1, 2, 4, 8):
            add("depth", n, project(n_stages=n, acceptance=a, node_bytes_per_s=node_bw, head_s=head_s, n_tokens=n_tok,
                                    seeds=seeds), acceptance=a, batch_ratio=MEMORY_BOUND_BATCH_RATIO)
    prog.step("projection: depth 1-8 nodes")
    for n in (1, 2, 4, 8):
        add("depth_measured_batch", n, project(n_stages=n, acceptance=0.7, node_bytes_per_s=node_bw, head_s=head_s,
                                               batch_ratio=measured_ratio, n_tokens=n_tok, seeds=seeds),
            acceptance=0.7, batch_ratio=measured_ratio)
    for ratio in (2, 4, 8, 16, 50, 100):
        add("ratio", ratio, project(n_stages=8, acceptance=0.7, ratio=ratio, node_bytes_per_s=node_bw, head_s=head_s,
                                    n_tokens=n_tok, seeds=seeds), acceptance=0.7)
    prog.step("projection: target/draft ratio 2-100")
    for lname, bw, lat in PROJ_LINKS:
        for a in (0.4, 0.7):
            add("link", lname, project(n_stages=8, acceptance=a, link=(bw, lat), node_bytes_per_s=node_bw, head_s=head_s,
                                       n_tokens=n_tok, seeds=seeds), acceptance=a)
    prog.step("projection: links")
    for a in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0):
        add("acceptance", a, project(n_stages=8, acceptance=a, node_bytes_per_s=node_bw, head_s=head_s, n_tokens=n_tok,
                                     seeds=seeds), acceptance=a)
    prog.step("projection: acceptance 0-1")
    doc = _doc("simulate", st, records, validation=validation, calibrations=calibrations, projections=proj,
               projection_inputs={"regime": REGIME_70B, "node_bytes_per_s": node_bw, "head_s": head_s,
                                  "batch_ratio": MEMORY_BOUND_BATCH_RATIO, "measured_batch_ratio": measured_ratio,
                                  "policy": POLICY, "n_tokens": n_tok, "seeds": seeds})
    return _finish("simulate", st, doc, prog)
