"""Files that are not what they seem: a FIFO or a device as the model path (must not hang at open),
bytes that are not UTF-8 in strings that end up in error messages and in file names, and a file
changed while it is being loaded (a truncation under a running pipeline is a SIGBUS, README)."""
from __future__ import annotations

import os
import threading

import pytest

import gguf_bytes as gb
import pipeinfer
from pipeinfer import _core


def _non_regular_paths(tmp_path):
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    return [(fifo, "a FIFO (named pipe)"), ("/dev/null", "a character device"), (tmp_path, "a directory")]


def _call_with_deadline(fn, seconds=60.0):
    """Runs fn on a thread and fails the test if it blocks (a FIFO open would wait for a writer)."""
    out = {}

    def run():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["exc"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "opening the path blocked"
    return out.get("exc")


@pytest.mark.parametrize("opener", ["GGUFFile", "Pipeline"])
def test_a_non_regular_model_path_is_refused_without_blocking(tmp_path, opener):
    open_fn = {"GGUFFile": _core.GGUFFile, "Pipeline": pipeinfer.Pipeline}[opener]
    for path, kind in _non_regular_paths(tmp_path):
        exc = _call_with_deadline(lambda: open_fn(str(path)))
        assert isinstance(exc, pipeinfer.GGUFError), exc
        assert f"is {kind}, not a regular file" in str(exc)
        assert str(path) in str(exc)


def _file_with_arch(tmp_path, arch: bytes):
    b = gb.GGUFBuilder()
    b.kv("general.architecture", gb.T_STR, arch)
    b.tensor("w", [32, 2], gb.GGML_F32, data=bytes(256))
    path = tmp_path / "bad-arch.gguf"
    path.write_bytes(b.build())
    return path


def test_non_utf8_value_in_an_error_message_is_escaped_not_a_decode_error(tmp_path):
    path = _file_with_arch(tmp_path, b"ll\xffama")
    with pytest.raises(pipeinfer.PipeinferError) as ei:
        _core.Pipeline(str(path))
    assert not isinstance(ei.value, UnicodeError)
    assert "architecture 'll\\xffama'" in str(ei.value)
    assert str(path) in str(ei.value)
    # metadata() shows such a string with U+FFFD instead of failing.
    assert _core.GGUFFile(str(path)).metadata()["general.architecture"] == "ll\ufffdama"


def test_a_file_name_that_is_not_utf8_opens_and_is_named(tmp_path):
    src = _file_with_arch(tmp_path, b"llama")
    raw = os.fsencode(tmp_path) + b"/model-\xff.gguf"
    os.rename(src, raw)
    name = os.fsdecode(raw)
    assert _core.GGUFFile(raw).tensors()[0]["name"] == "w"  # bytes path
    assert _core.GGUFFile(name).tensors()[0]["name"] == "w"  # str path with a surrogate escape
    with pytest.raises(pipeinfer.PipeinferError, match=r"model-\\xff\.gguf"):
        _core.Pipeline(name)  # not a runnable model: the error names the file
    with pytest.raises(pipeinfer.GGUFError, match=r"cannot open '.*missing-\\xff\.gguf'"):
        _core.GGUFFile(os.fsencode(tmp_path) + b"/missing-\xff.gguf")


@pytest.mark.parametrize("change", ["append", "truncate", "replace", "touch"])
def test_a_file_changed_after_it_was_mapped_is_refused(tiny_model, tmp_path, change):
    src, _ = tiny_model("llama", "q8_0")
    path = tmp_path / "m.gguf"
    path.write_bytes(src.read_bytes())
    f = _core.GGUFFile(str(path))
    f.check_unchanged()  # nothing changed yet
    if change == "append":
        with open(path, "ab") as out:
            out.write(b"\0" * 64)
    elif change == "truncate":
        os.truncate(path, os.path.getsize(path) - 64)
    elif change == "replace":
        tmp = tmp_path / "new.gguf"
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, path)
    else:
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(pipeinfer.GGUFError, match="changed while it was being loaded"):
        f.check_unchanged()


def test_pipeline_refuses_a_file_replaced_between_metadata_and_weights(tiny_model, tmp_path, monkeypatch):
    """Pipeline reads the metadata (tokenizer, template) from one mapping and the weights from another:
    a file replaced in between must not give a tokenizer of one model over the weights of another."""
    a, _ = tiny_model("llama", "q8_0")
    b, _ = tiny_model("llama", "q8_0", seed=7)
    path = tmp_path / "m.gguf"
    path.write_bytes(a.read_bytes())
    real = _core.Pipeline
    import pipeinfer.pipeline as pp

    def swapped(*args, **kwargs):
        tmp = tmp_path / "swap.gguf"
        tmp.write_bytes(b.read_bytes())
        os.replace(tmp, path)
        return real(*args, **kwargs)

    monkeypatch.setattr(pp._core, "Pipeline", swapped)
    with pytest.raises(pipeinfer.GGUFError, match="replaced by another file"):
        pipeinfer.Pipeline(str(path), n_ctx=64)
