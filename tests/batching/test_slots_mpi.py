"""Parallel slots over MPI ranks: the workers learn the KV sequence groups in the handshake, and
concurrent generations on the head equal the single-process ones."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpi_helpers import have_mpiexec, run_mpi

import pipeinfer

pytestmark = [pytest.mark.mpi, pytest.mark.skipif(not have_mpiexec(), reason="mpiexec (mpich wheel) not found")]

SCRIPT = str(Path(__file__).with_name("mpi_parallel.py"))
PROMPTS = [[5, 17, 99, 3, 250], [7, 7, 31, 200], [123, 4, 56, 78, 9, 10], [250, 1, 2]]


@pytest.mark.parametrize("draft", [None, "ngram"], ids=["iterative", "pipeinfer-ngram"])
def test_parallel_slots_over_two_ranks(tiny_model, draft):
    path, _ = tiny_model("llama", "q8_0", n_layer=4)
    with pipeinfer.Pipeline(str(path), n_ctx=4 * 128, n_threads=1, parallel=4, draft=draft) as p:
        want = [p.generate(pr, max_tokens=12, temperature=0).tokens for pr in PROMPTS]
    r = run_mpi(SCRIPT, 2, [str(path), "12", "4"] + (["--draft", draft] if draft else []), timeout_s=180)
    assert r.returncode == 0, r.stderr
    assert not r.leftover_pids
    out = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert out["transport"] == "mpi"
    assert out["tokens"] == want
