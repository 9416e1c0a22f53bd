"""from_float of every type the table can quantize is bit-exact with its numpy oracle: for the
activation types q8_0, q8_1 and q8_K, quant_oracle's model of ggml's x86 quantizers (what llama.cpp
runs on x86: d = amax / 127, q = round-half-even(x * 127 / amax) for q8_0 / q8_1, which differs from
gguf-py's quantize_row_q8_0_ref rounding on ties); for the other types gguf-py's numpy quantize
(ggml's quantize_row_*_ref). Inputs mix random magnitudes with the edge cases of the rounding rules
(the tie rows hit x * 127 / amax = k + 0.5 exactly)."""
from __future__ import annotations

import numpy as np
import pytest
import quant_oracle
from quant_cases import BY_NAME, QUANTIZE_TYPES

from pipeinfer import _core


def _input(name: str, seed: int) -> np.ndarray:
    """Chunks of max(block_size, 32) values, each a different regime."""
    block = BY_NAME[name]["block_size"]
    chunk = max(block, 32)
    rng = np.random.default_rng(seed)
    ties = np.concatenate([[127.0], np.arange(31) - 15 + 0.5])  # d = 1 for q8: x/d hits .5 exactly
    parts = [
        np.zeros(chunk),  # all-zero block: d = 0
        np.full(chunk, 0.75),  # constant block: max == min
        np.where(np.arange(chunk) == 5, -3.0, 0.0),  # a single (negative) nonzero value
        np.tile(ties, chunk // 32),  # rounding ties
        -np.tile(ties, chunk // 32),
        rng.standard_normal(chunk) * 1e-3,
        rng.standard_normal(chunk),
        rng.standard_normal(chunk) * 300.0,
        rng.standard_normal(chunk) * 1e5,  # f16 overflow
        rng.standard_normal(chunk) * 1e-6,  # f16 subnormals
    ]
    # per-block random scales
    scales = np.repeat(np.exp2(rng.uniform(-10, 10, 8)), chunk)
    parts.append(rng.standard_normal(8 * chunk) * scales)
    return np.concatenate(parts).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", QUANTIZE_TYPES)
def test_quantize_bit_exact(name, seed, use_isa):
    use_isa("scalar")
    x = _input(name, seed)
    t = BY_NAME[name]
    try:
        ref = quant_oracle.reference_quantize(name, x)
    except NotImplementedError:
        pytest.fail(f"no oracle for quantizing {name}: add one to tests/quant/quant_oracle.py")
    got = _core.quantize(name, x)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    if not np.array_equal(got, ref):
        bad = np.flatnonzero(got != ref)[0] // t["type_size"]
        pytest.fail(f"{name}: block {bad} differs: got {got.reshape(-1, t['type_size'])[bad].tobytes().hex()}, "
                    f"want {ref.reshape(-1, t['type_size'])[bad].tobytes().hex()}")


@pytest.mark.parametrize("name", QUANTIZE_TYPES)
def test_quantize_then_dequantize_is_close(name, use_isa):
    """Round trip error stays within one quant step of each block (scalar float types: exact or
    one f16/bf16 rounding)."""
    use_isa("scalar")
    t = BY_NAME[name]
    chunk = max(t["block_size"], 32)
    x = np.random.default_rng(3).standard_normal(8 * chunk).astype(np.float32)
    y = _core.dequantize(name, _core.quantize(name, x), x.size)
    blocks = x.reshape(-1, chunk)
    span = (blocks.max(axis=1) - blocks.min(axis=1)).repeat(chunk)
    assert np.all(np.abs(y - x) <= span / 2**3 + 1e-6), name  # 3 bits is the coarsest format here


def test_q8_k_bsums_are_sums_of_quants():
    x = np.random.default_rng(5).standard_normal(4 * 256).astype(np.float32)
    b = _core.quantize("q8_k", x).reshape(-1, 292)
    qs = b[:, 4:260].view(np.int8).astype(np.int32)
    bsums = b[:, 260:].copy().view(np.int16)
    np.testing.assert_array_equal(bsums, qs.reshape(-1, 16, 16).sum(axis=2))
