"""Row-interleaved ("repacked") weights (csrc/quant/repack.*, x86-avx512-repack.h, kernels/matmul-repacked.cpp).

- The SIMD kernel equals the scalar reference bit for bit (both implement the summation order defined
  in quant/repack.h), for every repacked type, partial last groups, 1..17 activation rows.
- Every row is exact: a row of a k-row product equals the one-row product of that activation row.
- Against the double-precision matmul_ref, the repacked product has the same error bound as the
  row-layout kernels (kw.check_close), and it differs from the llama.cpp-order product only by float
  rounding.
- Extreme quants (all weights and activations at their limits) and bad arguments.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels_weights as kw
from pipeinfer import _core

TYPES = ["q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q6_k"]


def n_in_for(t: str, blocks: int) -> int:
    return blocks * kw.type_info(_core, t)["block_size"]


@pytest.fixture
def restore_isa():
    before = _core.kernel_isa()
    yield
    _core.set_kernel_isa(before)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(2024)


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("n_out", [1, 15, 16, 17, 40])
def test_simd_equals_scalar_reference(t, n_out, rng, restore_isa):
    n_in = n_in_for(t, 25 if t[-1] != "k" else 3)
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    packed = _core.repack(t, w, n_in)
    for k in (1, 3, 8, 9, 17):
        x = rng.standard_normal((k, n_in)).astype(np.float32)
        _core.set_kernel_isa("scalar")
        want = _core.matmul(t, w, n_in, x, repacked=packed)
        for level in kw.simd_levels(_core):
            _core.set_kernel_isa(level)
            for n_threads in (1, 2):
                got = _core.matmul(t, w, n_in, x, n_threads, repacked=packed)
                np.testing.assert_array_equal(got, want, err_msg=f"{t} {level} k={k} threads={n_threads}")


@pytest.mark.parametrize("t", TYPES)
def test_rows_are_exact_and_close_to_reference(t, rng):
    n_in, n_out = n_in_for(t, 10 if t[-1] != "k" else 2), 37
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    packed = _core.repack(t, w, n_in)
    x = rng.standard_normal((11, n_in)).astype(np.float32)
    y = _core.matmul(t, w, n_in, x, repacked=packed)
    for j in range(x.shape[0]):
        np.testing.assert_array_equal(y[j : j + 1], _core.matmul(t, w, n_in, x[j : j + 1], repacked=packed))
    kw.check_close(_core, t, w, x, y, n_in)
    # the llama.cpp-order product of the same quantized operands: equal up to f32 rounding of the sums
    y_rows = _core.matmul(t, w, n_in, x, exact_rows=True)
    wd = np.abs(kw.dequantize_rows(_core, t, w, n_in)).astype(np.float64)
    assert np.all(np.abs(y - y_rows) <= 1e-5 * (np.abs(x) @ wd.T) + 1e-6)
    assert not np.array_equal(y, y_rows) or n_out < 16  # a different order, so usually not bit-equal


@pytest.mark.parametrize("t", TYPES)
def test_extreme_quants(t, restore_isa):
    """Every weight quant at its largest stored value (q8_0 rows also at -128, q6_K scales at 127 and
    -128) and scales of 1, times activations of +-127 (quants +-127 with scale 1): the widest integer
    sums the kernels can meet must still agree bit for bit."""
    bs = kw.type_info(_core, t)["block_size"]
    n_in, n_out = 2 * bs if bs == 256 else 256, 16
    ts = kw.type_info(_core, t)["type_size"]
    raw = np.full((n_out, n_in // bs, ts), 0xFF, dtype=np.uint8)
    one, half = (np.array([v], dtype=np.float16).view(np.uint8) for v in (1.0, 0.5))
    fields = kw._F16_FIELDS[t]
    raw[:, :, fields[0] : fields[0] + 2] = one
    if len(fields) > 1:
        raw[:, :, fields[1] : fields[1] + 2] = half  # q4_1 m, q4_K dmin
    if t == "q8_0":
        raw[0::2, :, 2:] = 0x7F  # even rows: every quant 127
        raw[1::2, :, 2:] = 0x80  # odd rows: every quant -128
    if t == "q6_k":
        raw[0::2, :, 192:208] = 0x7F  # sub-block scales 127
        raw[1::2, :, 192:208] = 0x80  # and -128
    w = raw.reshape(n_out, -1)
    packed = _core.repack(t, w, n_in)
    x = np.where(np.arange(n_in) % 3 == 0, -127.0, 127.0).astype(np.float32)[None, :].repeat(2, axis=0)
    x[1] *= -1
    _core.set_kernel_isa("scalar")
    want = _core.matmul(t, w, n_in, x, repacked=packed)
    for level in kw.simd_levels(_core):
        _core.set_kernel_isa(level)
        np.testing.assert_array_equal(_core.matmul(t, w, n_in, x, repacked=packed), want)
    # exact integers up to the rounding of sums beyond 2^24 to f32
    np.testing.assert_allclose(want, _core.matmul(t, w, n_in, x, ref=True), rtol=1e-6)


def test_bad_arguments(rng):
    w = kw.random_weights(_core, "q4_0", 16, 64, rng)
    with pytest.raises(_core.UnsupportedError, match="q5_k"):
        _core.repack("q5_k", kw.random_weights(_core, "q5_k", 16, 256, rng), 256)
    with pytest.raises(_core.ShapeError, match="multiple of 256"):
        _core.repack("q6_k", kw.random_weights(_core, "q8_0", 16, 288, rng), 288)
    with pytest.raises(_core.ShapeError, match="multiple of 32"):
        _core.repack("q4_0", w, 48)
    with pytest.raises(_core.ShapeError, match="row_bytes"):
        _core.repack("q4_0", w[:, :18], 64)
    x = np.ones((1, 64), dtype=np.float32)
    with pytest.raises(_core.ShapeError, match="repacked"):
        _core.matmul("q4_0", w, 64, x, repacked=np.zeros(10, dtype=np.uint8))
