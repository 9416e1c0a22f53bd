"""Test cases drawn from the traits table of pipeinfer._core, so a type added to the table is
tested automatically; and the tolerances the quant tests use."""
from __future__ import annotations

from pipeinfer import _core

TYPES: list[dict] = _core.quant_types()
BY_NAME: dict[str, dict] = {t["name"]: t for t in TYPES}

DEQUANTIZE_TYPES = [t["name"] for t in TYPES if t["can_dequantize"]]
QUANTIZE_TYPES = [t["name"] for t in TYPES if t["can_quantize"]]
DOT_TYPES = [t["name"] for t in TYPES if t["can_dot"]]

ISA_LEVELS = ["scalar", "avx2", "avx512"]
SIMD_LEVELS = ["avx2", "avx512"]

# |vec_dot - exact dot| <= DOT_RTOL * sum_i |w_i * a_i| (+ DOT_ATOL): integer sums inside a block
# are exact; the f32 scale products and the f32 sum across blocks cost a few ulps (2^-24) per block.
DOT_RTOL = 1e-5
DOT_ATOL = 1e-30

# SIMD dequantization vs the reference: SIMD may fuse d*q + m into one FMA (one rounding instead of
# two), so values may differ by an ulp or so of the block's largest term.
DEQUANT_RTOL = 1e-6

# Row length used by the dot tests: a multiple of every block size (32 and 256), 2 k-quant blocks.
DOT_N = 512


def row_bytes(name: str, n: int) -> int:
    t = BY_NAME[name]
    return n // t["block_size"] * t["type_size"]
