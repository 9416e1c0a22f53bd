"""The tiled attention kernel (kernels/attention.cpp) against its scalar reference (attention-ref.cpp),
bit for bit, for both KV storage types (f16, q8_0): both orders (one-row ggml_vec_dot_f16, batch
tinyBLAS), contiguous and scattered cells, partial tiles, head sizes that take the tiled and the
one-cell paths, positions with gaps, and scores spread so wide that exp underflows. Also the
branch-free f16 rounding and widening against numpy's float16, and q8_0 storage against f16 storage."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer import _core


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def _case(rng, n_cells: int, hd: int, spread: float = 1.0):
    q = _f16(rng.standard_normal(hd).astype(np.float32) * spread)
    k = _f16(rng.standard_normal((n_cells, hd)).astype(np.float32))
    v = _f16(rng.standard_normal((n_cells, hd)).astype(np.float32))
    return q, k, v


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.tobytes() == b.tobytes()


KV_TYPES = ["f16", "q8_0"]
# (head_dim, kv_type): q8_0 stores whole blocks of 32 values, so its head sizes are multiples of 32
HEAD_CASES = [(hd, "f16") for hd in (64, 128, 32, 80, 40)] + [(hd, "q8_0") for hd in (64, 128, 32, 96, 256)]


@pytest.mark.parametrize("one_row", [False, True])
@pytest.mark.parametrize("hd,kv_type", HEAD_CASES)
@pytest.mark.parametrize("n_vis", [1, 5, 16, 17, 50, 200])
def test_contiguous_cells_equal_reference(one_row, hd, kv_type, n_vis):
    rng = np.random.default_rng(hd * 1000 + n_vis)
    n_cells = 256
    q, k, v = _case(rng, n_cells, hd)
    pos = np.arange(n_cells, dtype=np.int32)
    cells = np.arange(n_vis, dtype=np.int32)
    scale = 1.0 / np.sqrt(hd)
    got = _core.attention(q, k, v, pos, cells, scale, one_row=one_row, kv_type=kv_type)
    want = _core.attention(q, k, v, pos, cells, scale, one_row=one_row, ref=True, kv_type=kv_type)
    assert _same(got, want)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("one_row", [False, True])
@pytest.mark.parametrize("hd", [64, 128, 96])
def test_q8_0_storage_close_to_f16_storage(one_row, hd):
    """q8_0 keeps about 8 bits per value: the output moves by a fraction of a percent of its scale."""
    rng = np.random.default_rng(hd)
    q, k, v = _case(rng, 128, hd)
    pos = np.arange(128, dtype=np.int32)
    cells = np.arange(100, dtype=np.int32)
    f16 = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row)
    q8 = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row, kv_type="q8_0")
    assert not _same(f16, q8)  # the storage really differs
    assert np.max(np.abs(q8 - f16)) < 0.02 * np.max(np.abs(f16))


@pytest.mark.parametrize("kv_type", KV_TYPES)
@pytest.mark.parametrize("one_row", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_scattered_cells_and_position_gaps_equal_reference(kv_type, one_row, seed):
    """Cells of a speculative buffer: out of cell order, interleaved with other sequences' cells, and
    positions that skip (a group of 16 positions split over several runs of cells)."""
    rng = np.random.default_rng(seed)
    n_cells, hd = 300, 64
    q, k, v = _case(rng, n_cells, hd)
    pos = rng.permutation(n_cells * 2)[:n_cells].astype(np.int32)  # distinct positions with gaps
    n_vis = int(rng.integers(1, n_cells))
    cells = rng.choice(n_cells, size=n_vis, replace=False).astype(np.int32)
    cells = cells[np.argsort(pos[cells], kind="stable")]  # in position order, as visible_cells gives them
    got = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row, kv_type=kv_type)
    want = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row, ref=True, kv_type=kv_type)
    assert _same(got, want)


@pytest.mark.parametrize("kv_type", KV_TYPES)
@pytest.mark.parametrize("one_row", [False, True])
def test_canonical_run_then_buffer_cells(kv_type, one_row):
    """The common verification shape: a contiguous canonical history, then a few cells elsewhere."""
    rng = np.random.default_rng(7)
    n_cells, hd = 128, 64
    q, k, v = _case(rng, n_cells, hd)
    pos = np.full(n_cells, -1, np.int32)
    pos[:40] = np.arange(40)
    pos[[100, 90, 120]] = [40, 41, 42]
    cells = np.array(list(range(40)) + [100, 90, 120], np.int32)
    got = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row, kv_type=kv_type)
    want = _core.attention(q, k, v, pos, cells, 0.125, one_row=one_row, ref=True, kv_type=kv_type)
    assert _same(got, want)


@pytest.mark.parametrize("kv_type", KV_TYPES)
@pytest.mark.parametrize("one_row", [False, True])
@pytest.mark.parametrize("spread", [30.0, 300.0])
def test_wide_scores_underflow_the_same_way(kv_type, one_row, spread):
    """Scores far below the maximum take exp's subnormal and zero branches."""
    rng = np.random.default_rng(int(spread))
    q, k, v = _case(rng, 96, 64, spread=spread)
    pos = np.arange(96, dtype=np.int32)
    cells = np.arange(96, dtype=np.int32)
    got = _core.attention(q, k, v, pos, cells, 1.0, one_row=one_row, kv_type=kv_type)
    want = _core.attention(q, k, v, pos, cells, 1.0, one_row=one_row, ref=True, kv_type=kv_type)
    assert _same(got, want)


def test_nan_scores_propagate_like_reference():
    rng = np.random.default_rng(3)
    q, k, v = _case(rng, 40, 64)
    k[5, 3] = np.nan
    pos = np.arange(40, dtype=np.int32)
    cells = np.arange(40, dtype=np.int32)
    got = _core.attention(q, k, v, pos, cells, 0.125)
    want = _core.attention(q, k, v, pos, cells, 0.125, ref=True)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()


def test_no_visible_cell_gives_zeros():
    rng = np.random.default_rng(4)
    q, k, v = _case(rng, 8, 64)
    got = _core.attention(q, k, v, np.arange(8, dtype=np.int32), np.zeros(0, np.int32), 0.125)
    assert np.array_equal(got, np.zeros(64, np.float32))


def test_attention_rejects_bad_shapes():
    q = np.zeros(64, np.float32)
    k = np.zeros((8, 64), np.float32)
    with pytest.raises(_core.ShapeError, match="n_cells, head_dim"):
        _core.attention(q, k, np.zeros((8, 32), np.float32), np.arange(8, dtype=np.int32), np.arange(8, dtype=np.int32), 1.0)
    with pytest.raises(_core.ShapeError, match="out of range"):
        _core.attention(q, k, k, np.arange(8, dtype=np.int32), np.array([9], np.int32), 1.0)
    with pytest.raises(ValueError, match="kv_type must be"):
        _core.attention(q, k, k, np.arange(8, dtype=np.int32), np.arange(8, dtype=np.int32), 1.0, kv_type="q4_0")


def test_fp16_widening_equals_numpy_for_every_bit_pattern():
    bits = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    got = _core.fp16_to_fp32_fast(bits)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()


def test_round_to_f16_equals_numpy_float16():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, size=1 << 21, dtype=np.uint64).astype(np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x477FEFFF, 0x477FF000, 0x38800000, 0x387FFFFF,
                        0x33000000, 0x33000001, 0x32FFFFFF, 0x00000001, 0x3F800FFF, 0x3F801000, 0x3F803000],
                       np.uint32)
    x = np.concatenate([bits, special]).view(np.float32)
    got = _core.round_to_f16(x)
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert got[~nan].tobytes() == want[~nan].tobytes()
    # NaN comes back quiet with its sign, as the scalar conversion gives it
    assert np.array_equal(got[nan].view(np.uint32) & 0x7FFFFFFF, np.full(nan.sum(), 0x7FC00000, np.uint32))
    assert np.array_equal(np.signbit(got[nan]), np.signbit(x[nan]))
