"""Several generations at once on one Pipeline (parallel slots, continuous batching): each equals its
output alone, in every decoding mode and stage count; KV groups keep slots apart."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pipeinfer
from pipeinfer import PipelineBusyError, _core

PROMPTS = [[5, 17, 99, 3, 250], [7, 7, 31, 200], [123, 4, 56, 78, 9, 10], [250, 1, 2], [5, 6, 5, 6, 5, 6, 5],
           [11, 12, 13], [300, 301, 5, 17], [42]]
N = 24
CONFIGS = {
    "iterative-1stage": dict(stages=1),
    "iterative-2stages": dict(stages=2),
    "pipeinfer-ngram-2stages": dict(stages=2, draft="ngram"),
    "speculative-ngram-1stage": dict(stages=1, draft="ngram", mode="speculative"),
}


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=3)
    return str(path)


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def pipe(tiny, request):
    p = pipeinfer.Pipeline(tiny, n_ctx=4 * 128, n_threads=1, parallel=4, **CONFIGS[request.param])
    yield p
    p.close()


@pytest.fixture(scope="module")
def alone(pipe):
    """Each prompt's greedy tokens when it runs by itself (one after the other)."""
    return {tuple(pr): pipe.generate(pr, max_tokens=N, temperature=0).tokens for pr in PROMPTS}


def test_context_is_split_between_slots(pipe):
    assert pipe.parallel == 4 and pipe.n_ctx == 128
    with pytest.raises(ValueError, match="context holds 128"):
        pipe.stream(list(range(1, 130)))


def test_concurrent_generations_equal_their_output_alone(pipe, alone):
    results, errors = {}, []
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            start.wait()
            for k in range(2):
                pr = PROMPTS[(i + 3 * k) % len(PROMPTS)]
                results[(i, k)] = (tuple(pr), pipe.generate(pr, max_tokens=N, temperature=0).tokens)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and errors == []
    assert len(results) == 16
    for pr, toks in results.values():
        assert toks == alone[pr]
    b = pipe._batcher
    assert b.rows > b.batches  # runs of different slots travelled together


def test_interleaved_streams_in_one_thread(pipe, alone):
    streams = [pipe.stream(pr, max_tokens=N, temperature=0) for pr in PROMPTS[:4]]
    live = list(streams)
    while live:  # one piece from each in turn
        for s in list(live):
            try:
                next(s)
            except StopIteration:
                live.remove(s)
    for pr, s in zip(PROMPTS, streams):
        assert s.tokens == alone[tuple(pr)]
    held = [pipe.stream(pr, max_tokens=N, temperature=0) for pr in PROMPTS[:5]]
    for s in held[:4]:
        next(s)
    with pytest.raises(PipelineBusyError, match="all 4 of its slots"):
        next(held[4])
    held[0].close()
    for _ in held[4]:
        pass
    assert held[4].tokens == alone[tuple(PROMPTS[4])]
    for s in held[1:4]:
        s.close()


def test_closed_stream_frees_its_cells(pipe, alone):
    s = pipe.stream(PROMPTS[4], max_tokens=N, temperature=0)
    for _ in range(3):
        next(s)
    s.close()
    native = pipe._native
    canonical = sum(len(slot.cached) for slot in pipe._slots)
    used = pipe._batcher.call(-1, lambda n: n.kv_n_used)
    assert used == canonical  # no speculative cell left behind
    n_buffers = {"iterative": 0, "speculative": 1, "pipeinfer": pipe.policy.n_buffers}[pipe.mode]
    assert all(slot.target.spec_free == n_buffers for slot in pipe._slots)
    assert native.n_in_flight == 0
    assert pipe.generate(PROMPTS[4], max_tokens=N, temperature=0).tokens == alone[tuple(PROMPTS[4])]


def test_seeded_sampling_is_the_same_concurrently(tiny):
    with pipeinfer.Pipeline(tiny, n_ctx=256, n_threads=1, parallel=2) as p:
        want = [p.generate(pr, max_tokens=12, temperature=0.9, seed=5).tokens for pr in PROMPTS[:2]]
        a, b = (p.stream(pr, max_tokens=12, temperature=0.9, seed=5) for pr in PROMPTS[:2])
        for _ in zip(a, b):
            pass
        for s in (a, b):
            for _ in s:
                pass
        assert [a.tokens, b.tokens] == want


def test_bad_parallel_and_context(tiny):
    with pytest.raises(ValueError, match="parallel must be an integer"):
        pipeinfer.Pipeline(tiny, parallel=0)
    with pytest.raises(ValueError, match="cannot be split"):
        pipeinfer.Pipeline(tiny, n_ctx=6, parallel=4)


def test_kv_groups_keep_slots_apart(tiny):
    """A speculative buffer sees its own slot's canonical cells and no other slot's (same positions)."""
    a, b = [5, 17, 99, 3], [7, 7, 31, 200]
    fresh = _core.Pipeline(tiny, n_ctx=64)
    want_a = fresh.decode(np.asarray(a + [42], np.int32), np.arange(5, dtype=np.int32), np.zeros(5, np.int32),
                          np.ones(5, np.uint8))[-1].copy()
    fresh.kv_clear()
    want_b = fresh.decode(np.asarray(b + [42], np.int32), np.arange(5, dtype=np.int32), np.zeros(5, np.int32),
                          np.ones(5, np.uint8))[-1].copy()
    fresh.close()
    p = _core.Pipeline(tiny, n_ctx=64, n_slots=2, n_spec_buffers=1)
    per = p.seqs_per_slot
    assert per == 2 and p.n_seq_max == 4
    for k, prompt in ((0, a), (1, b)):
        p.decode(np.asarray(prompt, np.int32), np.arange(4, dtype=np.int32), np.full(4, k * per, np.int32),
                 np.zeros(4, np.uint8) + np.array([0, 0, 0, 1], np.uint8))
    rows = {}
    for k in (0, 1):  # token 42 at position 4 in slot k's buffer
        rows[k] = p.decode(np.asarray([42], np.int32), np.asarray([4], np.int32), np.asarray([k * per + 1], np.int32),
                           np.ones(1, np.uint8))[0].copy()
    assert np.array_equal(rows[0], want_a)
    assert np.array_equal(rows[1], want_b)
    p.spec_commit(per + 1, 4, 5)  # slot 1's buffer cell becomes slot 1's canonical
    assert p.kv_seq_pos_max(per) == 4 and p.kv_seq_pos_max(0) == 3
    with pytest.raises(ValueError, match="canonical"):
        p.spec_commit(per, 0, 1)
    p.close()
