"""Field map of a GGUF file for mutation tests: where every count, length, type id, offset and
section boundary sits, so a test can change one of them and nothing else.

    fields = walk(blob)   # list of Field(kind, what, offset, size)

Kinds: "n_tensors", "n_kv" (header counts); "key_len", "str_len" (u64 string lengths: keys, string
values, the first elements of string arrays, tensor names); "value_type", "elem_type" (KV value and
array element type ids, u32); "arr_count" (u64); "value" (a scalar value, `what` is its key);
"n_dims" (u32); "dim" (i64 ne[j]); "tensor_type" (u32); "tensor_offset" (u64); and zero-size markers
"kv_end", "tensor_info_end", "data_start", "tensor_data" (start of each tensor's bytes). Assumes a
well-formed little-endian v2/v3 file (it is walked before it is broken).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
T_STR, T_ARR = 8, 9
STRING_ELEMENTS_MAPPED = 4  # string array elements whose lengths are listed (the first few)


@dataclass(frozen=True)
class Field:
    kind: str
    what: str     # the key or tensor name it belongs to
    offset: int
    size: int     # bytes (0 for markers)


def walk(blob: bytes) -> List[Field]:
    out: List[Field] = []
    pos = 4 + 4

    def u32(at: int) -> int:
        return struct.unpack_from("<I", blob, at)[0]

    def u64(at: int) -> int:
        return struct.unpack_from("<Q", blob, at)[0]

    n_tensors, n_kv = u64(pos), u64(pos + 8)
    out += [Field("n_tensors", "", pos, 8), Field("n_kv", "", pos + 8, 8)]
    pos += 16
    alignment = 32
    for _ in range(n_kv):
        klen = u64(pos)
        key = blob[pos + 8 : pos + 8 + klen].decode("utf-8", "replace")
        out.append(Field("key_len", key, pos, 8))
        pos += 8 + klen
        vtype = u32(pos)
        out.append(Field("value_type", key, pos, 4))
        pos += 4
        if vtype == T_STR:
            out.append(Field("str_len", key, pos, 8))
            pos += 8 + u64(pos)
        elif vtype == T_ARR:
            etype, count = u32(pos), u64(pos + 4)
            out += [Field("elem_type", key, pos, 4), Field("arr_count", key, pos + 4, 8)]
            pos += 12
            if etype == T_STR:
                for i in range(count):
                    if i < STRING_ELEMENTS_MAPPED:
                        out.append(Field("str_len", f"{key}[{i}]", pos, 8))
                    pos += 8 + u64(pos)
            else:
                pos += _SCALAR[etype] * count
        else:
            if key == "general.alignment":
                alignment = u32(pos)
            out.append(Field("value", key, pos, _SCALAR[vtype]))
            pos += _SCALAR[vtype]
        out.append(Field("kv_end", key, pos, 0))
    offsets = []
    for _ in range(n_tensors):
        nlen = u64(pos)
        name = blob[pos + 8 : pos + 8 + nlen].decode("utf-8", "replace")
        out.append(Field("str_len", name, pos, 8))
        pos += 8 + nlen
        n_dims = u32(pos)
        out.append(Field("n_dims", name, pos, 4))
        pos += 4
        for _ in range(n_dims):
            out.append(Field("dim", name, pos, 8))
            pos += 8
        out.append(Field("tensor_type", name, pos, 4))
        out.append(Field("tensor_offset", name, pos + 4, 8))
        offsets.append((name, u64(pos + 4)))
        pos += 12
        out.append(Field("tensor_info_end", name, pos, 0))
    data = (pos + alignment - 1) // alignment * alignment
    out.append(Field("data_start", "", data, 0))
    for name, off in offsets:
        out.append(Field("tensor_data", name, data + off, 0))
    return out


def patch(blob: bytes, f: Field, value: int) -> bytes:
    """blob with field f set to `value` (little-endian, f.size bytes, wrapped to that width)."""
    fmt = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[f.size]
    b = bytearray(blob)
    struct.pack_into(fmt, b, f.offset, value & ((1 << (8 * f.size)) - 1))
    return bytes(b)


def read(blob: bytes, f: Field) -> int:
    return struct.unpack_from({1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[f.size], blob, f.offset)[0]
