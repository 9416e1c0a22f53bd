"""The pipeline over MPI ranks (mpiexec from the mpich wheel): iterative / speculative / pipeinfer on 1
and 2 ranks, tokens/s, TTFT, ITL, bytes per token per hop and each rank's resident memory (a rank maps
the whole file but touches only its layers). Output is checked against single-process greedy decoding.

    pytest bench/bench_pipeline_mpi.py --benchmark-only -s
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

import pipeinfer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from mpi_helpers import have_mpiexec, run_mpi  # noqa: E402

SCRIPT = str(Path(__file__).with_name("mpi_decode.py"))
PROMPT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\ndef mul(a, b):\n"
N_GEN = 48
_WANT: dict = {}


@pytest.mark.realmodel
@pytest.mark.skipif(not have_mpiexec(), reason="mpiexec not found")
@pytest.mark.parametrize("mode", ["iterative", "speculative", "pipeinfer"])
@pytest.mark.parametrize("ranks", [1, 2])
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_mpi_modes(benchmark, real_model, machine_info, name, ranks, mode):
    path = real_model(name)
    if name not in _WANT:
        with pipeinfer.Pipeline(path, n_ctx=512, n_threads=1) as p:
            _WANT[name] = p.generate(PROMPT, max_tokens=N_GEN, temperature=0).tokens
    draft = "-" if mode == "iterative" else "ngram"
    box = {}

    def once():
        box["r"] = run_mpi(SCRIPT, ranks, [path, mode, draft, str(N_GEN), PROMPT], timeout_s=600)

    benchmark.pedantic(once, rounds=1, iterations=1)
    r = box["r"]
    assert r.returncode == 0, r.stderr
    m = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert m["tokens_out"] == _WANT[name]
    benchmark.group = f"mpi {name}"
    benchmark.extra_info.update(machine_info)
    benchmark.extra_info["ranks"] = ranks
    for k in ("predicted_per_second", "ttft_ms", "itl_ms_p50", "itl_ms_p99", "acceptance_rate", "runs_cancelled",
              "bytes_sent_per_token", "stage_idle_s", "rss_mb_head"):
        benchmark.extra_info[k] = m.get(k)
    benchmark.extra_info["rss_mb_workers"] = [float(x) for x in re.findall(r"RSS rank \d+: ([\d.]+) MB", r.stderr)]
    print(f"\n{name} ranks={ranks} {mode}: {m['predicted_per_second']:.1f} tok/s, "
          f"bytes/token {m.get('bytes_sent_per_token', 0):.0f}, RSS head {m['rss_mb_head']:.0f} MB "
          f"workers {benchmark.extra_info['rss_mb_workers']}")
