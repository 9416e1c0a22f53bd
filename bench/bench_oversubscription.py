"""Ranks waiting in the transport must leave the CPU to computing ranks: 4 MPI ranks on this machine's
(2) cores, rank 0 computing a fixed job while ranks 1-3 wait for a message, against rank 0 alone.
The ratio is measured within one run (alternating 1-rank and 4-rank jobs) and must stay <= 1.2.

    pytest bench/bench_oversubscription.py --benchmark-only -s
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
from mpi_helpers import have_mpiexec, run_mpi  # noqa: E402

SCRIPT = str(ROOT / "tests" / "transport" / "mpi_transport_script.py")


def _compute_seconds(n_ranks: int, secs: float = 0.5) -> float:
    with tempfile.TemporaryDirectory() as d:
        r = run_mpi(SCRIPT, n_ranks, ["compute", d, str(secs)], timeout_s=120)
        assert r.returncode == 0, r.stderr
        return float((Path(d) / "compute.txt").read_text())


@pytest.mark.mpi
@pytest.mark.skipif(not have_mpiexec(), reason="mpiexec (mpich wheel) not found")
def test_waiting_ranks_do_not_slow_a_computing_rank(benchmark):
    alone, crowded = [], []

    def once():
        alone.append(_compute_seconds(1))
        crowded.append(_compute_seconds(4))

    benchmark.pedantic(once, rounds=3, iterations=1)
    ratio = sorted(c / a for c, a in zip(crowded, alone))[1]  # median of the paired ratios
    benchmark.extra_info.update({"cpus": len(os.sched_getaffinity(0)), "alone_s": alone, "crowded_s": crowded,
                                 "median_ratio": ratio})
    print(f"\ncompute alone {alone} s, with 3 waiting ranks {crowded} s, median ratio {ratio:.3f}")
    assert ratio <= 1.2
