"""The emulated-cluster section of docs/results.md (report.py calls it with every cluster-*.json found).

This module owns that section's text: per sweep, the speeds of the three modes against the drafter's
error rate with their spread over repeats, the ratios taken inside each repeat, TTFT, the plots, the
simulator's validation, and the issue's targets checked against the measurements. Numbers are
computed from the result documents; it must not run anything.
"""
from __future__ import annotations

import statistics
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["cluster_section"]


def _f(v: Optional[float], nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def _spread(vals: List[float], nd: int = 2) -> str:
    """median (min-max)."""
    if not vals:
        return "-"
    if len(vals) == 1:
        return _f(vals[0], nd)
    return f"{_f(statistics.median(vals), nd)} ({_f(min(vals), nd)}-{_f(max(vals), nd)})"


def _ratios(doc: Dict[str, Any], key: str, err: Optional[float]) -> List[float]:
    return [r[key] for r in doc.get("ratios", []) if r.get("error_rate") == err and r.get(key) is not None]


def _speeds(doc: Dict[str, Any], mode: str, err: Optional[float] = None) -> List[float]:
    return [r["predicted_per_second"] for r in doc["records"] if not r.get("error") and r["mode"] == mode
            and (mode == "iterative" or r.get("error_rate") == err)]


def _ttft(doc: Dict[str, Any], mode: str, err: Optional[float] = None) -> List[float]:
    return [r["ttft_decode_ms"] for r in doc["records"] if not r.get("error") and r["mode"] == mode
            and r.get("ttft_decode_ms") is not None and (mode == "iterative" or r.get("error_rate") == err)]


def _sweep_table(doc: Dict[str, Any]) -> str:
    errs = sorted({r.get("error_rate") for r in doc["records"] if r["mode"] != "iterative"},
                  key=lambda e: -1.0 if e is None else e)
    it = _speeds(doc, "iterative")
    head = ["drafter error E", "iterative tok/s", "speculative tok/s", "pipeinfer tok/s", "pipeinfer / speculative",
            "pipeinfer / iterative", "speculative / iterative", "TTFT pipeinfer / iterative", "= iterative output"]
    rows = []
    ttft_it = statistics.median(_ttft(doc, "iterative")) if _ttft(doc, "iterative") else None
    for e in errs:
        tt = _ttft(doc, "pipeinfer", e)
        ok = all(r.get("output_ok") for r in doc["records"] if r.get("error_rate") == e or r["mode"] == "iterative")
        rows.append(["-" if e is None else f"{e:g}", _spread(it, 1), _spread(_speeds(doc, "speculative", e), 1),
                     _spread(_speeds(doc, "pipeinfer", e), 1), _spread(_ratios(doc, "pipeinfer/speculative", e)),
                     _spread(_ratios(doc, "pipeinfer/iterative", e)), _spread(_ratios(doc, "speculative/iterative", e)),
                     _f(statistics.median(tt) / ttft_it) if tt and ttft_it else "-", "yes" if ok else "**NO**"])
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _median(vals: List[float]) -> Optional[float]:
    return statistics.median(vals) if vals else None


def _at_least(want: float) -> Callable[[float], bool]:
    return lambda v: v >= want


def _targets(docs: Dict[str, Dict[str, Any]]) -> List[List[str]]:
    """(target, measured, met) rows for the issue's targets that the sweeps found here can check."""
    rows: List[List[str]] = []

    def add(target: str, value: Optional[float], ok: Callable[[float], bool], how: str) -> None:
        rows.append([target, "not measured" if value is None else f"{value:.2f} ({how})",
                     "-" if value is None else ("met" if ok(value) else "**not met**")])

    main = next((d for n, d in docs.items() if d["settings"]["drafter"] == "oracle" and d["settings"]["stages"] == 4
                 and abs(d["quotas"][0] - 0.45) < 1e-9), None)
    if main is not None:
        for e, want in ((0.3, 1.5), (0.5, 1.5), (0.1, 1.2)):
            add(f"4 stages + draft rank, oracle, E={e}: pipeinfer >= {want}x speculative",
                _median(_ratios(main, "pipeinfer/speculative", e)), _at_least(want), "median over repeats")
        worst = [min(_ratios(main, "pipeinfer/iterative", e) or [float("inf")])
                 for e in sorted({r.get("error_rate") for r in main["records"] if r["mode"] == "pipeinfer"})]
        add("... pipeinfer >= 0.95x iterative at every E", min(worst) if worst else None, lambda v: v >= 0.95,
            "the lowest over every E and repeat")
        it = _ttft(main, "iterative")
        pi = [t for r in main["records"] if r["mode"] == "pipeinfer" and not r.get("error")
              for t in [r.get("ttft_decode_ms")] if t is not None]
        add("TTFT <= 1.1x iterative", statistics.median(pi) / statistics.median(it) if pi and it else None,
            lambda v: v <= 1.1,
            "median first decoded token, pipeinfer over iterative")
    syn = next((d for d in docs.values() if str(d["settings"]["drafter"]).startswith("synthetic:20")), None)
    if syn is not None:
        add("synthetic drafter, ratio 20, E=0.2: pipeinfer >= 2.0x iterative",
            _median(_ratios(syn, "pipeinfer/iterative", 0.2)), lambda v: v >= 2.0, "median over repeats")
    d4 = next((d for n, d in docs.items() if "depth-4x" in n), None)
    d8 = next((d for n, d in docs.items() if "depth-8x" in n), None)
    if d4 is not None and d8 is not None:
        r4 = [x for e in (0.1, 0.3, 0.5) for x in _ratios(d4, "pipeinfer/speculative", e)]
        r8 = [x for e in (0.1, 0.3, 0.5) for x in _ratios(d8, "pipeinfer/speculative", e)]
        if r4 and r8:
            add("8 stages: pipeinfer / speculative at least as at 4 (same node speed)",
                statistics.median(r8) / statistics.median(r4), lambda v: v >= 1.0,
                f"median ratio at 8 stages {statistics.median(r8):.2f} over 4 stages {statistics.median(r4):.2f}")
    pair = next((d for d in docs.values() if "0.5b" in str(d["settings"]["drafter"])), None)
    if pair is not None:
        add("Qwen 1.5B + 0.5B on 4 + 1 ranks: pipeinfer >= 1.3x speculative",
            _median(_ratios(pair, "pipeinfer/speculative", None)), lambda v: v >= 1.3, "median over repeats")
        add("... pipeinfer >= 1.2x iterative", _median(_ratios(pair, "pipeinfer/iterative", None)),
            lambda v: v >= 1.2, "median over repeats")
    return rows


def cluster_section(docs: Dict[str, Dict[str, Any]]) -> List[str]:
    """The section's lines (docs: result name -> cluster document)."""
    if not docs:
        return []
    lines = [
        "## 5. PipeInfer on an emulated CPU cluster", "",
        "`pipeinfer bench cluster` (root): every MPI rank runs in its own CPU cgroup with a quota, as if it were a "
        "slower node of a cluster (`evaluation/cgroups.py`: cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` with a "
        "10 ms period, or cgroup v2 `cpu.max`; the parent group has the highest CPU weight so other processes cannot "
        "take a rank's share; each rank's CPU time is checked against its quota after every run). One compute thread "
        "per rank. The target's layers are split over the stages by weight bytes with the output head counted on the "
        "last stage; the drafter runs on its own rank (the paper's topology) with the same quota. The three modes run "
        "interleaved inside each repeat, and every ratio is taken between runs of the same repeat. Greedy output of "
        "every run is compared with plain decoding.", "",
        "Drafters: `oracle` proposes the target's own greedy continuation, corrupted by NoisyDrafter with error rate E "
        "(each drafted token replaced with probability E; the replay cannot continue a context it does not know, so a "
        "chain ends at its first error); `synthetic:R` is the same oracle whose every drafted token does 1/R of the "
        "target's per-token weight reading (real matrix-vector work on the draft rank); the real pair is "
        "Qwen2.5-Coder-1.5B drafted by Qwen2.5-Coder-0.5B. Speeds are accepted tokens per second after prefill (64 "
        "greedy tokens after the paper's ChatML prompt); TTFT is the first decoded token (prefill excluded).", "",
    ]
    for name, doc in sorted(docs.items()):
        st = doc["settings"]
        loads = doc.get("machine", {}).get("loadavg")
        lines += [
            f"### {name}", "",
            f"{st['stages']} target stages + {st['draft_ranks']} draft rank, {doc['quotas'][0]:g} CPU each "
            f"(cgroup {doc.get('cgroup')}, period {st['period_us']} us), model `{st['model']}`, drafter `{st['drafter']}`, "
            f"{st['repeats']} repeat(s), policy {st['policy'] or 'SpeculationPolicy() (adaptive)'}"
            + (f"; load average when written {'/'.join(f'{x:.1f}' for x in loads)}" if loads else "")
            + ". Median (min-max) over repeats.", "",
            _sweep_table(doc), "",
            f"![{name}](results/{name}.png)", "",
        ]
        v = doc.get("validation")
        if v:
            lines += [f"The simulator (the engine's own decoders and policy on a virtual pipeline whose costs are fitted "
                      f"from this sweep's traced iterative and first synchronous runs) predicts the {v['n']} runs with a "
                      f"mean absolute error of {100 * v['mean_abs_rel_error']:.0f}% (max "
                      f"{100 * v['max_abs_rel_error']:.0f}%).", ""]
            best = v.get("best_arms")
            if best:
                lines += ["What fixed settings could reach on these fitted costs (the simulator, every synchronous draft "
                          "length and every PipeInfer (k, D), same drafts): an upper reference for the adaptive policy "
                          "and for what pipelining speculation can gain here at all.", "",
                          "| E | best synchronous (k) | best PipeInfer (k, D) | best PipeInfer / best synchronous |",
                          "|---|---|---|---|"]
                lines += [f"| {b['error_rate']:g} | {b['speculative']:.1f} ({b['speculative_k']}) | "
                          f"{b['pipeinfer']:.1f} ({b['pipeinfer_k']}, {b['pipeinfer_depth']}) | "
                          f"{b['pipeinfer/speculative']:.2f} |" for b in best]
                lines += [""]
    main = next((n for n, d in docs.items() if d["settings"]["drafter"] == "oracle" and d["settings"]["stages"] == 4),
                None)
    if main is not None:
        lines += [
            "Timelines of the main sweep at E = 0.3 (one row per rank; each box is one run's compute there):", "",
            f"![pipeinfer timeline](results/{main}-timeline-pipeinfer.png)", "",
            f"![speculative timeline](results/{main}-timeline-speculative.png)", "",
        ]
    lines += ["### The issue's targets", "", "| target | measured | |", "|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in _targets(docs)]
    lines += [""] + ANALYSIS
    return lines


ANALYSIS = [
    "### Why PipeInfer lost at mid acceptance, what changed, and what bounds it here", "",
    "Before this work, on the same emulated 4-node cluster, PipeInfer ran at 0.59x synchronous speculation at 30% "
    "draft error. Per-rank timelines (`Pipeline(trace=True)`, the plots above) showed why:", "",
    "1. **The layer split ignored the output head.** It balanced layer bytes only, so the last stage also computed "
    "the 144 MB output head of Qwen2.5-Coder-0.5B: 3.3x the work of the others. Every pipelined run queued there. "
    "The split now minimises the costliest stage with the head counted ([7, 8, 8, 1] layers instead of [6, 6, 6, 6]).",
    "2. **A separate one-token run after every acceptance.** The paper's non-speculative run passed every stage again "
    "next to the first micro-batch, so each rejection read the weights (and the heavy last stage) twice. The first "
    "micro-batch now carries the accepted token as its row 0 (the *anchor*): one pass serves both. A one-token run "
    "remains only for the first decoded token (TTFT) and when nothing is drafted.",
    "3. **The policy guessed.** A fixed verification cost (0.35 of a token per draft) made it switch speculation off "
    "at mid acceptance, leaving one run in flight. The policy now measures run latencies by size, the spacing of "
    "results in flight, the head's and the drafter's time and the acceptance, predicts every (k, D) arm, corrects "
    "each by its measured durations, and keeps speculation off only where it measurably loses.",
    "4. **Smaller leaks.** Cancelled runs finished the output head (it is now sliced with cancellation checks); "
    "drafts confirmed by the bonus row of the run before were not counted as accepted (the acceptance was "
    "underestimated by about half with a draft rank); the head re-planned every token (Python at 0.45 CPU).",
    "5. **Speculation switched off still cost time.** At E = 1 the policy sometimes kept a speculative arm for half "
    "the run: a draft rank whose chain ends at its first (wrong) draft sends one draft where three were asked, so "
    "those epochs ran faster than modelled and the arm's correction made it look better than plain decoding at an "
    "acceptance near zero. No arm is now credited with more than its expected tokens per epoch at plain decoding's "
    "rate (an epoch takes at least one run). And with speculation off the head launched the next run only after "
    "updating the drafter, re-planning and preparing shadow drafts; it now launches first (traced result-to-launch "
    "gaps at E = 1: 7.5-9.4 ms against plain decoding's 5.1 ms before, 4.5-5.0 ms against 4.5 ms after).", "",
    "What bounds it now. At 0.45 CPU a stage is compute-bound, so verifying one more token costs 30-50% of a "
    "one-token run (the fitted costs above), unlike the memory-bound 70B nodes of the paper, where it costs little. "
    "With an error rate E a chain survives 1/E tokens on average; every rejection costs one full traversal of the "
    "correction token through all stages, in every mode. Synchronous speculation with a good draft length already "
    "verifies a whole epoch in one traversal; PipeInfer's advantage is the micro-batches already in flight when a "
    "chain survives, which pays at low error (1.4-1.9x at E <= 0.1) and little at E = 0.3-0.5. The simulator, "
    "calibrated on the same runs, finds no fixed PipeInfer setting more than a few percent faster than the best "
    "synchronous one at E = 0.3 and 0.5 on these costs (the table of best arms): the 1.5x targets there are beyond "
    "what pipelining speculation can gain on this emulated cluster, not a matter of tuning. The paper's regime "
    "(memory-bound nodes, expensive drafts) is where the gain is large; the synthetic drafter and the real pair show "
    "the drafting cost that PipeInfer hides.", "",
    "The quota period is part of what is measured. With a 10 ms period and a 4.5 ms quota, a stage whose run "
    "needs less CPU than is left of its quota in the period runs at full speed: plain decoding and synchronous "
    "speculation leave each stage idle between runs, so their short runs mostly burst (traced 1-token runs of stage "
    "0's 7 layers: 4.6-5.1 ms, where a node at 0.45 of this CPU would take about 9 ms), while the runs PipeInfer "
    "keeps in flight together exhaust the quota and get the nominal 0.45. A 1 ms period (`--period-us 1000`) "
    "removes most of the bursting, but in one 2-repeat sweep (19:27, load 4-6) it sped synchronous speculation up "
    "more (2.8-3.3x iterative at E <= 0.1) than PipeInfer (0.80-1.50x speculative at E = 0-0.5), so it is not "
    "the default; it is one more reason to read these figures as this emulation's, not a cluster's.", "",
    "How much to trust one sweep. The same 4-stage oracle sweep taken four times on 2026-12-03 (load 7 at noon, "
    "0.8-2.6 at 15:50, 5-6 at 17:06 with two policy changes that were then reverted, 5-6 at 17:24; the last two "
    "with the default-mode attention kernel) gave pipeinfer / speculative medians of 1.14 / 1.24 / 1.32 / 1.09 at "
    "E = 0.1, 1.05 / 1.01 / 0.93 / 1.09 at E = 0.3 and 1.00 / 0.89 / 1.15 / 1.11 at E = 0.5: the "
    "repeats of one configuration spread by 10-30% even on the quietest machine, more than most differences "
    "at E >= 0.3. Two more sweeps that evening (19:20 and 20:00, load 4-6, the second with the changes of item 5) "
    "gave 0.90 / 1.16 at E = 0.1, 0.99 / 1.09 at E = 0.3, 1.05 / 1.04 at E = 0.5, and 0.87 / 0.94 "
    "pipeinfer / iterative at E = 1, where one slow iterative run in a repeat moves every ratio of that repeat "
    "(0.76, 1.84 and 0.94 in the three repeats of the second). The first decoded token is one sample per run; 10 "
    "runs of each mode (`--errors 0.3 --modes iterative,pipeinfer -n 4 --repeats 10`, load about 4) put "
    "PipeInfer's at 1.15x iterative (medians 45 / 39 ms), and 20 runs of each on a quieter machine (19:12, load "
    "1.5-3.3) at 1.03x (medians 31.8 / 30.9 ms; paired median 1.00), so the TTFT row of the targets table, taken "
    "from the sweep's single samples, is not a measurement of that target. On 2 cores the emulation itself is the limit: 5 ranks at 0.45 CPU "
    "ask for 2.25 CPUs, runs in flight together compute on stages that share 2 cores (and the head's Python "
    "shares rank 0's quota), so the concurrency PipeInfer exists to exploit is exactly what costs here; "
    "a machine with a core per rank (the 16-core device machine, not lent to this task) is where these "
    "targets can be settled.", "",
]
