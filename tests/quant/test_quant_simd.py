"""SIMD kernels (whatever quant/arch/ overrides at each level this CPU has) against the scalar
reference: dequantize within DEQUANT_RTOL, quantize to blocks that decode within one quant step and
carry consistent q8_K bsums, vec_dot within DOT_RTOL. Levels the CPU lacks are skipped; levels
that override nothing pass trivially, since the reference then runs on both sides."""
from __future__ import annotations

import numpy as np
import pytest
import quant_oracle
from quant_cases import (BY_NAME, DEQUANT_RTOL, DEQUANTIZE_TYPES, DOT_ATOL, DOT_N, DOT_RTOL, DOT_TYPES,
                         QUANTIZE_TYPES, SIMD_LEVELS)

from pipeinfer import _core


def _blocks(name: str, n_blocks: int, seed: int) -> tuple[np.ndarray, int]:
    t = BY_NAME[name]
    n_blocks = n_blocks * 128 if t["block_size"] == 1 else n_blocks
    data = quant_oracle.random_blocks(name, t["type_size"], t["block_size"], n_blocks, np.random.default_rng(seed))
    return data, n_blocks * t["block_size"]


@pytest.mark.parametrize("isa", SIMD_LEVELS)
@pytest.mark.parametrize("name", DEQUANTIZE_TYPES)
def test_simd_dequantize_matches_reference(name, isa, use_isa):
    data, n = _blocks(name, 9, 31)  # 9 blocks: an odd count exercises SIMD tails
    use_isa("scalar")
    ref = _core.dequantize(name, data, n)
    use_isa(isa)
    got = _core.dequantize(name, data, n)
    bs = max(BY_NAME[name]["block_size"], 1)
    scale = np.repeat(np.abs(ref).reshape(-1, bs).max(axis=1), bs)
    assert np.all(np.abs(got - ref) <= DEQUANT_RTOL * scale), f"{name} [{isa}]"


@pytest.mark.parametrize("isa", SIMD_LEVELS)
@pytest.mark.parametrize("name", QUANTIZE_TYPES)
def test_simd_quantize_matches_reference(name, isa, use_isa):
    t = BY_NAME[name]
    chunk = max(t["block_size"], 32)
    x = np.random.default_rng(41).standard_normal(9 * chunk).astype(np.float32)
    use_isa("scalar")
    ref = _core.dequantize(name, _core.quantize(name, x), x.size)
    use_isa(isa)
    q = _core.quantize(name, x)
    got = _core.dequantize(name, q, x.size)
    # allowed: a different rounding of ties (one quant step of the block)
    step = np.repeat(np.abs(x).reshape(-1, chunk).max(axis=1), chunk) / 7
    assert np.all(np.abs(got - ref) <= step * 1.001), f"{name} [{isa}]"
    if name == "q8_k":
        b = q.reshape(-1, 292)
        qs = b[:, 4:260].view(np.int8).astype(np.int32)
        np.testing.assert_array_equal(b[:, 260:].copy().view(np.int16), qs.reshape(-1, 16, 16).sum(axis=2))


@pytest.mark.parametrize("isa", SIMD_LEVELS)
@pytest.mark.parametrize("n_act", [1, 5, 16])
@pytest.mark.parametrize("name", DOT_TYPES)
def test_simd_vec_dot_matches_reference(name, n_act, isa, use_isa):
    t = BY_NAME[name]
    act_name = t["vec_dot_type"]
    rng = np.random.default_rng(53 + n_act)
    w = quant_oracle.random_blocks(name, t["type_size"], t["block_size"], DOT_N // t["block_size"], rng, full_range=False)
    x = rng.standard_normal((n_act, DOT_N)).astype(np.float32)
    use_isa("scalar")
    act = np.stack([_core.quantize(act_name, row) for row in x])  # reference activations on both sides
    ref = _core.vec_dot(name, w, act, DOT_N).astype(np.float64)
    _, mag = quant_oracle.reference_dot(name, act_name, w, act, t["type_size"])
    use_isa(isa)
    got = _core.vec_dot(name, w, act, DOT_N).astype(np.float64)
    assert np.all(np.abs(got - ref) <= DOT_RTOL * mag + DOT_ATOL), f"{name} [{isa}]: {got} vs {ref}"
