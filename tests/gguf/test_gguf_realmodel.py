"""The strict reader agrees with gguf-py's GGUFReader on the real models (keys, values, tensor table)."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

from pipeinfer import _core

VT = gguf.GGUFValueType
SPELLING = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32", VT.INT32: "i32",
    VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "str", VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64",
}


def _expected_type(field) -> str:
    if field.types[0] == VT.ARRAY:
        return f"arr[{SPELLING[field.types[-1]]},{len(field.data)}]"
    return SPELLING[field.types[0]]


@pytest.mark.realmodel
@pytest.mark.parametrize("name", ["smollm2-135m", "qwen2.5-coder-0.5b"])
def test_real_model_matches_gguf_py(real_model_path, name):
    path = real_model_path(name)
    ref = gguf.GGUFReader(str(path))
    f = _core.GGUFFile(str(path))

    ref_fields = {k: v for k, v in ref.fields.items() if not k.startswith("GGUF.")}
    meta = f.metadata()
    types = f.metadata_types()
    assert list(meta) == list(ref_fields)
    for key, field in ref_fields.items():
        assert types[key] == _expected_type(field), key
        want = field.contents()
        got = meta[key]
        if field.types[0] == VT.ARRAY and field.types[-1] != VT.STRING:
            np.testing.assert_array_equal(got, np.array(want), err_msg=key)
        elif field.types[0] == VT.FLOAT32:
            assert got == float(np.float32(want)), key
        else:
            assert got == want, key

    assert f.data_offset == ref.data_offset
    ours = f.tensors()
    assert len(ours) == len(ref.tensors)
    for t, r in zip(ours, ref.tensors):
        assert t["name"] == r.name
        assert t["type_id"] == int(r.tensor_type)
        assert t["type"] == r.tensor_type.name.lower()
        assert t["shape"] == [int(d) for d in r.shape]
        assert t["offset"] == r.data_offset
        assert t["nbytes"] == r.n_bytes
    for r in (ref.tensors[0], ref.tensors[-1]):
        assert f.tensor_data(r.name).tobytes() == r.data.tobytes()
