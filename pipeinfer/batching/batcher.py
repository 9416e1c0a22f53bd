"""Continuous batching: the runs of every slot go to the native pipeline as shared batches.

Each serving slot runs one generation on its own thread (straight-line decoder code over a
``SlotTarget``). Slots hand their runs, KV commands and queries to the batcher as operations; the
batcher applies them to the native pipeline in each slot's issue order, and merges the runs that
slots issued in the same scheduling tick into one native batch (one read of the weights for all of
them), demultiplexing the result rows back to each slot.

There is no batcher thread: a slot thread that has to wait (for a result, a flush or a query)
drives the pipeline itself while nobody else does, so the last slot to finish its step launches the
tick without a thread switch, and one generation alone runs as fast as without the batcher. Only one
thread drives at a time; the others sleep until their result is delivered or the driver steps down.

A tick ends when no slot is computing (every active slot waits for a result, a flush or a query) or
``max_wait_s`` after the later of its oldest operation and the last delivery of results (a slot busy
elsewhere does not hold the others back; the slots that just got results have that long to issue
their next runs, so slots whose operations waited during a long native run do not leave without
them and split into groups that alternate). Runs are merged only when their rows are computed exactly (``exact_rows``: every
row equals a one-token step bit for bit), so a request's output does not depend on what it was
batched with; runs with other flags travel alone. Operations of different slots touch different
sequences, so only each slot's own order must be kept: a slot's KV command or query closes the
batches holding that slot's runs first.

Cancelling a run marks it; a native run whose parts are all cancelled is cancelled on every stage.
A cancelled part still gets a (skipped) result, as the Target protocol promises.

It must not know about sampling, speculation policy or text.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

import numpy as np


@dataclass
class Part:
    """One slot's run: its rows in a native batch, and its result once back."""

    slot: int
    rid: int  # slot-local run id (increasing per slot)
    tokens: np.ndarray  # (n,) int32
    pos: np.ndarray  # (n,) int32
    seqs: List[List[int]]  # per token: global sequence ids
    want: np.ndarray  # (n,) uint8: rows whose logits come back
    exact: bool
    argmax: bool
    cancelled: bool = False
    result: Optional[Tuple[bool, np.ndarray]] = None  # (skipped, rows)

    @property
    def n_out(self) -> int:
        return int(np.count_nonzero(self.want))


@dataclass
class _Op:
    slot: int
    kind: str  # "run" | "kv" | "call"
    part: Optional[Part] = None  # kind "run" (set by submit)
    fn: Optional[Callable[[Any], Any]] = None  # kinds "kv" and "call" (set by kv and call)
    done: bool = False
    value: Any = None
    error: Optional[BaseException] = None
    t: float = field(default_factory=time.monotonic)


@dataclass
class _Slot:
    outstanding: Deque[Part] = field(default_factory=deque)  # submitted, result not yet taken
    unflushed: int = 0  # operations of this slot the batcher has not applied yet
    computing: bool = False  # between begin() and end(), outside the batcher's calls
    wait_done: Optional[Callable[[], bool]] = None  # what the slot's thread waits for, while it waits
    resume: bool = False  # whether it computes again once that is done
    next_rid: int = 0


class BatcherError(RuntimeError):
    """The batcher stopped (closed, or the native pipeline failed: the cause is chained)."""


class Batcher:
    """The scheduler of a multi-slot pipeline (see module docstring)."""

    def __init__(self, native: Any, n_slots: int, max_batch_tokens: int = 512, max_wait_s: float = 0.002) -> None:
        self.native = native
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self._cv = threading.Condition()
        self._slots = [_Slot() for _ in range(n_slots)]
        self._system = _Slot()  # slot -1: calls from outside any generation (counters)
        self._ops: Deque[_Op] = deque()
        self._inflight: Deque[Tuple[int, List[Part]]] = deque()  # native run id, its parts (launch order)
        self._native_cancelled: Set[int] = set()  # native run ids cancelled, result not yet back
        self._n_computing = 0
        self._error: Optional[BaseException] = None
        self._closed = False
        self._driving = False  # a thread is applying operations / collecting results
        self._delivered_t = 0.0  # monotonic time of the last delivery of results to slots
        self.batches = 0  # native batches launched
        self.rows = 0  # tokens launched

    # ------------------------------------------------------------------ slot side (any thread)
    def begin(self, slot: int) -> None:
        """The slot's thread starts a generation (it now computes between calls)."""
        with self._cv:
            s = self._slots[slot]
            if not s.computing:
                s.computing = True
                self._n_computing += 1

    def end(self, slot: int) -> None:
        """The slot's generation ended (it no longer holds ticks back)."""
        with self._cv:
            self._set_computing(self._slots[slot], False)
            self._cv.notify_all()

    def submit(self, part: Part) -> int:
        with self._cv:
            self._check()
            s = self._slots[part.slot]
            part.rid = s.next_rid
            s.next_rid += 1
            s.outstanding.append(part)
            self._push(_Op(part.slot, "run", part=part))
            return part.rid

    def kv(self, slot: int, fn: Callable[[Any], Any]) -> None:
        """Applies fn(native) after the slot's earlier operations (does not wait). Slot -1: outside any
        generation (after the batches already launched)."""
        with self._cv:
            self._check()
            self._push(_Op(slot, "kv", fn=fn))

    def call(self, slot: int, fn: Callable[[Any], Any]) -> Any:
        """fn(native) after the slot's earlier operations; waits for and returns its value."""
        with self._cv:
            self._check()
            op = _Op(slot, "call", fn=fn)
            self._push(op)
            self._block(self._slot(slot), lambda: op.done)
            if op.error is not None:
                raise op.error
            return op.value

    def poll(self, slot: int) -> bool:
        """Waits until the batcher has launched the slot's submitted runs (the end of this tick), then
        says whether its oldest run's result is back."""
        with self._cv:
            s = self._slots[slot]
            if not s.outstanding:
                return False
            self._block(s, lambda: s.unflushed == 0 or s.outstanding[0].result is not None)
            return s.outstanding[0].result is not None

    def wait(self, slot: int) -> Tuple[int, bool, np.ndarray]:
        """The slot's oldest run's result (rid, skipped, rows); blocks until it is back."""
        with self._cv:
            s = self._slots[slot]
            if not s.outstanding:
                raise RuntimeError(f"slot {slot}: wait() with no run in flight")
            part = s.outstanding[0]
            self._block(s, lambda: part.result is not None)
            s.outstanding.popleft()
            assert part.result is not None  # _block returns only once its condition holds
            skipped, rows = part.result
            return part.rid, skipped, rows

    def cancel(self, slot: int, rids: List[int]) -> None:
        with self._cv:
            want = set(rids)
            for p in self._slots[slot].outstanding:
                if p.rid in want:
                    p.cancelled = True
            self._cv.notify_all()

    def n_in_flight(self, slot: int) -> int:
        with self._cv:
            return len(self._slots[slot].outstanding)

    def close(self) -> None:
        """Applies what is still queued, waits for the runs in flight, then refuses new operations."""
        with self._cv:
            if self._error is None and not self._closed:
                self._block(self._system, lambda: not self._ops and not self._inflight)
            self._closed = True
            self._cv.notify_all()

    # ------------------------------------------------------------------ helpers (lock held)
    def _check(self) -> None:
        if self._error is not None:
            raise BatcherError(f"the pipeline failed: {self._error}") from self._error
        if self._closed:
            raise BatcherError("the pipeline is closed")

    def _slot(self, index: int) -> _Slot:
        return self._system if index == -1 else self._slots[index]

    def _push(self, op: _Op) -> None:
        self._slot(op.slot).unflushed += 1
        self._ops.append(op)
        self._cv.notify_all()

    def _set_computing(self, s: _Slot, on: bool) -> None:
        if s.computing != on:
            s.computing = on
            self._n_computing += 1 if on else -1

    def _block(self, s: _Slot, done: Callable[[], bool]) -> None:
        """Waits (not computing) until done(), driving the pipeline while no other thread does; raises
        if the pipeline failed meanwhile."""
        was = s.computing
        s.wait_done, s.resume = done, was
        self._set_computing(s, False)
        self._cv.notify_all()
        try:
            while not done():
                if self._error is not None:
                    self._check()
                if not self._driving and (self._ops or self._inflight):
                    self._drive()
                    continue
                self._cv.wait(self.max_wait_s)
        finally:
            s.wait_done = None
            self._set_computing(s, was)

    def _mark_ready(self) -> None:
        """Counts a waiting slot whose wait is over as computing at once, before its thread wakes: else
        the driver, seeing nobody computing, would close the tick without the runs that slot is about
        to issue (the slots then split into groups that alternate, and a batch holds fewer rows)."""
        for s in self._slots:
            if s.wait_done is not None and s.resume and not s.computing and s.wait_done():
                self._set_computing(s, True)

    def _tick_expired(self) -> bool:
        opened = max(self._ops[0].t, self._delivered_t)
        return time.monotonic() - opened >= self.max_wait_s

    def _drive(self) -> None:
        """One step of the driver (lock held on entry and exit, released around native calls): launch
        the tick if it is closed, then take the results that have arrived."""
        self._driving = True
        ops: List[_Op] = []
        if self._ops and (self._n_computing == 0 or self._tick_expired()):
            ops = list(self._ops)
            self._ops.clear()
        self._cv.release()
        try:
            if ops:
                self._apply(ops)
            if self._inflight:
                self._collect(block=not ops)
            elif not ops:
                time.sleep(min(self.max_wait_s, 0.0005))  # the tick is still open: let the others finish
        except BaseException as e:  # noqa: BLE001 - every slot gets it
            self._error = e
        finally:
            self._cv.acquire()
            self._driving = False
            self._cv.notify_all()

    # ------------------------------------------------------------------ the driver (lock not held)
    def _apply(self, ops: List[_Op]) -> None:
        open_: Dict[Tuple[bool, bool], List[Part]] = {}  # batches being built, by (exact, argmax)
        order: List[Tuple[bool, bool]] = []

        def flush(keys: Optional[List[Tuple[bool, bool]]] = None) -> None:
            for k in [k for k in order if keys is None or k in keys]:
                self._launch(open_.pop(k))
                order.remove(k)

        for op in ops:
            if op.kind == "run":
                p = op.part
                assert p is not None  # a run operation carries its part (submit)
                if p.cancelled:
                    self._deliver([p], True, None)
                elif not p.exact:
                    flush([k for k in order if any(q.slot == p.slot for q in open_[k])])
                    self._launch([p])
                else:
                    key = (True, p.argmax)
                    mine = [k for k in order if k != key and any(q.slot == p.slot for q in open_[k])]
                    flush(mine)
                    if key in open_ and sum(len(q.tokens) for q in open_[key]) + len(p.tokens) > self.max_batch_tokens:
                        flush([key])
                    if key not in open_:
                        open_[key] = []
                        order.append(key)
                    open_[key].append(p)
            else:
                flush([k for k in order if any(q.slot == op.slot for q in open_[k])])
                assert op.fn is not None  # kv and call operations carry their function (kv, call)
                try:
                    op.value = op.fn(self.native)
                except Exception as e:  # noqa: BLE001 - raised in the slot's thread
                    if op.kind == "kv":
                        raise
                    op.error = e
                op.done = True
        flush()
        with self._cv:
            for op in ops:
                self._slot(op.slot).unflushed -= 1
            self._mark_ready()
            self._cv.notify_all()

    def _launch(self, parts: List[Part]) -> None:
        tokens = np.concatenate([p.tokens for p in parts])
        pos = np.concatenate([p.pos for p in parts])
        want = np.concatenate([p.want for p in parts])
        seqs = [s for p in parts for s in p.seqs]
        nid = self.native.submit(tokens, pos, seqs, want, exact_rows=parts[0].exact, argmax_only=parts[0].argmax)
        self.batches += 1
        self.rows += len(tokens)
        self._inflight.append((nid, parts))
        self._collect()

    def _collect(self, block: bool = False) -> None:
        """Takes every native result that has arrived, hands rows to their parts, and cancels native
        runs whose parts were all cancelled; with `block`, first waits a little for one to arrive."""
        with self._cv:
            for nid, parts in self._inflight:
                if nid not in self._native_cancelled and all(p.cancelled for p in parts):
                    self._native_cancelled.add(nid)
                    self.native.cancel([nid])
        if block and self._inflight and not self.native.poll():
            self.native.wait_ready(0.0005)  # the GIL is released while waiting
        while self._inflight and self.native.poll():
            nid, skipped, rows = self.native.wait()
            want_nid, parts = self._inflight.popleft()
            if nid != want_nid:
                raise RuntimeError(f"native run {nid} returned while run {want_nid} was expected")
            self._native_cancelled.discard(nid)
            self._deliver(parts, bool(skipped), rows)

    def _deliver(self, parts: List[Part], skipped: bool, rows: Optional[np.ndarray]) -> None:
        off = 0
        with self._cv:
            for p in parts:
                n = p.n_out
                mine = np.empty(0, np.float32) if rows is None or skipped else rows[off:off + n].copy()
                off += n
                p.result = (skipped or p.cancelled, mine)
            self._delivered_t = time.monotonic()
            self._mark_ready()
            self._cv.notify_all()
