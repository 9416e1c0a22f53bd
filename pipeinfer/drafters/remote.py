"""Drafting on a dedicated rank (the paper's topology): the head's side and the draft rank's side.

- `DraftServer` runs on the draft rank (an MPI rank after the target stages, or a thread of the head's
  process with the local transport). It keeps a drafter's context equal to the head's accepted tokens
  followed by its own drafts, drafts token after token up to `ahead` tokens beyond the accepted ones,
  streams each to the head, and restarts from the accepted prefix when told the text went another way:
  the drafter trims its KV cache to the common prefix (ModelDrafter keeps its cache across calls by
  longest common prefix), nothing is recomputed.
- `RemoteDrafter` is the head's Drafter over that stream: `propose` returns at once with the drafts
  that have arrived and continue the asked context (the head never waits for drafting unless it has
  nothing else to do: the decoders then call `wait`); `accepted` tells the draft rank what the target
  confirmed.

Protocol (runtime/protocol.h draft_sync / draft_tokens): the head's accepted context is the draft
rank's first n_common tokens followed by `tokens`; an epoch number changes whenever tokens are
replaced, and proposals of an older epoch are dropped. An empty proposal marks the end of a chain
(the drafter's top-1 probability fell below p_min).

This module moves drafts; what the drafter is (a model, an oracle, ...) is the caller's choice.
"""
from __future__ import annotations

import time
from typing import Any, List, Optional, Sequence

from pipeinfer.speculation.interfaces import Drafter, DraftLimits, check_limits
from pipeinfer.speculation.tree import DraftTree

__all__ = ["RemoteDrafter", "DraftServer"]


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class RemoteDrafter(Drafter):
    """The head's view of a draft rank.

    Args:
        native: the head's native pipeline (its draft channel: sync_drafter, draft_poll,
            wait_result_or_draft).
        ahead: tokens the draft rank keeps drafted beyond the accepted ones.
        p_min: the draft rank ends a chain when its top-1 probability falls below this.
        n_vocab: the draft vocabulary (reported to wrappers).
    """

    asynchronous = True
    cheap = True  # drafting costs the head nothing

    def __init__(self, native: Any, ahead: int, p_min: float = 0.0, n_vocab: Optional[int] = None) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be >= 1, got {ahead}")
        self.native = native
        self.ahead = int(ahead)
        self.p_min = float(p_min)
        self.n_vocab = n_vocab
        self.epoch = -1
        self.remote: List[int] = []  # the draft rank's context as far as the head knows it
        self.p: List[float] = []  # probability of each drafted token in remote (1.0 for accepted ones)
        self.n_accepted = 0
        self.ended = False  # the draft rank ended its chain (low confidence) in this epoch
        self.interval_s: Optional[float] = None  # measured seconds between drafted tokens (EWMA)
        self._last_arrival: Optional[float] = None

    def begin(self, prompt: Sequence[int]) -> None:
        self.accepted(prompt)

    def accepted(self, tokens: Sequence[int]) -> None:
        self._drain()
        toks = [int(t) for t in tokens]
        n = _common(toks, self.remote)
        if self.epoch >= 0 and n == len(toks):
            if len(toks) > self.n_accepted:  # confirmed along the drafts: draft further ahead
                self.native.sync_drafter(self.epoch, len(toks), [], self.ahead, self.p_min)
        else:  # the text went another way (or the first call): restart from the common prefix
            self.epoch += 1
            self.native.sync_drafter(self.epoch, n, toks[n:], self.ahead, self.p_min)
            self.remote = list(toks)
            self.p = [1.0] * len(toks)
            self.ended = False
        self.n_accepted = len(toks)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        limits = check_limits(limits)
        self._drain()
        ctx = [int(t) for t in context]
        if limits.n_draft == 0 or _common(ctx, self.remote) < len(ctx):
            return DraftTree([])
        toks, ps = [], []
        for t, p in zip(self.remote[len(ctx):len(ctx) + limits.n_draft], self.p[len(ctx):len(ctx) + limits.n_draft]):
            if p < limits.p_accept:
                break
            toks.append(t)
            ps.append(p)
        return DraftTree.chain(toks, ps)

    def pending(self, context: Sequence[int], n: int) -> bool:
        self._drain()
        if self.ended or _common(context, self.remote) < len(context):
            return False
        return len(self.remote) - len(context) < min(n, self.ahead - (len(context) - self.n_accepted))

    def wait(self, timeout_s: float) -> bool:
        return self.native.wait_result_or_draft(timeout_s) == 2

    def _drain(self) -> None:
        for epoch, pos, tokens, p in self.native.draft_poll():
            if epoch != self.epoch:
                continue  # drafted from a context the head has left
            if pos != len(self.remote):
                raise RuntimeError(f"draft rank sent tokens for position {pos}, expected {len(self.remote)}")
            if not tokens:
                self.ended = True
            elif pos > self.n_accepted:  # a later token of a chain: the drafting pace
                now = time.perf_counter()
                if self._last_arrival is not None:
                    dt = (now - self._last_arrival) / len(tokens)
                    self.interval_s = dt if self.interval_s is None else 0.8 * self.interval_s + 0.2 * dt
                self._last_arrival = now
            else:
                self._last_arrival = time.perf_counter()
            self.remote.extend(int(t) for t in tokens)
            self.p.extend(float(x) for x in p)


class DraftServer:
    """Serves a drafter on a draft rank (module docstring).

    Args:
        link: the rank's `_core.DraftLink`.
        drafter: any Drafter (it is asked for one token at a time).
    """

    POLL_S = 0.05  # wait for the head this long at a time while idle

    def __init__(self, link: Any, drafter: Drafter) -> None:
        self.link = link
        self.drafter = drafter
        self.ctx: List[int] = []
        self.base = 0  # accepted tokens in ctx
        self.epoch = -1
        self.ahead = 0
        self.p_min = 0.0
        self.ended = False

    def serve(self) -> None:
        """Drafts until the head says stop; reports any failure to the head before raising it."""
        try:
            while True:
                busy = self.epoch >= 0 and not self.ended and len(self.ctx) - self.base < self.ahead
                msg = self.link.recv(0.0 if busy else self.POLL_S)
                while msg is not None:
                    if msg[0] == "stop":
                        return
                    self._sync(*msg[1:])
                    msg = self.link.recv(0.0)
                if self.epoch >= 0 and not self.ended and len(self.ctx) - self.base < self.ahead:
                    self._draft_one()
        except Exception as e:
            try:
                self.link.error(_error_kind(e), f"draft rank: {type(e).__name__}: {e}")
            except Exception:
                pass  # the head is gone too
            raise
        finally:
            self.drafter.close()

    def _sync(self, epoch: int, n_common: int, tokens: List[int], ahead: int, p_min: float) -> None:
        if n_common > len(self.ctx):
            raise RuntimeError(f"the head keeps {n_common} tokens of a draft context of {len(self.ctx)}")
        if tokens:
            self.ctx = self.ctx[:n_common] + list(tokens)
            self.base = len(self.ctx)
            self.ended = False
        else:
            self.base = n_common
        self.epoch, self.ahead, self.p_min = epoch, ahead, p_min

    def _draft_one(self) -> None:
        tree = self.drafter.propose(self.ctx, DraftLimits(n_draft=1, p_accept=self.p_min))
        if len(tree) == 0:
            self.ended = True
            self.link.send(self.epoch, len(self.ctx), [], [])
            return
        node = tree.nodes[0]
        self.link.send(self.epoch, len(self.ctx), [node.token], [node.p])
        self.ctx.append(node.token)


def _error_kind(e: BaseException) -> str:
    """The kind the head re-raises a draft rank's error as (runtime/stage-worker.cpp error kinds)."""
    from pipeinfer import _core

    for cls, kind in ((_core.GGUFError, "gguf"), (_core.ModelError, "model"), (_core.TransportError, "transport"),
                      (ValueError, "invalid")):
        if isinstance(e, cls):
            return kind
    return "other"
