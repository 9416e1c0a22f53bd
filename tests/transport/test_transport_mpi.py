"""MPI transport under the mpich wheel's mpiexec: ring exchange with 2 and 4 ranks (4 ranks on this 2-core
machine oversubscribe it), mpi4py coexistence, and faults: a worker killed with SIGKILL or stopped with
SIGSTOP must make the head raise a TransportError naming it, and leave no process of the job behind.

Every job runs in its own session with a hard timeout (mpi_helpers), so nothing here can hang CI. The
program each rank runs is mpi_transport_script.py (modes described there).
"""
from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

import mpi_helpers

pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(not mpi_helpers.have_mpiexec(), reason="mpiexec of the mpich wheel not installed"),
]

SCRIPT = Path(__file__).with_name("mpi_transport_script.py")
DEAD_AFTER_S = 2.0
# Allowance on top of dead_after_s for detection after a fault: heartbeat granularity, interpreter
# exit, hydra tearing the job down, and a machine loaded by other jobs.
FAULT_MARGIN_S = 20.0


def check_no_leftovers(result: mpi_helpers.MPIResult, pids=()):
    assert result.leftover_pids == [], f"processes of the job still alive: {result.leftover_pids}"
    # A rank killed at the very end may still be exiting (its environment is already gone, so the
    # job scan misses it): give it a moment.
    deadline = time.monotonic() + 5.0
    alive = [p for p in pids if mpi_helpers.pid_alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in pids if mpi_helpers.pid_alive(p)]
    assert alive == [], f"rank processes still alive: {alive}"


@pytest.mark.parametrize("n_ranks", [2, 4])
def test_ring_exchange_keeps_order_and_contents(tmp_path, n_ranks):
    r = mpi_helpers.run_mpi(SCRIPT, n_ranks, ["ring", tmp_path, 30], timeout_s=120)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert not r.timed_out
    for rank in range(n_ranks):
        rank_, size, pid = (int(x) for x in (tmp_path / f"rank{rank}.ok").read_text().split())
        assert (rank_, size) == (rank, n_ranks)
    check_no_leftovers(r)


@pytest.mark.parametrize("order", ["mpi4py-first", "pipeinfer-first", "mpi4py-single"])
def test_coexists_with_mpi4py(tmp_path, order):
    import mpi4py  # noqa: F401  (a dependency: missing must fail, not skip)
    r = mpi_helpers.run_mpi(SCRIPT, 3, ["mpi4py", tmp_path, 0, order], timeout_s=120)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    for rank in range(3):
        assert (tmp_path / f"rank{rank}.ok").read_text().split() == [str(rank), "3", order]
    check_no_leftovers(r)


def test_a_closed_transport_is_reported_at_once_and_is_not_a_fault(tmp_path):
    r = mpi_helpers.run_mpi(SCRIPT, 3, ["bye", tmp_path, 0], timeout_s=120)
    assert r.returncode == 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    rank, _waited_s, text = (tmp_path / "bye.txt").read_text().split(" ", 2)
    assert int(rank) == 2
    assert "rank 2 closed its transport" in text
    check_no_leftovers(r)


def start_fault_job(tmp_path: Path, n_ranks: int, *, supervise: bool, abort: bool = False):
    args = ["fault", tmp_path, DEAD_AFTER_S] + (["abort"] if abort else [])
    job = mpi_helpers.MPIJob(SCRIPT, n_ranks, args, timeout_s=90, supervise=supervise)
    deadline = time.monotonic() + 60
    files = [tmp_path / f"rank{r}.pid" for r in range(n_ranks)]
    while not all(f.exists() and f.read_text() for f in files):
        if job.proc.poll() is not None or time.monotonic() > deadline:
            r = job.wait()
            pytest.fail(f"fault job did not start: rc={r.returncode}\n{r.stdout}\n{r.stderr}")
        time.sleep(0.05)
    time.sleep(0.5)  # let the token circulate
    return job, [int(f.read_text()) for f in files]


def head_error(result: mpi_helpers.MPIResult) -> re.Match:
    m = re.search(r"TRANSPORT_ERROR rank=(-?\d+) on rank 0: (.*)", result.stdout)
    assert m, f"the head did not report a TransportError:\n{result.stdout}\nstderr:\n{result.stderr}"
    return m


@pytest.mark.parametrize(
    "n_ranks,victim,sig,supervise,abort",
    [
        # Killed worker: needs ranks under a supervisor + -disable-auto-cleanup, or hydra kills the head.
        (3, 1, signal.SIGKILL, True, False),
        (4, 3, signal.SIGKILL, True, False),
        # Hung worker: hydra notices nothing; the head's heartbeat check does, and its exit without
        # MPI_Finalize makes hydra kill the rest, the stopped rank included.
        (3, 1, signal.SIGSTOP, False, False),
        # Hung worker without hydra's auto-cleanup: the head ends the job with mpi_abort_world, called
        # by the script or else by the binding's exit hook after the fault.
        (4, 2, signal.SIGSTOP, True, True),
        (3, 2, signal.SIGSTOP, True, False),
    ],
    ids=["kill-w1-of-3", "kill-w3-of-4", "stop-w1-of-3", "stop-w2-of-4-abort", "stop-w2-of-3-exit-hook"],
)
def test_head_names_the_failed_worker_and_nothing_remains(tmp_path, n_ranks, victim, sig, supervise, abort):
    job, pids = start_fault_job(tmp_path, n_ranks, supervise=supervise, abort=abort)
    t_fault = time.monotonic()
    os.kill(pids[victim], sig)
    r = job.wait()
    after_fault = time.monotonic() - t_fault
    assert not r.timed_out, f"job hit its timeout:\n{r.stdout}\n{r.stderr}"
    m = head_error(r)
    assert int(m.group(1)) == victim
    assert f"rank {victim} has been silent for" in m.group(2)
    assert after_fault < DEAD_AFTER_S + FAULT_MARGIN_S
    assert r.returncode != 0
    check_no_leftovers(r, pids)


def test_killed_worker_without_supervisor_takes_the_job_down(tmp_path):
    # Hydra's documented behaviour (transport-mpi.cpp): a rank killed by a signal makes the proxy SIGKILL
    # every other rank, the head included, before any heartbeat could notice.
    job, pids = start_fault_job(tmp_path, 3, supervise=False)
    os.kill(pids[1], signal.SIGKILL)
    r = job.wait()
    assert not r.timed_out
    assert r.returncode != 0
    check_no_leftovers(r, pids)
