"""The slots of a Pipeline: what each concurrent generation owns.

A slot is one generation's share of the engine: a Target (the native pipeline itself when the
Pipeline has one slot, else a ``SlotTarget`` view through the ``Batcher``), the tokens its canonical
KV sequence holds (its prompt cache), and its own drafter and speculation policy (both keep
per-generation state). With several slots the native pipeline holds one group of KV sequence ids per
slot and ``n_ctx`` counts every slot's context together (llama.cpp's ``-c`` with ``-np``), plus room for
each slot's speculative buffers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from pipeinfer.batching.batcher import Batcher
from pipeinfer.batching.slot_target import SlotTarget
from pipeinfer.speculation import SpeculationPolicy


@dataclass
class Slot:
    index: int
    target: Any  # a pipeinfer.speculation.Target
    drafter: Any  # a Drafter, or None (iterative mode)
    policy: SpeculationPolicy
    cached: List[int] = field(default_factory=list)  # tokens whose K/V sit in the canonical sequence at 0..len-1


@dataclass
class SlotLayout:
    """How a multi-slot native pipeline is sized."""

    n_slots: int
    n_ctx_slot: int  # positions per slot
    reserve: int  # cells per slot for speculative buffers

    @property
    def n_ctx_native(self) -> int:
        return self.n_slots * (self.n_ctx_slot + self.reserve)


def layout(parallel: int, n_ctx: int, n_ctx_train: int, n_buffers: int, n_draft: int) -> SlotLayout:
    """Splits the context `n_ctx` (0: min(trained context, 4096)) between `parallel` slots."""
    total = n_ctx if n_ctx > 0 else min(n_ctx_train, 4096)
    per = total // parallel
    if per < 2:
        raise ValueError(f"a context of {total} tokens cannot be split between {parallel} slots (n_ctx / parallel "
                         "must be at least 2)")
    return SlotLayout(parallel, per, n_buffers * n_draft + 2 if n_buffers else 0)


def make_slots(native: Any, lay: SlotLayout, n_buffers: int, n_branches: int, policy: SpeculationPolicy,
               make_drafter: Callable[[], Any], max_batch_tokens: int) -> "tuple[Batcher, List[Slot]]":
    """The batcher over `native` (built with n_slots = lay.n_slots) and a slot view per slot."""
    batcher = Batcher(native, lay.n_slots, max_batch_tokens=max_batch_tokens)
    slots = []
    for k in range(lay.n_slots):
        target = SlotTarget(batcher, k, lay.n_ctx_slot, native.n_vocab, native.n_stages, native.seqs_per_slot,
                            n_buffers, n_branches, lay.reserve)
        slots.append(Slot(k, target, make_drafter(), copy.deepcopy(policy)))
    return batcher, slots


def common_prefix(a: List[int], b: List[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def close_slots(batcher: Optional[Batcher], slots: List[Slot]) -> None:
    if batcher is not None:
        batcher.close()
    for s in slots:
        if s.drafter is not None:
            s.drafter.close()
            s.drafter = None
