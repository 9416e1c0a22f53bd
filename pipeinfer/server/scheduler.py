"""Requests waiting for and running on the engine: a bounded queue and one worker thread per slot.

Each accepted request becomes a :class:`Job` holding a ready ``Stream`` (validated and tokenized by
the route, so that bad requests never queue). A worker thread iterates the stream and hands every
piece to the event loop; the HTTP side reads them with :meth:`Job.next_event`. ``Job.cancel`` (a
client that went away) stops the stream at its next token, or drops the job if it is still queued.

With one slot the workers run the requests one after the other (a Pipeline runs one generation at
a time); the queue holds at most ``max_queue`` waiting requests and refuses more with
:class:`QueueFull` (HTTP 503 with Retry-After).
"""
from __future__ import annotations

import asyncio
import collections
import threading
import time
from typing import Any, Callable, Deque, List, Optional, Tuple

Event = Tuple[str, Any]  # ("chunk", dict) | ("done", None) | ("error", BaseException)


class QueueFull(Exception):
    """Every slot is busy and the waiting queue is full."""


class Job:
    """One request: its work (run on a worker thread) and the events it produced."""

    def __init__(self, work: Callable[["Job"], None], loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.stream: Any = None  # the pipeinfer Stream, once the work made it
        self.t_submit = time.perf_counter()
        self.t_start: Optional[float] = None
        self._loop = loop
        self._events: "asyncio.Queue[Event]" = asyncio.Queue()
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Stops the job (thread-safe): a queued job never runs, a running one stops at its next token."""
        self._cancel.set()
        if self.stream is not None:
            self.stream.cancel()

    def emit(self, kind: str, payload: Any = None) -> None:
        """Called by the worker thread."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, payload))
        except RuntimeError:  # the event loop is closed (server shutting down)
            self.cancel()

    async def next_event(self) -> Event:
        return await self._events.get()


class Scheduler:
    """A bounded FIFO of jobs served by ``n_workers`` threads."""

    def __init__(self, n_workers: int, max_queue: int, on_change: Optional[Callable[[], None]] = None) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.n_workers = n_workers
        self.max_queue = max_queue
        self._on_change = on_change or (lambda: None)
        self._cond = threading.Condition()
        self._waiting: Deque[Job] = collections.deque()
        self._running = 0
        self._active: "set[Job]" = set()
        self._closed = False
        self._threads: List[threading.Thread] = [
            threading.Thread(target=self._serve, name=f"pipeinfer-slot-{i}", daemon=True) for i in range(n_workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    def submit(self, job: Job) -> None:
        """Queues a job; raises QueueFull when every slot is busy and max_queue jobs already wait."""
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            if self._running + len(self._waiting) >= self.n_workers + self.max_queue:
                raise QueueFull(f"{self._running} requests running and {len(self._waiting)} waiting")
            self._waiting.append(job)
            self._cond.notify()
        self._on_change()

    def _take(self) -> Optional[Job]:
        with self._cond:
            while not self._closed:
                while self._waiting:
                    job = self._waiting.popleft()
                    if not job.cancelled:
                        self._running += 1
                        self._active.add(job)
                        return job
                self._cond.wait()
            return None

    def _serve(self) -> None:
        while True:
            job = self._take()
            if job is None:
                return
            self._on_change()
            job.t_start = time.perf_counter()
            try:
                job.work(job)
                job.emit("done")
            except BaseException as e:  # noqa: BLE001 - handed to the request that caused it
                job.emit("error", e)
            finally:
                with self._cond:
                    self._running -= 1
                    self._active.discard(job)
                self._on_change()

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancels waiting jobs and stops the workers once their running jobs end."""
        with self._cond:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
            active = list(self._active)
        for job in active:
            job.cancel()
        for job in waiting:
            job.cancel()
            job.emit("error", QueueFull("the server is shutting down"))
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
