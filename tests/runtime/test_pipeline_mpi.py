"""The pipeline over MPI ranks started by mpiexec from the tests: identical greedy output for 2-4
ranks (4 ranks oversubscribe the 2 cores: slow but correct), and a worker killed mid-generation makes
the head raise TransportError within the configured deadline with no process left behind."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mpi_helpers import MPIJob, have_mpiexec, pid_alive, run_mpi

import pipeinfer

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(not have_mpiexec(), reason="mpiexec (mpich wheel) not found")]

SCRIPT = str(Path(__file__).with_name("mpi_generate.py"))


def _single_process_tokens(path, n):
    with pipeinfer.Pipeline(str(path), n_ctx=256, n_threads=1) as p:
        return p.generate([5, 17, 99, 3, 250], max_tokens=n, temperature=0).tokens


def _last_json(stdout):
    lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines, stdout
    return json.loads(lines[-1])


@pytest.mark.parametrize("n_ranks", [2, 3, 4])
def test_mpi_ranks_match_single_process(tiny_model, n_ranks):
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    want = _single_process_tokens(path, 12)
    r = run_mpi(SCRIPT, n_ranks, [str(path), "12"], timeout_s=180)
    assert r.returncode == 0, r.stderr
    assert not r.leftover_pids
    out = _last_json(r.stdout)
    assert out["transport"] == "mpi"
    assert out["tokens"] == want
    assert len(out["stages"]) == n_ranks
    assert sum(s["layer_end"] - s["layer_begin"] for s in out["stages"]) == 4


@pytest.mark.parametrize("mode", ["iterative", "speculative", "pipeinfer"])
def test_mpi_bias_and_penalties_change_greedy_output_as_in_one_process(tiny_model, mode):
    """Over 2 MPI ranks, a bias forbidding the top token plus penalties give the single-process output
    (every mode chooses through the TokenChooser), with the same logprobs; the speculative modes draft."""
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    prompt = [5, 17, 99, 3, 250, 5, 17, 99, 3, 250]
    with pipeinfer.Pipeline(str(path), n_ctx=256, n_threads=1) as p:
        free = p.generate(prompt, max_tokens=12, temperature=0).tokens
        sampling = {"logit_bias": {str(free[0]): -100}, "repeat_penalty": 1.6, "presence_penalty": 0.5, "logprobs": 1}
        want = p.generate(prompt, max_tokens=12, temperature=0, **sampling)
    assert want.tokens[:1] != free[:1]
    # the model drafts for itself: its drafts follow the raw logits, so the processed choices reject some
    extra = ["--mode", mode, "--draft", str(path), "--fixed-draft", "4"] if mode != "iterative" else []
    r = run_mpi(SCRIPT, 2, [str(path), "12", "--prompt", ",".join(map(str, prompt)), "--sampling",
                            json.dumps(sampling)] + extra, timeout_s=180)
    assert r.returncode == 0, r.stderr
    out = _last_json(r.stdout)
    assert out["tokens"] == want.tokens
    assert [t for t, _ in out["logprobs"]] == want.tokens
    assert [lp for _, lp in out["logprobs"]] == pytest.approx([x.logprob for x in want.logprobs], abs=1e-6)
    if mode != "iterative":
        assert out["stats"]["draft_n"] > 0


@pytest.mark.realmodel
def test_mpi_two_ranks_real_model(real_model_path):
    path = real_model_path("smollm2-135m")
    want = _single_process_tokens(path, 16)
    r = run_mpi(SCRIPT, 2, [str(path), "16", "--prompt", "504,3575,282,4649,314"], timeout_s=300)
    assert r.returncode == 0, r.stderr
    out = _last_json(r.stdout)
    with pipeinfer.Pipeline(str(path), n_ctx=256, n_threads=1) as p:
        want = p.generate([504, 3575, 282, 4649, 314], max_tokens=16, temperature=0).tokens
    assert out["tokens"] == want


def test_killed_worker_raises_transport_error(tiny_model, tmp_path):
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    dead_after = 3.0
    job = MPIJob(SCRIPT, 3, [str(path), "200", "--pidfile-dir", str(tmp_path), "--dead-after", str(dead_after),
                             "--slow", "0.05"], timeout_s=120, supervise=True)
    deadline = time.time() + 60
    victim = tmp_path / "rank1.pid"
    # generation under way (every rank past MPI_Init, whose SIGUSR1 handler hears of the death), however
    # slowly a loaded machine starts the ranks
    while not victim.exists() or not (tmp_path / "generating").exists():
        assert time.time() < deadline, "ranks did not start generating"
        time.sleep(0.05)
    time.sleep(0.5)
    t_kill = time.time()
    os.kill(int(victim.read_text()), signal.SIGKILL)
    r = job.wait()
    elapsed = time.time() - t_kill
    assert r.returncode != 0
    assert "TransportError" in r.stderr, r.stderr
    assert "rank=1" in r.stderr or "rank 1" in r.stderr
    assert elapsed < dead_after + 20, f"head took {elapsed:.1f} s to notice"
    assert not r.leftover_pids


@pytest.mark.parametrize("n_ranks, mode", [(2, "pipeinfer"), (3, "speculative"), (4, "pipeinfer")])
def test_mpi_speculation_matches_single_process(tiny_model, n_ranks, mode):
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    want = _single_process_tokens(path, 16)
    r = run_mpi(SCRIPT, n_ranks, [str(path), "16", "--mode", mode, "--draft", "ngram"], timeout_s=240)
    assert r.returncode == 0, r.stderr
    assert not r.leftover_pids
    out = _last_json(r.stdout)
    assert out["tokens"] == want
    assert out["stats"]["runs_launched"] >= 1


def test_mpi_exact_mode_pipeinfer_matches_single_process(tiny_model):
    """exact=True (no row-interleaved weights) travels to the worker ranks in the HELLO message;
    PipeInfer over 2 ranks in exact mode gives the single-process exact greedy tokens."""
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    with pipeinfer.Pipeline(str(path), n_ctx=256, n_threads=1, exact=True) as p:
        want = p.generate([5, 17, 99, 3, 250], max_tokens=16, temperature=0).tokens
    r = run_mpi(SCRIPT, 2, [str(path), "16", "--mode", "pipeinfer", "--draft", "ngram", "--exact"], timeout_s=240)
    assert r.returncode == 0, r.stderr
    assert not r.leftover_pids
    assert _last_json(r.stdout)["tokens"] == want


def test_more_ranks_than_layers_fails_cleanly_on_every_rank(tiny_model):
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    r = run_mpi(SCRIPT, 5, [str(path), "4"], timeout_s=120)
    assert r.returncode != 0
    assert "cannot split 4 layers into 5 stages" in r.stderr
    assert "Traceback (most recent call last)" not in r.stdout
    assert not r.leftover_pids


def test_ranks_with_different_model_files_fail_at_the_handshake(tiny_model):
    a, _ = tiny_model("llama", "q8_0", n_layer=4)
    b, _ = tiny_model("llama", "q8_0", n_layer=4, seed=9)  # same shapes, other weights
    r = run_mpi(SCRIPT, 2, [str(a), "4", "--model-rank", f"1:{b}"], timeout_s=120)
    assert r.returncode != 0
    assert "rank 1 loaded a different model file" in r.stderr
    assert not r.leftover_pids


# ---- faults around startup and hangs: a clear error in bounded time, then nothing left running ----

DEAD_AFTER_S = 3.0
# Allowance on top of dead_after_s: heartbeat granularity, interpreter start and exit, hydra tearing
# the job down, and a machine loaded by other jobs.
FAULT_MARGIN_S = 25.0


def _job_shm_names(pids):
    """Names of /dev/shm files the given processes map, with whether each is still linked."""
    names = {}
    for pid in pids:
        try:
            maps = Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            continue
        for line in maps.splitlines():
            if "/dev/shm/mpich_" in line:
                path = line.split("/dev/shm/", 1)[1]
                names[path.split(" ")[0]] = not path.endswith("(deleted)")
    return names


@pytest.mark.parametrize("n_ranks, failing", [(2, 1), (3, 2), (3, 0)], ids=["worker-of-2", "worker-of-3", "head-of-3"])
def test_rank_failing_before_it_joins_is_named_with_its_error(tiny_model, tmp_path, n_ranks, failing):
    """A rank whose model path is missing fails in Python before MPI starts; it joins the job only to
    report, so the others raise its error (naming it) at once instead of waiting in MPI_Init for ever."""
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    missing = tmp_path / "missing-on-this-node.gguf"
    r = run_mpi(SCRIPT, n_ranks, [str(path), "4", "--model-rank", f"{failing}:{missing}",
                                  "--dead-after", str(DEAD_AFTER_S)], timeout_s=120)
    assert not r.timed_out, r.stderr
    assert r.returncode != 0
    assert r.elapsed_s < DEAD_AFTER_S + FAULT_MARGIN_S
    # The head names the failed worker with the worker's own message; a failed head is named so by
    # every worker.
    names = f"rank {failing}: ValueError: model '{missing}' is neither an existing file"
    assert r.stderr.count(names) == (n_ranks - 1 if failing == 0 else 1), r.stderr
    assert not r.leftover_pids


@pytest.mark.parametrize("n_ranks, victim", [(3, 2), (3, 0), (2, 1)], ids=["w2-of-3", "head-of-3", "w1-of-2"])
def test_stopped_rank_under_a_supervisor_ends_the_whole_job(tiny_model, tmp_path, n_ranks, victim):
    """The README's supervisor pattern (-disable-auto-cleanup): hydra never notices a stopped rank.
    The ranks that see it go silent raise TransportError naming it (not the rank that reported it),
    and the job ends with MPI_Abort at their exit: no mpiexec, proxy, wrapper shell or stopped rank
    is left in the process table, and no shared-memory segment in /dev/shm."""
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    job = MPIJob(SCRIPT, n_ranks, [str(path), "400", "--pidfile-dir", str(tmp_path), "--dead-after",
                                   str(DEAD_AFTER_S), "--slow", "0.05"], timeout_s=150, supervise=True)
    pidfiles = [tmp_path / f"rank{r}.pid" for r in range(n_ranks)]
    deadline = time.time() + 90
    while not all(f.exists() and f.read_text() for f in pidfiles) or not (tmp_path / "generating").exists():
        if job.proc.poll() is not None or time.time() > deadline:
            r = job.wait()
            pytest.fail(f"job did not start generating: rc={r.returncode}\n{r.stdout}\n{r.stderr}")
        time.sleep(0.05)
    pids = [int(f.read_text()) for f in pidfiles]
    shm = _job_shm_names(pids)
    t_stop = time.time()
    os.kill(pids[victim], signal.SIGSTOP)
    r = job.wait()  # kills what is left of the job past its timeout, the stopped rank included
    elapsed = time.time() - t_stop
    # Ranks killed at the very end may still be exiting (their environment is already gone, so the
    # job scan misses them): give them a moment.
    deadline = time.time() + 10
    alive = [p for p in pids if pid_alive(p)]
    while alive and time.time() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if pid_alive(p)]
    assert not r.timed_out, f"the job hit its timeout:\n{r.stdout}\n{r.stderr}"
    assert r.returncode != 0
    assert f"TransportError(rank={victim})" in r.stderr, r.stderr
    assert f"rank {victim} has been silent for" in r.stderr
    # No other rank is blamed for the silence. A rank may still report, before the job's MPI_Abort
    # reaches it, that the rank which raised is exiting: that names the exiting rank, truthfully.
    others = [line for line in r.stderr.splitlines()
              if "TransportError(rank=" in line and f"TransportError(rank={victim})" not in line]
    assert all("closed its transport" in line for line in others), others
    assert elapsed < DEAD_AFTER_S + FAULT_MARGIN_S
    assert not r.leftover_pids
    assert not alive, f"rank processes still alive: {alive}"
    # MPICH's segment names were unlinked once the job was up: none can outlive it.
    assert shm and not any(shm.values()), shm
    assert not any(Path("/dev/shm", name).exists() for name in shm)
