"""Random but valid weight matrices of every matmul weight type, as raw GGUF row bytes, for the matmul
tests and benchmarks. Types with a quantizer in the traits table are quantized from Gaussian values;
the k-quants (which have no quantizer here) get random quant bytes with their f16 super-block scales
overwritten by small positive values, so every block decodes to finite, sanely scaled numbers."""
from __future__ import annotations

import numpy as np

# Byte offsets of the f16 scale fields inside one block (csrc/quant/blocks.h).
_F16_FIELDS = {
    "q4_0": (0,),
    "q4_1": (0, 2),
    "q5_0": (0,),
    "q5_1": (0, 2),
    "q8_0": (0,),
    "q2_k": (80, 82),
    "q3_k": (108,),
    "q4_k": (0, 2),
    "q5_k": (0, 2),
    "q6_k": (208,),
}

FLOAT_TYPES = ("f32", "f16", "bf16")


def type_info(core, name: str) -> dict:
    for row in core.quant_types():
        if row["name"] == name:
            return row
    raise KeyError(name)


def dot_types(core) -> list[str]:
    """Names of every type the traits table can use as a matmul weight."""
    return [row["name"] for row in core.quant_types() if row["can_dot"]]


def _float_rows(name: str, n_out: int, n_in: int, rng: np.random.Generator) -> np.ndarray:
    vals = rng.standard_normal((n_out, n_in), dtype=np.float32)
    if name == "f32":
        return vals.view(np.uint8)
    if name == "f16":
        return vals.astype(np.float16).view(np.uint8)
    return (vals.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)  # bf16 by truncation


def random_weights(
    core, name: str, n_out: int, n_in: int, rng: np.random.Generator, fast: bool = False
) -> np.ndarray:
    """(n_out, row_bytes) uint8 rows of type `name` with n_in values each.

    fast=True skips the quantizer and uses random quant bytes for every quantized type (for large
    benchmark matrices)."""
    info = type_info(core, name)
    bs, ts = info["block_size"], info["type_size"]
    assert n_in % bs == 0, (name, n_in, bs)
    if name in FLOAT_TYPES:
        return _float_rows(name, n_out, n_in, rng)
    if not fast and info["can_quantize"]:
        vals = rng.standard_normal((n_out, n_in)).astype(np.float32)
        return np.stack([core.quantize(name, row) for row in vals])
    fields = _F16_FIELDS[name]
    n_blocks = n_out * (n_in // bs)
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    for off in fields:
        scale = rng.uniform(0.002, 0.02, size=n_blocks).astype(np.float16)
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(n_out, (n_in // bs) * ts)


def dequantize_rows(core, name: str, w: np.ndarray, n_in: int) -> np.ndarray:
    """(n_out, n_in) float32 values of raw weight rows."""
    return np.stack([core.dequantize(name, row, n_in) for row in w])


def act_error_bound(act_type: str, x: np.ndarray) -> np.ndarray:
    """(n_rows, n_in) bound on |quantized activation - x| for activations of type act_type."""
    if act_type == "f32":
        return np.zeros_like(x)
    if act_type == "f16":
        return np.abs(x) * 2.0**-11 + 2.0**-25
    if act_type == "bf16":
        return np.abs(x) * 2.0**-8
    block = {"q8_0": 32, "q8_1": 32, "q8_k": 256}[act_type]
    blocks = np.abs(x).reshape(x.shape[0], -1, block).max(axis=2, keepdims=True)
    return np.broadcast_to(blocks * (1.0 / 254) * 1.0001, blocks.shape[:2] + (block,)).reshape(x.shape)


def check_close(core, t: str, w: np.ndarray, x: np.ndarray, y: np.ndarray, n_in: int) -> None:
    """Asserts |y - matmul_ref| <= |W| @ e + 1e-5 * (|W| @ |x|) + 1e-6 per output (e: act_error_bound)."""
    wd = np.abs(dequantize_rows(core, t, w, n_in)).astype(np.float64)
    act = type_info(core, t)["vec_dot_type"]
    bound = act_error_bound(act, x.astype(np.float64)) @ wd.T + 1e-5 * (np.abs(x) @ wd.T) + 1e-6
    ref = core.matmul(t, w, n_in, x, ref=True)
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= bound), f"{t}: max err/bound {np.max(err / bound):.3g}"


def simd_levels(core) -> list[str]:
    """SIMD kernel levels this CPU runs (set_kernel_isa caps a request at the CPU's best)."""
    before = core.kernel_isa()
    try:
        return [lvl for lvl in ("avx2", "avx512") if core.set_kernel_isa(lvl) == lvl]
    finally:
        core.set_kernel_isa(before)
