"""The forward pass against llama.cpp itself, on the two real models.

The reference is committed data (tests/data/greedy_<model>.json, written by scripts/make_reference.py
with llama-cpp-python 0.3.36 on x86-64 with AVX-512, flash attention off, 2 threads): for 3 prompts,
llama.cpp's 32 greedy tokens (prompt decoded as one batch, then one token per step) and the top 20
logits of the first steps. Our core runs the same steps through the core API.

Greedy equality over 32 tokens is a strong test: the top-1/top-2 margins go down to 0.01, and any
last-bit difference in an activation flips the rounding of some quantized activation, which the
layers amplify to logit differences of about 0.1. So the engine reproduces llama.cpp's CPU arithmetic
bit for bit (see csrc/kernels/ops.h and csrc/quant/quants-ref.cpp): on SmolLM2 (q4_1 / q8_0 weights)
our logits equal llama.cpp's exactly, and LOGIT_ATOL only leaves room for a JSON round trip.

Qwen2.5-Coder-0.5B is not there yet. Decoding one token at a time is bit-exact (q5_0, q6_K, q8_0, the
biases, NEOX rope, and q4_K in the order of llama.cpp's repacked q4_K gemv), but llama.cpp multiplies
the q4_K weights (ffn_down of 12 layers) by a prompt batch with a different kernel
(ggml_gemm_q4_K_8x8_q8_K: rows in groups of 4 take one FMA per 64-value sub-block pair instead of one
per super-block), which our matmul cannot select yet. The prompt's KV entries therefore differ in the
last bits, the logits by about 0.08 rms, and greedy output diverges at prompt 0, step 2 (llama.cpp's
top-1/top-2 margin there: 0.05). Those cases are marked xfail (strict, so that a fix is noticed).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeinfer import _core

DATA = Path(__file__).resolve().parents[1] / "data"
N_CTX = 512
N_THREADS = 2
LOGIT_ATOL = 1e-4  # SmolLM2: observed difference 0.0 (bit-exact)

# (model, prompt index) whose greedy continuation is known to differ from llama.cpp's; see docstring.
KNOWN_DIVERGENT = {("qwen2.5-coder-0.5b", 0)}
# models whose first-step logits are not yet bit-exact (q4_K repack order); see docstring.
NOT_BIT_EXACT = {"qwen2.5-coder-0.5b"}

pytestmark = pytest.mark.realmodel


def _reference(model: str) -> dict:
    return json.loads((DATA / f"greedy_{model}.json").read_text())


@pytest.fixture(scope="module")
def pipelines(real_model_path):
    """model name -> one _core.Pipeline per model, shared by the module's tests."""
    cache: dict[str, _core.Pipeline] = {}

    def get(model: str) -> _core.Pipeline:
        if model not in cache:
            cache[model] = _core.Pipeline(str(real_model_path(model)), n_ctx=N_CTX, n_threads=N_THREADS)
        return cache[model]

    yield get
    for p in cache.values():
        p.close()


def _first_logits(p: _core.Pipeline, prompt_ids: list[int]) -> np.ndarray:
    """Logits after the prompt, decoded as one batch at positions 0..n-1 (llama.cpp's n_batch=512)."""
    p.kv_clear()
    n = len(prompt_ids)
    want = np.zeros(n, np.uint8)
    want[-1] = 1
    out = p.decode(np.asarray(prompt_ids, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), want)
    return np.array(out[0])


def _greedy(p: _core.Pipeline, prompt_ids: list[int], n_new: int) -> list[int]:
    """n_new argmax tokens: the prompt as one batch, then one token per decode call, as llama.cpp ran."""
    logits = _first_logits(p, prompt_ids)
    out: list[int] = []
    pos = len(prompt_ids)
    for _ in range(n_new):
        tok = int(np.argmax(logits))
        out.append(tok)
        if len(out) == n_new:
            break
        logits = np.array(p.decode(np.array([tok], np.int32), np.array([pos], np.int32), np.zeros(1, np.int32),
                                   np.ones(1, np.uint8))[0])
        pos += 1
    return out


def _cases() -> list:
    cases = []
    for model in ("smollm2-135m", "qwen2.5-coder-0.5b"):
        for i in range(len(_reference(model)["runs"])):
            marks = []
            if (model, i) in KNOWN_DIVERGENT:
                marks.append(pytest.mark.xfail(strict=True, reason="q4_K repack order not reproduced yet"))
            cases.append(pytest.param(model, i, id=f"{model}-prompt{i}", marks=marks))
    return cases


def _top20_cases() -> list:
    cases = []
    for model in ("smollm2-135m", "qwen2.5-coder-0.5b"):
        for i in range(len(_reference(model)["runs"])):
            marks = []
            if model in NOT_BIT_EXACT:
                marks.append(pytest.mark.xfail(strict=True, reason="q4_K repack order not reproduced yet"))
            cases.append(pytest.param(model, i, id=f"{model}-prompt{i}", marks=marks))
    return cases


@pytest.mark.parametrize("model,run", _cases())
def test_greedy_continuation_equals_llamacpp(pipelines, model, run):
    r = _reference(model)["runs"][run]
    got = _greedy(pipelines(model), r["prompt_ids"], len(r["generated_ids"]))
    want = r["generated_ids"]
    first = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), None)
    assert got == want, (
        f"{model} prompt {run} ({r['prompt']!r}): first difference at step {first}: ours {got[first]}, "
        f"llama.cpp {want[first]} (llama.cpp top1-top2 margin {r['top1_top2_margins'][first]:.3f})"
    )


@pytest.mark.parametrize("model,run", _top20_cases())
def test_first_step_top20_logits_match_llamacpp(pipelines, model, run):
    r = _reference(model)["runs"][run]
    logits = _first_logits(pipelines(model), r["prompt_ids"])
    ref = np.array(r["top20_first4"][0], dtype=np.float64)  # (20, 2): token id, logit
    ids = ref[:, 0].astype(np.int64)
    ours = logits[ids].astype(np.float64)
    err = np.abs(ours - ref[:, 1])
    assert err.max() <= LOGIT_ATOL, f"{model} prompt {run}: max |ours - llama.cpp| over the top 20 = {err.max():.3g}"
    # the top 20 of llama.cpp are our top 20 too, in the same order
    assert list(np.argsort(-logits, kind="stable")[:20]) == list(ids)
