"""thread_pool (csrc/kernels/thread-pool.cpp): every ith runs exactly once per parallel_for, exceptions
from any thread surface in the caller, and the pool survives many calls and a failed call."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer import _core


@pytest.mark.parametrize("n_threads", [1, 2, 3, 8])
def test_each_ith_runs_once_per_call(n_threads):
    pool = _core.ThreadPool(n_threads)
    assert pool.n_threads == n_threads
    counts = pool.smoke(1)
    np.testing.assert_array_equal(counts, np.ones(n_threads, dtype=np.int64))


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_many_repeated_calls(n_threads):
    # Exercises both wake paths: back-to-back calls (workers still spinning) and the sleep/notify one
    # is covered by test_pool_wakes_after_idle.
    pool = _core.ThreadPool(n_threads)
    counts = pool.smoke(2000)
    np.testing.assert_array_equal(counts, np.full(n_threads, 2000, dtype=np.int64))


def test_pool_wakes_after_idle():
    import time

    pool = _core.ThreadPool(2)
    for _ in range(3):
        time.sleep(0.01)  # longer than the spin budget: workers are blocked on the condition variable
        np.testing.assert_array_equal(pool.smoke(5), [5, 5])


@pytest.mark.parametrize("n_threads,throw_ith", [(1, 0), (2, 0), (2, 1), (4, 3)])
def test_exception_propagates_and_pool_survives(n_threads, throw_ith):
    pool = _core.ThreadPool(n_threads)
    with pytest.raises(RuntimeError, match=f"ith {throw_ith} failed on call 2"):
        pool.smoke(3, throw_ith=throw_ith)
    np.testing.assert_array_equal(pool.smoke(7), np.full(n_threads, 7, dtype=np.int64))


def test_invalid_thread_count():
    with pytest.raises(ValueError):
        _core.ThreadPool(0)


def test_stream_read_gbps_positive():
    buf = np.arange(1 << 20, dtype=np.uint8)
    for n_threads in (1, 2):
        gbps = _core.stream_read_gbps(buf, n_threads=n_threads, repeats=2)
        assert np.isfinite(gbps) and gbps > 0


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_stream_read_sum_matches_numpy(n_threads):
    rng = np.random.default_rng(5)
    buf = rng.integers(0, 256, size=(1 << 16) * 8 + 5, dtype=np.uint8)  # 5 trailing bytes
    words = buf[: (len(buf) // 8) * 8].view(np.uint64)
    want = (int(words.sum(dtype=np.uint64)) + int(buf[len(words) * 8 :].sum())) % (1 << 64)
    assert _core.stream_read_sum(buf, n_threads=n_threads) == want
