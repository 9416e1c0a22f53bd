"""The traits table: sizes and ids agree with gguf-py, every type the engine needs has its
reference kernels, and the vec_dot pairing is ggml's."""
from __future__ import annotations

import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
from quant_cases import BY_NAME, TYPES

from pipeinfer import _core

# ggml's pairing of weight type -> activation type (ggml-cpu.c type_traits_cpu vec_dot_type).
GGML_VEC_DOT_TYPE = {
    "f32": "f32",
    "f16": "f16",
    "bf16": "bf16",
    "q4_0": "q8_0",
    "q5_0": "q8_0",
    "q8_0": "q8_0",
    "q4_1": "q8_1",
    "q5_1": "q8_1",
    "q2_k": "q8_k",
    "q3_k": "q8_k",
    "q4_k": "q8_k",
    "q5_k": "q8_k",
    "q6_k": "q8_k",
}
MUST_DEQUANTIZE = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1",
                   "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k"]
MUST_QUANTIZE = ["f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q8_1", "q8_k"]


# gguf-py 0.19 still lists q8_1 as 40 bytes (f32 d and s, the layout before ggml switched to f16);
# ggml-common.h has block_q8_1 {ggml_half d, s; int8 qs[32]} asserted to 36 bytes.
GGUF_PY_STALE_SIZES = {"q8_1": ((32, 40), (32, 36))}


@pytest.mark.parametrize("row", TYPES, ids=[t["name"] for t in TYPES])
def test_sizes_and_ids_match_gguf(row):
    qtype = GGMLQuantizationType[row["name"].upper()]
    assert row["id"] == qtype.value
    want = GGML_QUANT_SIZES[qtype]
    if row["name"] in GGUF_PY_STALE_SIZES and want == GGUF_PY_STALE_SIZES[row["name"]][0]:
        want = GGUF_PY_STALE_SIZES[row["name"]][1]
    assert (row["block_size"], row["type_size"]) == want


def test_names_are_lower_case_and_unique():
    names = [t["name"] for t in TYPES]
    assert len(set(names)) == len(names)
    assert all(n == n.lower() for n in names)


@pytest.mark.parametrize("name", MUST_DEQUANTIZE)
def test_required_dequantizers_present(name):
    assert BY_NAME[name]["can_dequantize"]


@pytest.mark.parametrize("name", MUST_QUANTIZE)
def test_required_quantizers_present(name):
    assert BY_NAME[name]["can_quantize"]


@pytest.mark.parametrize("name", sorted(GGML_VEC_DOT_TYPE))
def test_vec_dot_pairing_is_ggml(name):
    row = BY_NAME[name]
    assert row["can_dot"]
    assert row["vec_dot_type"] == GGML_VEC_DOT_TYPE[name]
    # the activation type must be producible and readable
    act = BY_NAME[row["vec_dot_type"]]
    assert act["can_quantize"] and act["can_dequantize"]


def test_types_without_dot_have_no_vec_dot_type():
    for row in TYPES:
        assert (row["vec_dot_type"] is None) == (not row["can_dot"]), row["name"]


def test_kernel_isa_is_a_known_level():
    assert _core.kernel_isa() in ("scalar", "avx2", "avx512")
