"""pipeinfer against llama-cpp-python on the same GGUF, prompt and thread count, in one run.

llama-cpp-python is NOT a dependency of pipeinfer, not even of the `bench` extra (a 5-6 minute source
build that CI must not pay). It lives in a separate virtual environment and runs as a subprocess
(bench/llamacpp_side.py prints JSON timings), so this file itself imports only pipeinfer:

    python3 -m venv /work/venv-llama
    /work/venv-llama/bin/pip install llama-cpp-python numpy      # builds llama.cpp from source
    PIPEINFER_LLAMA_PYTHON=/work/venv-llama/bin/python \
        PYTHONPATH=... pytest bench/bench_vs_llamacpp.py --benchmark-only -p no:randomly

PIPEINFER_LLAMA_PYTHON is the venv's interpreter (default /work/venv-llama/bin/python); every test
skips when it is missing or cannot import llama_cpp.

Benchmarks (both models x 1 and 2 threads x two weight layouts: "rows", the default, bit-identical to
llama.cpp, and "repack", Pipeline(repack=True), row-interleaved weights in another summation order):
- decode: the prompt as one batch, then N_GEN greedy tokens one per call; tok/s of the N_GEN steps.
- prompt: PP_TOKENS tokens as one batch, logits of the last only; tok/s of that call.
Each checks its output first: pipeinfer's greedy tokens (decode) and the argmax after the long prompt
(prompt) must equal llama.cpp's; with "repack" the prompt's last-row logits are only equal up to
rounding (llama.cpp's own batch and one-row kernels differ by up to ~0.8 in Qwen's logits after 120
tokens), so there llama.cpp's argmax must be a near-tie winner: within 1% of our best logit. Figures go to extra_info (tok/s of both, ratio pipeinfer / llama.cpp)
and a ratio table is printed at the end of the module. Both sides take the best of ROUNDS rounds, the
llama.cpp side measured right before the pipeinfer side of the same configuration (the machine is
shared; what matters is the ratio).

Baselines (pytest-benchmark): save with --benchmark-save=NAME and compare a later run with
--benchmark-compare=NAME --benchmark-compare-fail=min:15%; 15% is the regression margin this 2-core
machine shared with other jobs needs (run-to-run spread of min times seen up to ~10%). The printed ratios
are the figures to track: they are measured side by side and move much less than absolute tok/s.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pipeinfer import _core

LLAMA_PYTHON = os.environ.get("PIPEINFER_LLAMA_PYTHON", "/work/venv-llama/bin/python")
SIDE = Path(__file__).resolve().parent / "llamacpp_side.py"
MODELS = ["smollm2-135m", "qwen2.5-coder-0.5b"]
THREADS = [1, 2]
N_GEN = 64
PP_TOKENS = 512
ROUNDS = 3
PROMPT_TEXT = "The capital of France is"
PP_TEXT = (
    "Tokenizers split text into pieces that a language model can digest. Byte-level BPE starts from the "
    "256 bytes and repeatedly merges the most frequent adjacent pair, so every string can be represented."
)

LAYOUTS = ["rows", "repack"]
# (bench, model, threads, layout) -> (pipeinfer, llama.cpp) tok/s
_results: dict[tuple[str, str, int, str], tuple[float, float]] = {}


def _llama_available() -> bool:
    if not Path(LLAMA_PYTHON).exists():
        return False
    r = subprocess.run([LLAMA_PYTHON, "-c", "import llama_cpp"], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def llama_side():
    """(model path, threads) -> the llama.cpp side's JSON reply (run on demand, not cached)."""
    if not _llama_available():
        pytest.skip(f"llama-cpp-python not importable by {LLAMA_PYTHON} (set PIPEINFER_LLAMA_PYTHON)")

    def run(path: str, n_threads: int) -> dict:
        req = {"model": path, "threads": n_threads, "prompt_text": PROMPT_TEXT, "pp_text": PP_TEXT, "n_gen": N_GEN,
               "pp_tokens": PP_TOKENS, "rounds": ROUNDS}
        out = subprocess.run([LLAMA_PYTHON, str(SIDE)], input=json.dumps(req), capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)

    return run


@pytest.fixture(scope="module", autouse=True)
def ratio_table(request):
    """Prints pipeinfer / llama.cpp ratios of every benchmark of this module at its end."""
    yield
    if not _results:
        return
    capman = request.config.pluginmanager.getplugin("capturemanager")
    lines = ["", "pipeinfer vs llama-cpp-python (tok/s, best of %d rounds)" % ROUNDS,
             f"{'bench':8} {'model':20} {'thr':>3} {'layout':>7} {'pipeinfer':>10} {'llama.cpp':>10} {'ratio':>6}"]
    for (bench, model, nt, layout), (pi, ll) in sorted(_results.items()):
        lines.append(f"{bench:8} {model:20} {nt:3d} {layout:>7} {pi:10.1f} {ll:10.1f} {pi / ll:6.2f}")
    with capman.global_and_fixture_disabled():  # shown without -s
        print("\n".join(lines), flush=True)


def _last_logits(p: _core.Pipeline, tokens: list[int], n_past: int) -> np.ndarray:
    """Decodes tokens at positions n_past.. and returns the last row's logits."""
    n = len(tokens)
    flags = np.zeros(n, np.uint8)
    flags[-1] = 1
    out = p.decode(np.asarray(tokens, np.int32), np.arange(n_past, n_past + n, dtype=np.int32),
                   np.zeros(n, np.int32), flags)
    return out[-1]


def _decode_rows(p: _core.Pipeline, tokens: list[int], n_past: int) -> int:
    """Decodes tokens at positions n_past.. (logits of the last only); returns that row's argmax."""
    return int(np.argmax(_last_logits(p, tokens, n_past)))


def _greedy_timed(p: _core.Pipeline, prompt: list[int], n_gen: int) -> tuple[list[int], float]:
    """The prompt as one batch, then n_gen greedy steps; returns the tokens and the steps' seconds."""
    p.kv_clear()
    tok = _decode_rows(p, prompt, 0)
    out: list[int] = []
    t0 = time.perf_counter()
    for i in range(n_gen):
        out.append(tok)
        tok = _decode_rows(p, [tok], len(prompt) + i)
    return out, time.perf_counter() - t0


def _record(benchmark, bench: str, model: str, n_threads: int, layout: str, pi_tps: float, ll_tps: float,
            ll: dict) -> None:
    _results[(bench, model, n_threads, layout)] = (pi_tps, ll_tps)
    benchmark.group = f"vs-llamacpp {bench}"
    benchmark.extra_info.update(pipeinfer_tok_s=round(pi_tps, 2), llamacpp_tok_s=round(ll_tps, 2),
                                ratio=round(pi_tps / ll_tps, 3), llama_cpp_python=ll["version"],
                                kernel_isa=_core.kernel_isa(), n_threads=n_threads, layout=layout)


@pytest.mark.realmodel
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("model", MODELS)
def test_decode_vs_llamacpp(benchmark, real_model, llama_side, model, n_threads, layout):
    path = real_model(model)
    ll = llama_side(path, n_threads)
    p = _core.Pipeline(path, n_ctx=1024, n_threads=n_threads, repack=layout == "repack")
    try:
        tokens, _ = _greedy_timed(p, ll["prompt_ids"], N_GEN)  # warm-up and check
        assert tokens == ll["decode_tokens"]
        steps: list[float] = []

        def run():
            steps.append(_greedy_timed(p, ll["prompt_ids"], N_GEN)[1])

        benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0)
    finally:
        p.close()
    _record(benchmark, "decode", model, n_threads, layout, N_GEN / min(steps), N_GEN / min(ll["decode_s"]), ll)


@pytest.mark.realmodel
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("model", MODELS)
def test_prompt_vs_llamacpp(benchmark, real_model, llama_side, model, n_threads, layout):
    path = real_model(model)
    ll = llama_side(path, n_threads)
    ids = ll["pp_ids"]
    assert len(ids) == PP_TOKENS
    p = _core.Pipeline(path, n_ctx=1024, n_threads=n_threads, repack=layout == "repack")
    try:
        p.kv_clear()
        logits = _last_logits(p, ids, 0)
        if layout == "rows":
            assert int(np.argmax(logits)) == ll["pp_argmax"]
        else:
            assert logits[ll["pp_argmax"]] >= logits.max() - 0.01 * abs(logits.max())
        secs: list[float] = []

        def run():
            p.kv_clear()
            t0 = time.perf_counter()
            _decode_rows(p, ids, 0)
            secs.append(time.perf_counter() - t0)

        benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0)
    finally:
        p.close()
    _record(benchmark, "prompt", model, n_threads, layout, PP_TOKENS / min(secs), PP_TOKENS / min(ll["pp_s"]), ll)
