"""Test helper: reads the metadata of a GGUF file with gguf-py's GGUFReader and converts it to the plain
mapping that `pipeinfer.tokenizer.Tokenizer.from_metadata` takes (and that the C++ binding
`_core.GGUFFile(path).metadata()` produces): GGUF key -> value, where strings are str, integers int,
floats float, bools bool, numeric arrays numpy arrays and string arrays list[str].

It owns only this conversion; it must not be imported by library code (gguf-py is a test dependency)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType

_INT_TYPES = {
    GGUFValueType.UINT8,
    GGUFValueType.INT8,
    GGUFValueType.UINT16,
    GGUFValueType.INT16,
    GGUFValueType.UINT32,
    GGUFValueType.INT32,
    GGUFValueType.UINT64,
    GGUFValueType.INT64,
}
_FLOAT_TYPES = {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64}


def _scalar(field, vtype: GGUFValueType, part_index: int) -> Any:
    part = field.parts[part_index]
    if vtype == GGUFValueType.STRING:
        return bytes(part).decode("utf-8")
    if vtype == GGUFValueType.BOOL:
        return bool(part[0])
    if vtype in _INT_TYPES:
        return int(part[0])
    if vtype in _FLOAT_TYPES:
        return float(part[0])
    raise ValueError(f"GGUF key '{field.name}': unsupported value type {vtype!r}")


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Returns the metadata of the GGUF file at `path` as a key -> value dict (no tensors).

    Args:
        path: path of a GGUF file.

    Returns:
        dict with the shape described in the module docstring. The pseudo-keys GGUF.version,
        GGUF.tensor_count and GGUF.kv_count that gguf-py adds are left out.
    """
    reader = GGUFReader(str(path), "r")
    meta: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        if vtype != GGUFValueType.ARRAY:
            meta[name] = _scalar(field, vtype, field.data[0])
            continue
        if not field.data:
            meta[name] = []
            continue
        elem = field.types[-1]
        if elem == GGUFValueType.STRING:
            meta[name] = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        elif elem == GGUFValueType.ARRAY:
            raise ValueError(f"GGUF key '{name}': nested arrays are not supported by this adapter")
        else:
            arr = np.concatenate([np.asarray(field.parts[i]) for i in field.data])
            meta[name] = arr.astype(bool) if elem == GGUFValueType.BOOL else arr.copy()
    return meta
