"""PNG plots of experiment results (matplotlib, imported only here and only when plotting).

This module owns the figures: for `modes` the paper's three bar charts (generation speed, TTFT, ITL per
mode), for `acceptance` speed against the measured acceptance rate, for `links` speed per link profile,
for `simulate` measured against modelled speed and the projections. It must not run experiments.
Figures are small (dpi 80) so that they can be committed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

__all__ = ["plot", "require_matplotlib"]

MODES = ("iterative", "speculative", "pipeinfer")
COLORS = {"iterative": "#7f7f7f", "speculative": "#1f77b4", "pipeinfer": "#d62728"}
DPI = 80


def require_matplotlib() -> Any:
    """matplotlib.pyplot with the Agg backend, or RuntimeError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("plots need matplotlib: pip install 'pipeinfer[bench]' (or pip install matplotlib), "
                           "or pass --no-plots") from e
    return plt


def _ok(records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in records if not r.get("error") and r.get("predicted_per_second") is not None]


def plot(name: str, doc: Dict[str, Any], out: Path) -> List[Path]:
    """Draws the figures of experiment `name` into out/; returns their paths."""
    fn = {"modes": _modes, "acceptance": _acceptance, "links": _links, "simulate": _simulate}.get(name)
    if fn is None:
        return []
    plt = require_matplotlib()
    return fn(plt, doc, out)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _modes(plt: Any, doc: Dict[str, Any], out: Path) -> List[Path]:
    recs = [r for r in _ok(doc["records"]) if r.get("source") != "model"]
    groups: List[tuple] = []
    for r in recs:
        g = (r["case"], r["transport"], r["stages"])
        if g not in groups:
            groups.append(g)
    metrics = [("predicted_per_second", "generation speed (tokens/s)"),
               ("ttft_decode_ms", "TTFT, prefill excluded (ms)"), ("itl_ms_mean", "inter-token latency (ms)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    width = 0.8 / len(MODES)
    for ax, (key, title) in zip(axes, metrics):
        for j, mode in enumerate(MODES):
            xs, ys = [], []
            for i, g in enumerate(groups):
                m = [r for r in recs if (r["case"], r["transport"], r["stages"]) == g and r["mode"] == mode]
                if m:
                    xs.append(i + (j - 1) * width)
                    ys.append(m[0][key])
            ax.bar(xs, ys, width, label=mode, color=COLORS[mode])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{c.split('+')[0]}\n{t} x{n}" for c, t, n in groups], fontsize=7)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    return [_save(plt, fig, out / "modes.png")]


def _acceptance(plt: Any, doc: Dict[str, Any], out: Path) -> List[Path]:
    recs = _ok(doc["records"])
    cases = list(dict.fromkeys(r["case"] for r in recs))
    fig, axes = plt.subplots(1, len(cases), figsize=(6 * len(cases), 4.2), squeeze=False)
    for ax, case in zip(axes[0], cases):
        cr = [r for r in recs if r["case"] == case]
        for r in cr:
            if r["mode"] == "iterative":
                ax.axhline(r["predicted_per_second"], color=COLORS["iterative"], ls="--", label="iterative")
        for mode in ("speculative", "pipeinfer"):
            pts = sorted((r["acceptance_rate"], r["predicted_per_second"], r["drafter"]) for r in cr if r["mode"] == mode)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS[mode], label=mode)
            for a, v, lab in pts:
                if not lab.startswith("oracle"):
                    ax.annotate(lab.replace("draft:", ""), (a, v), fontsize=6)
        ax.set_xlabel("measured acceptance rate (accepted / drafted)")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{case}: 2 local stages", fontsize=10)
        ax.legend(fontsize=8)
    return [_save(plt, fig, out / "acceptance.png")]


def _links(plt: Any, doc: Dict[str, Any], out: Path) -> List[Path]:
    recs = _ok(doc["records"])
    links = list(dict.fromkeys(r["link"] for r in recs))
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(MODES)
    for j, mode in enumerate(MODES):
        xs, ys = [], []
        for i, lk in enumerate(links):
            m = [r for r in recs if r["link"] == lk and r["mode"] == mode]
            if m:
                xs.append(i + (j - 1) * width)
                ys.append(m[0]["predicted_per_second"])
        ax.bar(xs, ys, width, label=mode, color=COLORS[mode])
    shaping = doc.get("shaping", {})
    ax.set_xticks(range(len(links)))
    ax.set_xticklabels([f"{lk}\n({shaping.get(lk, 'shm' if lk == 'shm' else '?')})" for lk in links], fontsize=7)
    ax.set_ylabel("tokens/s")
    ax.set_title(f"MPI x{doc.get('ranks')} ranks per link (tbf: rate only, no delay)", fontsize=10)
    ax.legend(fontsize=8)
    return [_save(plt, fig, out / "links.png")]


def _simulate(plt: Any, doc: Dict[str, Any], out: Path) -> List[Path]:
    paths = []
    model = [r for r in doc["records"] if r.get("source") == "model"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for mode in MODES:
        pts = [(r["measured_per_second"], r["predicted_per_second"]) for r in model if r["mode"] == mode]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=COLORS[mode], label=mode)
    if model:
        hi = max(max(r["measured_per_second"], r["predicted_per_second"]) for r in model) * 1.1
        ax.plot([0, hi], [0, hi], "k:", lw=1)
    ax.set_xlabel("measured tokens/s")
    ax.set_ylabel("modelled tokens/s")
    ax.set_title("model validation (1 and 2 local stages)", fontsize=10)
    ax.legend(fontsize=8)
    paths.append(_save(plt, fig, out / "simulate-validation.png"))

    proj = doc.get("projections", [])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    for a, ls in zip((0.4, 0.7, 0.9), (":", "--", "-")):
        for mode in ("speculative", "pipeinfer"):
            pts = [(p["x"], p["vs_iterative"]) for p in proj if p["projection"] == "depth" and p["acceptance"] == a
                   and p["mode"] == mode]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls, marker="o", color=COLORS[mode],
                    label=f"{mode} a={a}")
    ax.axhline(1.0, color=COLORS["iterative"], lw=1)
    ax.set_xlabel("nodes (70B target split evenly)")
    ax.set_ylabel("speed / iterative")
    ax.set_title("projection: pipeline depth", fontsize=10)
    ax.legend(fontsize=6)
    ax = axes[1]
    for mode in ("speculative", "pipeinfer"):
        pts = [(p["x"], p["vs_iterative"]) for p in proj if p["projection"] == "ratio" and p["mode"] == mode]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=COLORS[mode], label=mode)
    ax.axhline(1.0, color=COLORS["iterative"], lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("target / draft cost ratio (8 nodes, a=0.7)")
    ax.set_ylabel("speed / iterative")
    ax.set_title("projection: draft size", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[2]
    for mode in ("speculative", "pipeinfer"):
        pts = [(p["x"], p["vs_iterative"]) for p in proj if p["projection"] == "acceptance" and p["mode"] == mode]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=COLORS[mode], label=mode)
    ax.axhline(1.0, color=COLORS["iterative"], lw=1)
    ax.set_xlabel("per-token acceptance (8 nodes, ratio 50)")
    ax.set_ylabel("speed / iterative")
    ax.set_title("projection: acceptance", fontsize=10)
    ax.legend(fontsize=7)
    paths.append(_save(plt, fig, out / "simulate-projection.png"))
    return paths
