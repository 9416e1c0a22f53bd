"""The on-disk cache of the fast layout's repacked weights (csrc/model/repack-cache.*, weights-repack.*).

- The first load repacks and writes the cache file; the next loads map it and repack nothing; logits
  are bit-identical either way.
- A file that is corrupt (header, data, truncated), stale (the model changed) or of another layout is
  rejected with the reason in the log and replaced; an unwritable cache folder falls back to repacking
  in memory with a warning.
- Concurrent loads (threads here, processes in practice) each write their own temporary file and
  rename it into place: every load succeeds and one complete file remains.
- Files whose source model is gone are evicted when a new file is written.
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np
import pytest

import pipeinfer
from pipeinfer import _core

PROMPT = [5, 17, 99, 3, 250, 42]


@pytest.fixture()
def model(tiny_model, tmp_path):
    """A private copy of a tiny q8_0 model (tests change its mtime or delete it)."""
    src, _ = tiny_model("llama", "q8_0", n_layer=3)
    path = tmp_path / "model.gguf"
    path.write_bytes(src.read_bytes())
    return path


@pytest.fixture()
def messages():
    """The core's log messages of the test, as (level, text)."""
    got: list[tuple[int, str]] = []
    _core.set_log_callback(lambda level, text: got.append((level, text)))
    yield got
    pipeinfer.log.install()


def _logits(path, cache_dir, **kw):
    p = _core.Pipeline(str(path), n_ctx=64, repack=True, repack_cache_dir=str(cache_dir), **kw)
    try:
        n = len(PROMPT)
        return p.decode(np.asarray(PROMPT, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
                        np.ones(n, np.uint8)).copy()
    finally:
        p.close()


def _cache_files(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".repack"))


def _texts(messages):
    return [t for _, t in messages]


def test_second_load_maps_the_cache_with_identical_logits(model, tmp_path, messages):
    cache = tmp_path / "cache"
    want = _logits(model, "")  # no cache: repacked in memory
    first = _logits(model, cache)
    assert len(_cache_files(cache)) == 1
    assert any("repacking" in t and "saved for the next load" in t for t in _texts(messages))
    messages.clear()
    second = _logits(model, cache)
    assert any(t.startswith("mapped") for t in _texts(messages))
    assert not any("repacking" in t for t in _texts(messages))
    np.testing.assert_array_equal(first, want)
    np.testing.assert_array_equal(second, want)


def test_each_stage_caches_its_own_layers(model, tmp_path, messages):
    cache = tmp_path / "cache"
    want = _logits(model, cache)
    got = _logits(model, cache, n_stages=2, stage_layers=[1, 2])
    np.testing.assert_array_equal(got, want)
    assert len(_cache_files(cache)) == 3  # whole model, layers 0-0, layers 1-2 + head
    messages.clear()
    np.testing.assert_array_equal(_logits(model, cache, n_stages=2, stage_layers=[1, 2]), want)
    assert sum(t.startswith("mapped") for t in _texts(messages)) == 2


def _corrupt_header(f):
    data = bytearray(f.read_bytes())
    data[24] ^= 0xFF  # inside the header (file size field)
    f.write_bytes(bytes(data))


def _corrupt_table(f):
    data = bytearray(f.read_bytes())
    data[70] ^= 0x01  # inside the source path: only the header checksum notices
    f.write_bytes(bytes(data))


def _zero_data(f):
    data = bytearray(f.read_bytes())
    data[4096 : 4096 + 64] = bytes(64)  # the first entry's first bytes, as if never written back
    f.write_bytes(bytes(data))


def _truncate(f):
    f.write_bytes(f.read_bytes()[:-4096])


def _not_ours(f):
    f.write_bytes(b"not a cache file" * 10)


@pytest.mark.parametrize(
    "damage, reason",
    [(_corrupt_header, "truncated or corrupt"), (_corrupt_table, "corrupt header"), (_zero_data, "corrupt data"),
     (_truncate, "truncated or corrupt"), (_not_ours, "not a repack cache file")],
)
def test_damaged_cache_file_is_rejected_and_rebuilt(model, tmp_path, messages, damage, reason):
    cache = tmp_path / "cache"
    want = _logits(model, cache)
    (name,) = _cache_files(cache)
    damage(cache / name)
    messages.clear()
    np.testing.assert_array_equal(_logits(model, cache), want)
    assert any("not used" in t and reason in t for t in _texts(messages)), _texts(messages)
    messages.clear()
    np.testing.assert_array_equal(_logits(model, cache), want)  # rebuilt: mapped again
    assert any(t.startswith("mapped") for t in _texts(messages))


def test_changed_model_file_makes_the_cache_stale(model, tmp_path, messages):
    cache = tmp_path / "cache"
    _logits(model, cache)
    st = os.stat(model)
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    messages.clear()
    _logits(model, cache)
    assert any("stale" in t for t in _texts(messages)), _texts(messages)
    assert len(_cache_files(cache)) == 1  # replaced under the same name


def test_unwritable_cache_dir_falls_back_to_memory(model, tmp_path, messages):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    want = _logits(model, "")
    np.testing.assert_array_equal(_logits(model, blocker / "cache"), want)
    warnings = [t for level, t in messages if level == logging.WARNING]
    assert any("repack cache not written" in t and "repacking in memory" in t for t in warnings), warnings


def test_concurrent_first_loads_all_succeed(model, tmp_path):
    cache = tmp_path / "cache"
    want = _logits(model, "")
    results, errors = [], []

    def load():
        try:
            results.append(_logits(model, cache))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_array_equal(r, want)
    assert os.listdir(cache) == _cache_files(cache)  # one file per name, no temporary left behind
    assert len(_cache_files(cache)) == 1
    np.testing.assert_array_equal(_logits(model, cache), want)


def test_files_of_deleted_models_are_evicted(model, tmp_path, tiny_model):
    cache = tmp_path / "cache"
    _logits(model, cache)
    (old,) = _cache_files(cache)
    model.unlink()
    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_model("llama", "q8_0", n_layer=3)[0].read_bytes())
    _logits(other, cache)
    files = _cache_files(cache)
    assert old not in files and len(files) == 1 and files[0].startswith("other.")


def test_exact_mode_and_disabled_cache_write_nothing(model, tmp_path):
    cache = tmp_path / "cache"
    with pipeinfer.Pipeline(str(model), n_ctx=64, n_threads=1, exact=True, repack_cache=cache) as p:
        p.generate(PROMPT, max_tokens=2, temperature=0)
    with pipeinfer.Pipeline(str(model), n_ctx=64, n_threads=1, repack_cache=False) as p:
        p.generate(PROMPT, max_tokens=2, temperature=0)
    assert not cache.exists()
    with pipeinfer.Pipeline(str(model), n_ctx=64, n_threads=1, repack_cache=cache) as p:
        p.generate(PROMPT, max_tokens=2, temperature=0)
    assert len(_cache_files(cache)) == 1


def test_progress_goes_to_the_pipeinfer_logger(model, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeinfer"):
        with pipeinfer.Pipeline(str(model), n_ctx=64, n_threads=1, repack_cache=tmp_path / "c") as p:
            p.generate(PROMPT, max_tokens=2, temperature=0)
    assert any(r.name == "pipeinfer" and "repacking" in r.getMessage() for r in caplog.records)


def test_bad_repack_cache_argument(model):
    with pytest.raises(ValueError, match="repack_cache"):
        pipeinfer.Pipeline(str(model), repack_cache="")
    with pytest.raises(ValueError, match="repack_cache"):
        pipeinfer.Pipeline(str(model), repack_cache=3)
