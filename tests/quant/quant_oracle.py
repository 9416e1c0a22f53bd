"""Numpy oracle for the quant kernels of pipeinfer._core.

gguf-py (`gguf.quants`) is the primary oracle: its numpy quantize/dequantize are bit-exact with
ggml's portable reference code. This module fills the gaps gguf-py leaves (q8_1 and q8_K, which it
cannot quantize or dequantize) and knows where the scale fields of each block lie
(ggml/src/ggml-common.h) so that random test blocks hold finite scales.

Activation quantizers (q8_0, q8_1, q8_K) follow ggml's x86 semantics, not gguf-py's: pipeinfer must
quantize activations exactly as llama.cpp does on the CPUs it targets, and ggml's x86 kernels
(ggml-cpu/arch/x86/quants.c quantize_row_q8_0 / quantize_row_q8_1) compute d = amax / 127 and
q = round-half-to-even(x * (127 / amax)), whereas the portable quantize_row_q8_0_ref (which gguf-py
mirrors) multiplies by 1 / d and rounds halves away from zero; the two disagree on a few values per
row. x86 quantize_row_q8_K is the portable quantize_row_q8_K_ref, which the q8_K oracle follows.
"""
from __future__ import annotations

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf import quants as gguf_quants

QK_K = 256

# Byte offsets of the f16 scale fields inside one block (ggml-common.h field order). Random test
# blocks get finite moderate values there so that no inf/NaN reaches the comparison.
F16_SCALE_FIELDS: dict[str, tuple[int, ...]] = {
    "q4_0": (0,),  # d
    "q4_1": (0, 2),  # d, m
    "q5_0": (0,),  # d
    "q5_1": (0, 2),  # d, m
    "q8_0": (0,),  # d
    "q8_1": (0, 2),  # d, s
    "q2_k": (80, 82),  # d, dmin (after scales[16], qs[64])
    "q3_k": (108,),  # d (after hmask[32], qs[64], scales[12])
    "q4_k": (0, 2),  # d, dmin
    "q5_k": (0, 2),  # d, dmin
    "q6_k": (208,),  # d (after ql[128], qh[64], scales[16])
}
# Byte offsets of f32 scale fields.
F32_SCALE_FIELDS: dict[str, tuple[int, ...]] = {"q8_k": (0,)}

# Weight types whose dot is taken against q8_1 activations use the min m of each weight block
# (f16 at this byte offset) times the activation's s field (ggml_vec_dot_q4_1_q8_1).
MIN_FIELD_FOR_Q8_1: dict[str, int] = {"q4_1": 2, "q5_1": 2}

# Scalar float types: (value dtype, bit dtype, exponent mask) for drawing finite random values.
FLOAT_TYPES = {
    "f32": (np.float32, np.uint32, 0x7F800000),
    "f16": (np.float16, np.uint16, 0x7C00),
    "bf16": (None, np.uint16, 0x7F80),
}


def gguf_type(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name.upper()]


def moderate_f16(rng: np.random.Generator, size: int) -> np.ndarray:
    """Finite normal f16 values with magnitudes in [2^-8, 4] and random signs."""
    mag = np.exp2(rng.uniform(-8.0, 2.0, size))
    sign = rng.choice(np.array([-1.0, 1.0]), size)
    return (mag * sign).astype(np.float16)


def random_blocks(
    name: str, type_size: int, block_size: int, n_blocks: int, rng: np.random.Generator, full_range: bool = True
) -> np.ndarray:
    """Random raw bytes of n_blocks blocks (n_blocks values for the float types) with finite scales.

    The float types get random finite bit patterns (every exponent, subnormals included) when
    full_range, else values of moderate magnitude (for dots, whose f32 products must not overflow).

    Raises KeyError naming the type if the oracle does not know where its scale fields are (a new
    type must be described here before its kernels can be tested).
    """
    if name in FLOAT_TYPES and not full_range:
        vals = (rng.standard_normal(n_blocks) * np.exp2(rng.uniform(-8.0, 8.0, n_blocks))).astype(np.float32)
        if name == "f32":
            return vals.view(np.uint8)
        if name == "f16":
            return vals.astype(np.float16).view(np.uint8)
        return (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)  # bf16 by truncation
    if name in FLOAT_TYPES:
        _, bits_dtype, exp_mask = FLOAT_TYPES[name]
        info = np.iinfo(bits_dtype)
        bits = rng.integers(0, int(info.max) + 1, n_blocks, dtype=np.uint64).astype(bits_dtype)
        nonfinite = (bits & bits_dtype(exp_mask)) == bits_dtype(exp_mask)
        bits[nonfinite] &= bits_dtype(~exp_mask & int(info.max))  # clear the exponent: finite
        return bits.view(np.uint8)
    if name not in F16_SCALE_FIELDS and name not in F32_SCALE_FIELDS:
        raise KeyError(f"quant_oracle has no scale-field layout for type {name!r}; add it to F16_SCALE_FIELDS")
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in F16_SCALE_FIELDS.get(name, ()):
        blocks[:, off : off + 2] = moderate_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    for off in F32_SCALE_FIELDS.get(name, ()):
        vals = moderate_f16(rng, n_blocks).astype(np.float32) / np.float32(127)
        blocks[:, off : off + 4] = vals.view(np.uint8).reshape(n_blocks, 4)
    return blocks.reshape(-1)


# --------------------------------------------------------------------------------------------
# Dequantization
# --------------------------------------------------------------------------------------------


def _dequantize_q8_1(data: np.ndarray) -> np.ndarray:
    blocks = data.reshape(-1, 36)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 4:].copy().view(np.int8).astype(np.float32)
    return (q * d).reshape(-1)


def _dequantize_q8_k(data: np.ndarray) -> np.ndarray:
    blocks = data.reshape(-1, 292)
    d = blocks[:, 0:4].copy().view(np.float32)
    q = blocks[:, 4 : 4 + QK_K].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


ORACLE_DEQUANTIZE = {"q8_1": _dequantize_q8_1, "q8_k": _dequantize_q8_k}


def reference_dequantize(name: str, data: np.ndarray) -> np.ndarray:
    """float32 values of raw blocks: gguf-py where it can, else this module's oracle."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    if name in ORACLE_DEQUANTIZE:
        return ORACLE_DEQUANTIZE[name](data)
    return np.asarray(gguf_quants.dequantize(data, gguf_type(name)), dtype=np.float32).reshape(-1)


# --------------------------------------------------------------------------------------------
# Quantization (ggml x86 semantics for the activation types, ggml _ref rounding for the others)
# --------------------------------------------------------------------------------------------


def _q8_x86_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml x86 quantize_row_q8_0 / _q8_1 core: (d (n_blocks, 1) f32, q (n_blocks, 32) int8) with
    d = amax / 127 and q = round-half-even(x * (127 / amax)) (127 / amax = 0 for an all-zero block)."""
    xb = x.reshape(-1, 32).astype(np.float32)
    amax = np.abs(xb).max(axis=1, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax == 0, np.float32(0), np.float32(127) / amax).astype(np.float32)
    q = np.rint((xb * inv).astype(np.float32)).astype(np.int8)
    return d, q


def _quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """ggml x86 quantize_row_q8_0: d = f16(amax / 127), q as _q8_x86_blocks."""
    d, q = _q8_x86_blocks(x)
    with np.errstate(over="ignore"):  # f16 overflow to inf is ggml's result too
        d16 = d.astype(np.float16)
    return np.concatenate([d16.view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def _quantize_q8_1(x: np.ndarray) -> np.ndarray:
    """ggml x86 quantize_row_q8_1: as q8_0, plus s = f16(d * sum(q))."""
    d, q = _q8_x86_blocks(x)
    s = (q.astype(np.int32).sum(axis=1, keepdims=True).astype(np.float32) * d).astype(np.float32)
    with np.errstate(over="ignore"):  # f16 overflow to inf is ggml's result too
        d16, s16 = d.astype(np.float16), s.astype(np.float16)
    return np.concatenate([d16.view(np.uint8), s16.view(np.uint8), q.view(np.uint8)], axis=1).reshape(-1)


def _quantize_q8_k(x: np.ndarray) -> np.ndarray:
    """quantize_row_q8_K_ref: iscale = -127/max (max = value of largest magnitude, first one),
    q = min(127, round-half-even(iscale*x)), d = 1/iscale, bsums = sums of 16 quants.
    An all-zero block is d = 0, q = 0 (bsums 0 here; ggml leaves them unwritten)."""
    xb = x.reshape(-1, QK_K).astype(np.float32)
    out = []
    for blk in xb:
        ax = np.abs(blk)
        amax = ax.max()
        if amax == 0:
            d = np.float32(0)
            q = np.zeros(QK_K, np.int8)
        else:
            mx = blk[int(np.argmax(ax))]
            iscale = np.float32(-127) / mx
            q = np.minimum(np.rint(iscale * blk), 127).astype(np.int8)
            d = np.float32(1) / iscale
        bsums = q.astype(np.int32).reshape(16, 16).sum(axis=1).astype(np.int16)
        out.append(np.concatenate([np.array([d], np.float32).view(np.uint8), q.view(np.uint8), bsums.view(np.uint8)]))
    return np.concatenate(out)


ORACLE_QUANTIZE = {"q8_0": _quantize_q8_0, "q8_1": _quantize_q8_1, "q8_k": _quantize_q8_k}


def reference_quantize(name: str, x: np.ndarray) -> np.ndarray:
    """Raw block bytes of x: this module's oracle for the activation types (ggml x86 semantics, see
    the module docstring), gguf-py for the others.

    Raises NotImplementedError if neither can.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if name in ORACLE_QUANTIZE:
        return ORACLE_QUANTIZE[name](x)
    with np.errstate(over="ignore"):  # f16 overflow to inf is the expected result
        ref = gguf_quants.quantize(x, gguf_type(name))
    return np.ascontiguousarray(ref).view(np.uint8).reshape(-1)


# --------------------------------------------------------------------------------------------
# Dot products
# --------------------------------------------------------------------------------------------


def reference_dot(
    name: str, act_name: str, w: np.ndarray, act: np.ndarray, type_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (float64) dots of one weight row with each activation row, and sum|w*a| per row.

    w: raw weight bytes; act: (n_act, row bytes) raw activation rows of act_name. The dot is that
    of the dequantized values, except that q8_1 activations enter through their f16 field
    s = d*sum(q) for the weight-min term, as in ggml (dot += m * s instead of m * d * sum(q)).
    """
    wf = reference_dequantize(name, w).astype(np.float64)
    dots, mags = [], []
    for row in act:
        af = reference_dequantize(act_name, row).astype(np.float64)
        dot = float(np.dot(wf, af))
        if act_name == "q8_1" and name in MIN_FIELD_FOR_Q8_1:
            off = MIN_FIELD_FOR_Q8_1[name]
            wb = w.reshape(-1, type_size)
            m = wb[:, off : off + 2].copy().view(np.float16).astype(np.float64).reshape(-1)
            ab = row.reshape(-1, 36)
            d = ab[:, 0:2].copy().view(np.float16).astype(np.float64).reshape(-1)
            s = ab[:, 2:4].copy().view(np.float16).astype(np.float64).reshape(-1)
            qsum = ab[:, 4:].copy().view(np.int8).astype(np.float64).sum(axis=1)
            dot += float(np.sum(m * (s - d * qsum)))
        dots.append(dot)
        mags.append(float(np.sum(np.abs(wf * af))))
    return np.array(dots), np.array(mags)
