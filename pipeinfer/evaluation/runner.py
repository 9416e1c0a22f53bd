"""Runs one measured generation (a RunSpec) on local stages or on MPI ranks and returns its record.

This module owns how one configuration is executed and measured: build the pipeline, warm it up, time
one greedy generation, collect pipeinfer's metrics and per-stage counters, and compare the tokens with
a reference. MPI runs start `mpiexec -n N python -m pipeinfer.evaluation.mpi_rank` (optionally with every
rank inside a network namespace, see netem.py). It must not decide which configurations to run
(experiments.py) or write files other than its temporary spec.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

from pipeinfer import launch

if TYPE_CHECKING:
    from pipeinfer.evaluation.drafting import DraftSpec  # imports the drafters (and _core): not at run time

__all__ = ["RunSpec", "run", "run_local", "run_mpi", "Progress", "EvaluationError"]

METRIC_KEYS = (
    "predicted_per_second", "predicted_n", "predicted_ms", "prompt_n", "prompt_ms", "ttft_ms",
    "ttft_no_prefill_ms", "itl_ms_mean", "itl_ms_p50", "itl_ms_p99", "draft_n", "draft_n_accepted",
    "acceptance_rate", "mean_accepted_length", "runs_launched", "spec_runs_launched", "runs_cancelled",
    "layers_skipped", "runs_skipped", "bytes_sent_per_token", "stage_busy_s", "stage_idle_s",
)  # fmt: skip


class EvaluationError(RuntimeError):
    """A measured run failed, or its output differs from iterative decoding."""


@dataclass
class RunSpec:
    """One configuration to measure.

    Args:
        model: target GGUF path.
        mode: "iterative", "speculative" or "pipeinfer".
        prompt: prompt text (special tokens parsed).
        n_gen: tokens to generate.
        stages: local stages (transport "local") or MPI ranks (transport "mpi").
        transport: "local" (threads of this process) or "mpi" (mpiexec).
        draft: drafter spec (see drafting.py), None for iterative.
        policy: SpeculationPolicy keyword arguments.
        n_threads: compute threads per stage.
        n_ctx: context cells.
        link: for MPI: a netem.LinkProfile as dict (None: default transport, shared memory).
        rank_prefix: for MPI: a command prefix every rank runs under (e.g. the emulated cluster's
            cgroup join, cgroups.CgroupCluster.rank_prefix).
        trace: record per-stage run spans and the head's events (the record's "timeline").
        draft_ranks: 1 runs the drafter on its own rank (MPI: the last of stages + 1 ranks).
        env: extra environment of every rank (e.g. PIPEINFER_LINK_EMULATION of the cluster harness).
        labels: free-form fields copied into the record (experiment, model name, ...).
    """

    model: str
    mode: str
    prompt: str
    n_gen: int = 32
    stages: int = 1
    transport: str = "local"
    draft: Optional[DraftSpec] = None
    policy: Dict[str, Any] = field(default_factory=lambda: {"n_draft": 4, "p_accept": 0.1, "max_in_flight": 3})
    n_threads: int = 1
    n_ctx: int = 1024
    link: Optional[Dict[str, Any]] = None
    rank_prefix: Optional[List[str]] = None
    trace: bool = False
    draft_ranks: int = 0
    env: Dict[str, str] = field(default_factory=dict)
    labels: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


class Progress:
    """Progress lines on stderr: `[eval NAME i/n] message`."""

    def __init__(self, name: str, total: int, enabled: bool = True) -> None:
        self.name, self.total, self.i, self.enabled = name, total, 0, enabled
        self.t0 = time.monotonic()

    def step(self, msg: str) -> None:
        self.i += 1
        if self.enabled:
            el = time.monotonic() - self.t0
            print(f"[eval {self.name} {self.i}/{self.total} {el:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def note(self, msg: str) -> None:
        if self.enabled:
            print(f"[eval {self.name}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- local


def generate_once(pipe: Any, spec_prompt: str, n_gen: int) -> Dict[str, Any]:
    """Warm-up (2 tokens), then one timed greedy generation; returns tokens, metrics and stage counters."""
    pipe.generate(spec_prompt, max_tokens=2, temperature=0, parse_special=True)
    pipe.reset()
    t0 = time.perf_counter()
    s = pipe.generate(spec_prompt, max_tokens=n_gen, temperature=0, parse_special=True)
    wall = time.perf_counter() - t0
    m = s.metrics()
    out = {k: m.get(k) for k in METRIC_KEYS}
    out["wall_s"] = wall
    # The reference code's TTFT (spec section 6.3): end of prefill to the first token a decode run produced
    # (the first token is sampled from the prompt's logits).
    itl = s.timings.itl_ms
    out["ttft_decode_ms"] = (m["ttft_ms"] - m["prompt_ms"] + itl[0]) if itl else None
    out["tokens_out"] = list(s.tokens)
    out["prompt_tokens"] = list(s.prompt_tokens)
    out["stages_detail"] = [{k: st.get(k) for k in ("layer_begin", "layer_end", "runs", "runs_skipped", "tokens",
                                                     "layers_run", "layers_skipped", "bytes_sent", "busy_s", "idle_s")}
                            for st in s.stage_stats]
    if s.trace is not None:
        out["timeline"] = {"t_start": t0, "t_prefill_end": t0 + m["prompt_ms"] / 1e3,
                           "stages": [[list(sp) for sp in st.get("spans", [])] for st in s.stage_stats],
                           "head": [[t, kind, fields] for t, kind, fields in s.trace]}
    return out


def _policy(spec: RunSpec) -> Any:
    from pipeinfer.speculation import SpeculationPolicy

    return SpeculationPolicy(**spec.policy)


def run_local(spec: RunSpec) -> Dict[str, Any]:
    """Runs spec in this process (stages as threads)."""
    import pipeinfer
    from pipeinfer import _core
    from pipeinfer.evaluation.drafting import build_drafter

    meta = _core.GGUFFile(spec.model).metadata()
    drafter = build_drafter(spec.draft, meta) if spec.mode != "iterative" else None
    with pipeinfer.Pipeline(spec.model, n_ctx=spec.n_ctx, n_threads=spec.n_threads, stages=spec.stages,
                            transport="local", mode=spec.mode, draft=drafter, speculation=_policy(spec),
                            draft_ranks=spec.draft_ranks if drafter is not None else 0, trace=spec.trace) as pipe:
        return generate_once(pipe, spec.prompt, spec.n_gen)


# ------------------------------------------------------------------------------------------------- MPI


def run_mpi(spec: RunSpec, timeout_s: float = 600.0) -> Dict[str, Any]:
    """Runs spec under `mpiexec -n spec.stages`; with spec.link, every rank runs in its namespace over TCP."""
    from pipeinfer.evaluation import netem

    mpiexec = launch.find_mpiexec()
    if mpiexec is None:
        raise EvaluationError("mpiexec of the mpich wheel not found (pip install mpich)")
    with tempfile.TemporaryDirectory(prefix="pipeinfer-eval-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec.to_json()))
        cmd = [mpiexec, "-n", str(spec.stages + spec.draft_ranks)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_pkg_path(), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["MPIEXEC_TIMEOUT"] = str(int(timeout_s))
        env.update(spec.env)
        env["PYTHONUNBUFFERED"] = "1"
        if spec.link is not None:
            cmd += netem.rank_prefix()
            env.update(netem.tcp_env())
        if spec.rank_prefix:
            cmd += list(spec.rank_prefix)
        cmd += [sys.executable, "-m", "pipeinfer.evaluation.mpi_rank", str(spec_path), str(out_path)]
        try:
            # cwd: a source checkout's pipeinfer/ folder (no extension) must not shadow the package
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout_s + 30, cwd=tmp)
        except subprocess.TimeoutExpired as e:
            raise EvaluationError(f"mpiexec -n {spec.stages} timed out after {timeout_s:.0f} s") from e
        if p.returncode != 0 or not out_path.exists():
            tail = (p.stderr or p.stdout)[-2000:]
            raise EvaluationError(f"mpiexec -n {spec.stages} failed with status {p.returncode}: {tail}")
        return json.loads(out_path.read_text())


def _pkg_path() -> str:
    """The folder holding the imported pipeinfer package (so ranks import the same build)."""
    import pipeinfer

    return str(Path(pipeinfer.__file__).parent.parent)


def run(spec: RunSpec, reference: Optional[Sequence[int]] = None) -> Dict[str, Any]:
    """Runs spec and returns its record: the spec's fields, its labels, the metrics, and output_ok
    (tokens equal to `reference`, when given). Failures are recorded in `error`, not raised."""
    rec: Dict[str, Any] = {k: v for k, v in spec.to_json().items()
                           if k not in ("draft", "policy", "labels", "rank_prefix", "env")}
    rec.update(spec.labels)
    rec["policy"] = dict(spec.policy)
    from pipeinfer.evaluation.drafting import drafter_label

    rec["drafter"] = drafter_label(spec.draft) if spec.mode != "iterative" else "-"
    t0 = time.monotonic()
    try:
        res = run_mpi(spec) if spec.transport == "mpi" else run_local(spec)
    except Exception as e:  # recorded; the experiment reports every failure at the end
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["output_ok"] = False
        return rec
    rec["elapsed_s"] = time.monotonic() - t0
    rec.update(res)
    rec["output_ok"] = None if reference is None else list(res["tokens_out"]) == list(reference)
    return rec
