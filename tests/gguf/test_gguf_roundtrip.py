"""Files written by gguf-py's GGUFWriter (and by our raw byte writer) read back identically."""
from __future__ import annotations

import gc
from pathlib import Path

import gguf
import numpy as np
import pytest

import gguf_bytes as gb
import pipeinfer
from pipeinfer import _core

VT = gguf.GGUFValueType
QT = gguf.GGMLQuantizationType

# key -> (value type, value) for every scalar type
SCALARS = {
    "t.u8": (VT.UINT8, 250),
    "t.i8": (VT.INT8, -100),
    "t.u16": (VT.UINT16, 65000),
    "t.i16": (VT.INT16, -32000),
    "t.u32": (VT.UINT32, 4_000_000_000),
    "t.i32": (VT.INT32, -2_000_000_000),
    "t.f32": (VT.FLOAT32, 0.15625),
    "t.bool": (VT.BOOL, True),
    "t.str": (VT.STRING, "héllo wörld ✓"),
    "t.u64": (VT.UINT64, 2**64 - 2),
    "t.i64": (VT.INT64, -(2**62)),
    "t.f64": (VT.FLOAT64, 1.0 / 3.0),
}
# key -> (element type, values, numpy dtype)
ARRAYS = {
    "a.u8": (VT.UINT8, [0, 1, 255], np.uint8),
    "a.i8": (VT.INT8, [-128, 0, 127], np.int8),
    "a.u16": (VT.UINT16, [0, 65535], np.uint16),
    "a.i16": (VT.INT16, [-32768, 32767], np.int16),
    "a.u32": (VT.UINT32, [0, 2**32 - 1], np.uint32),
    "a.i32": (VT.INT32, [-(2**31), 2**31 - 1, 7], np.int32),
    "a.f32": (VT.FLOAT32, [0.5, -1.25, 3.0], np.float32),
    "a.bool": (VT.BOOL, [True, False, True], np.bool_),
    "a.u64": (VT.UINT64, [0, 2**64 - 1], np.uint64),
    "a.i64": (VT.INT64, [-(2**63), 2**63 - 1], np.int64),
    "a.f64": (VT.FLOAT64, [0.1, -2.5e10], np.float64),
    "a.str": (VT.STRING, ["a", "", "ünïcode", "x" * 300], None),
}

TYPE_SPELLING = {
    VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32", VT.INT32: "i32",
    VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "str", VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64",
}


def _tensors(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, QT | None, str, list[int]]]:
    """name -> (array written, raw dtype, expected type name, expected ne shape)."""
    f32 = rng.standard_normal((3, 5, 64)).astype(np.float32)
    f16 = rng.standard_normal((4, 48)).astype(np.float16)
    q8 = rng.integers(0, 256, size=(6, 2 * 34), dtype=np.uint8)  # 6 rows of 64 q8_0 values
    vec = rng.standard_normal(7).astype(np.float32)  # 28 bytes: exercises padding
    return {
        "blk.0.f32": (f32, None, "f32", [64, 5, 3]),
        "blk.0.f16": (f16, None, "f16", [48, 4]),
        "blk.0.q8_0": (q8, QT.Q8_0, "q8_0", [64, 6]),
        "norm": (vec, None, "f32", [7]),
    }


def _write(path: Path, alignment: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "testarch")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, (vt, val) in SCALARS.items():
        w.add_key_value(key, val, vt)
    for key, (et, vals, _) in ARRAYS.items():
        w.add_key_value(key, vals, VT.ARRAY, sub_type=et)
    tensors = _tensors(rng)
    for name, (arr, raw, _, _) in tensors.items():
        w.add_tensor(name, arr, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors


def _check_metadata(f) -> None:
    meta = f.metadata()
    types = f.metadata_types()
    extra = ["general.alignment"] if "general.alignment" in meta else []
    assert list(meta) == ["general.architecture", *extra, *SCALARS, *ARRAYS]
    assert meta["general.architecture"] == "testarch"
    for key, (vt, val) in SCALARS.items():
        got = meta[key]
        assert types[key] == TYPE_SPELLING[vt]
        if vt == VT.FLOAT32:
            assert isinstance(got, float) and got == float(np.float32(val))
        elif vt == VT.BOOL:
            assert got is val
        else:
            assert type(got) is type(val) and got == val, key
    for key, (et, vals, dtype) in ARRAYS.items():
        got = meta[key]
        assert types[key] == f"arr[{TYPE_SPELLING[et]},{len(vals)}]"
        if dtype is None:
            assert got == vals
        else:
            assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype), key
            np.testing.assert_array_equal(got, np.array(vals, dtype=dtype))


def _check_tensors(f, tensors, alignment: int) -> None:
    table = f.tensors()
    assert [t["name"] for t in table] == list(tensors)
    for t in table:
        arr, _, tname, shape = tensors[t["name"]]
        assert t["type"] == tname
        assert t["type_id"] == int(QT[tname.upper()])
        assert t["shape"] == shape
        assert t["nbytes"] == arr.nbytes
        assert t["offset"] >= f.data_offset and (t["offset"] - f.data_offset) % alignment == 0
        data = f.tensor_data(t["name"])
        assert data.dtype == np.uint8 and data.shape == (arr.nbytes,)
        assert data.tobytes() == arr.tobytes()


def test_writer_round_trip(tmp_path):
    path = tmp_path / "rt.gguf"
    tensors = _write(path)
    f = _core.GGUFFile(str(path))
    assert f.version == 3
    assert f.alignment == 32
    assert f.path == str(path)
    assert f.file_size == path.stat().st_size
    assert f.data_offset % 32 == 0
    _check_metadata(f)
    _check_tensors(f, tensors, 32)


def test_agrees_with_gguf_py_reader(tmp_path):
    path = tmp_path / "rt.gguf"
    _write(path)
    ref = gguf.GGUFReader(str(path))
    f = _core.GGUFFile(path)  # os.PathLike accepted
    assert f.data_offset == ref.data_offset
    assert len(f.tensors()) == len(ref.tensors) == 4
    for ours, theirs in zip(f.tensors(), ref.tensors):
        assert ours["name"] == theirs.name
        assert ours["offset"] == theirs.data_offset
        assert ours["nbytes"] == theirs.n_bytes
        assert ours["shape"] == [int(d) for d in theirs.shape]


def test_custom_alignment(tmp_path):
    path = tmp_path / "al.gguf"
    tensors = _write(path, alignment=256)
    f = _core.GGUFFile(str(path))
    assert f.alignment == 256
    assert f.metadata()["general.alignment"] == 256
    assert f.data_offset % 256 == 0
    _check_metadata(f)
    _check_tensors(f, tensors, 256)


def test_from_bytes_matches_path_and_refuses_trailing_bytes(tmp_path):
    path = tmp_path / "b.gguf"
    tensors = _write(path)
    blob = path.read_bytes()
    f = _core.GGUFFile.from_bytes(blob)
    assert f.path is None
    assert f.file_size == len(blob)
    _check_metadata(f)
    _check_tensors(f, tensors, 32)
    # Writers pad the last tensor to the alignment and stop: bytes beyond that are a damaged file (or
    # a last tensor whose type or shape was changed to a smaller one), not something to ignore.
    with pytest.raises(pipeinfer.GGUFError, match=r"38 bytes after the end of the last tensor's data"):
        _core.GGUFFile.from_bytes(blob + b"\x00trailing bytes after the data section")
    # A GGUF image found at an offset inside a larger buffer parses once sliced out.
    outer = b"JUNK123" + blob
    g = _core.GGUFFile.from_bytes(outer[7:])
    assert g.tensors() == _core.GGUFFile(str(path)).tensors()


def test_tensor_view_is_read_only_and_keeps_file_alive(tmp_path):
    path = tmp_path / "v.gguf"
    tensors = _write(path)
    f = _core.GGUFFile(str(path))
    view = f.tensor_data("norm")
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0] = 1
    assert view.base is f
    del f
    gc.collect()
    assert view.tobytes() == tensors["norm"][0].tobytes()  # mapping still alive through view.base
    # from_bytes keeps its bytes object alive the same way
    view2 = _core.GGUFFile.from_bytes(path.read_bytes()).tensor_data("blk.0.f16")
    gc.collect()
    assert view2.tobytes() == tensors["blk.0.f16"][0].tobytes()


def test_missing_tensor_is_key_error(tmp_path):
    path = tmp_path / "m.gguf"
    _write(path)
    with pytest.raises(KeyError, match="nope"):
        _core.GGUFFile(str(path)).tensor_data("nope")


def test_v2_file_written_raw():
    b = gb.GGUFBuilder(version=2)
    b.kv_str("general.architecture", "llama")
    b.kv("x.count", gb.T_U64, 12345678901)
    b.kv("x.names", gb.T_ARR, ["a", "b"], gb.T_STR)
    data = bytes(range(256)) * 1
    b.tensor("w", [32, 2], gb.GGML_F32, data)
    b.tensor("q", [32], gb.GGML_Q8_0, bytes(range(34)))
    f = _core.GGUFFile.from_bytes(b.build())
    assert f.version == 2
    assert f.metadata() == {"general.architecture": "llama", "x.count": 12345678901, "x.names": ["a", "b"]}
    t = {x["name"]: x for x in f.tensors()}
    assert t["w"]["shape"] == [32, 2] and t["w"]["nbytes"] == 256
    assert t["q"]["type"] == "q8_0" and t["q"]["nbytes"] == 34
    assert f.tensor_data("w").tobytes() == data
    assert f.tensor_data("q").tobytes() == bytes(range(34))


def test_metadata_only_file():
    f = _core.GGUFFile.from_bytes(gb.GGUFBuilder().kv_str("general.architecture", "x").build())
    assert f.tensors() == [] and f.metadata() == {"general.architecture": "x"}


def test_gaps_and_other_orders_are_rejected_as_by_llama_cpp():
    # Dense packing in declaration order (llama.cpp's rule): otherwise one wrong type id or dimension
    # could make a tensor reinterpret another's bytes unnoticed.
    b = gb.GGUFBuilder()
    b.tensor("late", [8], gb.GGML_F32, b"\x01" * 32, offset=128)
    b.tensor("early", [8], gb.GGML_F32, b"\x02" * 32, offset=0)
    with pytest.raises(pipeinfer.GGUFError, match=r"tensor 'late': data at data-section offset 128, expected 0"):
        _core.GGUFFile.from_bytes(b.build())
    b = gb.GGUFBuilder()
    b.tensor("a", [8], gb.GGML_F32, b"\x01" * 32, offset=0)
    b.tensor("b", [8], gb.GGML_F32, b"\x02" * 32, offset=64)
    with pytest.raises(pipeinfer.GGUFError, match=r"tensor 'b': data at data-section offset 64, expected 32"):
        _core.GGUFFile.from_bytes(b.build())


def test_zero_size_dimension_is_accepted_by_the_reader():
    b = gb.GGUFBuilder()
    b.tensor("empty", [32, 0], gb.GGML_F32)
    b.tensor("w", [4], gb.GGML_F32, bytes(16))
    f = _core.GGUFFile.from_bytes(b.build())
    t = {x["name"]: x for x in f.tensors()}
    assert t["empty"]["shape"] == [32, 0] and t["empty"]["nbytes"] == 0
    assert f.tensor_data("empty").shape == (0,)


def test_string_values_with_invalid_utf8_are_replaced():
    b = gb.GGUFBuilder().kv_raw(gb.kv("k", gb.T_STR, raw=gb.gguf_str(b"ab\xffc")))
    b.kv_raw(gb.kv("arr", gb.T_ARR, raw=gb.u32(gb.T_STR) + gb.u64(1) + gb.gguf_str(b"\xc3")))
    meta = _core.GGUFFile.from_bytes(b.build()).metadata()
    assert meta["k"] == "ab\ufffdc"
    assert meta["arr"] == ["\ufffd"]


@pytest.fixture(scope="module")
def getters_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("getters") / "g.gguf"
    _write(path)
    return _core.GGUFFile(str(path))


class TestTypedGetters:
    @pytest.fixture
    def f(self, getters_file):
        return getters_file

    def test_integers_of_any_width_convert(self, f):
        for key in ("t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32", "t.i64"):
            assert f.get_int(key) == SCALARS[key][1]

    def test_u64_that_does_not_fit_int64(self, f):
        with pytest.raises(pipeinfer.GGUFError, match=r"'t\.u64'.*does not fit in int64"):
            f.get_int("t.u64")

    def test_wrong_type_names_key_and_types(self, f):
        with pytest.raises(pipeinfer.GGUFError, match=r"key 't\.str': expected an integer, found str"):
            f.get_int("t.str")
        with pytest.raises(pipeinfer.GGUFError, match=r"key 't\.u32': expected f32 or f64, found u32"):
            f.get_float("t.u32")
        with pytest.raises(pipeinfer.GGUFError, match=r"expected arr\[str\], found arr\[i32,3\]"):
            f.get_str_array("a.i32")

    def test_missing_key_and_defaults(self, f):
        with pytest.raises(pipeinfer.GGUFError, match="missing key 'nope'"):
            f.get_str("nope")
        assert f.get_int("nope", default=5) == 5
        assert f.get_str("nope", default="d") == "d"
        assert f.get_bool("t.bool", default=False) is True
        with pytest.raises(pipeinfer.GGUFError, match="expected bool"):
            f.get_bool("t.u8", default=False)  # present with another type: still an error

    def test_scalars_and_arrays(self, f):
        assert f.get_float("t.f32") == 0.15625
        assert f.get_float("t.f64") == 1.0 / 3.0
        assert f.get_str("t.str") == SCALARS["t.str"][1]
        assert f.get_str_array("a.str") == ARRAYS["a.str"][1]
        np.testing.assert_array_equal(f.get_f32_array("a.f32"), [0.5, -1.25, 3.0])
        np.testing.assert_array_equal(f.get_f32_array("a.f64"), np.array([0.1, -2.5e10]).astype(np.float32))
        np.testing.assert_array_equal(f.get_i32_array("a.i8"), [-128, 0, 127])
        np.testing.assert_array_equal(f.get_i32_array("a.u16"), [0, 65535])

    def test_f64_array_out_of_f32_range(self):
        blob = gb.GGUFBuilder().kv("big", gb.T_ARR, [1.0, 1e300], gb.T_F64).build()
        with pytest.raises(pipeinfer.GGUFError, match=r"'big': element 1 \(1e\+300\) does not fit in f32"):
            _core.GGUFFile.from_bytes(blob).get_f32_array("big")

    def test_i32_array_out_of_range(self, f):
        with pytest.raises(pipeinfer.GGUFError, match=r"'a\.u32': element 1 does not fit in int32"):
            f.get_i32_array("a.u32")
        with pytest.raises(pipeinfer.GGUFError, match=r"'a\.i64': element 0 does not fit in int32"):
            f.get_i32_array("a.i64")
