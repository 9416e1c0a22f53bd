"""docs/results.md from the latest experiment results (`pipeinfer bench report --out DIR --docs docs`).

This module owns the report's text: machine, models, tables of every experiment found in the results
folder, the plots (copied to docs/results/), and the comparison with the paper. It must not run
experiments. Numbers in the text are computed from the results; the discussion states what they show.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

__all__ = ["write_report"]

EXPERIMENTS = ("modes", "acceptance", "links", "simulate")
MODES = ("iterative", "speculative", "pipeinfer")
PNG_LIMIT = 200 * 1024


def _load(out: Path) -> Dict[str, Dict[str, Any]]:
    docs = {}
    for name in EXPERIMENTS:
        p = out / f"{name}.json"
        if p.exists():
            docs[name] = json.loads(p.read_text())
    return docs


def _f(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    if isinstance(v, list):
        return "/".join(_f(x, nd) for x in v)
    return str(v)


def _table(rows: List[List[str]], head: List[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _ok(doc: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [r for r in doc.get("records", []) if not r.get("error") and r.get("source") != "model"
            and r.get("predicted_per_second") is not None]


def _check_col(r: Dict[str, Any]) -> str:
    return {True: "yes", False: "**NO**", None: "-"}[r.get("output_ok")]


def _speed(recs: List[Dict[str, Any]], **match: Any) -> Optional[float]:
    for r in recs:
        if all(r.get(k) == v for k, v in match.items()):
            return r["predicted_per_second"]
    return None


def _modes_section(doc: Dict[str, Any]) -> List[str]:
    recs = _ok(doc)
    rows = []
    for r in recs:
        it = _speed(recs, case=r["case"], transport=r["transport"], stages=r["stages"], mode="iterative")
        sp = _speed(recs, case=r["case"], transport=r["transport"], stages=r["stages"], mode="speculative")
        rows.append([r["case"], f"{r['transport']} x{r['stages']}", r["mode"], _f(r["predicted_per_second"]),
                     _f(r.get("ttft_decode_ms"), 0), _f(r["ttft_ms"], 0), _f(r["itl_ms_mean"], 0),
                     _f(r["itl_ms_p99"], 0), _f(r["acceptance_rate"], 2), _f(r["predicted_per_second"] / it, 2) if it else "-",
                     _f(r["predicted_per_second"] / sp, 2) if sp else "-", str(r.get("runs_cancelled", "-")),
                     _check_col(r)])
    head = ["case", "stages", "mode", "tok/s", "TTFT decode ms", "TTFT+prefill ms", "ITL ms", "ITL p99 ms",
            "acceptance", "vs iterative", "vs speculative", "cancelled runs", "= iterative output"]
    return ["## 1. The three modes (the paper's bar charts)", "",
            f"`pipeinfer bench modes{' --quick' if doc.get('quick') else ''}`: {doc['n_gen']} tokens per run, greedy, "
            "the reference scripts' ChatML prompt (\"Write a short python program demonstrating advanced features\"); "
            "SmolLM2-135M drafted by n-gram prompt lookup, Qwen2.5-Coder-1.5B drafted by Qwen2.5-Coder-0.5B; "
            "1 thread per stage; `local xN` = N stages as threads of one process, `mpi xN` = N MPI ranks (shared memory).",
            "", "![modes](results/modes.png)", "", _table(rows, head), ""]


def _acceptance_section(doc: Dict[str, Any]) -> List[str]:
    recs = _ok(doc)
    rows = [[r["case"], r["drafter"], r["mode"], _f(r["acceptance_rate"], 2), _f(r.get("mean_accepted_length"), 2),
             _f(r["predicted_per_second"]), _f(r["itl_ms_mean"], 0), str(r.get("runs_cancelled", "-")),
             _f(r.get("layers_skipped"), 0), _check_col(r)] for r in recs]
    head = ["case", "drafter", "mode", "acceptance", "tokens/verification", "tok/s", "ITL ms", "cancelled runs",
            "layers skipped per stage", "= iterative output"]
    return ["## 2. Speed against acceptance rate", "",
            "`pipeinfer bench acceptance`: 2 local stages. `oracle+noiseE` replays the target's own greedy output "
            "(acceptance 1, no drafting cost) through `pipeinfer.drafters.NoisyDrafter`, which corrupts each drafted "
            "token with probability E; so the sweep isolates the pipeline from the drafter's cost. The real drafters are "
            "shown by name. The dashed line in the plot is iterative decoding.", "",
            "![acceptance](results/acceptance.png)", "", _table(rows, head), ""]


def _links_section(doc: Dict[str, Any]) -> List[str]:
    recs = _ok(doc)
    rows = [[r.get("link", "-"), r.get("shaping", "-"), r["mode"], _f(r["predicted_per_second"]),
             _f(r.get("ttft_decode_ms"), 0), _f(r["itl_ms_mean"], 0), _f(r.get("bytes_sent_per_token"), 0),
             _f(r["acceptance_rate"], 2), _check_col(r)] for r in recs]
    head = ["link", "shaping", "mode", "tok/s", "TTFT decode ms", "ITL ms", "bytes sent per token", "acceptance",
            "= iterative output"]
    lines = ["## 3. Slow links (MPI ranks in network namespaces)", "",
             f"`pipeinfer bench links` (as root): {doc.get('ranks')} MPI ranks, each in its own network namespace "
             "(`bench/netem/setup.sh`), joined by veth pairs to a bridge, MPICH forced onto TCP "
             "(`MPIR_CVAR_CH4_NETMOD=ofi FI_PROVIDER=tcp MPIR_CVAR_NOLOCAL=1 FI_TCP_IFACE=pie0`, "
             "`bench/netem/rank-wrapper.sh`). Target: the first case's model; drafter: oracle+noise0.25."]
    if doc.get("emulation_unavailable"):
        lines += ["", f"**Link emulation was not available:** {doc['emulation_unavailable']}. Only the shared-memory "
                      "baseline was measured; the model (section 4) covers slow links."]
    shaping = set((doc.get("shaping") or {}).values())
    if "tbf" in shaping:
        lines += ["", "**This kernel has no netem qdisc** (`CONFIG_NET_SCH_NETEM` is not set; `tc qdisc add ... netem` "
                      "answers \"Specified qdisc kind is unknown\"), so the links were shaped with `tbf`: the **rates are "
                      "real, the delays were not applied**. The added latency of each profile is covered by the model "
                      "(section 4)."]
    lines += ["", "![links](results/links.png)", "", _table(rows, head), ""]
    return lines


def _simulate_section(doc: Dict[str, Any]) -> List[str]:
    v = doc.get("validation", {})
    model = [r for r in doc.get("records", []) if r.get("source") == "model"]
    rows = [[r["case"], f"x{r['stages']}", r["mode"], r["drafter"], _f(r["acceptance"], 2),
             _f(r["measured_per_second"]), _f(r["predicted_per_second"]), f"{100 * r['rel_error']:+.0f}%",
             _f(r.get("speedup_measured"), 2), _f(r.get("speedup_model"), 2),
             f"{100 * r['speedup_rel_error']:+.0f}%" if r["mode"] != "iterative" and r.get("speedup_rel_error") is not None
             else "-"] for r in model]
    head = ["case", "stages", "mode", "drafter", "acceptance (model)", "measured tok/s", "model tok/s", "error",
            "measured speed-up vs iterative", "model speed-up", "speed-up error"]
    pi = doc.get("projection_inputs", {})
    proj = doc.get("projections", [])

    def pv(kind: str, x: Any, mode: str, key: str = "vs_iterative", **kw: Any) -> str:
        for p in proj:
            if p["projection"] == kind and p["x"] == x and p["mode"] == mode and all(p.get(k) == w for k, w in kw.items()):
                return _f(p[key], 2)
        return "-"

    depth_rows = [[str(n), _f(a, 1), pv("depth", n, "speculative", acceptance=a), pv("depth", n, "pipeinfer", acceptance=a),
                   pv("depth", n, "pipeinfer", "vs_speculative", acceptance=a)]
                  for a in (0.4, 0.7, 0.9) for n in (1, 2, 4, 8)]
    ratio_rows = [[str(x), pv("ratio", x, "speculative"), pv("ratio", x, "pipeinfer"),
                   pv("ratio", x, "pipeinfer", "vs_speculative")] for x in (2, 4, 8, 16, 50, 100)]
    link_rows = [[x, _f(a, 1), pv("link", x, "iterative", "predicted_per_second", acceptance=a),
                  pv("link", x, "speculative", "predicted_per_second", acceptance=a),
                  pv("link", x, "pipeinfer", "predicted_per_second", acceptance=a),
                  pv("link", x, "pipeinfer", "vs_speculative", acceptance=a)]
                 for x in ("10gbit+0.05ms", "1gbit+0.5ms", "100mbit+2ms") for a in (0.4, 0.7)]
    acc_rows = [[_f(a, 1), pv("acceptance", a, "speculative"), pv("acceptance", a, "pipeinfer"),
                 pv("acceptance", a, "pipeinfer", "vs_speculative")] for a in (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0)]
    reg = pi.get("regime", {})
    return [
        "## 4. Beyond this machine: a discrete-event model", "",
        "`pipeinfer bench simulate` (`pipeinfer/evaluation/simulate.py`): the head is one serial resource (it computes "
        "stage 0 of every run it launches, drafts, samples and verifies); stages 1..N-1 serve runs first-in first-out with "
        "a cost `fixed + per_token * batch`; each hop is a link with latency and bandwidth (activations `4 n_embd` bytes per "
        "token, one logits row `4 n_vocab` bytes per token back to the head); cancellations reach the workers after one "
        "latency and stop a run at the next layer boundary. The head policies are those of `pipeinfer/speculation/` "
        "(the draft length comes from the real `SpeculationPolicy`). A drafted token continuing a right context is right "
        "with probability *a*. Inputs are measured here (`calibrate.py`: per-stage busy time over batches of 1-8 tokens, "
        "the head's per-token overhead, the per-hop cost, the drafter's time per token).", "",
        f"**Validation** against {v.get('n')} measured runs on 1 and 2 local stages: mean absolute error of the speed "
        f"{_f(100 * v['mean_abs_rel_error'] if v.get('mean_abs_rel_error') is not None else None, 0)}% "
        f"(max {_f(100 * v['max_abs_rel_error'] if v.get('max_abs_rel_error') is not None else None, 0)}%); of the "
        f"speed-up over iterative on the same stages {_f(100 * v['mean_abs_speedup_error'] if v.get('mean_abs_speedup_error') is not None else None, 0)}% "
        f"(max {_f(100 * v['max_abs_speedup_error'] if v.get('max_abs_speedup_error') is not None else None, 0)}%). "
        "The model assumes every stage owns its cores; here 2 cores are shared by the head, the stages, the drafter "
        "and other jobs on the machine, so absolute speeds drift between the calibration and the runs and the model is "
        "optimistic where the head and a worker stage compete for a core.", "",
        "![validation](results/simulate-validation.png)", "", _table(rows, head), "",
        "**Projections** (the paper's regime): Dolphin-70B Q3_K_M target "
        f"({_f(reg.get('target_bytes', 0) / 1e9, 1)} GB) split evenly over N nodes, the head holding the first slice "
        f"and a TinyLlama-1.1B-sized drafter ({_f(reg.get('draft_bytes', 0) / 1e9, 2)} GB; target/draft cost ratio 50); "
        f"each node streams weights at the rate measured here ({_f(pi.get('node_bytes_per_s', 0) / 1e9, 1)} GB/s "
        "effective, 1 thread); verifying k extra tokens costs "
        f"{_f(pi.get('batch_ratio'), 2)} x k of a one-token run (memory-bound; here, SmolLM2 measured "
        f"{_f(pi.get('measured_batch_ratio'), 2)}, see `depth_measured_batch` in simulate.json); head overhead "
        f"{_f(1e3 * pi.get('head_s', 0), 2)} ms per token as measured; links 10 Gbit/s + 0.05 ms unless stated; "
        f"{pi.get('n_tokens')} tokens, mean of {pi.get('seeds')} seeds; policy {pi.get('policy')}.", "",
        "![projection](results/simulate-projection.png)", "",
        "Speed relative to iterative pipeline decoding, by pipeline depth:", "",
        _table(depth_rows, ["nodes", "acceptance", "speculative / iterative", "pipeinfer / iterative",
                            "pipeinfer / speculative"]), "",
        "By target/draft cost ratio (8 nodes, acceptance 0.7):", "",
        _table(ratio_rows, ["ratio", "speculative / iterative", "pipeinfer / iterative", "pipeinfer / speculative"]), "",
        "By link (8 nodes, tokens/s):", "",
        _table(link_rows, ["link", "acceptance", "iterative", "speculative", "pipeinfer", "pipeinfer / speculative"]), "",
        "By acceptance (8 nodes, ratio 50):", "",
        _table(acc_rows, ["acceptance", "speculative / iterative", "pipeinfer / iterative", "pipeinfer / speculative"]), "",
    ]


def _findings(docs: Dict[str, Dict[str, Any]]) -> List[str]:
    """Headline numbers, computed from the results (the claims of spec section 6.4, checked at our scale)."""
    out = ["## Findings at a glance", ""]
    if "modes" in docs:
        recs = _ok(docs["modes"])
        best = None
        for r in recs:
            if r["mode"] != "pipeinfer":
                continue
            sp = _speed(recs, case=r["case"], transport=r["transport"], stages=r["stages"], mode="speculative")
            it = _speed(recs, case=r["case"], transport=r["transport"], stages=r["stages"], mode="iterative")
            if sp and it:
                row = (r["predicted_per_second"] / sp, r["predicted_per_second"] / it, r)
                out.append(f"- modes, {r['case']} {r['transport']} x{r['stages']}: PipeInfer {row[0]:.2f}x speculative, "
                           f"{row[1]:.2f}x iterative; TTFT decode {_f(r.get('ttft_decode_ms'), 0)} ms vs iterative "
                           f"{_f(next((q.get('ttft_decode_ms') for q in recs if q['case'] == r['case'] and q['transport'] == r['transport'] and q['stages'] == r['stages'] and q['mode'] == 'iterative'), None), 0)} ms.")
                best = row if best is None or row[0] > best[0] else best
        if best:
            out.append(f"- Best PipeInfer / speculative ratio measured: {best[0]:.2f}x ({best[2]['case']}, "
                       f"{best[2]['transport']} x{best[2]['stages']}); the paper reports up to 2.15x on 8 nodes.")
    if "acceptance" in docs:
        recs = _ok(docs["acceptance"])
        for case in dict.fromkeys(r["case"] for r in recs):
            it = _speed(recs, case=case, mode="iterative")
            zero = _speed(recs, case=case, mode="pipeinfer", drafter="oracle+noise1.00")
            full = _speed(recs, case=case, mode="pipeinfer", drafter="oracle+noise0.00")
            sfull = _speed(recs, case=case, mode="speculative", drafter="oracle+noise0.00")
            zrec = next((r for r in recs if r["case"] == case and r["mode"] == "pipeinfer"
                         and r["drafter"] == "oracle+noise1.00"), None)
            if zrec and zrec.get("spec_runs_launched", 0) > zrec["predicted_n"] / 2:
                out.append(f"- acceptance, {case}: with every draft wrong PipeInfer still launched "
                           f"{zrec['spec_runs_launched']} speculative micro-batches ({zrec['draft_n']} drafted tokens) for "
                           f"{zrec['predicted_n']} tokens, {zrec['runs_cancelled']} of them cancelled, while speculative mode "
                           "stops drafting after a few rejections: in pipeinfer mode a micro-batch invalidated by the "
                           "non-speculative run is cancelled without being verified, and the decoder reports only "
                           "verified micro-batches to `SpeculationPolicy.observe`, so the adaptive draft length never "
                           "sees the rejections. On 2 compute-bound cores every such micro-batch costs about a token.")
            if it and zero:
                out.append(f"- acceptance, {case}: with every draft wrong PipeInfer runs at {zero / it:.2f}x iterative "
                           "(the paper: \"near-zero slowdown\"; spec section 8 asks >= 0.9x)"
                           + (f"; with every draft right at {full / it:.2f}x iterative and {full / sfull:.2f}x speculative."
                              if full and sfull else "."))
    if "simulate" in docs:
        proj = docs["simulate"].get("projections", [])
        pts = [p for p in proj if p["projection"] == "depth" and p["mode"] == "pipeinfer"]
        if pts:
            top = max(pts, key=lambda p: p["vs_speculative"])
            low = min(pts, key=lambda p: p["vs_speculative"])
            out.append(f"- model projection (70B/1.1B regime): PipeInfer / speculative ranges from {low['vs_speculative']:.2f}x "
                       f"({low['x']} nodes, acceptance {low['acceptance']}) to {top['vs_speculative']:.2f}x ({top['x']} nodes, "
                       f"acceptance {top['acceptance']}).")
    out.append("")
    return out


def _machine_section(docs: Dict[str, Dict[str, Any]]) -> List[str]:
    m = next(iter(docs.values()))["machine"]
    when = {k: d.get("written_at", "?") for k, d in docs.items()}
    return [
        "## Machine and models", "",
        f"- CPU: {m['cpu_model']}, {m['cpus_available']} CPUs available to the process ({m['cpus_online']} online), "
        f"{m['mem_gib']} GiB memory, kernel ISA used by pipeinfer: `{m['kernel_isa']}`, Linux {m['os_kernel']}, "
        f"Python {m['python']}.",
        f"- Load average when written: {_f(m.get('loadavg'), 2)} (the 2 cores are shared with other jobs: figures vary "
        "by 10-30% from run to run).",
        "- Models (GGUF, from the pipeinfer catalog): SmolLM2-135M-Instruct Q4_1 (98 MB), Qwen2.5-Coder-1.5B-Instruct "
        "Q4_K_M (1.1 GB) with Qwen2.5-Coder-0.5B-Instruct Q4_K_M (0.49 GB) as its same-vocabulary drafter.",
        "- Results written: " + ", ".join(f"{k} {v}" for k, v in when.items()) + ".",
        "- Every run's greedy output was compared with 1-stage iterative decoding of the same model and prompt "
        "(column \"= iterative output\"); a difference fails the experiment.", "",
    ]


def _paper_section(docs: Dict[str, Dict[str, Any]]) -> List[str]:
    return [
        "## How these figures differ from the paper's, and why", "",
        "- **Scale.** The paper ran 70B-180B targets (Dolphin-70B, Goliath-120B, Falcon-180B) on an 8-node CPU cluster "
        "(7 target nodes + 1 draft node, tens of cores each, Ethernet-class links) and reports up to 2.15x over "
        "synchronous speculative inference. Here one VM with 2 shared cores runs 0.1-1.5B models; every \"node\" is a "
        "thread or a process on those 2 cores. A pipeline can only gain from overlap when its stages have their own "
        "cores: with 2 stages plus the head's drafting on 2 cores, the stages mostly take turns, so pipeline "
        "parallelism itself cannot speed anything up here, and asynchronous speculation gains only what idle time "
        "the pipeline still has.",
        "- **Batch cost.** On a memory-bound 70B model, verifying 4 extra tokens costs little more than one token. "
        "Our small models on 1 thread are compute-bound (SmolLM2: each extra token costs about as much as the run's "
        "fixed part), so speculation is expensive and every wrong draft costs nearly a full token. This penalises "
        "both speculative modes relative to iterative decoding, and it penalises PipeInfer's extra non-speculative "
        "runs and cancelled runs.",
        "- **Draft ratio.** The paper's pairs have target/draft ratios of 10-64 (70B/1.1B); ours are 3 (1.5B/0.5B) "
        "or a free n-gram lookup. With a 0.5B drafter on the same 2 cores as the 1.5B target, drafting takes time "
        "the target could use.",
        "- **Links.** The paper's claim of tolerance to slow links is about the small messages of speculative "
        "micro-batches. The link figures above were measured before greedy runs switched to returning only argmax "
        "ids: then the logits returned to the head dominated (one row of 4 x n_vocab bytes, 0.2 MB for SmolLM2 and "
        "0.6 MB for Qwen per token, as in the reference implementation; 16-50 ms per verified token at 100 Mbit/s). "
        "Greedy runs now send 4 bytes per row back, so activations (2-6 KB per token per hop) dominate; the links "
        "experiment has not been re-run since (it needs the root-only namespace setup).",
        "- **TTFT.** We report both the reference code's definition (end of prefill to the first token produced by a "
        "decode run, \"TTFT decode\") and request start to first token including prefill.",
        "- **What carries over.** The model, calibrated on this machine, is how we project to the paper's regime "
        "(section 4); its projections, not the 2-core measurements, are the right place to look for the growth of "
        "PipeInfer's advantage with depth, draft ratio and acceptance.", "",
    ]


def _howto_section() -> List[str]:
    return [
        "## Reproducing, and checking for regressions", "",
        "```",
        "pip install 'pipeinfer[bench]'            # matplotlib",
        "pipeinfer bench modes --quick             # or: acceptance, simulate; links needs root (see below)",
        "sudo pipeinfer bench links --quick",
        "pipeinfer bench report --out bench-results --docs docs",
        "```", "",
        "Each experiment writes `NAME.json` (machine, settings, every record), `NAME.csv` and PNG plots into `--out` "
        "(default `bench-results/`); `--quick` keeps each experiment to a few minutes; progress goes to stderr. "
        "`bench/netem/setup.sh N RATE DELAY` / `teardown.sh` set up the namespaces by hand (root).", "",
        "The pytest-benchmark suite (`bench/`) covers kernels, forward passes and the end-to-end comparisons "
        "(`bench/bench_evaluation.py`); every benchmark asserts its output. Save a baseline, then compare a later run "
        "and fail when a median regresses by more than 10%:", "",
        "```",
        "pytest bench --benchmark-only --benchmark-save=baseline          # writes .benchmarks/<machine>/0001_baseline.json",
        "pytest bench --benchmark-only --benchmark-compare=0001 --benchmark-compare-fail=median:10%",
        "```", "",
        "`--benchmark-compare` takes the run number or a prefix of the saved name (without a value: the latest save); "
        "`--benchmark-compare-fail=EXPR` accepts `STAT:X%` (relative) or `STAT:X` (absolute seconds) and may be repeated. "
        "Real-model benchmarks carry the `realmodel` marker; select the fast ones with `-m 'not realmodel'`.", "",
    ]


def write_report(out: Path, docs_dir: Path) -> Path:
    """Writes docs_dir/results.md from the results in `out` and copies the plots to docs_dir/results/."""
    from pipeinfer.evaluation.cluster_report import cluster_section

    docs = _load(out)
    clusters = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("cluster-*.json"))}
    if not docs and not clusters:
        raise ValueError(f"no experiment results (modes.json, cluster-*.json, ...) in {out}; run `pipeinfer bench "
                         "EXPERIMENT` first")
    img = docs_dir / "results"
    img.mkdir(parents=True, exist_ok=True)
    for png in sorted(out.glob("*.png")):
        if png.stat().st_size > PNG_LIMIT:
            raise ValueError(f"{png} is {png.stat().st_size} bytes, over the {PNG_LIMIT} limit for committed plots")
        shutil.copyfile(png, img / png.name)
    for table in sorted(out.glob("*.csv")):
        shutil.copyfile(table, img / table.name)  # the tables behind the plots, for diffing runs
    lines = ["# Results", "",
             f"Generated by `pipeinfer bench report` on {time.strftime('%Y-%m-%d')} from the JSON results of the latest "
             "`pipeinfer bench` runs. Metrics follow spec section 6.3: generation speed = generated tokens / wall time "
             "of the decode loop (prefill excluded); ITL = mean gap between consecutive tokens; all wall-clock.", ""]
    lines += _machine_section({**docs, **clusters})
    sections = {"modes": _modes_section, "acceptance": _acceptance_section, "links": _links_section,
                "simulate": _simulate_section}
    for name in EXPERIMENTS:
        if name in docs:
            lines += sections[name](docs[name])
    lines += cluster_section(clusters)
    lines += _findings(docs)
    lines += _paper_section(docs)
    lines += _howto_section()
    path = docs_dir / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path
