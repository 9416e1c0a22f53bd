"""Real weights: the first rows of every distinct tensor type in the real GGUF models dequantize
bit-exactly as gguf-py does, and their dots with quantized activations stay within DOT_RTOL of the
exact dot."""
from __future__ import annotations

import numpy as np
import pytest
import quant_oracle
from quant_cases import BY_NAME, DOT_ATOL, DOT_RTOL

from pipeinfer import _core

ROWS = 4  # rows per tensor


def _rows_by_type(path):
    """{type name: (first tensor of that type, its (ROWS, row bytes) uint8 rows, row length)}."""
    from gguf import GGUFReader

    out = {}
    for t in GGUFReader(str(path)).tensors:
        name = t.tensor_type.name.lower()
        if name in out or name not in BY_NAME or not BY_NAME[name]["can_dequantize"]:
            continue
        n = int(t.shape[0])  # ne[0]: values per row
        data = np.asarray(t.data).view(np.uint8).reshape(-1)
        rb = n // BY_NAME[name]["block_size"] * BY_NAME[name]["type_size"]
        k = min(ROWS, data.size // rb)
        out[name] = (t.name, data[: k * rb].reshape(k, rb), n)
    return out


@pytest.mark.realmodel
@pytest.mark.parametrize("model", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_real_weights_dequantize_and_dot(model, real_model_path, use_isa):
    rows = _rows_by_type(real_model_path(model))
    assert rows, f"{model}: no tensor of a supported type"
    rng = np.random.default_rng(0)
    use_isa("scalar")
    for name, (tensor, w, n) in rows.items():
        for r in w:
            got = _core.dequantize(name, r, n)
            ref = quant_oracle.reference_dequantize(name, r)
            assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), f"{model} {tensor} ({name})"
        t = BY_NAME[name]
        if not t["can_dot"]:
            continue
        act_name = t["vec_dot_type"]
        act = np.stack([_core.quantize(act_name, rng.standard_normal(n).astype(np.float32)) for _ in range(3)])
        got = _core.vec_dot(name, w[0], act, n).astype(np.float64)
        want, mag = quant_oracle.reference_dot(name, act_name, w[0], act, t["type_size"])
        assert np.all(np.abs(got - want) <= DOT_RTOL * mag + DOT_ATOL), f"{model} {tensor} ({name})"
