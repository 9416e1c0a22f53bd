"""to_float of every type the table can dequantize is bit-exact with gguf-py's numpy dequantize
(or, for the activation types gguf-py lacks, with quant_oracle), on random blocks whose scale
fields hold finite moderate values."""
from __future__ import annotations

import numpy as np
import pytest
import quant_oracle
from quant_cases import BY_NAME, DEQUANTIZE_TYPES

from pipeinfer import _core

N_BLOCKS = 8  # blocks per case (values, for the scalar float types: N_BLOCKS * 128)


def _case(name: str, seed: int) -> tuple[np.ndarray, int]:
    t = BY_NAME[name]
    n_blocks = N_BLOCKS * 128 if t["block_size"] == 1 else N_BLOCKS
    rng = np.random.default_rng(seed)
    data = quant_oracle.random_blocks(name, t["type_size"], t["block_size"], n_blocks, rng)
    return data, n_blocks * t["block_size"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", DEQUANTIZE_TYPES)
def test_dequantize_bit_exact(name, seed, use_isa):
    use_isa("scalar")
    data, n = _case(name, seed)
    got = _core.dequantize(name, data, n)
    ref = quant_oracle.reference_dequantize(name, data)
    assert got.dtype == np.float32 and got.shape == (n,)
    assert np.isfinite(ref).all()
    mismatch = np.flatnonzero(got.view(np.uint32) != ref.view(np.uint32))
    assert mismatch.size == 0, (
        f"{name}: {mismatch.size} of {n} values differ, first at {mismatch[0]}: "
        f"got {got[mismatch[0]]!r}, want {ref[mismatch[0]]!r}"
    )


@pytest.mark.parametrize("name", ["q4_0", "q6_k", "f16"])
def test_dequantize_accepts_bytes_and_memoryview(name):
    data, n = _case(name, 7)
    want = _core.dequantize(name, data, n)
    np.testing.assert_array_equal(_core.dequantize(name, data.tobytes(), n), want)
    np.testing.assert_array_equal(_core.dequantize(name, memoryview(data.tobytes()), n), want)
    np.testing.assert_array_equal(_core.dequantize(name.upper(), data, n), want)


def test_dequantize_zero_values():
    out = _core.dequantize("q4_k", b"", 0)
    assert out.shape == (0,) and out.dtype == np.float32


def test_dequantize_q4_0_known_block():
    # d = 0.5 (f16 0x3800); quants 0..15 in the low nibbles, 15..0 in the high ones
    qs = bytes((k & 0xF) | ((15 - k) << 4) for k in range(16))
    block = np.frombuffer(b"\x00\x38" + qs, dtype=np.uint8)
    got = _core.dequantize("q4_0", block, 32)
    want = 0.5 * (np.concatenate([np.arange(16), 15 - np.arange(16)]) - 8)
    np.testing.assert_array_equal(got, want.astype(np.float32))
