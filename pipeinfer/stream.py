"""One generation as the caller sees it: the `Stream` of text pieces and its `Timings`.

This module owns a generation's public state (tokens, text, finish reason, timings, speculation
counters, logprobs records) and its life cycle on a shared pipeline (taking a slot at the first
token, cancelling, closing). It does not run the model or choose tokens (pipeline.py runs the token
loop over the decoders of pipeinfer.speculation; pipeinfer.sampling chooses).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Generator, Iterator, List, Optional

import numpy as np

from pipeinfer.batching.slots import common_prefix
from pipeinfer.guard import UseGuard
from pipeinfer.sampling import Constraint, SamplingParams, TokenChooser, TokenLogprob
from pipeinfer.speculation import DecodeStats

if TYPE_CHECKING:
    from pipeinfer.pipeline import Pipeline

__all__ = ["Timings", "Stream", "stats_delta"]


@dataclass
class Timings:
    """Per-generation timings, with llama.cpp's field names where one exists."""

    prompt_n: int = 0  # prompt tokens evaluated (cached prefix excluded)
    prompt_ms: float = 0.0  # prefill wall time
    predicted_n: int = 0  # tokens generated
    predicted_ms: float = 0.0  # wall time from the end of prefill to the last token
    ttft_ms: float = 0.0  # request start to first generated token, prefill included
    cached_n: int = 0  # prompt tokens reused from the previous request's KV cache
    itl_ms: List[float] = field(default_factory=list)  # gaps between consecutive generated tokens

    @property
    def prompt_per_second(self) -> float:
        return 1e3 * self.prompt_n / self.prompt_ms if self.prompt_ms > 0 else 0.0

    @property
    def predicted_per_second(self) -> float:
        return 1e3 * self.predicted_n / self.predicted_ms if self.predicted_ms > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        itl = np.asarray(self.itl_ms) if self.itl_ms else np.zeros(1)
        return {
            "prompt_n": self.prompt_n,
            "prompt_ms": self.prompt_ms,
            "prompt_per_second": self.prompt_per_second,
            "predicted_n": self.predicted_n,
            "predicted_ms": self.predicted_ms,
            "predicted_per_second": self.predicted_per_second,
            "ttft_ms": self.ttft_ms,
            "ttft_no_prefill_ms": max(0.0, self.ttft_ms - self.prompt_ms),
            "cached_n": self.cached_n,
            "itl_ms_mean": float(itl.mean()),
            "itl_ms_p50": float(np.percentile(itl, 50)),
            "itl_ms_p99": float(np.percentile(itl, 99)),
        }


class Stream:
    """Iterator over the text pieces of one generation, as they are produced.

    While and after iterating, ``tokens`` holds the generated token ids, ``text`` the text so far,
    ``finish_reason`` is ``"stop"`` or ``"length"`` once finished, ``timings`` the measurements,
    ``stats`` the speculation counters and ``logprobs`` the per-token log-probabilities (when asked
    for); :meth:`metrics` gathers everything in one dict.
    """

    def __init__(self, pipeline: "Pipeline", prompt_ids: List[int], params: SamplingParams,
                 constraint: Optional[Constraint] = None):
        self.prompt_tokens: List[int] = list(prompt_ids)
        self.tokens: List[int] = []
        self.mode: str = pipeline.mode
        self.stats = DecodeStats()
        self.text: str = ""
        self.finish_reason: Optional[str] = None
        self.timings = Timings()
        self.stage_stats: List[Dict[str, Any]] = []  # per stage, counted over this generation only
        self.trace: Optional[list] = [] if getattr(pipeline, "_trace", False) else None  # head events
        self._guard: Optional[UseGuard] = pipeline._guard
        self._slot = -1  # the Pipeline slot this generation holds, from its first token
        self._prefix_score = lambda k: common_prefix(pipeline._slots[k].cached, prompt_ids)
        self._started = False
        self._cancel = threading.Event()
        self.tokenizer: Any = pipeline.tokenizer  # token strings of the logprobs records
        self.chooser: Optional[TokenChooser] = None  # set when the generation starts
        self._it = self._guarded(pipeline._run(self, prompt_ids, params, constraint))

    @property
    def logprobs(self) -> Optional[List[TokenLogprob]]:
        """One record per generated token (``tokens[i]``'s log-probability and top alternatives) when the
        request asked for logprobs, else None."""
        ch = self.chooser
        if ch is None or ch.params.logprobs is None:
            return None
        return ch.logprobs[: len(self.tokens)]

    def _guarded(self, it: Iterator[str]) -> Generator[str, None, None]:
        try:
            yield from it
        finally:
            if self._guard is not None:
                self._guard.release(self)

    def metrics(self) -> Dict[str, Any]:
        """Everything measured for this generation, in one flat dict.

        Timings use llama.cpp's names (prompt_ms, predicted_per_second, ...) plus ttft_ms (request
        start to first token, prefill included), ttft_no_prefill_ms, and itl_ms mean/p50/p99. Speculation:
        draft_n, draft_n_accepted, acceptance_rate, mean_accepted_length (tokens per verified
        speculative run), runs_launched, runs_cancelled. Pipeline: layers_skipped and runs_skipped per
        stage, and bytes_sent_per_token (all stages, per generated token).
        """
        m: Dict[str, Any] = {"mode": self.mode, "tokens": len(self.tokens), "finish_reason": self.finish_reason}
        m.update(self.timings.as_dict())
        m.update(self.stats.as_dict())
        if self.stage_stats:
            m["layers_skipped"] = [st["layers_skipped"] for st in self.stage_stats]
            m["runs_skipped"] = [st["runs_skipped"] for st in self.stage_stats]
            sent = sum(st["bytes_sent"] for st in self.stage_stats)
            m["bytes_sent_per_token"] = sent / max(1, len(self.tokens))
            m["stage_busy_s"] = [st["busy_s"] for st in self.stage_stats]
            m["stage_idle_s"] = [st["idle_s"] for st in self.stage_stats]
        return m

    @classmethod
    def empty(cls) -> "Stream":
        """A finished stream with no output (what a non-head MPI rank gets)."""
        s = cls.__new__(cls)
        s.prompt_tokens, s.tokens, s.text, s.finish_reason, s.timings = [], [], "", "worker", Timings()
        s.mode, s.stats, s.stage_stats, s.trace = "worker", DecodeStats(), [], None
        s.tokenizer, s.chooser = None, None
        s._guard, s._started, s._cancel, s._it = None, True, threading.Event(), s._guarded(iter(()))
        return s

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> str:
        if not self._started:
            # the pipeline is taken at the first token and freed when the generation ends or is closed
            if self._guard is not None:
                self._slot = self._guard.acquire(self, "start a stream", score=self._prefix_score)
            self._started = True
        return next(self._it)

    def cancel(self) -> None:
        """Asks the generation to stop at its next token (from any thread; ``close`` must be called
        from the thread iterating). The stream then ends with finish_reason ``"cancelled"``."""
        self._cancel.set()

    def close(self) -> None:
        """Stops the generation (cancelling what is in flight) and frees the pipeline."""
        self._started = True  # a stream closed before its first token never takes the pipeline
        self._it.close()


def stats_delta(before: List[Dict[str, Any]], after: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Per-stage counters over one generation: ``after - before`` for the counting fields."""
    out = []
    for b, a in zip(before, after):
        d = dict(a)
        for k in ("runs", "runs_skipped", "tokens", "layers_run", "layers_skipped", "bytes_sent", "messages_sent",
                  "busy_s", "idle_s"):
            d[k] = a[k] - b[k]
        out.append(d)
    return out
