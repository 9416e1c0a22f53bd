"""The matmul driver (csrc/kernels/matmul.cpp) against the looser double-precision oracle matmul_ref, for
every weight type whose vec_dot exists, and its argument validation.

Tolerance: matmul quantizes the activations to the weight type's vec_dot_type (q8_0 / q8_1 / q8_K:
error at most half a quantization step, amax/254 per value of a 32- or 256-block; f16: 2^-11 relative;
bf16: 2^-8 relative; f32: none) and sums in f32. So for each output
    |y - y_ref| <= |W| @ e + 1e-5 * (|W| @ |x|) + 1e-6,
with e the per-value activation error bound and |W| the dequantized weight magnitudes.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels_weights as kw
from pipeinfer import _core

TYPES = kw.dot_types(_core)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


def n_in_for(t: str) -> int:
    return 512 if kw.type_info(_core, t)["block_size"] == 256 else 320  # 320: 10 blocks, a partial group of 8


@pytest.mark.parametrize("t", TYPES)
@pytest.mark.parametrize("n_rows", [1, 2, 3, 4, 7, 8, 16, 33])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_matmul_matches_ref(t, n_rows, n_threads, rng):
    n_in, n_out = n_in_for(t), 37
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    x = rng.standard_normal((n_rows, n_in)).astype(np.float32)
    y = _core.matmul(t, w, n_in, x, n_threads=n_threads)
    assert y.shape == (n_rows, n_out) and y.dtype == np.float32
    kw.check_close(_core, t, w, x, y, n_in)


@pytest.mark.parametrize("t", ["q4_0", "q4_k", "q8_0", "f32"])
def test_matmul_large_batch(t, rng):
    # 130 activation rows: several tiles of 16 plus a remainder, split over 3 threads.
    n_in = n_in_for(t)
    w = kw.random_weights(_core, t, 45, n_in, rng)
    x = rng.standard_normal((130, n_in)).astype(np.float32)
    y = _core.matmul(t, w, n_in, x, n_threads=3)
    kw.check_close(_core, t, w, x, y, n_in)
    if t != "q4_k":
        # no batched summation order for these types: a row alone gives the same results bit for bit
        # (the k-quants' batch orders are checked in test_batch_orders.py)
        np.testing.assert_array_equal(_core.matmul(t, w, n_in, x[37:38], n_threads=1), y[37:38])


def test_matmul_thread_count_does_not_change_results(rng):
    w = kw.random_weights(_core, "q4_k", 300, 512, rng)
    x = rng.standard_normal((5, 512)).astype(np.float32)
    y1 = _core.matmul("q4_k", w, 512, x, n_threads=1)
    for nt in (2, 3, 4):
        np.testing.assert_array_equal(_core.matmul("q4_k", w, 512, x, n_threads=nt), y1)


def test_matmul_f32_exact_small_ints(rng):
    # Small integers are exact in every summation order: the f32 path must agree exactly with numpy.
    w = rng.integers(-4, 5, size=(19, 64)).astype(np.float32)
    x = rng.integers(-4, 5, size=(6, 64)).astype(np.float32)
    y = _core.matmul("f32", w.view(np.uint8), 64, x, n_threads=2)
    np.testing.assert_array_equal(y, x @ w.T)


def test_shape_errors(rng):
    w = kw.random_weights(_core, "q4_0", 8, 64, rng)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    with pytest.raises(_core.ShapeError, match="multiple of 32"):
        _core.matmul("q4_0", w, 48, rng.standard_normal((2, 48)).astype(np.float32))
    with pytest.raises(_core.ShapeError, match="rows must be 36 bytes, got 18"):
        _core.matmul("q4_0", w[:, :18], 64, x)
    with pytest.raises(_core.ShapeError, match="n_in=64"):
        _core.matmul("q4_0", w, 64, x[:, :32])
    with pytest.raises(_core.ShapeError, match="at least one activation row"):
        _core.matmul("q4_0", w, 64, x[:0])
    with pytest.raises(_core.ShapeError, match="n_in > 0 and n_out > 0"):
        _core.matmul("q4_0", w[:0], 64, x)
    with pytest.raises(_core.ShapeError, match="rows must be 36 bytes"):
        _core.matmul("q4_0", w[:, :18], 64, x, ref=True)  # the reference validates the same way


def test_type_errors(rng):
    x = rng.standard_normal((1, 256)).astype(np.float32)
    with pytest.raises(_core.UnsupportedError, match="unknown"):
        _core.matmul("q9_9", np.zeros((1, 10), np.uint8), 256, x)
    # q8_K is an activation type only: no dot kernel
    with pytest.raises(_core.UnsupportedError, match="q8_k has no dot kernel"):
        _core.matmul("q8_k", np.zeros((1, 292), np.uint8), 256, x)


def test_bad_thread_count(rng):
    w = kw.random_weights(_core, "q8_0", 4, 64, rng)
    with pytest.raises(ValueError):
        _core.matmul("q8_0", w, 64, rng.standard_normal((1, 64)).astype(np.float32), n_threads=0)


@pytest.mark.parametrize("t", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q4_k", "q6_k", "f16"])
@pytest.mark.parametrize("n_rows", [4, 8, 11])
def test_matmul_exact_rows_equal_one_row_calls(t, n_rows, rng):
    # exact_rows=True (speculative verification): each row of a batch product is bit-identical to the
    # product of that row alone, whatever the row count and thread count (4-row weight groups included:
    # 37 output rows leave a remainder of 1 after groups of 4).
    bs = kw.type_info(_core, t)["block_size"]
    n_in = 512 if bs == 256 else 320
    w = kw.random_weights(_core, t, 37, n_in, rng)
    x = rng.standard_normal((n_rows, n_in)).astype(np.float32)
    y = _core.matmul(t, w, n_in, x, n_threads=2, exact_rows=True)
    for i in range(n_rows):
        one = _core.matmul(t, w, n_in, x[i : i + 1], n_threads=1, exact_rows=True)
        np.testing.assert_array_equal(y[i : i + 1], one, err_msg=f"{t} row {i} of {n_rows}")
