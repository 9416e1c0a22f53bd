"""Mixture-of-experts decode: time per token follows the experts a token uses, not the experts a layer has.

A Mixtral-shaped model (llama architecture with experts; n_embd 1024, expert FFN 2048, 2 layers, q8_0
weights of random bytes, about 7 MB per expert and layer) is written with 8 and with 32 experts per
layer, and decoded with 1, 2 and 4 experts per token. The engine reads only the chosen experts'
weights (model/moe.h), so the 32-expert model (4x the weights) should decode about as fast as the
8-expert one at the same experts per token, and time should grow with the experts used.

    pytest bench/bench_moe.py --benchmark-only -s          (or: python bench/bench_moe.py)

Each benchmark first checks that greedy decoding is deterministic and that a 2-stage pipeline gives
the same tokens; the figures (ms per token) go to extra_info. As a script, every case is timed in
shuffled interleaved rounds and the ratios are taken inside each round (see main).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

N_EMBD, N_FF, N_LAYER, N_VOCAB, N_HEAD = 1024, 2048, 2, 512, 8
N_GEN = 16
PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]


def _q8_0(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Random q8_0 bytes for float shape (..., n): per block of 32 an f16 scale and 32 int8 values."""
    *lead, n = shape
    blocks = np.zeros((*lead, n // 32, 34), np.uint8)
    blocks[..., :2] = np.frombuffer(np.full(blocks[..., 0].size, 0.002, np.float16).tobytes(), np.uint8).reshape(
        (*blocks.shape[:-1], 2))
    blocks[..., 2:] = rng.integers(0, 256, size=(*blocks.shape[:-1], 32), dtype=np.uint8)
    return blocks.reshape(*lead, n // 32 * 34)


def write_moe_model(path: Path, n_expert: int, n_expert_used: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(N_LAYER)
    w.add_context_length(512)
    w.add_embedding_length(N_EMBD)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_HEAD)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(n_expert)
    w.add_expert_used_count(n_expert_used)
    q8 = gguf.GGMLQuantizationType.Q8_0

    def mat(name: str, *shape: int) -> None:
        w.add_tensor(name, _q8_0(rng, shape), raw_dtype=q8)

    mat("token_embd.weight", N_VOCAB, N_EMBD)
    w.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    for il in range(N_LAYER):
        b = f"blk.{il}."
        w.add_tensor(b + "attn_norm.weight", np.ones(N_EMBD, np.float32))
        w.add_tensor(b + "ffn_norm.weight", np.ones(N_EMBD, np.float32))
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            mat(b + t + ".weight", N_EMBD, N_EMBD)
        w.add_tensor(b + "ffn_gate_inp.weight", rng.standard_normal((n_expert, N_EMBD)).astype(np.float32))
        mat(b + "ffn_gate_exps.weight", n_expert, N_FF, N_EMBD)
        mat(b + "ffn_up_exps.weight", n_expert, N_FF, N_EMBD)
        mat(b + "ffn_down_exps.weight", n_expert, N_EMBD, N_FF)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _greedy(p, n: int) -> list:
    p.kv_clear()
    k = len(PROMPT)
    flags = np.zeros(k, np.uint8)
    flags[-1] = 1
    logits = p.decode(np.asarray(PROMPT, np.int32), np.arange(k, dtype=np.int32), np.zeros(k, np.int32), flags)[-1]
    out, pos = [], k
    for _ in range(n):
        tok = int(np.argmax(logits))
        out.append(tok)
        logits = p.decode(np.array([tok], np.int32), np.array([pos], np.int32), np.zeros(1, np.int32),
                          np.ones(1, np.uint8))[0]
        pos += 1
    return out


def ms_per_token(path: Path, n_threads: int = 1, rounds: int = 3) -> float:
    from pipeinfer import _core

    p = _core.Pipeline(str(path), n_ctx=256, n_threads=n_threads)
    try:
        want = _greedy(p, N_GEN)
        assert _greedy(p, N_GEN) == want  # deterministic
        best = float("inf")
        for _ in range(rounds):
            t0 = time.perf_counter()
            _greedy(p, N_GEN)
            best = min(best, (time.perf_counter() - t0) / N_GEN * 1e3)
    finally:
        p.close()
    two = _core.Pipeline(str(path), n_ctx=256, n_threads=n_threads, n_stages=2)
    try:
        assert _greedy(two, N_GEN) == want  # the same tokens over two stages
    finally:
        two.close()
    return best


CASES = [(n_expert, used) for n_expert in (8, 32) for used in (1, 2, 4)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("moe")
    return {c: write_moe_model(d / f"moe-{c[0]}x{c[1]}.gguf", *c) for c in CASES}


@pytest.mark.parametrize("n_expert,used", CASES)
def test_moe_decode(benchmark, models, n_expert, used):
    path = models[(n_expert, used)]
    ms = benchmark.pedantic(lambda: ms_per_token(path, rounds=1), rounds=3, warmup_rounds=0)
    benchmark.extra_info["ms_per_token"] = ms
    benchmark.group = "moe decode"


def _checked_pipeline(path: Path, n_threads: int = 1):
    """A loaded one-stage pipeline whose greedy decode is deterministic and equals a 2-stage one's."""
    from pipeinfer import _core

    p = _core.Pipeline(str(path), n_ctx=256, n_threads=n_threads)
    want = _greedy(p, N_GEN)
    assert _greedy(p, N_GEN) == want  # deterministic, and the experts' pages are touched once
    two = _core.Pipeline(str(path), n_ctx=256, n_threads=n_threads, n_stages=2)
    try:
        assert _greedy(two, N_GEN) == want  # the same tokens over two stages
    finally:
        two.close()
    return p


def _median(xs: list) -> float:
    return float(np.median(np.asarray(xs)))


def main(rounds: int = 15) -> int:
    """Every case loaded at once, then `rounds` rounds each timing one N_GEN-token decode of every case
    in a shuffled order. Prints each case's median ms per token and, because the machine may be shared,
    ratios taken inside each round (median over rounds): 32 experts / 8 experts at the same experts per
    token (1.0 when time follows the active experts only), and k experts per token / 1."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        pipes = {c: _checked_pipeline(write_moe_model(Path(tmp) / f"moe-{c[0]}x{c[1]}.gguf", *c)) for c in CASES}
        try:
            times: dict = {c: [] for c in CASES}
            for _ in range(rounds):
                for i in rng.permutation(len(CASES)):
                    c = CASES[int(i)]
                    t0 = time.perf_counter()
                    _greedy(pipes[c], N_GEN)
                    times[c].append((time.perf_counter() - t0) / N_GEN * 1e3)
        finally:
            for p in pipes.values():
                p.close()
    print(f"experts per layer | experts per token | ms per token (median of {rounds} rounds) | vs 1 expert per token")
    for c in CASES:
        vs1 = _median([a / b for a, b in zip(times[c], times[(c[0], 1)])])
        print(f"{c[0]:>17} | {c[1]:>17} | {_median(times[c]):>8.2f} | {vs1:.2f}x")
    for used in (1, 2, 4):
        r = _median([a / b for a, b in zip(times[(32, used)], times[(8, used)])])
        print(f"{used} expert(s) per token: 32-expert / 8-expert model time per token = {r:.2f}x (weights 4.0x)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
    sys.exit(main())
