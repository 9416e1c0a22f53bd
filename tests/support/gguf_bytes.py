"""Raw little-endian GGUF byte writer for tests: builds well-formed and deliberately malformed files.

Nothing here validates anything: every count, length, type id and offset can be set to any value, so
tests can describe a corrupt file field by field. Layout (ggml docs/gguf.md):

    u32 magic | u32 version | u64 n_tensors | u64 n_kv | KVs | tensor infos | pad | data

Typical use::

    b = GGUFBuilder()
    b.kv_u32("general.alignment", 32)
    b.kv_str("general.architecture", "llama")
    b.tensor("w", [32, 2], GGML_F32, data=bytes(256))
    blob = b.build()

Low-level helpers (``u32``, ``u64``, ``gguf_str``, ``kv``, ``tensor_info``) return the bytes of one
field, for files that ``GGUFBuilder`` cannot describe.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Sequence

# GGUF metadata value types.
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)

# ggml tensor type ids used by the tests (ggml.h).
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1 = 0, 1, 2, 3
GGML_Q8_0 = 8
GGML_Q4_K = 12

_SCALAR_FMT = {
    T_U8: "<B", T_I8: "<b", T_U16: "<H", T_I16: "<h", T_U32: "<I", T_I32: "<i",
    T_F32: "<f", T_BOOL: "<B", T_U64: "<Q", T_I64: "<q", T_F64: "<d",
}

MAGIC = b"GGUF"


def u8(v: int) -> bytes:
    return struct.pack("<B", v)


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def gguf_str(s: str | bytes, length: int | None = None) -> bytes:
    """A GGUF string: u64 length (default: the real length) followed by the bytes."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return u64(len(b) if length is None else length) + b


def header(n_tensors: int, n_kv: int, version: int = 3, magic: bytes = MAGIC) -> bytes:
    return magic + u32(version) + u64(n_tensors) + u64(n_kv)


def value(vtype: int, v: Any, elem_type: int | None = None) -> bytes:
    """The payload of a value of type vtype (no type tag). Arrays need elem_type; v is a sequence."""
    if vtype == T_STR:
        return gguf_str(v)
    if vtype == T_ARR:
        assert elem_type is not None
        out = u32(elem_type) + u64(len(v))
        return out + b"".join(value(elem_type, x) for x in v)
    return struct.pack(_SCALAR_FMT[vtype], v)


def kv(key: str | bytes, vtype: int, v: Any = None, elem_type: int | None = None, raw: bytes | None = None) -> bytes:
    """One key/value entry; raw replaces the encoded payload (for malformed values)."""
    payload = raw if raw is not None else value(vtype, v, elem_type)
    return gguf_str(key) + u32(vtype) + payload


def tensor_info(name: str | bytes, dims: Sequence[int], type_id: int, offset: int, n_dims: int | None = None) -> bytes:
    """One tensor info; dims are written as u64 (negative values wrap); n_dims overrides the count."""
    out = gguf_str(name) + u32(len(dims) if n_dims is None else n_dims)
    out += b"".join(u64(d) for d in dims)
    return out + u32(type_id) + u64(offset)


def pad_to(n: int, align: int) -> int:
    return (n + align - 1) // align * align


@dataclass
class GGUFBuilder:
    """Collects KVs, tensor infos and data, and lays them out like a GGUF writer would.

    Any field can be overridden: n_kv / n_tensors in the header, version, magic; tensor offsets
    are computed (aligned, declaration order) unless given explicitly.
    """

    version: int = 3
    magic: bytes = MAGIC
    alignment: int = 32
    n_kv: int | None = None
    n_tensors: int | None = None
    kvs: list[bytes] = field(default_factory=list)
    infos: list[tuple[bytes, list[int], int, int | None, int | None]] = field(default_factory=list)
    blobs: list[bytes] = field(default_factory=list)

    # metadata ---------------------------------------------------------------------------------
    def kv_raw(self, entry: bytes) -> "GGUFBuilder":
        self.kvs.append(entry)
        return self

    def kv(self, key: str | bytes, vtype: int, v: Any = None, elem_type: int | None = None) -> "GGUFBuilder":
        return self.kv_raw(kv(key, vtype, v, elem_type))

    def kv_u32(self, key: str, v: int) -> "GGUFBuilder":
        if key == "general.alignment":
            self.alignment = v
        return self.kv(key, T_U32, v)

    def kv_str(self, key: str, v: str) -> "GGUFBuilder":
        return self.kv(key, T_STR, v)

    # tensors ----------------------------------------------------------------------------------
    def tensor(
        self,
        name: str | bytes,
        dims: Sequence[int],
        type_id: int,
        data: bytes = b"",
        offset: int | None = None,
        n_dims: int | None = None,
    ) -> "GGUFBuilder":
        """Adds a tensor info and its data blob; offset None = next aligned position in the data."""
        nm = name.encode("utf-8") if isinstance(name, str) else name
        self.infos.append((nm, list(dims), type_id, offset, n_dims))
        self.blobs.append(data)
        return self

    # layout -----------------------------------------------------------------------------------
    def build(self) -> bytes:
        align = self.alignment if self.alignment > 0 and (self.alignment & (self.alignment - 1)) == 0 else 32
        # data section: each blob at the next aligned offset (or at its explicit offset)
        offsets: list[int] = []
        data = bytearray()
        for (_, _, _, off, _), blob in zip(self.infos, self.blobs):
            if off is None:
                data += bytes(pad_to(len(data), align) - len(data))
                offsets.append(len(data))
                data += blob
            else:
                offsets.append(off)
                if blob:
                    end = off + len(blob)
                    if len(data) < end:
                        data += bytes(end - len(data))
                    data[off:end] = blob
        out = bytearray(
            header(
                len(self.infos) if self.n_tensors is None else self.n_tensors,
                len(self.kvs) if self.n_kv is None else self.n_kv,
                self.version,
                self.magic,
            )
        )
        for e in self.kvs:
            out += e
        for (nm, dims, type_id, _, n_dims), off in zip(self.infos, offsets):
            out += tensor_info(nm, dims, type_id, off, n_dims)
        if self.infos:
            out += bytes(pad_to(len(out), align) - len(out))
            out += data
        return bytes(out)
