"""Copies a GGUF file with targeted changes, for tests of files that are broken in one way: keys
dropped, replaced or added, tensors dropped, added or replaced (raw bytes and type kept as given).
Uses the gguf package's reader and writer; every other key and tensor is copied unchanged."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

import gguf
import numpy as np

VT = gguf.GGUFValueType


def rewrite(src: Path, dst: Path, *, drop_keys: Iterable[str] = (), set_keys: Optional[Dict[str, Tuple[Any, Any]]] = None,
            drop_tensors: Iterable[str] = (), add_tensors: Optional[Dict[str, Tuple[np.ndarray, Any]]] = None) -> Path:
    """set_keys: key -> (value, GGUFValueType) or (list, (ARRAY, element type)); add_tensors: name ->
    (payload, raw dtype or None), replacing a tensor of that name if the file has one."""
    r = gguf.GGUFReader(str(src))
    arch = r.fields["general.architecture"].contents()
    w = gguf.GGUFWriter(str(dst), arch)
    set_keys = dict(set_keys or {})
    add_tensors = dict(add_tensors or {})
    drop_keys, drop_tensors = set(drop_keys), set(drop_tensors)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in drop_keys or name in set_keys:
            continue
        vt = field.types[0]
        if vt == VT.ARRAY:
            w.add_key_value(name, field.contents(), vt, sub_type=field.types[-1])
        else:
            w.add_key_value(name, field.contents(), vt)
    for k, (v, vt) in set_keys.items():
        if isinstance(vt, tuple):
            w.add_key_value(k, v, vt[0], sub_type=vt[1])
        else:
            w.add_key_value(k, v, vt)
    for t in r.tensors:
        if t.name in drop_tensors or t.name in add_tensors:
            continue
        w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed(t.shape.tolist())) if t.tensor_type != 0 else None,
                     raw_dtype=t.tensor_type)
    for name, (payload, raw) in add_tensors.items():
        w.add_tensor(name, payload, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(dst)
