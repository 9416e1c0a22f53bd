"""Malformed GGUF files are rejected with a GGUFError naming the field, never a crash or a huge allocation.

Cases follow shared/reference/reliability.md §1.6 and §5.1 items 1-15. Every file is built in memory by
tests/support/gguf_bytes.py and parsed with GGUFFile.from_bytes.
"""
from __future__ import annotations

import random
import resource
import struct

import pytest

import gguf_bytes as gb
from gguf_bytes import (
    GGML_F32, GGML_Q4_0, GGML_Q4_K, GGML_Q8_0, T_ARR, T_BOOL, T_F32, T_I32, T_STR, T_U8, T_U32, T_U64,
)
import pipeinfer
from pipeinfer import _core

U64_MAX = 2**64 - 1
I64_MAX = 2**63 - 1


def meta_file(*entries: bytes, tail: bytes = b"", n_kv: int | None = None) -> bytes:
    """A file with only metadata: header + raw KV entries + tail bytes."""
    return gb.header(0, len(entries) if n_kv is None else n_kv) + b"".join(entries) + tail


def one_tensor(dims, type_id=GGML_F32, data=bytes(256), offset=None, n_dims=None, name="w") -> bytes:
    return gb.GGUFBuilder().tensor(name, dims, type_id, data, offset=offset, n_dims=n_dims).build()


def valid_file() -> bytes:
    b = gb.GGUFBuilder()
    b.kv_str("general.architecture", "llama")
    b.kv("llama.block_count", T_U32, 2)
    b.kv("tokenizer.ggml.tokens", T_ARR, ["a", "bb", "ccc"], T_STR)
    b.kv("tokenizer.ggml.scores", T_ARR, [0.0, -1.0, -2.0], T_F32)
    b.tensor("token_embd.weight", [32, 3], GGML_Q8_0, bytes(range(102)))
    b.tensor("output_norm.weight", [32], GGML_F32, bytes(128))
    return b.build()


def _cut_in_second_tensor_type() -> bytes:
    blob = valid_file()
    type_at = blob.index(b"output_norm.weight") + 18 + 4 + 8  # name, n_dims, ne[0]
    return blob[: type_at + 2]


def parse(blob: bytes):
    return _core.GGUFFile.from_bytes(blob)


# (id, blob builder, regex the message must match)
CASES = [
    # ---- header -------------------------------------------------------------------------------
    ("empty-file", lambda: b"", r"truncated header: the file is 0 bytes, a GGUF header needs 24"),
    ("3-byte-file", lambda: b"GGU", r"truncated header: the file is 3 bytes"),
    ("header-23-bytes", lambda: gb.header(0, 0)[:23], r"truncated header: the file is 23 bytes"),
    ("magic-GGML", lambda: b"GGML" + bytes(60), r"not a GGUF file: magic at offset 0 is 'GGML', expected 'GGUF'"),
    ("magic-random", lambda: b"\x00\x01\x7f\xff" + bytes(60), r"not a GGUF file: magic .*'\\x00\\x01\\x7f\\xff'"),
    (
        "byte-swapped-magic",
        lambda: b"FUGG" + struct.pack(">IQQ", 3, 0, 0),
        r"byte-swapped 'GGUF'\): endianness mismatch \(big-endian file\?\)",
    ),
    (
        "byte-swapped-version",
        lambda: b"GGUF" + struct.pack(">IQQ", 3, 0, 0),
        r"version 0x03000000 at offset 4 looks byte-swapped: endianness mismatch \(big-endian file\?\)",
    ),
    ("version-0", lambda: gb.header(0, 0, version=0), r"invalid GGUF version 0 .*supported versions are 2 and 3"),
    ("version-1", lambda: gb.header(0, 0, version=1), r"version 1 is obsolete .*supported versions are 2 and 3"),
    ("version-4", lambda: gb.header(0, 0, version=4), r"unsupported GGUF version 4; supported versions are 2 and 3"),
    (
        "n_tensors-2^64-1",
        lambda: gb.header(U64_MAX, 0) + bytes(40),
        r"n_tensors 18446744073709551615 at offset 8 cannot fit in the 40 bytes after the header",
    ),
    (
        "n_kv-2^63",
        lambda: gb.header(0, 2**63) + bytes(40),
        r"n_kv 9223372036854775808 at offset 16 cannot fit in the 40 bytes after the header",
    ),
    ("n_kv-1-nothing-after-header", lambda: gb.header(0, 1), r"n_kv 1 at offset 16 cannot fit in the 0 bytes"),
    ("counts-together-too-big", lambda: gb.header(1, 2) + bytes(40), r"n_tensors 1 and n_kv 2 cannot fit in the 40"),
    # ---- metadata keys ------------------------------------------------------------------------
    (
        "key-length-2^64-1",
        lambda: meta_file(gb.u64(U64_MAX), tail=bytes(40)),
        r"KV #0 key at offset 24: string length 18446744073709551615 exceeds the 1 GiB limit",
    ),
    (
        "key-length-past-end",
        lambda: meta_file(gb.u64(1000) + b"abc", tail=bytes(20)),
        r"truncated file: KV #0 key at offset 24: string length 1000 exceeds the 23 bytes remaining",
    ),
    ("empty-key", lambda: meta_file(gb.kv("", T_U8, 1), tail=bytes(8)), r"KV #0 at offset 24: empty key"),
    ("non-utf8-key", lambda: meta_file(gb.kv(b"bad\xff", T_U8, 1)), r"KV #0 at offset 24: key is not valid UTF-8"),
    ("overlong-utf8-key", lambda: meta_file(gb.kv(b"k\xc0\xaf", T_U8, 1)), r"KV #0 .*key is not valid UTF-8"),
    (
        "duplicate-key",
        lambda: meta_file(gb.kv("a.b", T_U8, 1), gb.kv("a.b", T_U32, 2)),
        r"KV #1 'a\.b' at offset 40: duplicate key \(first defined by KV #0\)",
    ),
    # ---- metadata values ----------------------------------------------------------------------
    (
        "value-type-13",
        lambda: meta_file(gb.kv("k", 13, raw=bytes(8))),
        r"KV #0 'k' at offset 33: unknown value type 13 \(expected 0\.\.12\)",
    ),
    (
        "value-type-0xffffffff",
        lambda: meta_file(gb.kv("k", 0xFFFFFFFF, raw=bytes(8))),
        r"KV #0 'k' at offset 33: unknown value type 4294967295",
    ),
    (
        "array-of-arrays",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(T_ARR) + gb.u64(1) + gb.u32(T_U8) + gb.u64(1) + b"\0")),
        r"KV #0 'k' at offset 37: arrays of arrays are not supported",
    ),
    (
        "array-element-type-13",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(13) + gb.u64(1) + bytes(8))),
        r"KV #0 'k' at offset 37: unknown array element type 13",
    ),
    (
        "array-count-2^40-tiny-file",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(T_U8) + gb.u64(2**40) + bytes(16))),
        r"KV #0 'k' at offset 41: array of 1099511627776 u8 elements \(1 bytes each\) does not fit in the 16 bytes",
    ),
    (
        "array-count-times-size-overflows",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(T_U64) + gb.u64(2**62) + bytes(16))),
        r"array of 4611686018427387904 u64 elements \(8 bytes each\) does not fit",
    ),
    (
        "string-1GiB-tiny-file",
        lambda: meta_file(gb.kv("k", T_STR, raw=gb.u64(2**30) + b"abc")),
        r"KV #0 'k' at offset 37: string length 1073741824 exceeds the 3 bytes remaining",
    ),
    (
        "string-over-1GiB",
        lambda: meta_file(gb.kv("k", T_STR, raw=gb.u64(2**30 + 1) + b"abc")),
        r"KV #0 'k' at offset 37: string length 1073741825 exceeds the 1 GiB limit",
    ),
    (
        "string-array-count-too-large",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(T_STR) + gb.u64(100) + gb.gguf_str("a") * 3)),
        r"KV #0 'k' at offset 41: string array count 100 needs at least 8 bytes per element, only 27 bytes remain",
    ),
    (
        "string-array-element-2^40",
        lambda: meta_file(
            gb.kv("k", T_ARR, raw=gb.u32(T_STR) + gb.u64(2) + gb.gguf_str("a") + gb.u64(2**40) + bytes(8))
        ),
        r"KV #0 'k' element 1 at offset 58: string length 1099511627776 exceeds the 1 GiB limit",
    ),
    (
        "bool-value-2",
        lambda: meta_file(gb.kv("k", T_BOOL, raw=b"\x02")),
        r"KV #0 'k' at offset 37: bool must be 0 or 1, found 2",
    ),
    (
        "bool-array-value-7",
        lambda: meta_file(gb.kv("k", T_ARR, raw=gb.u32(T_BOOL) + gb.u64(3) + b"\x01\x07\x00")),
        r"KV #0 'k' element 1 at offset 50: bool must be 0 or 1, found 7",
    ),
    (
        "truncated-in-string-value",
        lambda: meta_file(gb.kv("k", T_STR, "x" * 100))[:64],
        r"truncated file: KV #0 'k' at offset 37: string length 100 exceeds the 19 bytes remaining",
    ),
    (
        "truncated-in-u64-value",
        lambda: meta_file(gb.kv("a", T_STR, "x" * 50), gb.kv("b", T_U64, 5))[:-3],
        r"truncated file: KV #1 'b' needs 8 bytes at offset 108, only 5 remain",
    ),
    # ---- general.alignment --------------------------------------------------------------------
    (
        "alignment-0",
        lambda: meta_file(gb.kv("general.alignment", T_U32, 0)),
        r"'general\.alignment': alignment must be a power of two in \[1, 1048576\], found 0",
    ),
    ("alignment-13", lambda: meta_file(gb.kv("general.alignment", T_U32, 13)), r"power of two .*found 13"),
    ("alignment-2^31", lambda: meta_file(gb.kv("general.alignment", T_U32, 2**31)), r"power of two .*found 2147483648"),
    (
        "alignment-typed-i32",
        lambda: meta_file(gb.kv("general.alignment", T_I32, 32)),
        r"KV #0 'general\.alignment' at offset 49: expected type u32, found i32",
    ),
    ("alignment-typed-u64", lambda: meta_file(gb.kv("general.alignment", T_U64, 32)), r"expected type u32, found u64"),
    # ---- tensor infos -------------------------------------------------------------------------
    (
        "tensor-name-64-bytes",
        lambda: one_tensor([32], name="n" * 64),
        r"tensor #0 at offset 24: name is 64 bytes long, the limit is 63",
    ),
    ("tensor-name-empty", lambda: one_tensor([32], name=""), r"tensor #0 at offset 24: empty tensor name"),
    (
        "tensor-name-non-utf8",
        lambda: one_tensor([32], name=b"w\xfe"),
        r"tensor #0 at offset 24: name is not valid UTF-8",
    ),
    (
        "tensor-name-duplicate",
        lambda: gb.GGUFBuilder().tensor("w", [8], GGML_F32, bytes(32)).tensor("w", [8], GGML_F32, bytes(32)).build(),
        r"tensor 'w' \(#1\) at offset 57: duplicate tensor name \(first defined by tensor #0\)",
    ),
    ("n_dims-0", lambda: one_tensor([], n_dims=0), r"tensor 'w' at offset 33: n_dims must be in 1\.\.4, found 0"),
    ("n_dims-5", lambda: one_tensor([32, 1, 1, 1, 1]), r"n_dims must be in 1\.\.4, found 5"),
    ("n_dims-2^32-1", lambda: one_tensor([32], n_dims=2**32 - 1), r"n_dims must be in 1\.\.4, found 4294967295"),
    ("negative-dim", lambda: one_tensor([32, -1]), r"tensor 'w' at offset 45: dimension 1 is negative \(-1\)"),
    (
        "dims-int64max-2",
        lambda: one_tensor([I64_MAX, 2]),
        r"element count of shape \[9223372036854775807, 2\] overflows int64",
    ),
    (
        "bytes-overflow-size_t",
        lambda: one_tensor([2**62]),
        r"byte size of shape \[4611686018427387904\] in type f32 overflows size_t",
    ),
    (
        "bytes-overflow-after-padding",
        lambda: one_tensor([2**62 - 1]),
        r"byte size 18446744073709551612 of shape \[4611686018427387903\] overflows size_t after padding",
    ),
    (
        "bytes-overflow-after-padding-3d",
        lambda: one_tensor([4, 2**30 - 1, 2**30 + 1]),
        r"byte size 18446744073709551600 .* overflows size_t after padding to the alignment 32",
    ),
    (
        "q4_0-ne0-not-multiple",
        lambda: one_tensor([33, 2], GGML_Q4_0),
        r"tensor 'w': type q4_0 needs a row length \(ne0\) that is a multiple of 32, found 33",
    ),
    ("q4_k-ne0-not-multiple", lambda: one_tensor([32], GGML_Q4_K), r"type q4_k needs .*multiple of 256, found 32"),
    ("type-id-40", lambda: one_tensor([32], 40), r"tensor 'w' at offset 45: unknown or removed ggml type id 40"),
    ("type-id-4-removed", lambda: one_tensor([32], 4), r"unknown or removed ggml type id 4$"),
    ("type-id-negative", lambda: one_tensor([32], 0xFFFFFFFF), r"unknown or removed ggml type id 4294967295"),
    (
        "offset-2^64-1",
        lambda: one_tensor([32], offset=U64_MAX, data=b""),
        r"tensor 'w' at offset 49: data offset 18446744073709551615 is not a multiple of the alignment 32",
    ),
    (
        "offset-huge-aligned",
        lambda: one_tensor([32], offset=2**64 - 32, data=b""),
        r"tensor 'w': data of 128 bytes at data-section offset 18446744073709551584 extends past the end of the file",
    ),
    ("offset-misaligned", lambda: one_tensor([8], offset=16), r"data offset 16 is not a multiple of the alignment 32"),
    (
        "overlapping-tensors",
        lambda: gb.GGUFBuilder()
        .tensor("b", [8], GGML_F32, bytes(32), offset=64)
        .tensor("a", [32], GGML_F32, bytes(128), offset=0)
        .build(),
        r"tensor 'b': data at data-section offset 64, expected 0 \(tensors are stored one after another",
    ),
    (
        "overlap-in-declaration-order",
        lambda: gb.GGUFBuilder()
        .tensor("a", [32], GGML_F32, bytes(128), offset=0)
        .tensor("b", [8], GGML_F32, bytes(32), offset=64)
        .build(),
        r"tensor 'b': data at data-section offset 64, expected 128",
    ),
    (
        "bytes-after-the-last-tensor",
        lambda: one_tensor([8], data=bytes(32)) + bytes(32),
        r"32 bytes after the end of the last tensor's data",
    ),
    (
        "tensor-past-end",
        lambda: one_tensor([32], data=bytes(64)),
        r"tensor 'w': data of 128 bytes at data-section offset 0 extends past the end of the file",
    ),
    (
        "truncated-by-one-byte",
        lambda: valid_file()[:-1],
        r"tensor 'output_norm\.weight': data of 128 bytes .* extends past the end of the file",
    ),
    (
        "truncated-before-data-section",
        lambda: one_tensor([0], data=b"", name="e")[:60],
        r"truncated file: the data section starts at offset 64, past the end of the file \(60 bytes\)",
    ),
    (
        "truncated-in-tensor-infos",
        lambda: _cut_in_second_tensor_type(),
        r"truncated file: tensor 'output_norm\.weight' type needs 4 bytes at offset \d+, only 2 remain",
    ),
]


@pytest.mark.parametrize("build, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_file_is_rejected(build, match):
    blob = build()
    with pytest.raises(pipeinfer.GGUFError, match=match):
        parse(blob)


def test_case_count():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


def test_gguf_error_is_a_value_error():
    assert issubclass(pipeinfer.GGUFError, ValueError)
    assert issubclass(pipeinfer.GGUFError, pipeinfer.PipeinferError)
    with pytest.raises(ValueError, match="<bytes>: truncated header"):
        parse(b"")


HUGE = [
    "n_tensors-2^64-1",
    "n_kv-2^63",
    "key-length-2^64-1",
    "array-count-2^40-tiny-file",
    "array-count-times-size-overflows",
    "string-1GiB-tiny-file",
    "string-array-count-too-large",
    "string-array-element-2^40",
    "bytes-overflow-after-padding",
]


@pytest.mark.parametrize("case_id", HUGE)
def test_huge_counts_allocate_nothing(case_id):
    build = {c[0]: c[1] for c in CASES}[case_id]
    blob = build()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for _ in range(3):
        with pytest.raises(pipeinfer.GGUFError):
            parse(blob)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024


def test_boundary_values_are_accepted():
    # The largest legal values next to the rejected ones above.
    b = gb.GGUFBuilder()
    b.kv("general.alignment", T_U32, 2**20)
    b.alignment = 2**20
    b.tensor("n" * 63, [32], GGML_F32, bytes(128))
    b.tensor("four", [32, 1, 1, 2], GGML_Q8_0, bytes(68))
    b.tensor("q4k", [256], GGML_Q4_K, bytes(144))
    f = parse(b.build())
    assert f.alignment == 2**20 and f.data_offset == 2**20
    assert [t["nbytes"] for t in f.tensors()] == [128, 68, 144]
    assert [t["offset"] - f.data_offset for t in f.tensors()] == [0, 2**20, 2**21]


def test_missing_or_non_regular_path(tmp_path):
    with pytest.raises(pipeinfer.GGUFError, match=r"cannot open '.*nope\.gguf'"):
        _core.GGUFFile(str(tmp_path / "nope.gguf"))
    with pytest.raises(pipeinfer.GGUFError, match="is a directory, not a regular file"):
        _core.GGUFFile(str(tmp_path))
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(pipeinfer.GGUFError, match=r"empty\.gguf: truncated header: the file is 0 bytes"):
        _core.GGUFFile(str(empty))


def test_every_truncation_is_rejected_cleanly():
    blob = valid_file()
    assert parse(blob).tensors()[1]["name"] == "output_norm.weight"
    for n in range(len(blob)):
        with pytest.raises(pipeinfer.GGUFError):
            parse(blob[:n])


def test_random_corruption_never_crashes():
    # Seeded byte flips over a valid file: each result either parses or raises GGUFError.
    blob = valid_file()
    rng = random.Random(1234)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        mutated = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(mutated))
            mutated[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        try:
            f = parse(bytes(mutated))
        except pipeinfer.GGUFError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
            f.metadata()
            for t in f.tensors():
                assert t["offset"] + t["nbytes"] <= f.file_size
                assert len(f.tensor_data(t["name"])) == t["nbytes"]
    assert outcomes["error"] > 0 and outcomes["ok"] > 0


@pytest.mark.parametrize(
    "field, match",
    [("n_kv", r"KV #0 at offset 24: empty key"), ("n_tensors", r"tensor #0 at offset 24: empty tensor name")],
)
def test_counts_that_fit_the_file_reserve_little(field, match):
    # A 16 MiB file whose count is the largest the bytes allow: the reader must not reserve
    # count × sizeof(entry) (several times the file size) before reading the first entry.
    body = 16 << 20
    n = body // 14 if field == "n_kv" else body // 33
    blob = (gb.header(0, n) if field == "n_kv" else gb.header(n, 0)) + bytes(body)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(pipeinfer.GGUFError, match=match):
        parse(blob)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024
