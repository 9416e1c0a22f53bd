"""Per-ISA kernels (csrc/quant/arch/x86-*.cpp) against the scalar reference (quants-ref*.cpp), switched
with _core.set_kernel_isa.

- Activation quantizers (q8_0, q8_1, q8_K from_float) must be bit-exact with the reference, which
  itself follows ggml's x86 quantizers (tests/quant checks it against a numpy model of them).
- Dots of the 32-value block types (q4_0, q4_1, q5_0, q5_1, q8_0) must be bit-exact with the
  reference: both follow ggml's x86 accumulation order (8 lanes of 4-product sums, one FMA per block
  and lane, pairwise lane sum, separate FMA chain for the min terms).
- Other dots: the integer part is exact and the activations are identical, so only the f32 summation
  order differs: |simd - scalar| <= 1e-5 * (|W| @ |x|) + 1e-6 per output (about 100 f32 ulps of the
  sum of absolute terms).
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels_weights as kw
from pipeinfer import _core

TYPES = kw.dot_types(_core)
BLOCK32 = ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")  # dots in ggml's x86 order on both paths: bit-exact


LEVELS = kw.simd_levels(_core)
pytestmark = pytest.mark.skipif(not LEVELS, reason="no SIMD kernels for this CPU")


@pytest.fixture
def restore_isa():
    before = _core.kernel_isa()
    yield
    _core.set_kernel_isa(before)


def under(isa: str, fn):
    _core.set_kernel_isa(isa)
    return fn()


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(99)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("t", TYPES)
def test_matmul_simd_matches_scalar(level, t, rng, restore_isa):
    bs = kw.type_info(_core, t)["block_size"]
    n_in = 768 if bs == 256 else 800  # 3 super-blocks / 25 blocks (3 groups of 8 and one single)
    w = kw.random_weights(_core, t, 29, n_in, rng)
    x = rng.standard_normal((11, n_in)).astype(np.float32)
    ys = under("scalar", lambda: _core.matmul(t, w, n_in, x, n_threads=2))
    yv = under(level, lambda: _core.matmul(t, w, n_in, x, n_threads=2))
    wd = np.abs(kw.dequantize_rows(_core, t, w, n_in)).astype(np.float64)
    bound = 1e-5 * (np.abs(x).astype(np.float64) @ wd.T) + 1e-6
    err = np.abs(yv.astype(np.float64) - ys)
    assert np.all(err <= bound), f"{t} {level}: max err/bound {np.max(err / bound):.3g}"
    if t in BLOCK32:
        np.testing.assert_array_equal(yv, ys, err_msg=f"{t} {level}: not bit-exact with the reference")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("t", ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "f16"])
def test_vec_dot_every_row_count(level, t, rng, restore_isa):
    # n_act from 1 to 17 exercises every register-blocking remainder of the multi-row kernels.
    info = kw.type_info(_core, t)
    n = 512
    act_t = info["vec_dot_type"]
    w = kw.random_weights(_core, t, 1, n, rng)[0]
    xs = rng.standard_normal((17, n)).astype(np.float32)
    act = np.stack([_core.quantize(act_t, r) for r in xs])
    wd = np.abs(_core.dequantize(t, w, n)).astype(np.float64)
    ad = np.abs(np.stack([_core.dequantize(act_t, a, n) for a in act])).astype(np.float64)
    for n_act in range(1, 18):
        ref = under("scalar", lambda: _core.vec_dot(t, w, act[:n_act], n))
        got = under(level, lambda: _core.vec_dot(t, w, act[:n_act], n))
        bound = 1e-5 * (ad[:n_act] @ wd) + 1e-6
        assert np.all(np.abs(got.astype(np.float64) - ref) <= bound), (t, level, n_act)
        if t in BLOCK32:
            np.testing.assert_array_equal(got, ref, err_msg=f"{t} {level} n_act={n_act}")
        # each row's result does not depend on which other rows share the call
        single = under(level, lambda: _core.vec_dot(t, w, act[n_act - 1 : n_act], n))
        np.testing.assert_allclose(single[0], got[-1], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("level", LEVELS)
def test_q4_K_exact_rows_bit_exact(level, rng, restore_isa):
    """q4_K's one-row order (ggml's TWO_CHAINS) is kept by every SIMD path, including the multi-weight-row
    kernel matmul uses for exact rows (8 weight rows per pass for one activation row, 4 x 2 otherwise,
    one-row kernel for the rest): bit-exact with the scalar reference, each row equal to a one-row call."""
    for n_out in (8, 12, 37):
        w = kw.random_weights(_core, "q4_k", n_out, 768, rng)
        for k in (1, 2, 3, 9, 17):
            x = rng.standard_normal((k, 768)).astype(np.float32)
            want = under("scalar", lambda: _core.matmul("q4_k", w, 768, x, exact_rows=True))
            got = under(level, lambda: _core.matmul("q4_k", w, 768, x, n_threads=2, exact_rows=True))
            np.testing.assert_array_equal(got, want, err_msg=f"{level} n_out={n_out} k={k}")
            one = under(level, lambda: _core.matmul("q4_k", w, 768, x[-1:], exact_rows=True))
            np.testing.assert_array_equal(got[-1:], one)


def tricky_rows(block: int, rng) -> list[np.ndarray]:
    """Rows that stress rounding: exact .5 ties, zero blocks, negative and repeated extremes."""
    ties = (rng.integers(-126, 126, size=4 * block) + 0.5).astype(np.float32)
    ties[::block] = 127.0  # amax 127 -> 127 / amax = 1: every scaled value is a tie
    zeros = np.zeros(2 * block, np.float32)
    zeros[block + 3] = -2.0  # one all-zero block, one with a single negative extreme
    twins = rng.standard_normal(2 * block).astype(np.float32)
    twins[5], twins[9] = 3.0, -3.0  # equal magnitudes of both signs: the first one sets the sign
    wide = (rng.standard_normal(8 * block) * 10.0 ** rng.uniform(-6, 4, size=8 * block)).astype(np.float32)
    return [ties, zeros, twins, wide, rng.standard_normal(16 * block).astype(np.float32)]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("act_t,block", [("q8_0", 32), ("q8_1", 32), ("q8_k", 256)])
def test_activation_quantizers_bit_exact(level, act_t, block, rng, restore_isa):
    for row in tricky_rows(block, rng):
        ref = under("scalar", lambda: _core.quantize(act_t, row))
        got = under(level, lambda: _core.quantize(act_t, row))
        np.testing.assert_array_equal(got, ref, err_msg=f"{act_t} {level}")


def test_set_kernel_isa_reports_level(restore_isa):
    assert _core.set_kernel_isa("scalar") == "scalar"
    assert _core.kernel_isa() == "scalar"
    best = _core.set_kernel_isa("avx512")
    assert best == LEVELS[-1]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("t", BLOCK32)
def test_matmul_weight_row_groups_every_act_count(level, t, rng, restore_isa):
    # The matmul driver takes weight rows 4 at a time where the ISA has a 4-row kernel (vec_dot_4w):
    # every activation count up to 9 (all register-blocking remainders), several groups plus a
    # remainder row, bit-exact with the scalar reference; a longer row (n_in 2048) crosses the kernel's
    # prefetch distance.
    for n_in in (320, 2048):
        w = kw.random_weights(_core, t, 13, n_in, rng)
        for n_act in range(1, 10):
            x = rng.standard_normal((n_act, n_in)).astype(np.float32)
            ys = under("scalar", lambda: _core.matmul(t, w, n_in, x, n_threads=1, exact_rows=True))
            yv = under(level, lambda: _core.matmul(t, w, n_in, x, n_threads=1, exact_rows=True))
            np.testing.assert_array_equal(yv, ys, err_msg=f"{t} {level} n_in={n_in} n_act={n_act}")


# (scale bytes, quant bytes, value of every quant byte) per block: all-0x00 quants are the most negative
# weights of q4_0 / q5_0 (-8, -16), all-0xFF the largest of q4_1 (15): the widest integer lane sums.
EXTREME_BLOCKS = {"q4_0": (2, 16, 0x00), "q5_0": (2, 20, 0x00), "q4_1": (4, 16, 0xFF)}


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("t", sorted(EXTREME_BLOCKS))
@pytest.mark.parametrize("d", [1.0, 65504.0, 2.0**-14, 2.0**-24, 0.333])
def test_widest_lane_sums_and_extreme_scales_bit_exact(level, t, d, rng, restore_isa):
    # The AVX-512 4-row kernels of these types fold the int-to-float conversion and the scale product
    # into one fma, exact only while |lane sum| * f16 scale fits in 24 bits: the largest lane sums
    # (every weight at its extreme, every activation quant at +-127) with f16 scales from subnormal to
    # the largest must still equal the scalar reference.
    n_in = 256
    scale_bytes, quant_bytes, fill = EXTREME_BLOCKS[t]
    w = kw.random_weights(_core, t, 8, n_in, rng).copy()
    block = scale_bytes + quant_bytes
    blocks = w.reshape(8, n_in // 32, block)
    blocks[:, :, scale_bytes:] = fill
    blocks[:, :, 0:2] = np.frombuffer(np.float16(d).tobytes(), np.uint8)
    signs = np.where(rng.random((5, n_in)) < 0.5, -1.0, 1.0).astype(np.float32)
    for x in (signs, np.ones((5, n_in), np.float32), -np.ones((5, n_in), np.float32)):
        ys = under("scalar", lambda: _core.matmul(t, w, n_in, x, n_threads=1, exact_rows=True))
        yv = under(level, lambda: _core.matmul(t, w, n_in, x, n_threads=1, exact_rows=True))
        np.testing.assert_array_equal(yv, ys, err_msg=f"{t} {level} d={d}")
