"""Models the engine cannot run give a clear, typed error naming what is wrong (never a crash)."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

import pipeinfer
from pipeinfer import _core


def _rewrite(src, dst, *, arch=None, drop_tensor=None, kv_override=None, retype=None):
    """Copies a GGUF file, changing the architecture name, dropping a tensor, overriding keys, or
    declaring a tensor with another (unsupported) type."""
    r = gguf.GGUFReader(str(src))
    a = arch or r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), a)
    old_arch = r.fields["general.architecture"].contents()
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        new_name = name.replace(f"{old_arch}.", f"{a}.", 1) if name.startswith(f"{old_arch}.") else name
        if kv_override and new_name in kv_override:
            continue
        vt = field.types[0]
        if vt == gguf.GGUFValueType.ARRAY:
            w.add_key_value(new_name, field.contents(), vt, sub_type=field.types[-1])
        else:
            w.add_key_value(new_name, field.contents(), vt)
    for k, (v, vt) in (kv_override or {}).items():
        w.add_key_value(k, v, vt)
    for t in r.tensors:
        if t.name == drop_tensor:
            continue
        data = np.asarray(t.data)
        if retype and t.name == retype[0]:
            w.add_tensor(t.name, retype[2], raw_dtype=retype[1])
            continue
        w.add_tensor(t.name, data, raw_shape=list(reversed(t.shape.tolist())) if t.tensor_type != 0 else None,
                     raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_unsupported_architecture(tiny_model, tmp_path):
    src, _ = tiny_model("llama", "f32")
    dst = tmp_path / "phi.gguf"
    _rewrite(src, dst, arch="phi42")
    with pytest.raises(pipeinfer.UnsupportedError, match="architecture 'phi42' is not supported"):
        _core.Pipeline(str(dst))


def test_missing_tensor(tiny_model, tmp_path):
    src, _ = tiny_model("llama", "f32")
    dst = tmp_path / "missing.gguf"
    _rewrite(src, dst, drop_tensor="blk.1.ffn_down.weight")
    with pytest.raises(pipeinfer.ModelError, match="blk.1.ffn_down.weight"):
        _core.Pipeline(str(dst))


def test_inconsistent_head_counts(tiny_model, tmp_path):
    src, _ = tiny_model("llama", "f32")
    dst = tmp_path / "heads.gguf"
    _rewrite(src, dst, kv_override={"llama.attention.head_count_kv": (3, gguf.GGUFValueType.UINT32)})
    with pytest.raises(pipeinfer.ModelError, match="head_count_kv"):
        _core.Pipeline(str(dst))


def test_unsupported_weight_type(tiny_model, tmp_path):
    """A weight in a quant type this build cannot multiply (an i-quant) is named with its type."""
    src, _ = tiny_model("llama", "f32")
    dst = tmp_path / "iq.gguf"
    # blk.0.ffn_up.weight is 160 rows of 64 values; as iq4_nl (32 values in 18 bytes) that is 160 x 36 bytes
    fake = np.zeros((160, 36), np.uint8)
    _rewrite(src, dst, retype=("blk.0.ffn_up.weight", gguf.GGMLQuantizationType.IQ4_NL, fake))
    with pytest.raises(pipeinfer.UnsupportedError, match="blk.0.ffn_up.weight.*iq4_nl"):
        _core.Pipeline(str(dst))
