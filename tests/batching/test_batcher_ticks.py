"""The batcher's ticks with a fake native pipeline: slots that decode in lockstep travel together in every
batch, including the slots whose results were delivered while their threads were still asleep."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Deque, List, Tuple

import numpy as np

from pipeinfer.batching.batcher import Batcher, Part


class FakeNative:
    """Computes each run at submit (one stage); the result row of a token is token + 1."""

    def __init__(self, cost_s: float) -> None:
        self.cost_s = cost_s
        self.batches: List[List[int]] = []  # the tokens of every launched batch
        self._done: Deque[Tuple[int, np.ndarray]] = deque()
        self._next = 0

    def submit(self, tokens, pos, seqs, want, exact_rows, argmax_only):  # noqa: ANN001 - the native signature
        time.sleep(self.cost_s)  # the slots' threads wake meanwhile only if the tick waits for them
        self.batches.append([int(t) for t in tokens])
        rid = self._next
        self._next += 1
        self._done.append((rid, (np.asarray(tokens, np.float32) + 1)[np.asarray(want, bool)]))
        return rid

    def poll(self) -> bool:
        return bool(self._done)

    def wait_ready(self, timeout_s: float) -> bool:
        return bool(self._done)

    def wait(self):  # noqa: ANN201
        rid, rows = self._done.popleft()
        return rid, False, rows

    def cancel(self, ids) -> None:  # noqa: ANN001
        pass


def _decode(b: Batcher, slot: int, first: int, steps: int, out: dict) -> None:
    tok = first
    got = []
    for _ in range(steps):
        part = Part(slot=slot, rid=0, tokens=np.array([tok], np.int32), pos=np.array([len(got)], np.int32),
                    seqs=[[slot]], want=np.ones(1, np.uint8), exact=True, argmax=True)
        b.submit(part)
        _, skipped, rows = b.wait(slot)
        assert not skipped
        tok = int(rows[0])
        got.append(tok)
    b.end(slot)
    out[slot] = got


def test_slots_in_lockstep_share_every_batch():
    n_slots, steps = 4, 12
    native = FakeNative(cost_s=0.005)
    # A long tick deadline: a tick closes only when every slot waits, so a slot left out of a batch would
    # mean the driver closed the tick while a slot whose result had arrived was still waking up.
    b = Batcher(native, n_slots, max_wait_s=2.0)
    out: dict = {}
    start = threading.Barrier(n_slots)

    for s in range(n_slots):
        b.begin(s)  # every slot computes from the start: the first tick waits for all of them

    def run(slot: int) -> None:
        start.wait()
        _decode(b, slot, 1000 * (slot + 1), steps, out)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(n_slots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert {s: out[s] for s in range(n_slots)} == {s: list(range(1000 * (s + 1) + 1, 1000 * (s + 1) + steps + 1))
                                                    for s in range(n_slots)}
    sizes = [len(x) for x in native.batches]
    assert sum(sizes) == n_slots * steps
    assert sizes == [n_slots] * steps, sizes
    b.close()
