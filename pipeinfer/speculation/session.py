"""One generation's session on the target: the canonical tokens, every KV operation, the runs in flight.

A decoder (iterative.py, synchronous.py, pipeinfer.py) never calls the target directly: it launches
runs, takes their results, and edits the KV cache through a Session, so that one object knows the
generation's state and the simulator can swap the target for a virtual one.

KV layout (every mode): sequence 0 is canonical and visible to every sequence; positions below
`canon_end` hold their canonical entry (committed, or the run that computes it is launched). Each
speculative run owns a buffer of the KV multibuffer ring (one sequence per draft-tree branch) holding
only its own drafted tokens. Committing confirmed drafts is one `commit` (sequence 0 added to their
cells), dropping a run is one `release` (its sequences cleared): O(1) events, not O(buffers).

It must not decide what to speculate (policy.py) or which drafts are right (verification.py).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from pipeinfer.speculation.costs import CostModel
from pipeinfer.speculation.interfaces import RunResult, Target
from pipeinfer.speculation.stats import DecodeStats
from pipeinfer.speculation.verification import verify_position

__all__ = ["Session"]


class Session:
    """The state of one generation on a Target.

    Args:
        target: the target pipeline (native, simulated, or a slot view).
        sampler: the sampler of this generation (greedy or not; its probs() give the distribution).
        tokens: prompt + accepted tokens; the session appends accepted tokens to this very list.
        first_logits: logits row of the last prompt token.
        n_ctx: context size: generation stops when len(tokens) reaches it.
        stats: counters to fill.
        clock: seconds (monotonic); the simulator passes its virtual clock.
        trace: when a list, (time, event, fields) tuples are appended to it (launches, results,
            cancellations, accepted tokens) for timelines.
        costs: when given, the session measures into it: the latency of every run launched with no
            valid run ahead of it, the spacing of consecutive results of runs that were in flight
            together, and the head's time from a result to the next such launch.

    Attributes:
        gen: prompt + accepted tokens.
        canon_end: positions below it have their canonical KV entry (or its run is launched).
    """

    def __init__(self, target: Target, sampler: Any, tokens: List[int], first_logits: np.ndarray, n_ctx: int,
                 stats: DecodeStats, clock: Optional[Callable[[], float]] = None,
                 trace: Optional[list] = None, costs: Optional[CostModel] = None) -> None:
        self.target = target
        self.sampler = sampler
        self.gen = tokens
        self.first_logits = first_logits
        self.n_ctx = n_ctx
        self.stats = stats
        self.now = clock or time.perf_counter
        self.trace = trace
        self.costs = costs
        self.waited_s = 0.0  # time the head spent waiting (results, drafts): the rest is its own work
        self._runs: Dict[int, Tuple[float, int, bool]] = {}  # run id -> (launch time, tokens, fresh)
        self._cancelled: Set[int] = set()
        self._seen: Optional[float] = None  # when the last result of a valid run was seen
        self.canon_end = len(tokens)
        # Greedy runs may let the last stage choose each row's argmax (4 bytes back instead of a logits
        # row) only when nothing changes the logits first (bias, penalties).
        self.argmax_only = bool(sampler.is_greedy) and not _processes_logits(sampler.params)

    # ------------------------------------------------------------------------------------- tokens
    @property
    def full(self) -> bool:
        return len(self.gen) >= self.n_ctx

    def decide(self, row: np.ndarray, candidates: Sequence[int]) -> Tuple[int, int]:
        """The token at position len(gen) given its logits row (or the id the last stage chose, for
        argmax-only runs) and the drafted candidates for it: (token, index of the accepted candidate
        or -1)."""
        if np.ndim(row) == 0:
            tok = int(row)
        elif self.sampler.is_greedy:
            # the argmax of the processed logits (bias and penalties apply at temperature 0 too)
            tok = int(np.argmax(self.sampler.adjusted_logits(row, self.gen)))
        else:
            return verify_position(self.sampler.probs(row, self.gen), row, candidates, self.sampler.rng)
        return tok, next((i for i, c in enumerate(candidates) if c == tok), -1)

    def accept(self, tok: int) -> None:
        self.gen.append(tok)
        self._event("accept", pos=len(self.gen) - 1)

    # --------------------------------------------------------------------------------------- runs
    def submit(self, tokens: Sequence[int], pos: Sequence[int], seqs: Any, spec: bool = False) -> int:
        """Launches a run with every row verified exactly (each row equals a one-token step)."""
        n = len(tokens)
        self.stats.runs_launched += 1
        t = self.now()
        fresh = all(r in self._cancelled for r in self._runs)  # no valid run ahead of it
        if fresh and self.costs is not None and self._seen is not None:
            self.costs.observe_head(t - self._seen)
        rid = self.target.submit(np.asarray(tokens, np.int32), np.asarray(pos, np.int32), seqs, np.ones(n, np.uint8),
                                 exact_rows=True, argmax_only=self.argmax_only)
        self._runs[rid] = (t, n, fresh)
        self._event("launch", run=rid, n=n, pos=int(pos[0]) if n else -1, spec=spec)
        return rid

    def poll(self) -> bool:
        return self.target.poll()

    def wait(self) -> RunResult:
        t0 = self.now()
        rid, skipped, rows = self.target.wait()
        self.waited_s += self.now() - t0
        self._event("result", run=rid, skipped=bool(skipped), waited=self.now() - t0)
        self._measure(rid, bool(skipped))
        return rid, skipped, rows

    def wait_drafts(self, drafter: Any, timeout_s: float) -> bool:
        """Waits on an asynchronous drafter (drafts or a result); True if drafts arrived."""
        t0 = self.now()
        got = drafter.wait(timeout_s)
        self.waited_s += self.now() - t0
        self._event("idle", waited=self.now() - t0)
        return bool(got)

    def _measure(self, rid: int, skipped: bool) -> None:
        t = self.now()
        launched, n, fresh = self._runs.pop(rid, (t, 0, False))
        if skipped or rid in self._cancelled:
            self._cancelled.discard(rid)
            return
        if self.costs is not None:
            if fresh:
                self.costs.observe_latency(n, t - launched)
            elif self._seen is not None and launched < self._seen:
                self.costs.observe_spacing(n, t - self._seen)  # it waited in the pipeline behind the last
        self._seen = t

    def cancel(self, run_ids: Sequence[int], invalidated: bool = True) -> None:
        """Cancels runs on every stage; `invalidated` counts them as runs a rejection made useless
        (False when a generation ends with runs in flight)."""
        if run_ids:
            self.target.cancel(list(run_ids))
            self._cancelled.update(run_ids)
            if invalidated:
                self.stats.runs_cancelled += len(run_ids)
            self._event("cancel", runs=list(run_ids))

    @property
    def n_in_flight(self) -> int:
        return self.target.n_in_flight

    def drain(self) -> None:
        """Consumes every outstanding result (the native count is authoritative: an interrupt can land
        between a wait and the caller's bookkeeping)."""
        while self.target.n_in_flight:
            self.wait()

    # ----------------------------------------------------------------------------------------- KV
    @property
    def kv_n_free(self) -> int:
        return self.target.kv_n_free

    def acquire(self, n_branches: int) -> Tuple[int, List[int]]:
        """A free speculative buffer and the sequences of its first n_branches branches, or (-1, [])."""
        buf = self.target.spec_acquire()
        if buf < 0:
            return -1, []
        return buf, [self.target.spec_seq(buf, j) for j in range(n_branches)]

    def release(self, buf: int) -> None:
        self.target.spec_release(buf)

    def copy(self, src: int, dst: int, p0: int, p1: int) -> None:
        """Shares the cells of `src` at [p0, p1) with `dst` (metadata only)."""
        self.target.kv_seq_cp(src, dst, p0, p1)

    def commit(self, seq: int, end: int) -> None:
        """Makes `seq`'s cells from the canonical frontier up to position `end` canonical."""
        if end > self.canon_end:
            self.target.spec_commit(seq, self.canon_end, end)
            self.canon_end = end

    def cover(self, end: int) -> None:
        """Records that a non-speculative run launched now computes the canonical entries below `end`."""
        self.canon_end = max(self.canon_end, end)

    # ------------------------------------------------------------------------------------- tracing
    def event(self, kind: str, **fields: Any) -> None:
        """Appends an event to the trace (when tracing)."""
        self._event(kind, **fields)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.trace is not None:
            self.trace.append((self.now(), kind, fields))


def _processes_logits(params: Any) -> bool:
    """True when the sampling parameters change logits before the choice (bias, penalties)."""
    penalties = params.repeat_last_n != 0 and (params.repeat_penalty != 1.0 or params.presence_penalty != 0.0
                                               or params.frequency_penalty != 0.0)
    return bool(params.logit_bias) or penalties
