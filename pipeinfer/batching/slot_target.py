"""One serving slot's view of the shared pipeline: a ``pipeinfer.speculation.Target`` for one generation.

The decoders and the prompt code see the layout of a single generation: sequence 0 canonical, the
speculative buffers' branches after it. The view maps those slot-local sequence ids to the slot's
group of global ids (``k * seqs_per_slot + local``; the native KV cache makes each group's first id
visible to the rest of the group), keeps the slot's own ring of speculative buffers, and hands every
run and KV command to the ``Batcher``, which merges the runs of all slots.

KV capacity: each slot owns ``n_ctx`` positions plus room for its speculative buffers (``reserve``
cells); the native cache is sized for all slots, so one slot can never fill it for the others.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import numpy as np

from pipeinfer.batching.batcher import Batcher, Part
from pipeinfer.speculation import RunResult


class SlotTarget:
    """The Target protocol for slot `slot` (see module docstring)."""

    def __init__(self, batcher: Batcher, slot: int, n_ctx: int, n_vocab: int, n_stages: int, seqs_per_slot: int,
                 n_buffers: int, n_branches: int, reserve: int) -> None:
        self.batcher = batcher
        self.slot = slot
        self.n_ctx = n_ctx
        self.n_vocab = n_vocab
        self.n_stages = n_stages
        self._base = slot * seqs_per_slot
        self._span = seqs_per_slot
        self._n_branches = n_branches
        self._free: List[int] = list(range(n_buffers - 1, -1, -1))  # a stack: the last released is reused first
        self._cells = {b: 0 for b in range(n_buffers)}  # buffer -> cells its run allocated
        self._reserve = reserve
        self._canon_max = -1  # highest canonical position launched

    # ------------------------------------------------------------------ sequence ids
    def _global(self, local: int) -> int:
        if not 0 <= local < self._span:
            raise ValueError(f"slot sequence id {local} is outside [0, {self._span})")
        return self._base + int(local)

    def _global_lists(self, seq_ids: Any, n: int) -> List[List[int]]:
        if isinstance(seq_ids, np.ndarray):
            if seq_ids.shape != (n,):
                raise ValueError(f"seq_ids must have one entry per token ({n})")
            return [[self._global(int(s))] for s in seq_ids]
        if len(seq_ids) != n:
            raise ValueError(f"seq_ids must have one entry per token ({n}), got {len(seq_ids)}")
        # numpy's isscalar narrows to a union holding np.generic and memoryview, whose stubs lack __int__;
        # int() of a scalar that is no number raises TypeError, as for any other bad id
        return [[self._global(int(s))] if np.isscalar(s)  # type: ignore[arg-type]
                else [self._global(int(x)) for x in s] for s in seq_ids]

    # ------------------------------------------------------------------ runs
    def submit(self, tokens: np.ndarray, pos: np.ndarray, seq_ids: Any, logits: np.ndarray, exact_rows: bool = False,
               argmax_only: bool = False) -> int:
        tokens = np.ascontiguousarray(tokens, np.int32)
        pos = np.ascontiguousarray(pos, np.int32)
        seqs = self._global_lists(seq_ids, len(tokens))
        for s, p in zip(seqs, pos):
            if self._base in s:
                self._canon_max = max(self._canon_max, int(p))
            else:
                b = (s[0] - self._base - 1) // self._n_branches
                self._cells[b] = self._cells.get(b, 0) + 1
        part = Part(self.slot, -1, tokens, pos, seqs, np.ascontiguousarray(logits, np.uint8), bool(exact_rows),
                    bool(argmax_only))
        return self.batcher.submit(part)

    def poll(self) -> bool:
        return self.batcher.poll(self.slot)

    def wait(self) -> RunResult:
        return self.batcher.wait(self.slot)

    def cancel(self, run_ids: Sequence[int]) -> None:
        self.batcher.cancel(self.slot, list(run_ids))

    @property
    def n_in_flight(self) -> int:
        return self.batcher.n_in_flight(self.slot)

    # ------------------------------------------------------------------ KV
    @property
    def kv_n_free(self) -> int:
        """Cells this slot may still use: its positions left plus its speculative room left."""
        return (self.n_ctx - self._canon_max - 1) + (self._reserve - sum(self._cells.values()))

    def kv_seq_rm(self, seq: int, p0: int, p1: int) -> None:
        g = self._global(seq) if seq >= 0 else -1
        if g < 0:
            raise ValueError("a slot cannot clear every sequence (seq = -1); clear its own sequences")
        if seq == 0:
            self._canon_max = min(self._canon_max, p0 - 1) if p0 >= 0 else -1
        self.batcher.kv(self.slot, lambda n: n.kv_seq_rm(g, p0, p1))

    def kv_seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        gs, gd = self._global(src), self._global(dst)
        self.batcher.kv(self.slot, lambda n: n.kv_seq_cp(gs, gd, p0, p1))

    def kv_seq_pos_max(self, seq: int) -> int:
        g = self._global(seq)
        return int(self.batcher.call(self.slot, lambda n: n.kv_seq_pos_max(g)))

    def kv_clear(self) -> None:
        """Frees every cell of this slot (all its sequences)."""
        self._canon_max = -1
        for b in self._cells:
            self._cells[b] = 0
        ids = [self._base + j for j in range(self._span)]
        self.batcher.kv(self.slot, lambda n: [n.kv_seq_rm(g, 0, -1) for g in ids])

    # ------------------------------------------------------------------ speculative buffers
    def spec_acquire(self) -> int:
        return self._free.pop() if self._free else -1

    def spec_release(self, buffer: int) -> None:
        if buffer in self._free or buffer not in self._cells:
            raise ValueError(f"speculative buffer {buffer} is not in use")
        ids = [self._global(self.spec_seq(buffer, j)) for j in range(self._n_branches)]
        self.batcher.kv(self.slot, lambda n: [n.kv_seq_rm(g, 0, -1) for g in ids])
        self._cells[buffer] = 0
        self._free.append(buffer)

    def spec_seq(self, buffer: int, branch: int = 0) -> int:
        return 1 + buffer * self._n_branches + branch

    @property
    def spec_free(self) -> int:
        return len(self._free)

    def spec_commit(self, seq: int, p0: int, p1: int) -> None:
        g = self._global(seq)
        if seq == 0:
            raise ValueError("cannot commit the canonical sequence")
        if p1 > p0:
            self._canon_max = max(self._canon_max, p1 - 1)
            self.batcher.kv(self.slot, lambda n: n.spec_commit(g, p0, p1))
