"""Matmul benchmarks (run: PYTHONPATH=... pytest bench/bench_matmul.py).

- stream_read: GB/s of a plain streaming read of a 128 MiB buffer: the memory-bandwidth ceiling.
- matvec: y = x @ W.T for one activation row and a 128 MiB weight matrix of each type; GB/s = weight
  bytes / time, reported beside the stream baseline of the same run (extra_info).
- small_batch: k = 1, 4, 8 activation rows (speculative verification of k drafts, exact_rows=True: every
  row bit-identical to a one-row call) for the types of the real models; extra_info holds the cost
  relative to k = 1 (same type and threads). Issue targets: k=4 <= 1.6x, k=8 <= 2.2x.
- matvec_repacked: the matvec over the repacked copy of the same weights (GB/s of its bytes).
- small_batch_repacked: the same over row-interleaved weights (Pipeline(repack=True), quant/repack.h:
  16 rows per 512-bit lane set, weights read once for up to 8 activation rows); every row exact in
  that order. extra_info: cost_vs_k1 of the repacked kernel, and speedup_vs_rows (the row layout's
  time at the same k in this run over the repacked time).
Every benchmark checks its result: matmul outputs against the double-precision matmul_ref on a slice
of the weight rows, the stream read against numpy's sum.
"""
from __future__ import annotations

import numpy as np
import pytest

import kernels_weights

THREADS = [1, 2]
ROUNDS = 5
_k1_seconds: dict[tuple[str, int], float] = {}
_rows_seconds: dict[tuple[str, int, int], float] = {}
_k1_repacked: dict[tuple[str, int], float] = {}


def check_against_ref(core, name: str, w: np.ndarray, n_in: int, x: np.ndarray, y: np.ndarray) -> None:
    """Compares the first 64 outputs of every row with matmul_ref (activation-quantization tolerance)."""
    part = w[:64]
    ref = core.matmul(name, part, n_in, x, ref=True)
    wd = np.abs(kernels_weights.dequantize_rows(core, name, part, n_in)).astype(np.float64)
    tol = 0.01 * (np.abs(x).astype(np.float64) @ wd.T) + 1e-4  # q8 activations: well under 1%
    assert np.all(np.abs(y[:, :64] - ref) <= tol), name


def min_seconds(benchmark) -> float:
    return benchmark.stats.stats.min


@pytest.mark.parametrize("n_threads", THREADS)
def test_stream_read(benchmark, core, stream_buffer, n_threads):
    benchmark.group = "stream_read"
    buf = stream_buffer
    total = benchmark.pedantic(core.stream_read_sum, args=(buf, n_threads), rounds=ROUNDS, warmup_rounds=1)
    assert total == int(buf.view(np.uint64).sum(dtype=np.uint64))
    benchmark.extra_info["gbps"] = round(buf.nbytes / min_seconds(benchmark) / 1e9, 2)


MATVEC_TYPES = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "f16", "bf16", "f32"]


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("name", MATVEC_TYPES)
def test_matvec(benchmark, core, big_weights, stream_gbps, name, n_threads):
    benchmark.group = f"matvec-{n_threads}t"
    w, n_in = big_weights(name)
    x = np.random.default_rng(3).standard_normal((1, n_in)).astype(np.float32)
    y = benchmark.pedantic(core.matmul, args=(name, w, n_in, x, n_threads), rounds=ROUNDS, warmup_rounds=1)
    check_against_ref(core, name, w, n_in, x, y)
    gbps = w.nbytes / min_seconds(benchmark) / 1e9
    base = stream_gbps(n_threads)
    benchmark.extra_info.update(
        isa=core.kernel_isa(), weight_mib=w.nbytes >> 20, gbps=round(gbps, 2), stream_gbps=round(base, 2),
        fraction_of_stream=round(gbps / base, 3),
    )


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("k", [1, 4, 8])
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q6_k"])
def test_small_batch(benchmark, core, big_weights, name, k, n_threads):
    benchmark.group = f"small_batch-{name}-{n_threads}t"
    w, n_in = big_weights(name)
    x = np.random.default_rng(4).standard_normal((k, n_in)).astype(np.float32)
    y = benchmark.pedantic(core.matmul, args=(name, w, n_in, x, n_threads), kwargs={"exact_rows": True},
                           rounds=ROUNDS, warmup_rounds=1)
    check_against_ref(core, name, w, n_in, x, y)
    # exact rows: the last row equals a one-row product on the first 64 weight rows
    one = core.matmul(name, w[:64], n_in, x[-1:], n_threads, exact_rows=True)
    np.testing.assert_array_equal(y[-1:, :64], one)
    t = min_seconds(benchmark)
    _rows_seconds[(name, k, n_threads)] = t
    if k == 1:
        _k1_seconds[(name, n_threads)] = t
    benchmark.extra_info.update(isa=core.kernel_isa(), gbps=round(w.nbytes / t / 1e9, 2))
    if (name, n_threads) in _k1_seconds:
        benchmark.extra_info["cost_vs_k1"] = round(t / _k1_seconds[(name, n_threads)], 2)


@pytest.fixture(scope="session")
def repacked_weights(core, big_weights):
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            w, n_in = big_weights(name)
            cache[name] = core.repack(name, w, n_in)
        return cache[name]

    return get


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q6_k"])
def test_matvec_repacked(benchmark, core, big_weights, repacked_weights, stream_gbps, name, n_threads):
    """The matvec over the repacked copy (Pipeline(repack=True)); GB/s of the bytes it reads."""
    benchmark.group = f"matvec-repacked-{n_threads}t"
    w, n_in = big_weights(name)
    packed = repacked_weights(name)
    x = np.random.default_rng(3).standard_normal((1, n_in)).astype(np.float32)
    y = benchmark.pedantic(core.matmul, args=(name, w, n_in, x, n_threads), kwargs={"repacked": packed},
                           rounds=ROUNDS, warmup_rounds=1)
    check_against_ref(core, name, w, n_in, x, y)
    gbps = packed.nbytes / min_seconds(benchmark) / 1e9
    base = stream_gbps(n_threads)
    benchmark.extra_info.update(
        isa=core.kernel_isa(), weight_mib=packed.nbytes >> 20, gbps=round(gbps, 2), stream_gbps=round(base, 2),
        fraction_of_stream=round(gbps / base, 3),
    )


@pytest.mark.parametrize("n_threads", THREADS)
@pytest.mark.parametrize("k", [1, 4, 8])
@pytest.mark.parametrize("name", ["q4_0", "q4_1", "q5_0", "q8_0", "q4_k", "q6_k"])
def test_small_batch_repacked(benchmark, core, big_weights, repacked_weights, name, k, n_threads):
    benchmark.group = f"small_batch_repacked-{name}-{n_threads}t"
    w, n_in = big_weights(name)
    packed = repacked_weights(name)
    x = np.random.default_rng(4).standard_normal((k, n_in)).astype(np.float32)
    y = benchmark.pedantic(core.matmul, args=(name, w, n_in, x, n_threads), kwargs={"repacked": packed},
                           rounds=ROUNDS, warmup_rounds=1)
    check_against_ref(core, name, w, n_in, x, y)
    t = min_seconds(benchmark)
    if k == 1:
        _k1_repacked[(name, n_threads)] = t
    benchmark.extra_info.update(isa=core.kernel_isa(), gbps=round(packed.nbytes / t / 1e9, 2))
    if (name, n_threads) in _k1_repacked:
        benchmark.extra_info["cost_vs_k1"] = round(t / _k1_repacked[(name, n_threads)], 2)
    if (name, k, n_threads) in _rows_seconds:
        benchmark.extra_info["speedup_vs_rows"] = round(_rows_seconds[(name, k, n_threads)] / t, 2)
