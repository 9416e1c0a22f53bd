"""Writing and reading experiment results: one JSON document (machine, settings, records) and one flat
CSV per experiment, in the output folder.

This module owns the file formats only; it must not run or plot anything.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

__all__ = ["write_results", "read_results", "CSV_COLUMNS"]

# Columns of the CSV (records may hold more; list values are joined with ';').
CSV_COLUMNS = (
    "experiment", "case", "model_name", "drafter", "mode", "transport", "stages", "link", "shaping", "n_gen",
    "predicted_per_second", "ttft_ms", "ttft_decode_ms", "itl_ms_mean", "itl_ms_p50", "itl_ms_p99",
    "acceptance_rate", "mean_accepted_length", "draft_n", "draft_n_accepted", "runs_launched", "runs_cancelled",
    "layers_skipped", "bytes_sent_per_token", "stage_busy_s", "stage_idle_s", "output_ok", "error",
    "source", "acceptance", "error_rate",
)  # fmt: skip


def _cell(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return ";".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v)
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def write_results(out_dir: Path, name: str, doc: Dict[str, Any]) -> Dict[str, Path]:
    """Writes out_dir/NAME.json (the whole doc) and out_dir/NAME.csv (doc["records"]); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = dict(doc)
    doc.setdefault("written_at", time.strftime("%Y-%m-%d %H:%M:%S %z"))
    jp = out_dir / f"{name}.json"
    tmp = jp.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(jp)
    cp = out_dir / f"{name}.csv"
    records: Sequence[Dict[str, Any]] = doc.get("records", [])
    with open(cp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in records:
            w.writerow([_cell(r.get(c)) for c in CSV_COLUMNS])
    return {"json": jp, "csv": cp}


def read_results(out_dir: Path, name: str) -> Dict[str, Any]:
    return json.loads((out_dir / f"{name}.json").read_text())


def records_where(records: List[Dict[str, Any]], **match: Any) -> List[Dict[str, Any]]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]
