"""`pipeinfer bench` on a tiny synthetic model: the experiments write their JSON/CSV results, every
run's greedy output equals iterative decoding, and the report is generated from them."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(args, cwd, timeout=300):
    # cwd outside the repository, so that the installed package (not the source tree) is imported
    return subprocess.run([sys.executable, "-m", "pipeinfer", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def tiny_path(tiny_model):
    path, _ = tiny_model("llama", "q8_0", n_ctx_train=1024)  # the benchmarks run with n_ctx 1024
    return str(path)


def test_bench_modes_quick_writes_results(tiny_path, tmp_path):
    out = tmp_path / "res"
    r = run_cli(["bench", "modes", "--quick", "--model", tiny_path, "--ranks", "0", "--out", str(out), "-n", "8",
                 "--no-plots"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "[eval modes" in r.stderr  # progress on stderr
    doc = json.loads((out / "modes.json").read_text())
    assert doc["machine"]["cpus_available"] >= 1 and doc["machine"]["kernel_isa"]
    recs = doc["records"]
    # local x1 and x2, three modes each
    assert sorted((rec["stages"], rec["mode"]) for rec in recs) == sorted(
        (n, m) for n in (1, 2) for m in ("iterative", "speculative", "pipeinfer"))
    assert all(rec["output_ok"] is True for rec in recs)
    assert all(len(rec["tokens_out"]) == len(recs[0]["tokens_out"]) > 0 for rec in recs)
    assert all(rec["predicted_per_second"] > 0 for rec in recs)
    with open(out / "modes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and {row["mode"] for row in rows} == {"iterative", "speculative", "pipeinfer"}
    assert all(row["output_ok"] == "True" for row in rows)


def test_bench_acceptance_sweeps_noise(tiny_path, tmp_path):
    out = tmp_path / "res"
    r = run_cli(["bench", "acceptance", "--quick", "--model", tiny_path, "--out", str(out), "-n", "12",
                 "--no-plots"], tmp_path)
    assert r.returncode == 0, r.stderr
    recs = json.loads((out / "acceptance.json").read_text())["records"]
    assert all(rec["output_ok"] is True for rec in recs)
    by = {(rec["drafter"], rec["mode"]): rec for rec in recs}
    # fully corrupted drafts are never accepted; the oracle's are, except those drafted past the last
    # generated token (the generation stops before they are verified)
    assert by[("oracle+noise1.00", "speculative")]["draft_n_accepted"] == 0
    exact = by[("oracle+noise0.00", "speculative")]
    assert exact["draft_n"] > 0 and exact["acceptance_rate"] >= 0.5
    assert exact["draft_n_accepted"] > by[("oracle+noise0.50", "speculative")]["draft_n_accepted"] >= 0


def test_bench_report_and_plots(tiny_path, tmp_path):
    import matplotlib  # noqa: F401  (a dependency: missing must fail, not skip)
    out = tmp_path / "res"
    r = run_cli(["bench", "modes", "--quick", "--model", tiny_path, "--ranks", "0", "--out", str(out), "-n", "6"],
                tmp_path)
    assert r.returncode == 0, r.stderr
    png = out / "modes.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli(["bench", "report", "--out", str(out), "--docs", str(tmp_path / "docs")], tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "## 1. The three modes" in text and "results/modes.png" in text
    assert (tmp_path / "docs" / "results" / "modes.png").stat().st_size < 200 * 1024


def test_bench_errors_are_one_line(tmp_path):
    r = run_cli(["bench", "report", "--out", str(tmp_path / "nothing")], tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "no experiment results" in r.stderr


@pytest.mark.mpi
@pytest.mark.slow
def test_bench_cluster_on_an_emulated_cluster(tiny_path, tmp_path):
    """The emulated cluster end to end (as root: CI runs as root): 2 target stages + a draft rank in CPU
    cgroups, greedy outputs checked, CPU shares within quota, timelines, simulator validation, report."""
    out = tmp_path / "res"
    groups = lambda: set(Path("/sys/fs/cgroup/cpu").glob("pipeinfer-cluster-*"))  # noqa: E731
    before = groups()
    r = run_cli(["bench", "cluster", "--model", tiny_path, "--stages", "2", "--quota", "0.3", "--errors", "0.5",
                 "--repeats", "1", "-n", "12", "--out", str(out), "--tag", "tiny"], tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "cluster-tiny.json").read_text())
    recs = doc["records"]
    assert sorted(rec["mode"] for rec in recs) == ["iterative", "pipeinfer", "speculative"]
    assert all(rec["output_ok"] is True for rec in recs)
    assert all(rec["cpu_share_ok"] and len(rec["cpu_share_used"]) == 3 for rec in recs)
    assert all(len(rec["timeline"]["stages"]) == 2 for rec in recs)
    assert {rec["draft_ranks"] for rec in recs} == {0, 1}
    assert doc["validation"]["n"] == 3 and doc["ratios"][0]["error_rate"] == 0.5
    assert (out / "cluster-tiny.png").exists() and (out / "cluster-tiny-timeline-pipeinfer.png").exists()
    r = run_cli(["bench", "report", "--out", str(out), "--docs", str(tmp_path / "docs")], tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "docs" / "results.md").read_text()
    assert "emulated CPU cluster" in text and "cluster-tiny" in text
    assert groups() <= before  # the run's cgroups are gone
