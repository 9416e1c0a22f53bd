"""Who uses which slot of one Pipeline.

A Pipeline has ``parallel`` slots (1 by default); each slot's KV sequences and prompt cache describe
one generation in flight, and two generations on one slot would overwrite each other's KV cells and
return wrong text. The guard gives each use of a Pipeline a slot of its own (a stream holds one from
its first token to its end or ``close()``), or every slot at once (``eval_logits``, ``reset``,
``close``):

- a thread that finds no free slot waits for one, so concurrent threads each get correct output;
- a thread whose own streams hold every slot cannot wait for itself, so it gets
  :class:`PipelineBusyError` saying what to do instead.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional


class PipelineBusyError(RuntimeError):
    """A Pipeline was used again by the thread whose unfinished streams hold all its slots."""


class UseGuard:
    """n_slots owner locks that know their owners: wait for other threads, refuse the owning thread."""

    def __init__(self, n_slots: int = 1) -> None:
        self._cond = threading.Condition()
        self._threads: List[Optional[int]] = [None] * n_slots  # ident of each slot's owning thread
        self._owners: List[Any] = [None] * n_slots  # the Stream (or a token) holding each slot

    @property
    def owners(self) -> List[Any]:
        with self._cond:
            return [o for o in self._owners if o is not None]

    def owned_here(self) -> List[Any]:
        """Owners of slots held by this thread."""
        me = threading.get_ident()
        with self._cond:
            return [o for o, t in zip(self._owners, self._threads) if t == me]

    def slot_of(self, owner: Any) -> int:
        with self._cond:
            return next(i for i, o in enumerate(self._owners) if o is owner)

    def acquire(self, owner: Any, what: str, score: Optional[Callable[[int], int]] = None) -> int:
        """Gives `owner` a free slot (the one with the highest score(slot)); waits while none is free.

        Raises PipelineBusyError if this thread itself holds every slot (waiting would never end).
        """
        me = threading.get_ident()
        with self._cond:
            while True:
                free = [i for i, t in enumerate(self._threads) if t is None]
                if free:
                    best = max(free, key=score) if score is not None else free[0]
                    self._threads[best], self._owners[best] = me, owner
                    return best
                if all(t == me for t in self._threads):
                    raise PipelineBusyError(self._busy_message(what))
                self._cond.wait()

    def release(self, owner: Any) -> None:
        """Frees the slots `owner` holds (from any thread: a stream may be finalised elsewhere)."""
        with self._cond:
            for i, o in enumerate(self._owners):
                if o is owner:
                    self._threads[i], self._owners[i] = None, None
                    self._cond.notify_all()

    @contextmanager
    def held(self, what: str) -> Iterator[None]:
        """Every slot, for the duration of one call."""
        me = threading.get_ident()
        token = object()
        with self._cond:
            while any(t is not None for t in self._threads):
                if any(t == me for t in self._threads):
                    raise PipelineBusyError(self._busy_message(what))
                self._cond.wait()
            self._threads = [me] * len(self._threads)
            self._owners = [token] * len(self._owners)
        try:
            yield
        finally:
            self.release(token)

    def _busy_message(self, what: str) -> str:
        n = len(self._threads)
        held = "its slot" if n == 1 else f"all {n} of its slots" if all(self._threads) else "a slot"
        return (f"cannot {what}: this thread's unfinished streams hold {held} of this Pipeline; a Pipeline runs "
                f"{n} generation{'s' if n > 1 else ''} at a time, so iterate a Stream to its end or call its "
                "close() first (for more concurrent requests use Pipeline(parallel=N) / "
                "`pipeinfer serve --parallel N`)")
