"""The named experiments of `pipeinfer bench`: which configurations each one measures, in what order.

This module owns the experiment definitions (modes, acceptance, links, simulate) and their driver: it
builds RunSpecs, runs them through runner.py with progress on stderr, checks every greedy output against
iterative decoding of the same model and prompt, and writes JSON + CSV (results.py) and PNG plots
(plots.py). It must not know how a run is executed or how a plot is drawn.

Every experiment returns its result document; `check_outputs` raises EvaluationError (after the files
are written) when any run's tokens differ from iterative decoding or a run failed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from pipeinfer.evaluation.machine import machine_facts
from pipeinfer.evaluation.results import write_results
from pipeinfer.evaluation.runner import EvaluationError, Progress, RunSpec, run

if TYPE_CHECKING:
    from pipeinfer.evaluation.drafting import DraftSpec  # imports the drafters (and _core): not at run time

__all__ = ["Settings", "EXPERIMENTS", "run_experiment", "check_outputs", "PAPER_PROMPT"]

MODES = ("iterative", "speculative", "pipeinfer")
# The reference scripts' prompt (spec section 6.1): a ChatML system prompt + this request.
PAPER_REQUEST = "Write a short python program demonstrating advanced features"
PAPER_PROMPT = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    f"<|im_start|>user\n{PAPER_REQUEST}<|im_end|>\n<|im_start|>assistant\n"
)
# (case name, target model, drafter): the paper's shape at our scale
DEFAULT_CASES: List[Tuple[str, str, DraftSpec]] = [
    ("smollm2-135m+ngram", "smollm2-135m", {"kind": "ngram"}),
    ("qwen2.5-coder-1.5b+0.5b", "qwen2.5-coder-1.5b", {"kind": "model", "name": "qwen2.5-coder-0.5b"}),
]
NOISE_LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class Settings:
    """What the command line chose.

    Args:
        out: output folder.
        quick: short generations and fewer configurations (a few minutes in all).
        ranks: MPI ranks of the MPI configurations (0: no MPI runs).
        model / draft: replace the default cases by one case (a GGUF path or known name; draft: a GGUF path,
            known name, or "ngram").
        n_gen: tokens per run (None: 24 quick, 64 otherwise).
        n_threads: threads per stage.
        progress: progress lines on stderr.
        plots: draw PNG plots (needs matplotlib).
    """

    out: Path = Path("bench-results")
    quick: bool = False
    ranks: int = 2
    model: Optional[str] = None
    draft: Optional[str] = None
    n_gen: Optional[int] = None
    n_threads: int = 1
    progress: bool = True
    plots: bool = True
    prompt: str = PAPER_PROMPT
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def gen(self) -> int:
        return self.n_gen if self.n_gen is not None else (24 if self.quick else 64)


# ------------------------------------------------------------------------------------------- helpers


def _resolve(name: str) -> str:
    from pipeinfer.models import resolve

    return str(resolve(name))


def _draft_spec(draft: Optional[str]) -> DraftSpec:
    if draft is None or draft == "ngram":
        return {"kind": "ngram"}
    return {"kind": "model", "name": Path(draft).stem if Path(draft).exists() else draft, "path": _resolve(draft)}


# (case name, model name, model path, draft spec)
Case = Tuple[str, str, str, "DraftSpec"]


def _cases(st: Settings) -> List[Case]:
    """(case, model name, model path, draft spec) per case."""
    if st.model is not None:
        name = Path(st.model).stem if Path(st.model).exists() else st.model
        return [(f"{name}+{'ngram' if st.draft in (None, 'ngram') else Path(st.draft).stem}", name,
                 _resolve(st.model), _draft_spec(st.draft))]
    out: List[Case] = []
    for case, model, draft in DEFAULT_CASES:
        d = draft.copy()
        if d["kind"] == "model":
            d["path"] = _resolve(d["name"])
        out.append((case, model, _resolve(model), d))
    return out


class _Checker:
    """Greedy reference tokens per (model path, prompt, n_gen), from 1-stage local iterative decoding."""

    def __init__(self) -> None:
        self.ref: Dict[tuple, Dict[str, Any]] = {}

    def record(self, model: str, prompt: str, n_gen: int, n_threads: int) -> Dict[str, Any]:
        """The reference run's record (run once per key)."""
        key = (model, prompt, n_gen)
        if key not in self.ref:
            rec = run(RunSpec(model=model, mode="iterative", prompt=prompt, n_gen=n_gen, n_threads=n_threads))
            if rec.get("error"):
                raise EvaluationError(f"reference iterative run of {model} failed: {rec['error']}")
            rec["output_ok"] = True
            self.ref[key] = rec
        return self.ref[key]

    def reference(self, model: str, prompt: str, n_gen: int, n_threads: int) -> List[int]:
        return list(self.record(model, prompt, n_gen, n_threads)["tokens_out"])

    def truth(self, model: str, prompt: str, n_gen: int, n_threads: int) -> List[int]:
        """Prompt tokens + reference tokens (what a replaying oracle drafter proposes)."""
        rec = self.record(model, prompt, n_gen, n_threads)
        return list(rec["prompt_tokens"]) + list(rec["tokens_out"])


def check_outputs(doc: Dict[str, Any]) -> None:
    """Raises EvaluationError listing every failed run and every output that differs from iterative."""
    bad = [r for r in doc.get("records", []) if r.get("error") or r.get("output_ok") is False]
    if bad:
        lines = [f"{r.get('case')} {r.get('mode')} {r.get('transport')}x{r.get('stages')} {r.get('drafter')} "
                 f"{r.get('link') or ''}: {r.get('error') or 'greedy output differs from iterative decoding'}"
                 for r in bad]
        raise EvaluationError(f"{len(bad)} run(s) of experiment {doc.get('experiment')} failed:\n  " + "\n  ".join(lines))


def _summary(rec: Dict[str, Any]) -> str:
    if rec.get("error"):
        return f"ERROR {rec['error'][:200]}"
    ok = {True: "output ok", False: "OUTPUT DIFFERS", None: "unchecked"}[rec.get("output_ok")]
    return (f"{rec['predicted_per_second']:.2f} tok/s, first decoded token {rec['ttft_decode_ms']:.0f} ms, "
            f"itl {rec['itl_ms_mean']:.0f} ms, acceptance {rec['acceptance_rate']:.2f}, {ok}")


def _doc(name: str, st: Settings, records: List[Dict[str, Any]], **extra: Any) -> Dict[str, Any]:
    for r in records:
        r.setdefault("experiment", name)
        r.pop("prompt", None)
    return {"experiment": name, "machine": machine_facts(), "quick": st.quick, "n_gen": st.gen,
            "prompt": st.prompt, "records": records, **extra}


def _finish(name: str, st: Settings, doc: Dict[str, Any], prog: Progress) -> Dict[str, Any]:
    paths = write_results(st.out, name, doc)
    prog.note(f"wrote {paths['json']} and {paths['csv']}")
    if st.plots:
        from pipeinfer.evaluation import plots

        for p in plots.plot(name, doc, st.out):
            prog.note(f"wrote {p}")
    return doc


# ---------------------------------------------------------------------------------------- experiments


def exp_modes(st: Settings) -> Dict[str, Any]:
    """The paper's three bar charts: speed, TTFT and ITL of iterative / speculative / PipeInfer, per case,
    on local stages (1 and 2) and on MPI ranks."""
    cases = _cases(st)
    configs = [("local", 1), ("local", 2)] + ([("mpi", st.ranks)] if st.ranks > 0 else [])
    plan = []
    for i, (case, name, path, draft) in enumerate(cases):
        heavy = st.quick and i > 0 and st.model is None  # quick: the big case on 2 local stages only
        for transport, n in configs:
            if heavy and (transport, n) != ("local", 2):
                continue
            for mode in MODES:
                plan.append((case, name, path, draft, transport, n, mode))
    prog = Progress("modes", len(plan) + len(cases), st.progress)
    chk = _Checker()
    records = []
    for case, name, path, _ in cases:
        chk.reference(path, st.prompt, st.gen, st.n_threads)
        prog.step(f"{case}: reference (1-stage iterative) done")
    for case, name, path, draft, transport, n, mode in plan:
        spec = RunSpec(model=path, mode=mode, prompt=st.prompt, n_gen=st.gen, stages=n, transport=transport,
                       draft=draft if mode != "iterative" else None, n_threads=st.n_threads,
                       labels={"case": case, "model_name": name})
        if (transport, n, mode) == ("local", 1, "iterative"):
            rec = dict(chk.record(path, st.prompt, st.gen, st.n_threads), case=case, model_name=name)
        else:
            rec = run(spec, chk.reference(path, st.prompt, st.gen, st.n_threads))
        records.append(rec)
        prog.step(f"{case} {transport}x{n} {mode}: {_summary(rec)}")
    return _finish("modes", st, _doc("modes", st, records), prog)


def exp_acceptance(st: Settings) -> Dict[str, Any]:
    """Speed against the acceptance rate: an oracle drafter (replays the greedy reference) corrupted by
    NoisyDrafter at several error rates, plus the case's real drafters; iterative as the reference line.
    Runs on 2 local stages."""
    cases = _cases(st)
    if st.quick and st.model is None:
        cases = cases[:1]
    prog = Progress("acceptance", 0, st.progress)
    chk = _Checker()
    plan: List[Tuple[str, str, str, Optional[DraftSpec], str]] = []  # case, model name, path, draft, mode
    for case, name, path, case_draft in cases:
        drafters: List[DraftSpec] = [{"kind": "replay", "error_rate": e, "seed": 1} for e in NOISE_LEVELS]
        drafters.append(case_draft)
        if case_draft["kind"] == "model":
            drafters.append({**case_draft, "error_rate": 0.5, "seed": 1})
            drafters.append({"kind": "ngram"})
        plan.append((case, name, path, None, "iterative"))
        for d in drafters:
            for mode in ("speculative", "pipeinfer"):
                plan.append((case, name, path, d, mode))
    prog.total = len(plan)
    records = []
    for case, name, path, draft, mode in plan:
        ref = chk.reference(path, st.prompt, st.gen, st.n_threads)
        if draft is not None and draft["kind"] == "replay":
            draft = {**draft, "truth": chk.truth(path, st.prompt, st.gen, st.n_threads)}
        error_rate = None if draft is None else draft.get("error_rate")
        spec = RunSpec(model=path, mode=mode, prompt=st.prompt, n_gen=st.gen, stages=2, draft=draft,
                       n_threads=st.n_threads, labels={"case": case, "model_name": name, "error_rate": error_rate})
        rec = run(spec, ref)
        records.append(rec)
        prog.step(f"{case} {mode} {rec['drafter']}: {_summary(rec)}")
    return _finish("acceptance", st, _doc("acceptance", st, records), prog)


def exp_links(st: Settings) -> Dict[str, Any]:
    """The three modes over MPI ranks in network namespaces with shaped links (needs root; see netem.py).
    Without the capability, the reason is recorded and only the shared-memory baseline is measured."""
    from pipeinfer.evaluation import netem

    ranks = max(2, st.ranks)
    case, name, path, _ = _cases(st)[0]
    prog = Progress("links", 0, st.progress)
    chk = _Checker()
    ref = chk.reference(path, st.prompt, st.gen, st.n_threads)
    truth = chk.truth(path, st.prompt, st.gen, st.n_threads)
    draft: DraftSpec = {"kind": "replay", "truth": truth, "error_rate": 0.25, "seed": 1}
    reason = netem.check_capability()
    profiles = [None] + ([] if reason else list(netem.PROFILES))
    if reason:
        prog.note(f"links: no link emulation: {reason}")
    prog.total = len(profiles) * len(MODES)
    records = []
    shaping_by_profile: Dict[str, str] = {}
    try:
        for prof in profiles:
            shaping = "shm"
            if prof is not None:
                try:
                    shaping = netem.setup(ranks, prof)
                except RuntimeError as e:
                    reason = str(e)
                    prog.note(f"links: setup failed, stopping the sweep: {e}")
                    break
                shaping_by_profile[prof.name] = shaping
            for mode in MODES:
                spec = RunSpec(model=path, mode=mode, prompt=st.prompt, n_gen=st.gen, stages=ranks, transport="mpi",
                               draft=draft if mode != "iterative" else None, n_threads=st.n_threads,
                               link=prof.as_dict() if prof else None,
                               labels={"case": case, "model_name": name, "link": prof.name if prof else "shm",
                                       "rate": prof.rate if prof else "-", "delay": prof.delay if prof else "-",
                                       "shaping": shaping})
                rec = run(spec, ref)
                records.append(rec)
                prog.step(f"{rec['link']} ({shaping}) {mode}: {_summary(rec)}")
    finally:
        if len(profiles) > 1:
            netem.teardown()
    return _finish("links", st, _doc("links", st, records, ranks=ranks, emulation_unavailable=reason,
                                     shaping=shaping_by_profile), prog)


EXPERIMENTS: Dict[str, Callable[[Settings], Dict[str, Any]]] = {
    "modes": exp_modes,
    "acceptance": exp_acceptance,
    "links": exp_links,
}


def _exp_simulate(st: Settings) -> Dict[str, Any]:
    from pipeinfer.evaluation.projection import exp_simulate

    return exp_simulate(st)


EXPERIMENTS["simulate"] = _exp_simulate


def run_experiment(name: str, st: Settings) -> Dict[str, Any]:
    """Runs experiment `name`, writes its files, and raises EvaluationError if any output was wrong."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    t0 = time.monotonic()
    doc = EXPERIMENTS[name](st)
    if st.progress:
        import sys

        print(f"[eval {name}] done in {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    check_outputs(doc)
    return doc
