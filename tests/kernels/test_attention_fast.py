"""The default mode's attention kernel (kernels/attention-fast.{h,cpp}, kernels/arch/attention-fast-*)
against its scalar reference (attention-fast-ref.cpp), bit for bit, on every SIMD path this CPU has
(AVX-512, AVX2) and on the path in force: f16 and q8_0 caches, several query heads per KV head (GQA
groups of 1 to 9), odd cell counts and partial tiles, cells out of cache order and interleaved with
other cells, lists made of runs of neighbouring cells of any length, head sizes 64, 128, 80 and 96
(and 40, which no SIMD path takes), scores wide enough that exp underflows, NaN, and no visible cell.
Also the order's promise: a head's result does not depend on the heads it is computed with, nor on
where its cells sit in the cache."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer import _core

PATHS = ["auto"] + _core.attention_fast_paths()


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def _case(rng, n_q: int, n_cells: int, hd: int, spread: float = 1.0):
    q = _f16(rng.standard_normal((n_q, hd)).astype(np.float32) * spread)
    k = _f16(rng.standard_normal((n_cells, hd)).astype(np.float32))
    v = _f16(rng.standard_normal((n_cells, hd)).astype(np.float32))
    return q, k, v


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.tobytes() == b.tobytes()


def _check(q, k, v, pos, cells, scale, kv_type, path):
    got = _core.attention_fast(q, k, v, pos, cells, scale, path=path, kv_type=kv_type)
    want = _core.attention_fast(q, k, v, pos, cells, scale, path="ref", kv_type=kv_type)
    assert got.shape == q.shape
    assert _same(got, want), np.max(np.abs(got - want))
    return got


# (head_dim, kv_type): q8_0 stores whole blocks of 32 values
HEAD_CASES = [(hd, "f16") for hd in (64, 128, 80, 96, 40)] + [(hd, "q8_0") for hd in (64, 128, 96)]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("hd,kv_type", HEAD_CASES)
@pytest.mark.parametrize("n_q", [1, 3, 7, 9])
@pytest.mark.parametrize("n_vis", [1, 15, 17, 50, 203])
def test_contiguous_cells_equal_reference(path, hd, kv_type, n_q, n_vis):
    rng = np.random.default_rng(hd * 1000 + n_vis * 10 + n_q)
    n_cells = 256
    q, k, v = _case(rng, n_q, n_cells, hd)
    pos = np.arange(n_cells, dtype=np.int32)
    cells = np.arange(n_vis, dtype=np.int32)
    got = _check(q, k, v, pos, cells, 1.0 / np.sqrt(hd), kv_type, path)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kv_type", ["f16", "q8_0"])
@pytest.mark.parametrize("seed", range(5))
def test_scattered_cells_equal_reference(path, kv_type, seed):
    """Cells of a speculative buffer: out of cell order, between other sequences' cells, positions
    with gaps; runs of neighbours (read in place) alternate with scattered cells (gathered)."""
    rng = np.random.default_rng(seed)
    n_cells, hd, n_q = 300, 64, 3
    q, k, v = _case(rng, n_q, n_cells, hd)
    pos = rng.permutation(n_cells * 2)[:n_cells].astype(np.int32)
    n_vis = int(rng.integers(1, n_cells))
    cells = rng.choice(n_cells, size=n_vis, replace=False).astype(np.int32)
    cells = cells[np.argsort(pos[cells], kind="stable")]
    _check(q, k, v, pos, cells, 0.125, kv_type, path)


def _runs_list(rng, n_cells: int, max_run: int, to_end: bool) -> np.ndarray:
    """A visible list made of runs of neighbouring cells of random lengths (1 to max_run), in a random
    cache order (as a serving slot's blocks and a speculative buffer's holes leave them); to_end puts a
    run at the cache's last cells (the last 10 cells are kept for it)."""
    slots = rng.permutation((n_cells - 10) // max_run)
    runs = []
    for sl in slots:
        length = int(rng.integers(1, max_run + 1))
        first = sl * max_run + int(rng.integers(0, max_run - length + 1))
        runs.append(np.arange(first, first + length))
    if to_end:
        runs.append(np.arange(n_cells - int(rng.integers(1, 11)), n_cells))
    return np.concatenate(runs).astype(np.int32)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("n_q", [1, 3, 7])
@pytest.mark.parametrize("max_run", [5, 16, 40])
@pytest.mark.parametrize("seed", range(4))
def test_runs_of_neighbours_equal_reference(path, n_q, max_run, seed):
    """Runs of neighbouring cells of any length are scored in place tile by tile (a tile starting
    anywhere in the list); short runs and lone cells gathered; the same result as the reference."""
    rng = np.random.default_rng(seed * 100 + max_run + n_q)
    n_cells, hd = 410, 64
    q, k, v = _case(rng, n_q, n_cells, hd)
    cells = _runs_list(rng, n_cells, max_run, to_end=seed % 2 == 0)
    pos = np.full(n_cells, 5000, np.int32)
    pos[cells] = np.arange(len(cells))
    for kv_type in ("f16", "q8_0"):
        _check(q, k, v, pos, cells, 0.125, kv_type, path)
        _check(q, k, v, pos, cells[: int(rng.integers(1, len(cells)))], 0.125, kv_type, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kv_type", ["f16", "q8_0"])
def test_canonical_run_then_buffer_cells(path, kv_type):
    rng = np.random.default_rng(7)
    n_cells, hd = 128, 128
    q, k, v = _case(rng, 2, n_cells, hd)
    pos = np.full(n_cells, -1, np.int32)
    pos[:40] = np.arange(40)
    pos[[100, 90, 120]] = [40, 41, 42]
    cells = np.array(list(range(40)) + [100, 90, 120], np.int32)
    _check(q, k, v, pos, cells, 0.125, kv_type, path)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("kv_type", ["f16", "q8_0"])
@pytest.mark.parametrize("spread", [30.0, 300.0])
def test_wide_scores_underflow_the_same_way(path, kv_type, spread):
    rng = np.random.default_rng(int(spread))
    q, k, v = _case(rng, 4, 96, 64, spread=spread)
    pos = np.arange(96, dtype=np.int32)
    _check(q, k, v, pos, np.arange(96, dtype=np.int32), 1.0, kv_type, path)


@pytest.mark.parametrize("path", PATHS)
def test_nan_propagates_like_reference(path):
    rng = np.random.default_rng(3)
    q, k, v = _case(rng, 3, 40, 64)
    k[5, 3] = np.nan
    pos = np.arange(40, dtype=np.int32)
    cells = np.arange(40, dtype=np.int32)
    got = _core.attention_fast(q, k, v, pos, cells, 0.125, path=path)
    want = _core.attention_fast(q, k, v, pos, cells, 0.125, path="ref")
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got).any()
    assert _same(got[~np.isnan(got)], want[~np.isnan(want)])


@pytest.mark.parametrize("path", PATHS)
def test_no_visible_cell_gives_zeros(path):
    rng = np.random.default_rng(4)
    q, k, v = _case(rng, 2, 8, 64)
    got = _core.attention_fast(q, k, v, np.arange(8, dtype=np.int32), np.zeros(0, np.int32), 0.125, path=path)
    assert np.array_equal(got, np.zeros((2, 64), np.float32))


@pytest.mark.parametrize("kv_type", ["f16", "q8_0"])
def test_result_independent_of_companion_heads_and_cell_placement(kv_type):
    """A head computed alone equals the same head computed in a group, and moving the cells elsewhere
    in the cache (same positions, same values) changes nothing: the order depends only on the query
    and the visible cells in position order."""
    rng = np.random.default_rng(11)
    n, hd = 70, 64
    q, k, v = _case(rng, 5, n, hd)
    pos = np.arange(n, dtype=np.int32)
    cells = np.arange(n, dtype=np.int32)
    group = _core.attention_fast(q, k, v, pos, cells, 0.125, kv_type=kv_type)
    for h in range(5):
        alone = _core.attention_fast(q[h:h + 1], k, v, pos, cells, 0.125, kv_type=kv_type)
        assert _same(alone[0], group[h])
    perm = rng.permutation(n + 30)[:n]  # the same cells scattered over a bigger cache
    k2 = np.zeros((n + 30, hd), np.float32)
    v2 = np.zeros((n + 30, hd), np.float32)
    pos2 = np.full(n + 30, 10_000, np.int32)
    k2[perm], v2[perm], pos2[perm] = k, v, pos
    moved = _core.attention_fast(q, k2, v2, pos2, perm.astype(np.int32), 0.125, kv_type=kv_type)
    assert _same(moved, group)


def test_close_to_exact_kernel_and_float64():
    """A different summation order from llama.cpp's, but the same attention: within f32 rounding of a
    float64 computation, and within the exact mode's f16 rounding of p (2^-11 relative) of its kernel."""
    rng = np.random.default_rng(5)
    n, hd = 300, 128
    q, k, v = _case(rng, 2, n, hd)
    pos = np.arange(n, dtype=np.int32)
    cells = np.arange(n, dtype=np.int32)
    got = _core.attention_fast(q, k, v, pos, cells, 1 / np.sqrt(hd))
    s = (q.astype(np.float64) @ k.T.astype(np.float64)) / np.sqrt(hd)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    want = (p / p.sum(axis=1, keepdims=True)) @ v.astype(np.float64)
    assert np.max(np.abs(got - want)) < 1e-5
    exact = _core.attention(q[0], k, v, pos, cells, 1 / np.sqrt(hd))
    assert np.max(np.abs(got[0] - exact)) < 5e-4


def test_attention_fast_rejects_bad_input():
    q = np.zeros((2, 64), np.float32)
    k = np.zeros((8, 64), np.float32)
    pos = np.arange(8, dtype=np.int32)
    with pytest.raises(_core.ShapeError, match="n_q, head_dim"):
        _core.attention_fast(q[0], k, k, pos, pos, 1.0)
    with pytest.raises(_core.ShapeError, match="out of range"):
        _core.attention_fast(q, k, k, pos, np.array([9], np.int32), 1.0)
    with pytest.raises(ValueError, match="path must be"):
        _core.attention_fast(q, k, k, pos, pos, 1.0, path="neon9")
    assert _core.attention_fast_path() in ("avx512", "avx2", "scalar")
