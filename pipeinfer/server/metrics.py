"""Prometheus metrics of the server (``GET /metrics``), on a registry of its own per app.

Per request: counts by endpoint and status, time to first token and inter-token latency histograms,
prompt and generated token counters, draft tokens proposed and accepted. Live: queue depth, requests
running, generated tokens per second over the last ``window_s`` seconds, acceptance rate. Per
pipeline stage: busy and idle seconds, layers skipped by cancellation, bytes sent: summed over the
finished generations (read from each Stream) when generations run one at a time, or the stages'
own counters (read between batches) when several share the pipeline.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STAGE_KEYS = (("busy_s", "busy_seconds"), ("idle_s", "idle_seconds"), ("layers_skipped", "layers_cancelled"),
               ("runs_skipped", "runs_cancelled"), ("bytes_sent", "bytes_sent"))


class ServerMetrics(Collector):
    """The server's instruments; ``observe_stream`` records one finished generation."""

    def __init__(self, live: Callable[[], Tuple[int, int]],
                 stage_counters: Optional[Callable[[], List[Dict[str, Any]]]] = None, window_s: float = 10.0) -> None:
        self.registry = CollectorRegistry()
        self._live = live  # () -> (queue depth, requests running)
        self._stage_counters = stage_counters  # () -> the stages' cumulative counters (shared pipeline)
        self._window_s = window_s
        self._lock = threading.Lock()
        self._recent: Deque[Tuple[float, int]] = collections.deque()  # (time, tokens) of finished requests
        self._stages: Dict[int, Dict[str, float]] = {}
        self._draft = [0, 0]  # proposed, accepted
        r = self.registry
        self.requests = Counter("pipeinfer_requests", "HTTP requests answered", ["endpoint", "status"], registry=r)
        self.ttft = Histogram("pipeinfer_time_to_first_token_seconds", "request arrival to first generated token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("pipeinfer_inter_token_latency_seconds", "gap between consecutive generated tokens",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("pipeinfer_queue_wait_seconds", "request arrival to the start of its generation",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("pipeinfer_prompt_tokens", "prompt tokens of finished requests", registry=r)
        self.generated_tokens = Counter("pipeinfer_generated_tokens", "tokens generated", registry=r)
        self.cancelled = Counter("pipeinfer_requests_cancelled", "generations stopped early (client went away)",
                                 registry=r)
        self.draft_tokens = Counter("pipeinfer_draft_tokens", "draft tokens sent for verification", registry=r)
        self.draft_accepted = Counter("pipeinfer_draft_tokens_accepted", "draft tokens the target confirmed",
                                      registry=r)
        r.register(self)

    def observe_stream(self, s: Any, queue_wait_s: float) -> None:
        """Records a finished (or cancelled) generation from its Stream."""
        t = s.timings
        if s.tokens:
            self.ttft.observe(queue_wait_s + t.ttft_ms / 1e3)
        for gap in t.itl_ms:
            self.itl.observe(gap / 1e3)
        self.queue_wait.observe(queue_wait_s)
        if s.finish_reason == "cancelled":
            self.cancelled.inc()
        self.prompt_tokens.inc(len(s.prompt_tokens))
        self.generated_tokens.inc(len(s.tokens))
        self.draft_tokens.inc(s.stats.draft_n)
        self.draft_accepted.inc(s.stats.draft_n_accepted)
        with self._lock:
            self._recent.append((time.monotonic(), len(s.tokens)))
            self._draft[0] += s.stats.draft_n
            self._draft[1] += s.stats.draft_n_accepted
            for i, st in enumerate(s.stage_stats):
                acc = self._stages.setdefault(i, {k: 0.0 for k, _ in _STAGE_KEYS})
                for k, _ in _STAGE_KEYS:
                    acc[k] += float(st.get(k, 0))

    def tokens_per_second(self) -> float:
        """Generated tokens per second over the window (requests finished in it)."""
        now = time.monotonic()
        with self._lock:
            while self._recent and self._recent[0][0] < now - self._window_s:
                self._recent.popleft()
            n = sum(k for _, k in self._recent)
        return n / self._window_s

    def collect(self) -> Iterator[Any]:
        depth, running = self._live()
        yield GaugeMetricFamily("pipeinfer_queue_depth", "requests waiting for a slot", value=depth)
        yield GaugeMetricFamily("pipeinfer_requests_running", "requests generating now", value=running)
        yield GaugeMetricFamily("pipeinfer_tokens_per_second",
                                f"tokens generated per second over the last {self._window_s:g} s",
                                value=self.tokens_per_second())
        with self._lock:
            proposed, accepted = self._draft
            stages: List[Tuple[int, Dict[str, float]]] = sorted(self._stages.items())
        if self._stage_counters is not None:
            stages = [(i, {k: float(st.get(k, 0)) for k, _ in _STAGE_KEYS}) for i, st in enumerate(self._stage_counters())]
        yield GaugeMetricFamily("pipeinfer_acceptance_rate", "draft tokens accepted / proposed since start",
                                value=accepted / proposed if proposed else 0.0)
        for key, name in _STAGE_KEYS:
            fam = CounterMetricFamily(f"pipeinfer_stage_{name}", f"per pipeline stage: {name.replace('_', ' ')}",
                                      labels=["stage"])
            for i, acc in stages:
                fam.add_metric([str(i)], acc[key])
            yield fam
