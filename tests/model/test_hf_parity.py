"""Every supported architecture against Hugging Face transformers, on tiny random models (no download):
llama, Llama 3 (rope frequency factors), Mistral (sliding window), Mixtral, qwen2, Qwen2-MoE (shared
expert), Qwen3 (q/k norms), Qwen3-MoE, Phi-3 (fused qkv and gate/up) and Gemma 3 (sliding/global
layers, post-norms, GELU), each written to GGUF by tests/support/hf_models.py with f32, f16 and q8_0
matrices, then: logits of a 20-token prompt, greedy tokens, pipeline stages with speculation, MPI ranks.

Tolerances (max |ours - theirs| / max |theirs| over the prompt's logits):
- f32 against plain f32 transformers: 2e-3 (measured <= 1.3e-3). The gap is llama.cpp's arithmetic,
  which this engine keeps: K and V live in an f16 cache, Q and the softmax probabilities are rounded to
  f16 for the f16 K·Q and P·V products, and GELU comes from an f16 table.
- f32 against transformers doing those same roundings (hf_models.LlamaCppRounding): 5e-4 (measured
  <= 3.7e-4): what remains is summation order.
- f16 matrices: 8e-3 (ggml multiplies f16 weights with activations rounded to f16; measured <= 4.3e-3).
- q8_0 matrices: 6e-2 (ggml quantizes the activations to q8_0; measured <= 3.7e-2). MoE routing is
  discontinuous, so for the MoE models the seed is the first whose router logit gaps after layer 0
  (last chosen vs best left-out expert) exceed 3% of the row's largest logit everywhere, which the test
  asserts (hf_models.router_margin; smaller gaps flipped a choice under q8_0 rounding).
transformers always computes with the weights exactly as the file stores them (dequantized).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hf_models  # tests/support; needs torch and transformers (the test extra installs them)
import pipeinfer
from mpi_helpers import have_mpiexec, run_mpi
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42, 7, 130, 64, 200, 11, 300, 45, 77, 88, 19, 23, 150, 260, 33]
BANNED = [0, 1, 2]  # the synthetic vocabulary's end-of-generation ids: every run makes its N tokens
NO_EOG = {t: float("-inf") for t in BANNED}
N_GREEDY = 32
MOE = ("mixtral", "qwen2moe", "qwen3moe")
TOL = {"f32": 5e-4, "f16": 8e-3, "q8_0": 6e-2}
MARGIN = 0.03  # q8_0 MoE: router logit gap (last chosen vs best left out) / largest router logit


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    cache: dict = {}

    def get(name: str, weight_type: str = "f32") -> hf_models.TinyHF:
        key = (name, weight_type)
        if key not in cache:
            d = tmp_path_factory.mktemp(f"hf-{name}-{weight_type}")
            seeds = range(16) if (weight_type == "q8_0" and name in MOE) else range(1)
            for seed in seeds:
                m = hf_models.build(name, d / f"{name}-{weight_type}-{seed}.gguf", weight_type, seed=seed)
                if hf_models.router_margin(m, PROMPT) > MARGIN:
                    break
            cache[key] = m
        return cache[key]

    return get


def _engine_logits(path, **kw) -> np.ndarray:
    with pipeinfer.Pipeline(str(path), n_ctx=128, n_threads=1, exact=True, **kw) as p:
        return p.eval_logits(PROMPT)


@pytest.mark.parametrize("weight_type", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("name", hf_models.ARCHS)
def test_logits_match_transformers(tiny, name, weight_type):
    m = tiny(name, weight_type)
    if weight_type == "q8_0":
        assert hf_models.router_margin(m, PROMPT) > MARGIN
    got = _engine_logits(m.path)
    with hf_models.LlamaCppRounding(m):
        want = m.logits(PROMPT)
    assert _rel(got, want) < TOL[weight_type], f"{name} {weight_type}: {_rel(got, want):.3e}"
    if weight_type == "f32":
        assert _rel(got, m.logits(PROMPT)) < 2e-3


@pytest.mark.parametrize("name", hf_models.ARCHS)
def test_greedy_tokens_match_transformers(tiny, name):
    m = tiny(name)
    want = m.greedy(PROMPT, N_GREEDY, banned=BANNED)
    with pipeinfer.Pipeline(str(m.path), n_ctx=128, n_threads=1, exact=True) as p:
        assert p.generate(PROMPT, max_tokens=N_GREEDY, temperature=0, logit_bias=NO_EOG).tokens == want


@pytest.mark.parametrize("name", hf_models.ARCHS)
def test_stages_with_speculation_equal_plain_greedy(tiny, name):
    """Two pipeline stages (one layer each; gemma3 splits 4 + 3), PipeInfer with an n-gram drafter and
    with synchronous speculation: the same greedy tokens as one plain stage, in both weight layouts."""
    m = tiny(name)
    for exact in (True, False):
        with pipeinfer.Pipeline(str(m.path), n_ctx=128, n_threads=1, exact=exact) as p:
            want = p.generate(PROMPT, max_tokens=N_GREEDY, temperature=0, logit_bias=NO_EOG).tokens
        for mode in ("pipeinfer", "speculative"):
            with pipeinfer.Pipeline(str(m.path), n_ctx=128, n_threads=1, exact=exact, stages=2, mode=mode,
                                    draft="ngram", speculation=SpeculationPolicy(n_draft=3, adaptive=False)) as p:
                got = p.generate(PROMPT, max_tokens=N_GREEDY, temperature=0, logit_bias=NO_EOG).tokens
            assert got == want, (exact, mode)


def test_sliding_window_is_applied(tiny):
    """Mistral's window (12 positions) changes the logits past position 12 (transformers without the
    window differs there), and the engine follows the windowed model."""
    m = tiny("mistral")
    got = _engine_logits(m.path)
    with hf_models.LlamaCppRounding(m):
        windowed = m.logits(PROMPT)
        m.model.config.sliding_window = None
        try:
            full = m.logits(PROMPT)
        finally:
            m.model.config.sliding_window = 12
    assert _rel(full[13:], windowed[13:]) > 1e-2 and _rel(full[:12], windowed[:12]) < 1e-6
    assert _rel(got, windowed) < TOL["f32"]


@pytest.mark.parametrize("name", MOE)
def test_moe_stage_reads_only_the_chosen_experts(tiny, name):
    """The bytes a token reads (stage stats weight_bytes) count n_expert_used experts per layer."""
    m = tiny(name)
    cfg = m.model.config
    n_expert = getattr(cfg, "num_local_experts", None) or cfg.num_experts
    with pipeinfer.Pipeline(str(m.path), n_ctx=64, n_threads=1, exact=True) as p:
        read = p.stage_stats()[0]["weight_bytes"]
    ff = getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size
    expert = 3 * ff * cfg.hidden_size * 4  # gate, up, down in f32
    dense = read - cfg.num_hidden_layers * cfg.num_experts_per_tok * expert
    assert dense > 0 and read < dense + cfg.num_hidden_layers * n_expert * expert


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama3", "mixtral", "qwen3moe", "phi3", "gemma3", "qwen2moe"])
def test_mpi_ranks_equal_single_process(tiny, name):
    assert have_mpiexec()
    m = tiny(name)
    with pipeinfer.Pipeline(str(m.path), n_ctx=256, n_threads=1) as p:
        want = p.generate([5, 17, 99, 3, 250], max_tokens=12, temperature=0).tokens
    script = Path(__file__).parent.parent / "runtime" / "mpi_generate.py"
    r = run_mpi(script, 2, [str(m.path), "12", "--mode", "pipeinfer", "--draft", "ngram"], timeout_s=120)
    assert r.returncode == 0, r.stderr
    out = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("{")][-1])
    assert out["tokens"] == want and out["transport"] == "mpi"
