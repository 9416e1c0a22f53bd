"""`pipeinfer bench cluster`: the three decoding modes on an emulated cluster (cgroups.py), swept over
the drafter's error rate.

This module owns the experiment: which configurations run in which order (modes interleaved inside
each repeat, so ratios are taken inside one run), the greedy-output check against iterative decoding,
the per-rank CPU-share check, and the result document (records, timelines). It must not set up cgroups
itself (cgroups.py) or know how one run executes (runner.py).

Drafters (`drafter`): "oracle" replays the target's own greedy continuation (acceptance 1, no drafting
cost) corrupted by NoisyDrafter at each error rate E; "synthetic:R" is the same oracle at the cost of a
draft model R times cheaper than the target (drafting_cost: real work, SyntheticDrafter); "ngram"; or
a draft model (path or known name). With draft_ranks=1 the drafter runs on its own rank (the paper's
topology) with its own quota; iterative decoding uses only the target stages.

Links: `link_latency_s` / `link_bps` emulate slower links between the ranks inside the transport
(PIPEINFER_LINK_EMULATION; the kernel here has no netem).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from pipeinfer.evaluation.cgroups import CgroupCluster
from pipeinfer.evaluation.experiments import PAPER_PROMPT
from pipeinfer.evaluation.machine import machine_facts
from pipeinfer.evaluation.results import write_results
from pipeinfer.evaluation.runner import EvaluationError, Progress, RunSpec, run

if TYPE_CHECKING:
    from pipeinfer.evaluation.drafting import DraftSpec  # imports the drafters (and _core): not at run time

__all__ = ["ClusterSettings", "run_cluster"]

MODES = ("iterative", "speculative", "pipeinfer")


@dataclass
class ClusterSettings:
    """One emulated-cluster sweep.

    Args:
        stages: target pipeline stages (MPI ranks of the target model).
        draft_ranks: 1: the drafter on its own rank (the last one), 0: on the head.
        quota: CPUs per rank (0.45: four ranks fit in two cores with room to spare).
        quotas: per-rank CPUs instead of `quota` (heterogeneous nodes), one per rank.
        period_us: the CFS period.
        model: target model (path or known name).
        drafter: "oracle", "ngram", or a draft model path / known name.
        errors: error rates swept with the oracle drafter.
        modes: decoding modes, run in this order inside each repeat.
        n_gen: tokens generated per run (greedy).
        repeats: sweeps (each a full interleaved pass), for the spread.
        policy: SpeculationPolicy keyword arguments ({}: the engine's defaults).
        trace: record timelines (per-rank run spans, head events).
        n_ctx: context cells.
        out: result folder.
    """

    stages: int = 4
    draft_ranks: int = 1
    quota: float = 0.45
    quotas: Optional[List[float]] = None
    period_us: int = 10000
    model: str = "qwen2.5-coder-0.5b"
    drafter: str = "oracle"
    errors: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 1.0)
    modes: Sequence[str] = MODES
    n_gen: int = 64
    repeats: int = 1
    policy: Dict[str, Any] = field(default_factory=dict)
    trace: bool = True
    n_ctx: int = 1024
    prompt: str = PAPER_PROMPT
    out: Path = Path("bench-results")
    progress: bool = True
    link_latency_s: float = 0.0
    link_bps: float = 0.0
    tag: Optional[str] = None
    plots: bool = True
    n_threads: int = 1

    @property
    def n_ranks(self) -> int:
        return self.stages + self.draft_ranks

    @property
    def name(self) -> str:
        """The result file's name: cluster-TAG."""
        model = Path(self.model).stem if Path(self.model).exists() else self.model
        drafter = Path(self.drafter).stem if Path(self.drafter).exists() else self.drafter.replace(":", "")
        tag = self.tag or f"{self.stages}x-{model}-{drafter}"
        return f"cluster-{tag}"

    def rank_quotas(self) -> List[float]:
        if self.quotas is not None:
            if len(self.quotas) != self.n_ranks:
                raise ValueError(f"quotas has {len(self.quotas)} entries for {self.n_ranks} ranks")
            return list(self.quotas)
        return [self.quota] * self.n_ranks


def _resolve(name: str) -> str:
    from pipeinfer.models import resolve

    return str(resolve(name))


def _draft_spec(st: ClusterSettings, truth: List[int], error: Optional[float]) -> DraftSpec:
    if st.drafter == "oracle":
        return {"kind": "replay", "truth": truth, "error_rate": error, "seed": 1}
    if st.drafter.startswith("synthetic:"):
        return {"kind": "synthetic", "truth": truth, "error_rate": error, "seed": 1,
                "ratio": float(st.drafter.split(":", 1)[1]), "model": _resolve(st.model)}
    if st.drafter == "ngram":
        return {"kind": "ngram"}
    return {"kind": "model", "path": _resolve(st.drafter), "name": Path(st.drafter).stem}


def run_cluster(st: ClusterSettings) -> Dict[str, Any]:
    """Runs the sweep on an emulated cluster and writes cluster.json / cluster.csv (+ plots); raises
    EvaluationError after writing when a run failed or its greedy output differs from iterative."""
    model = _resolve(st.model)
    quotas = st.rank_quotas()
    noisy = st.drafter == "oracle" or st.drafter.startswith("synthetic:")
    errors = list(st.errors) if noisy else [None]
    spec_modes = [m for m in st.modes if m != "iterative"]
    plan_per_repeat = (1 if "iterative" in st.modes else 0) + len(errors) * len(spec_modes)
    prog = Progress("cluster", plan_per_repeat * st.repeats + 1, st.progress)
    ref = run(RunSpec(model=model, mode="iterative", prompt=st.prompt, n_gen=st.n_gen, n_ctx=st.n_ctx,
                      n_threads=st.n_threads))
    if ref.get("error"):
        raise EvaluationError(f"reference iterative run failed: {ref['error']}")
    want = list(ref["tokens_out"])
    truth = list(ref["prompt_tokens"]) + want
    prog.step(f"reference: {len(want)} greedy tokens")
    records: List[Dict[str, Any]] = []
    with CgroupCluster(quotas, st.period_us) as cl:
        prog.note(f"cgroup {cl.version}: {len(quotas)} ranks, quotas {quotas} CPU, period {st.period_us} us")
        for rep in range(st.repeats):
            plan = ([("iterative", None)] if "iterative" in st.modes else []) + \
                   [(m, e) for e in errors for m in spec_modes]
            for mode, err in plan:
                spec = RunSpec(model=model, mode=mode, prompt=st.prompt, n_gen=st.n_gen, stages=st.stages,
                               transport="mpi", n_ctx=st.n_ctx, n_threads=st.n_threads,
                               draft=None if mode == "iterative" else _draft_spec(st, truth, err),
                               draft_ranks=0 if mode == "iterative" else st.draft_ranks,
                               rank_prefix=cl.rank_prefix(), trace=st.trace, env=_link_env(st),
                               labels={"repeat": rep, "error_rate": err, "drafter": st.drafter,
                                       "draft_ranks": 0 if mode == "iterative" else st.draft_ranks})
                spec.policy = dict(st.policy)  # {}: the engine's defaults
                cl.start_accounting()
                rec = run(spec, want)
                share = cl.check_shares()
                rec["cpu_share_used"] = share["share_used"]
                rec["cpu_share_ok"] = share["ok"]
                rec["throttled"] = cl.throttled()
                records.append(rec)
                prog.step(f"rep {rep} {mode} E={err}: {_line(rec)}")
    doc: Dict[str, Any] = {"experiment": "cluster", "machine": machine_facts(), "settings": _settings_doc(st),
           "quotas": quotas, "cgroup": cl.version, "records": records, "ratios": ratios(records)}
    if st.trace and noisy:
        doc["validation"] = validate(records, truth, len(ref["prompt_tokens"]), st)
        v = doc["validation"]
        prog.note(f"simulator vs measured: mean |error| {100 * v['mean_abs_rel_error']:.1f}% "
                  f"(max {100 * v['max_abs_rel_error']:.1f}%) over {v['n']} runs")
    paths = write_results(st.out, st.name, doc)
    prog.note(f"wrote {paths['json']} and {paths['csv']}")
    if st.plots:
        from pipeinfer.evaluation.cluster_plots import plot_cluster

        for p in plot_cluster(st.name, doc, st.out):
            prog.note(f"wrote {p}")
    bad = [r for r in records if r.get("error") or r.get("output_ok") is False]
    if bad:
        raise EvaluationError(f"{len(bad)} cluster run(s) failed or differ from iterative: "
                              + "; ".join(f"{r['mode']} E={r.get('error_rate')}: {r.get('error') or 'output differs'}"
                                          for r in bad))
    return doc


def validate(records: List[Dict[str, Any]], truth: List[int], n_prompt: int, st: ClusterSettings) -> Dict[str, Any]:
    """The simulator (the engine's decoders on a virtual pipeline) against every measured run: costs
    fitted from the first repeat's iterative run and its synchronous run with the fewest errors (so the
    other runs are predictions), then each run simulated with the same drafter, errors and policy."""
    from pipeinfer.evaluation import calibrate
    from pipeinfer.evaluation.drafting import ReplayDrafter
    from pipeinfer.evaluation.simulate import simulate
    from pipeinfer.drafters import NoisyDrafter
    from pipeinfer.speculation import SpeculationPolicy

    ok = [r for r in records if not r.get("error") and r.get("timeline")]
    first = [r for r in ok if r.get("repeat", 0) == 0]
    basis = [r for r in first if r["mode"] == "iterative"]
    spec = sorted((r for r in first if r["mode"] == "speculative"), key=lambda r: r.get("error_rate") or 0.0)
    basis += spec[:1]
    cal = calibrate.from_traces(basis)
    cfg = cal["config"]
    if st.drafter.startswith("synthetic:"):
        # a synthetic drafter's token costs 1/ratio of the target's: the sum of the stages' one-token times
        one_token = sum(c.time(1) for c in cfg.stages)
        cfg.draft_per_token_s = one_token / float(st.drafter.split(":", 1)[1])
    rows = []
    for r in ok:
        drafter = None
        if r["mode"] != "iterative":
            drafter = NoisyDrafter(ReplayDrafter(truth, 1 << 20), float(r["error_rate"]), seed=1)
        sim = simulate(cfg, r["mode"], drafter, truth, n_prompt, st.n_gen, SpeculationPolicy(**r.get("policy", {})),
                       draft_rank=bool(r.get("draft_ranks")))
        pred = sim.predicted_per_second
        rows.append({"mode": r["mode"], "error_rate": r.get("error_rate"), "repeat": r.get("repeat", 0),
                     "measured": r["predicted_per_second"], "simulated": pred,
                     "rel_error": pred / r["predicted_per_second"] - 1.0, "calibration": r in basis})
    errs = [abs(x["rel_error"]) for x in rows]
    best = best_arms(cfg, truth, n_prompt, st, sorted({r["error_rate"] for r in ok if r["mode"] != "iterative"}),
                     draft_rank=any(r.get("draft_ranks") for r in ok))
    return {"fit": cal["fit"], "runs": rows, "n": len(rows), "mean_abs_rel_error": float(sum(errs) / len(errs)),
            "max_abs_rel_error": max(errs), "best_arms": best}


def best_arms(cfg: Any, truth: List[int], n_prompt: int, st: ClusterSettings, errors: List[float],
              draft_rank: bool) -> List[Dict[str, Any]]:
    """What fixed speculation settings could reach on these fitted costs (the simulator, every arm): per
    error rate, the best synchronous draft length and the best PipeInfer (k, chained depth), as an
    upper reference for the adaptive policy and for what the algorithm can gain here at all."""
    from pipeinfer.drafters import NoisyDrafter
    from pipeinfer.evaluation.drafting import ReplayDrafter
    from pipeinfer.evaluation.simulate import simulate
    from pipeinfer.speculation import SpeculationPolicy

    it = simulate(cfg, "iterative", None, truth, n_prompt, st.n_gen).predicted_per_second
    out = []
    for e in errors:
        def run(mode: str, k: int, depth: int) -> float:
            pol = SpeculationPolicy(n_draft=k, max_in_flight=depth + 1, n_buffers=max(4, depth + 1), adaptive=False)
            d = NoisyDrafter(ReplayDrafter(truth, 1 << 20), float(e), seed=1)
            return simulate(cfg, mode, d, truth, n_prompt, st.n_gen, pol, draft_rank=draft_rank).predicted_per_second

        sync = max((run("speculative", k, 0), k) for k in (1, 2, 3, 4, 6, 8))
        pipe = max((run("pipeinfer", k, d), k, d) for k in (1, 2, 3, 4, 6, 8) for d in (0, 1, 2, 3, 5, 7))
        out.append({"error_rate": e, "iterative": it, "speculative": sync[0], "speculative_k": sync[1],
                    "pipeinfer": pipe[0], "pipeinfer_k": pipe[1], "pipeinfer_depth": pipe[2],
                    "pipeinfer/speculative": pipe[0] / sync[0]})
    return out


def ratios(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per (repeat, error rate): pipeinfer / speculative and each mode / iterative of the same repeat."""
    out = []
    reps = sorted({r.get("repeat", 0) for r in records})
    for rep in reps:
        rr = [r for r in records if r.get("repeat", 0) == rep and not r.get("error")]
        it = next((r["predicted_per_second"] for r in rr if r["mode"] == "iterative"), None)
        for err in sorted({r.get("error_rate") for r in rr if r["mode"] != "iterative"}, key=lambda e: -1 if e is None else e):
            by = {r["mode"]: r["predicted_per_second"] for r in rr if r.get("error_rate") == err and r["mode"] != "iterative"}
            row: Dict[str, Any] = {"repeat": rep, "error_rate": err, "iterative": it, **by}
            if "pipeinfer" in by and "speculative" in by:
                row["pipeinfer/speculative"] = by["pipeinfer"] / by["speculative"]
            for m, v in by.items():
                if it:
                    row[f"{m}/iterative"] = v / it
            out.append(row)
    return out


def _link_env(st: ClusterSettings) -> Dict[str, str]:
    if st.link_latency_s <= 0.0 and st.link_bps <= 0.0:
        return {}
    return {"PIPEINFER_LINK_EMULATION": f"{st.link_latency_s},{st.link_bps}"}


def _line(rec: Dict[str, Any]) -> str:
    if rec.get("error"):
        return f"ERROR {rec['error'][:300]}"
    ok = "ok" if rec.get("output_ok") else "OUTPUT DIFFERS"
    share = ",".join(f"{s:.2f}" for s in rec.get("cpu_share_used", []))
    return (f"{rec['predicted_per_second']:.2f} tok/s, acceptance {rec['acceptance_rate']:.2f}, "
            f"cancelled {rec['runs_cancelled']}, ttft {rec['ttft_decode_ms']:.0f} ms, share [{share}], {ok}")


def _settings_doc(st: ClusterSettings) -> Dict[str, Any]:
    d = asdict(st)
    d["out"] = str(st.out)
    return d

