"""The dedicated draft rank (the paper's topology): greedy output equals plain decoding whatever the
stages and the mode, locally (a thread) and over MPI (the last rank); its death is a clear error."""
from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

import pipeinfer
from mpi_helpers import MPIJob, run_mpi
from oracle_drafters import OracleDrafter
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42]
N = 24
NO_EOG = {0: -1e6, 1: -1e6, 2: -1e6}


@pytest.fixture(scope="module")
def models(tiny_model):
    target, _ = tiny_model("qwen2", "q8_0", n_layer=4)
    draft, _ = tiny_model("qwen2", "q8_0", n_layer=2, seed=7)
    with pipeinfer.Pipeline(str(target), n_ctx=160, n_threads=1) as p:
        want = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG).tokens
    assert len(want) == N
    return str(target), str(draft), want


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize("kind", ["model", "oracle"])
def test_local_draft_rank_keeps_greedy_output(models, mode, stages, kind):
    target, draft, want = models
    drafter = draft if kind == "model" else OracleDrafter(PROMPT + want)
    with pipeinfer.Pipeline(target, n_ctx=160, n_threads=1, stages=stages, mode=mode, draft=drafter, draft_ranks=1,
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        assert p.draft_ranks == 1 and p._native.n_draft_ranks == 1
        for _ in range(2):  # a second request restarts the draft rank from its prompt
            s = p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG)
            assert s.tokens == want
            if kind == "oracle":
                assert s.stats.draft_n_accepted > 0


def test_draft_rank_default_and_arguments(models):
    target, draft, _ = models
    with pipeinfer.Pipeline(target, n_ctx=64, stages=2, draft=draft) as p:
        assert p.draft_ranks == 1  # a draft model with 3 ranks (2 stages + 1)
    with pipeinfer.Pipeline(target, n_ctx=64, stages=1, draft=draft) as p:
        assert p.draft_ranks == 0
    with pipeinfer.Pipeline(target, n_ctx=64, stages=2, draft="ngram") as p:
        assert p.draft_ranks == 0
    with pytest.raises(ValueError, match="draft_ranks"):
        pipeinfer.Pipeline(target, n_ctx=64, draft=draft, draft_ranks=2)
    with pytest.raises(ValueError, match="draft_ranks=1 needs a drafter"):
        pipeinfer.Pipeline(target, n_ctx=64, draft_ranks=1)


def test_a_failing_drafter_on_the_draft_rank_is_reported(models):
    target, _, want = models

    class Broken(OracleDrafter):
        def propose(self, context, limits):
            raise RuntimeError("drafter exploded")

    with pipeinfer.Pipeline(target, n_ctx=160, stages=2, draft=Broken(PROMPT + want), draft_ranks=1,
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        with pytest.raises(pipeinfer.TransportError, match="drafter exploded"):
            p.generate(PROMPT, max_tokens=N, temperature=0, logit_bias=NO_EOG)


SCRIPT = textwrap.dedent("""
    import json, sys
    import pipeinfer
    from pipeinfer.speculation import SpeculationPolicy
    target, draft, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    p = pipeinfer.Pipeline(target, n_ctx=160, n_threads=1, mode=mode, draft=draft, draft_ranks=1,
                           speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False))
    if p.is_head:
        s = p.generate({prompt}, max_tokens={n}, temperature=0, logit_bias={{0: -1e6, 1: -1e6, 2: -1e6}})
        print("RESULT " + json.dumps({{"tokens": s.tokens, "stages": p._native.n_stages}}))
        p.close()
""").format(prompt=PROMPT, n=N)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, mode", [(3, "pipeinfer"), (5, "pipeinfer"), (3, "speculative")])
def test_mpi_draft_rank_keeps_greedy_output(models, tmp_path, ranks, mode):
    target, draft, want = models
    script = tmp_path / "draft_rank.py"
    script.write_text(SCRIPT)
    r = run_mpi(script, ranks, [target, draft, mode], timeout_s=240)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    assert res["tokens"] == want and res["stages"] == ranks - 1


@pytest.mark.mpi
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP])
def test_dead_or_stopped_draft_rank_is_a_clear_error(models, tmp_path, sig):
    target, draft, _ = models
    dead_after = 3.0
    script = Path(__file__).parents[1] / "runtime" / "mpi_generate.py"
    job = MPIJob(script, 3, [target, "400", "--pidfile-dir", str(tmp_path), "--dead-after", str(dead_after),
                             "--slow", "0.05", "--mode", "pipeinfer", "--draft", draft, "--draft-ranks", "1"],
                 timeout_s=120, supervise=True)
    deadline = time.time() + 60
    while not (tmp_path / "generating").exists():
        assert time.time() < deadline, "generation did not start"
        time.sleep(0.05)
    t_kill = time.time()
    os.kill(int((tmp_path / "rank2.pid").read_text()), sig)  # the draft rank: the last one
    r = job.wait()
    assert r.returncode != 0 and "TransportError(rank=2)" in r.stderr, r.stderr
    assert time.time() - t_kill < dead_after + 20
    assert not r.leftover_pids
