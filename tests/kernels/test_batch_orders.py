"""Batch-shaped summation orders of the matmul driver (csrc/kernels/matmul.cpp plan_rows) against numpy
models of llama.cpp's x86 kernels, and the exact_rows contract.

llama.cpp (ggml-cpu, x86 with AVX-512) computes a prompt batch with kernels whose f32 summation order
differs from its one-row kernels, so the rows of a batch do not equal one-row results:
- q4_K weights are repacked (n_out a multiple of 8); the rows that fill groups of 4 go through
  ggml_gemm_q4_K_8x8_q8_K (one FMA per 64-value pair of sub-blocks, in two chains: scaled sums and mins),
  the other rows through ggml_gemv_q4_K_8x8_q8_K (one FMA per super-block in the same two chains);
- other k-quant weights go through the tiled k-quant matmul when the batch has 8 rows or more
  (per super-block r = isum * d, minus dmin * msum fused; s = fma(r, d_y, s)).
The integer parts (isum, msum) are exact everywhere, so these numpy models, with an exact f32 FMA, give
the expected outputs bit for bit. tests/model/test_llamacpp_reference.py checks the same orders end to end
against llama.cpp itself.

exact_rows=True (speculative verification) must give every row bit-identical to a one-row call, for
every weight type: checked through the engine, a batch against one-token steps.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels_weights as kw
from pipeinfer import _core

F32 = np.float32
K_QUANTS = ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
TILED_MIN_ROWS = 8
REPACK_ROW_GROUP = 4


def fma32(a, b, c) -> np.ndarray:
    """Exactly rounded f32 fma(a, b, c), elementwise: a * b is exact in f64, TwoSum gives the rounding
    error e of s = a * b + c, and where s is a tie between two f32 values, e decides the direction."""
    a, b, c = (np.asarray(v, F32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    e = (p - (s - bb)) + (c - bb)
    r = s.astype(F32)
    rd = r.astype(np.float64)
    up = np.nextafter(r, F32(np.inf))
    dn = np.nextafter(r, F32(-np.inf))
    tie_up = (s > rd) & (s - rd == (up.astype(np.float64) - rd) / 2)
    tie_dn = (s < rd) & (rd - s == (rd - dn.astype(np.float64)) / 2)
    return np.where(tie_up & (e > 0), up, np.where(tie_dn & (e < 0), dn, r)).astype(F32)


def _f16(blocks: np.ndarray, off: int) -> np.ndarray:
    return blocks[..., off : off + 2].copy().view(np.float16)[..., 0].astype(F32)


def _scale_min_k4(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """q4_K / q5_K: 8 6-bit scales and mins from the 12 packed bytes (..., 12) -> two (..., 8)."""
    q = q.astype(np.int64)
    sc = np.concatenate([q[..., 0:4] & 63, (q[..., 8:12] & 15) | ((q[..., 0:4] >> 6) << 4)], axis=-1)
    mn = np.concatenate([q[..., 4:8] & 63, (q[..., 8:12] >> 4) | ((q[..., 4:8] >> 6) << 4)], axis=-1)
    return sc, mn


def unpack_k(t: str, w: np.ndarray, n_in: int) -> dict:
    """Weight rows (C, row_bytes) of k-quant t -> q (C, nb, 256) signed quants in value order, scales and
    mins (C, nb, n_sub) ints (mins None for q3_K / q6_K), d / dmin (C, nb) f32, sub (sub-block length)."""
    size = kw.type_info(_core, t)["type_size"]
    b = w.reshape(w.shape[0], n_in // 256, size)
    v = np.arange(256)
    if t in ("q2_k", "q3_k"):
        qs = b[..., 16:80] if t == "q2_k" else b[..., 32:96]
        low = (qs[..., 32 * (v // 128) + v % 32].astype(np.int64) >> (2 * ((v % 128) // 32))) & 3
        if t == "q2_k":
            sc = b[..., 0:16].astype(np.int64)
            return dict(q=low, scale=sc & 15, mins=sc >> 4, d=_f16(b, 80), dmin=_f16(b, 82), sub=16)
        hbit = (b[..., v % 32].astype(np.int64) >> (v // 32)) & 1
        raw = b[..., 96:108].astype(np.int64)
        j = np.arange(16)
        lo = (raw[..., j % 8] >> (4 * (j // 8))) & 15
        hi = (raw[..., 8 + j % 4] >> (2 * (j // 4))) & 3
        return dict(q=low - 4 * (1 - hbit), scale=(lo | (hi << 4)) - 32, mins=None, d=_f16(b, 108), dmin=None, sub=16)
    if t in ("q4_k", "q5_k"):
        qs = b[..., 16:144] if t == "q4_k" else b[..., 48:176]
        q = (qs[..., 32 * (v // 64) + v % 32].astype(np.int64) >> (4 * ((v % 64) // 32))) & 15
        if t == "q5_k":
            q |= ((b[..., 16 + v % 32].astype(np.int64) >> (v // 32)) & 1) << 4
        sc, mn = _scale_min_k4(b[..., 4:16])
        return dict(q=q, scale=sc, mins=mn, d=_f16(b, 0), dmin=_f16(b, 2), sub=32)
    assert t == "q6_k"
    h, r = v // 128, v % 128
    low = (b[..., 64 * h + r % 64].astype(np.int64) >> (4 * (r // 64))) & 15
    high = (b[..., 128 + 32 * h + r % 32].astype(np.int64) >> (2 * (r // 32))) & 3
    sc = b[..., 192:208].copy().view(np.int8).astype(np.int64)
    return dict(q=(low | (high << 4)) - 32, scale=sc, mins=None, d=_f16(b, 208), dmin=None, sub=16)


def quantize_q8_k(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (R, n) -> d (R, nb) f32, qs (R, nb, 256) and bsums (R, nb, 16) ints, via the engine's quantizer
    (tests/quant checks it against ggml's)."""
    raw = np.stack([_core.quantize("q8_k", row) for row in x]).reshape(x.shape[0], -1, 292)
    d = raw[..., 0:4].copy().view(F32)[..., 0]
    qs = raw[..., 4:260].copy().view(np.int8).astype(np.int64)
    bsums = raw[..., 260:292].copy().view(np.int16).astype(np.int64)
    return d, qs, bsums


def sub_sums(u: dict, qs: np.ndarray, bsums: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Exact integer sums per (activation row, weight row, super-block, sub-block): scale * (q . y) and
    min * (sum of y), shapes (R, C, nb, n_sub)."""
    sub = u["sub"]
    c, nb = u["q"].shape[:2]
    r = qs.shape[0]
    dots = np.einsum("cbjk,rbjk->rcbj", u["q"].reshape(c, nb, -1, sub), qs.reshape(r, nb, -1, sub))
    isub = dots * u["scale"][None]
    if u["mins"] is None:
        return isub, None
    ysum = bsums.reshape(r, 1, nb, -1, sub // 16).sum(-1)
    return isub, ysum * u["mins"][None]


def oracle(t: str, order: str, w: np.ndarray, x: np.ndarray, n_in: int) -> np.ndarray:
    """(R, C) outputs of weight rows w and activation rows x in one of llama.cpp's orders:
    "tiled", "x4" (q4_K gemm) or "gemv" (q4_K one row)."""
    u = unpack_k(t, w, n_in)
    dy, qs, bsums = quantize_q8_k(x)
    isub, msub = sub_sums(u, qs, bsums)
    r, c, nb = isub.shape[:3]
    d = u["d"][None]  # (1, C, nb)
    dyb = dy[:, None, :]  # (R, 1, nb)
    s = np.zeros((r, c), F32)
    m = np.zeros((r, c), F32)
    for b in range(nb):
        if order == "tiled":
            t_b = isub[:, :, b].sum(-1).astype(F32) * d[:, :, b]
            if msub is not None:
                t_b = fma32(-u["dmin"][None, :, b], msub[:, :, b].sum(-1).astype(F32), t_b)
            s = fma32(t_b, dyb[:, :, b], s)
            continue
        dd = (d[:, :, b] * dyb[:, :, b]).astype(F32)
        dm = (u["dmin"][None, :, b] * dyb[:, :, b]).astype(F32)
        groups = [(0, 8)] if order == "gemv" else [(2 * p, 2 * p + 2) for p in range(4)]
        for lo, hi in groups:
            s = fma32(isub[:, :, b, lo:hi].sum(-1).astype(F32), dd, s)
            m = fma32(msub[:, :, b, lo:hi].sum(-1).astype(F32), dm, m)
    return s if order == "tiled" else (s - m).astype(F32)


def planned_orders(t: str, n_out: int, n_rows: int) -> list[str]:
    """The order llama.cpp uses for each row (matmul.cpp plan_rows); "row" = the type's one-row kernel."""
    if t == "q4_k" and n_out % 8 == 0:
        n_x4 = n_rows - n_rows % REPACK_ROW_GROUP
        return ["x4"] * n_x4 + ["gemv"] * (n_rows - n_x4)
    if n_rows >= TILED_MIN_ROWS:
        return ["tiled"] * n_rows
    return ["gemv" if t == "q4_k" else "row"] * n_rows


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(4242)


@pytest.mark.parametrize("t", K_QUANTS)
@pytest.mark.parametrize("n_out", [40, 36])  # 40: q4_K repacked by llama.cpp; 36: not
@pytest.mark.parametrize("n_rows", [1, 3, 4, 7, 8, 9, 18])
def test_batch_rows_follow_llamacpp_orders(t, n_out, n_rows, rng):
    n_in = 768
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    x = (rng.standard_normal((n_rows, n_in)) * rng.uniform(0.1, 10.0, size=(n_rows, 1))).astype(F32)
    y = _core.matmul(t, w, n_in, x, n_threads=2)
    orders = planned_orders(t, n_out, n_rows)
    for order in sorted(set(orders) - {"row"}):
        rows = [i for i, o in enumerate(orders) if o == order]
        want = oracle(t, order, w, x[rows], n_in)
        np.testing.assert_array_equal(y[rows], want, err_msg=f"{t} n_out={n_out} rows {rows} ({order} order)")
    for i in [i for i, o in enumerate(orders) if o in ("row", "gemv")]:
        one = _core.matmul(t, w, n_in, x[i : i + 1], n_threads=1)
        np.testing.assert_array_equal(y[i], one[0], err_msg=f"{t}: row {i} of {n_rows} is not the one-row result")


@pytest.mark.parametrize("t", K_QUANTS)
def test_batch_orders_differ_from_one_row_order(t, rng):
    # The batched orders are really in use: on random data they change the last bits of some outputs.
    n_in, n_out, n_rows = 768, 40, 8
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    x = rng.standard_normal((n_rows, n_in)).astype(F32)
    batched = _core.matmul(t, w, n_in, x, n_threads=2)
    single = np.concatenate([_core.matmul(t, w, n_in, x[i : i + 1]) for i in range(n_rows)])
    assert np.any(batched != single)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5 * float(np.abs(single).max()))


@pytest.mark.skipif(not kw.simd_levels(_core), reason="no SIMD kernels for this CPU")
@pytest.mark.parametrize("level", kw.simd_levels(_core) or ["none"])
@pytest.mark.parametrize("t", K_QUANTS)
@pytest.mark.parametrize("n_out", [40, 36])
def test_batch_kernels_simd_equal_scalar(level, t, n_out, rng):
    # vec_dot_x4 and vec_dot_tiled of arch/x86-kernels.h against quants-ref-k.cpp, bit for bit, over every
    # remainder of the kernels' register blocking (rows per pass) and of the driver's 16-row tiles.
    n_in = 512
    w = kw.random_weights(_core, t, n_out, n_in, rng)
    x = rng.standard_normal((37, n_in)).astype(F32)
    before = _core.kernel_isa()
    try:
        for n_rows in (8, 9, 10, 11, 12, 16, 17, 37):
            orders = planned_orders(t, n_out, n_rows)
            rows = [i for i, o in enumerate(orders) if o in ("x4", "tiled", "gemv")]
            _core.set_kernel_isa("scalar")
            ref = _core.matmul(t, w, n_in, x[:n_rows], n_threads=2)
            _core.set_kernel_isa(level)
            got = _core.matmul(t, w, n_in, x[:n_rows], n_threads=2)
            np.testing.assert_array_equal(got[rows], ref[rows], err_msg=f"{t} {level} n_rows={n_rows}")
    finally:
        _core.set_kernel_isa(before)


WEIGHT_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k")
PROMPT = [5, 17, 99, 3, 250, 42, 7, 130, 64, 11]  # 10 rows: groups of 4 plus a remainder, and >= 8


def _decode(p, tokens, pos0: int, exact_rows: bool) -> np.ndarray:
    n = len(tokens)
    return p.decode(np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32), np.zeros(n, np.int32),
                    np.ones(n, np.uint8), exact_rows=exact_rows).copy()


@pytest.mark.parametrize("wtype", WEIGHT_TYPES)
def test_exact_rows_batch_equals_one_token_steps(tiny_model, wtype):
    # exact_rows=True: every row of a batch (matmuls and attention) bit-identical to one-token calls.
    path, _ = tiny_model("qwen2", wtype)
    p = _core.Pipeline(str(path), n_ctx=64)
    try:
        batched = _decode(p, PROMPT, 0, exact_rows=True)
        p.kv_clear()
        steps = np.stack([_decode(p, [t], i, exact_rows=False)[0] for i, t in enumerate(PROMPT)])
        np.testing.assert_array_equal(batched, steps, err_msg=f"{wtype}: exact_rows batch != one-token steps")
    finally:
        p.close()
