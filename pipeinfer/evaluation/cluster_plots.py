"""Figures of the emulated-cluster experiment (cluster.py): speed against the drafter's error rate, the
PipeInfer / synchronous ratio, per-rank timelines, and the simulator against the measurements.

A timeline draws every run's compute on every rank (one row per rank, time after prefill on the
x axis): runs that carry the accepted token (anchors and one-token runs) in one colour, speculative
micro-batches in another, cancelled ones grey; ticks below mark the head's results, accepted tokens
and cancellations. It owns drawing only (matplotlib through plots.require_matplotlib).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from pipeinfer.evaluation.plots import COLORS, DPI, MODES, require_matplotlib

__all__ = ["plot_cluster", "draw_timeline"]


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _mean_by_error(records: List[Dict[str, Any]], mode: str) -> List[tuple]:
    by: Dict[float, List[float]] = {}
    for r in records:
        if r["mode"] == mode and not r.get("error") and r.get("error_rate") is not None:
            by.setdefault(float(r["error_rate"]), []).append(r["predicted_per_second"])
    return sorted((e, sum(v) / len(v), min(v), max(v)) for e, v in by.items())


def plot_cluster(name: str, doc: Dict[str, Any], out: Path) -> List[Path]:
    """Speed and ratio against the error rate, timelines of a mid error rate, simulator validation."""
    plt = require_matplotlib()
    recs = [r for r in doc["records"] if not r.get("error")]
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    ax = axes[0]
    its = [r["predicted_per_second"] for r in recs if r["mode"] == "iterative"]
    if its:
        ax.axhline(sum(its) / len(its), color=COLORS["iterative"], lw=1.5, label="iterative")
    for mode in ("speculative", "pipeinfer"):
        pts = _mean_by_error(recs, mode)
        if pts:
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[[p[1] - p[2] for p in pts],
                                                                        [p[3] - p[1] for p in pts]],
                        marker="o", color=COLORS[mode], label=mode, capsize=3)
    ax.set_xlabel("drafter error rate E")
    ax.set_ylabel("tokens/s")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = [r for r in doc.get("ratios", []) if "pipeinfer/speculative" in r and r.get("error_rate") is not None]
    if rows:
        ax.plot([r["error_rate"] for r in rows], [r["pipeinfer/speculative"] for r in rows], "o",
                color=COLORS["pipeinfer"], label="pipeinfer / speculative")
        ax.plot([r["error_rate"] for r in rows], [r.get("pipeinfer/iterative", float("nan")) for r in rows], "s",
                color=COLORS["iterative"], label="pipeinfer / iterative")
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("drafter error rate E")
    ax.set_ylabel("ratio (same repeat)")
    ax.legend(fontsize=8)
    paths.append(_save(plt, fig, out / f"{name}.png"))
    errs = sorted({r["error_rate"] for r in recs if r.get("error_rate") is not None})
    mid = min(errs, key=lambda e: abs(e - 0.3)) if errs else None
    for mode in ("speculative", "pipeinfer"):
        r = next((x for x in recs if x["mode"] == mode and x.get("error_rate") == mid and x.get("timeline")), None)
        if r is not None:
            fig, ax = plt.subplots(figsize=(12, 3.2))
            draw_timeline(ax, r, window_s=1.5)
            paths.append(_save(plt, fig, out / f"{name}-timeline-{mode}.png"))
    v = doc.get("validation")
    if v:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        for mode in MODES:
            pts = [(x["measured"], x["simulated"]) for x in v["runs"] if x["mode"] == mode]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=COLORS[mode], label=mode)
        hi = max(max(x["measured"], x["simulated"]) for x in v["runs"]) * 1.1
        ax.plot([0, hi], [0, hi], "k:", lw=1)
        ax.set_xlabel("measured tokens/s")
        ax.set_ylabel("simulated tokens/s (same decoder)")
        ax.set_title(f"mean |error| {100 * v['mean_abs_rel_error']:.0f}%", fontsize=9)
        ax.legend(fontsize=7)
        paths.append(_save(plt, fig, out / f"{name}-validation.png"))
    return paths


def draw_timeline(ax: Any, rec: Dict[str, Any], window_s: Optional[float] = None) -> None:
    """Per-rank run spans of a traced record on `ax` (see the module docstring)."""
    tl = rec["timeline"]
    t0 = tl["t_prefill_end"]
    launches = {f["run"]: f for t, kind, f in tl["head"] if kind == "launch"}
    end = window_s if window_s is not None else max(sp[2] for st in tl["stages"] for sp in st) - t0
    for s, spans in enumerate(tl["stages"]):
        for rid, a, b, n, layers, skipped in spans:
            if a - t0 > end or b < t0:
                continue
            kind = launches.get(rid, {})
            color = "#bbbbbb" if skipped else (COLORS["pipeinfer"] if kind.get("spec") else COLORS["speculative"])
            ax.broken_barh([(a - t0, b - a)], (s - 0.4, 0.8), color=color, edgecolor="k", linewidth=0.3)
    marks = {"result": ("k", -0.7), "accept": ("g", -1.0), "cancel": ("r", -1.3)}
    for t, kind, _ in tl["head"]:
        if kind in marks and 0 <= t - t0 <= end:
            c, y = marks[kind]
            ax.plot([t - t0], [y], "|", color=c, ms=7)
    ax.set_yticks(list(range(len(tl["stages"]))) + [-0.7, -1.0, -1.3])
    ax.set_yticklabels([f"rank {s}" for s in range(len(tl["stages"]))] + ["result", "accepted", "cancel"], fontsize=7)
    ax.set_xlim(0, end)
    ax.set_xlabel("seconds after prefill")
    ax.set_title(f"{rec['mode']}, E={rec.get('error_rate')}: {rec['predicted_per_second']:.1f} tokens/s "
                 "(blue: run with the accepted token or no drafts; red: speculative micro-batch; grey: cancelled)",
                 fontsize=8)
