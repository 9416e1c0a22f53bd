"""A discrete-event model of the pipeline and of the three decoding modes' head policies.

This module owns the model only: it takes costs (seconds, bytes, probabilities) and returns predicted
timings. It must not run models or measure anything (calibrate.py measures the inputs here).

What is modelled:
- The head (rank 0) is one serial resource: it computes stage 0 of every run it launches (as
  `_core.Pipeline.submit` does on the caller's thread), drafts, and processes every result (sampling,
  verification, Python bookkeeping: `head_result_s`; launching costs `head_submit_s`).
- Stages 1..N-1 each serve runs first-in first-out; a run of b tokens costs `fixed_s + per_token_s * b`.
- Each hop (stage i -> i+1, and the last stage -> head) is a serial link: a message of n bytes occupies it
  for 8 n / bandwidth and arrives `latency_s` after it leaves. Activations are `act_bytes_per_token` per
  token, results `logits_bytes_per_row` per token (exact rows: one logits row per batch token).
- Cancellation (PipeInfer spec section 4): a cancel message reaches every worker stage `latency_s` after
  the head sends it; a run not yet started there is skipped, a run in progress stops at the next layer
  boundary. Skipped runs still travel to the head as empty messages (latency only).
- Draft correctness: the target's greedy text is a fixed sequence. A token drafted from a context that
  agrees with it is right with probability `acceptance` (independently per token); every token drafted
  after a wrong one is wrong. So a k-token chain is accepted up to its first error: a truncated geometric.
- The head policies mirror pipeinfer.speculation: `iterative` (one token in flight), `speculative` (draft,
  verify in one run of 1 + k tokens, repeat) and `pipeinfer` (after each acceptance a one-token
  non-speculative run; speculative micro-batches continuing the furthest speculation while the oldest
  result is outstanding, at most max_in_flight; results consumed in launch order; runs contradicted by
  an acceptance cancelled). The draft length comes from a real pipeinfer.SpeculationPolicy (adaptive
  or fixed), fed with the simulated verifications, as in the engine.

Not modelled: CPU contention between the head's threads and co-located stages (each stage is assumed
to own its cores), draft trees (chains only), drafters that propose nothing, KV capacity.

Metrics follow pipeinfer.pipeline.Timings: time 0 is the end of prefill, the first token (sampled from
the prompt's logits) is emitted at time 0; speed = tokens / time of the last token; ttft_decode =
time of the second token (the first one a decode run produced); ITL = mean gap between tokens.
"""
from __future__ import annotations

import copy
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

import numpy as np

from pipeinfer.speculation import SpeculationPolicy

__all__ = ["StageCost", "Link", "SimConfig", "SimResult", "simulate", "MODES"]

MODES = ("iterative", "speculative", "pipeinfer")
_INF = math.inf


@dataclass(frozen=True)
class StageCost:
    """Compute time of one stage for a run of b tokens: fixed_s + per_token_s * b seconds.

    n_layers: layers of the stage (a cancelled run stops at a layer boundary).
    """

    fixed_s: float
    per_token_s: float = 0.0
    n_layers: int = 1

    def __post_init__(self) -> None:
        if not (self.fixed_s >= 0 and self.per_token_s >= 0):
            raise ValueError(f"stage costs must be >= 0, got fixed_s={self.fixed_s}, per_token_s={self.per_token_s}")
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")

    def time(self, n_tokens: int) -> float:
        return self.fixed_s + self.per_token_s * n_tokens


@dataclass(frozen=True)
class Link:
    """One hop: latency_s one way, bandwidth in bits per second (inf: only latency)."""

    latency_s: float = 0.0
    bandwidth_bps: float = _INF

    def __post_init__(self) -> None:
        if not (self.latency_s >= 0 and self.bandwidth_bps > 0):
            raise ValueError(f"link needs latency_s >= 0 and bandwidth_bps > 0, got {self}")

    def transfer_s(self, n_bytes: float) -> float:
        return 0.0 if self.bandwidth_bps == _INF else 8.0 * n_bytes / self.bandwidth_bps


@dataclass
class SimConfig:
    """Inputs of one simulated generation (see the module docstring for the meaning of each cost).

    Args:
        stages: per-stage costs; stages[0] runs on the head.
        link: the cost of every hop (same for all hops).
        act_bytes_per_token: activation bytes per token per hop (n_embd * 4 for f32).
        logits_bytes_per_row: result bytes per token sent from the last stage to the head (n_vocab * 4).
        head_submit_s / head_result_s: head overhead per launched run / per processed result.
        draft_fixed_s / draft_per_token_s: the head's drafting time for a k-token chain.
        acceptance: probability that a drafted token continuing a right context is right.
        policy: speculation policy (a copy is used; its state is reset).
        n_tokens: tokens to generate (the first one comes from the prompt's logits).
        cancel: early inference cancellation on (PipeInfer) or off (runs always computed in full).
        seed: random seed of the draft errors.
    """

    stages: List[StageCost]
    link: Link = field(default_factory=Link)
    act_bytes_per_token: float = 0.0
    logits_bytes_per_row: float = 0.0
    head_submit_s: float = 0.0
    head_result_s: float = 0.0
    draft_fixed_s: float = 0.0
    draft_per_token_s: float = 0.0
    acceptance: float = 0.0
    policy: SpeculationPolicy = field(default_factory=SpeculationPolicy)
    n_tokens: int = 64
    cancel: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must hold at least one StageCost")
        if not 0.0 <= self.acceptance <= 1.0:
            raise ValueError(f"acceptance must be in [0, 1], got {self.acceptance}")
        if self.n_tokens < 2:
            raise ValueError(f"n_tokens must be >= 2 (the first comes from prefill), got {self.n_tokens}")


@dataclass
class SimResult:
    mode: str
    token_times: List[float]
    runs_launched: int
    runs_cancelled: int
    draft_n: int
    draft_n_accepted: int
    stage_busy_s: List[float]

    @property
    def predicted_per_second(self) -> float:
        t = self.token_times[-1]
        return len(self.token_times) / t if t > 0 else _INF

    @property
    def ttft_decode_ms(self) -> float:
        return 1e3 * self.token_times[1]

    @property
    def itl_ms_mean(self) -> float:
        return 1e3 * float(np.mean(np.diff(self.token_times)))

    def as_dict(self) -> Dict[str, Any]:
        return {
            "mode": self.mode,
            "tokens": len(self.token_times),
            "predicted_per_second": self.predicted_per_second,
            "ttft_decode_ms": self.ttft_decode_ms,
            "itl_ms_mean": self.itl_ms_mean,
            "runs_launched": self.runs_launched,
            "runs_cancelled": self.runs_cancelled,
            "draft_n": self.draft_n,
            "draft_n_accepted": self.draft_n_accepted,
            "acceptance_rate": self.draft_n_accepted / self.draft_n if self.draft_n else 0.0,
            "stage_busy_s": list(self.stage_busy_s),
        }


# ------------------------------------------------------------------------------------------- the world


@dataclass
class _Run:
    rid: int
    n: int  # batch tokens
    spec: bool
    pos: int  # non-speculative: the token's position; speculative: the root's position
    k: int = 0  # drafted tokens (speculative)
    wrong_at: float = _INF  # first wrong position among context + drafts (speculative)
    cancel_at: float = _INF  # when the head cancelled it
    skipped: bool = False
    arrived: float = _INF  # when its result reached the head


class _World:
    """Stages 1..N-1 and the links, driven by events; the head advances it to its own clock."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.n = len(cfg.stages)
        self.events: List[tuple] = []
        self.seq = 0
        self.now = 0.0
        self.queue: List[Deque[_Run]] = [deque() for _ in range(self.n)]
        self.current: List[Optional[_Run]] = [None] * self.n
        self.version: List[int] = [0] * self.n
        self.started: List[float] = [0.0] * self.n
        self.link_free: List[float] = [0.0] * self.n  # hop i leaves stage i (hop n-1: to the head)
        self.busy: List[float] = [0.0] * self.n

    def _at(self, t: float, fn: Callable, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, self.seq, fn, args))

    def advance(self, t: float) -> None:
        while self.events and self.events[0][0] <= t:
            tt, _, fn, args = heapq.heappop(self.events)
            self.now = tt
            fn(*args)
        self.now = max(self.now, t)

    def step(self) -> bool:
        """Processes the next event; False if there is none."""
        if not self.events:
            return False
        tt, _, fn, args = heapq.heappop(self.events)
        self.now = tt
        fn(*args)
        return True

    # a run leaves stage `s` at time t (stage 0: the head, after computing it)
    def send(self, s: int, r: _Run, t: float) -> None:
        c = self.cfg
        nbytes = 0.0 if r.skipped else r.n * (c.logits_bytes_per_row if s == self.n - 1 else c.act_bytes_per_token)
        start = max(t, self.link_free[s])
        done = start + c.link.transfer_s(nbytes)
        self.link_free[s] = done
        arrive = done + c.link.latency_s
        if s == self.n - 1:
            self._at(arrive, self._result, r)
        else:
            self._at(arrive, self._arrive, s + 1, r)

    def _result(self, r: _Run) -> None:
        r.arrived = self.now

    def _arrive(self, s: int, r: _Run) -> None:
        self.queue[s].append(r)
        if self.current[s] is None:
            self._start(s)

    def _start(self, s: int) -> None:
        if not self.queue[s]:
            return
        r = self.queue[s].popleft()
        self.current[s] = r
        self.started[s] = self.now
        self.version[s] += 1
        if r.skipped or self._cancel_seen(s, r) <= self.now:
            r.skipped = True
            self._at(self.now, self._finish, s, self.version[s])
        else:
            self._at(self.now + self.cfg.stages[s].time(r.n), self._finish, s, self.version[s])
            if self._cancel_seen(s, r) < _INF:
                self._at(self._cancel_seen(s, r), self._cancel_arrives, s, r)

    def _cancel_seen(self, s: int, r: _Run) -> float:
        return r.cancel_at + self.cfg.link.latency_s if self.cfg.cancel else _INF

    def _finish(self, s: int, version: int) -> None:
        if version != self.version[s]:
            return  # superseded by an earlier stop (cancellation mid-run)
        r = self.current[s]
        self.busy[s] += self.now - self.started[s]
        self.current[s] = None
        self.send(s, r, self.now)
        self._start(s)

    def _cancel_arrives(self, s: int, r: _Run) -> None:
        if self.current[s] is not r:
            return
        cost = self.cfg.stages[s]
        d = cost.time(r.n)
        layer = d / cost.n_layers
        done = self.started[s] + min(d, math.ceil((self.now - self.started[s]) / layer - 1e-12) * layer)
        r.skipped = True
        self.version[s] += 1
        self._at(max(done, self.now), self._finish, s, self.version[s])

    def cancel(self, r: _Run, t: float) -> None:
        r.cancel_at = t
        for s in range(1, self.n):
            if self.current[s] is r and self.cfg.cancel:
                self._at(t + self.cfg.link.latency_s, self._cancel_arrives, s, r)


# -------------------------------------------------------------------------------------------- the head


class _Head:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.world = _World(cfg)
        self.t = 0.0
        self.rng = np.random.default_rng(cfg.seed)
        self.policy = copy.deepcopy(cfg.policy)
        self.policy.reset()
        self.times: List[float] = [0.0]  # the first token, from the prompt's logits
        self.f = 1  # tokens decided (positions 0..f-1; the prompt is folded into position 0)
        self.next_id = 0
        self.inflight: Deque[_Run] = deque()
        self.n_launched = self.n_cancelled = self.draft_n = self.draft_acc = 0
        self.busy0 = 0.0

    # -- engine calls
    def submit(self, n: int, spec: bool, pos: int, **kw: Any) -> _Run:
        c = self.cfg
        self.world.advance(self.t)
        r = _Run(self.next_id, n, spec, pos, **kw)
        self.next_id += 1
        self.n_launched += 1
        d = c.stages[0].time(n)
        self.t += c.head_submit_s + d
        self.busy0 += d
        if len(c.stages) == 1:
            r.arrived = self.t  # a one-stage pipeline computes the run inside submit
        else:
            self.world.send(0, r, self.t)
        self.inflight.append(r)
        return r

    def poll(self) -> bool:
        self.world.advance(self.t)
        return bool(self.inflight) and self.inflight[0].arrived <= self.t

    def wait(self) -> _Run:
        r = self.inflight[0]
        self.world.advance(self.t)
        while r.arrived == _INF:
            if not self.world.step():
                raise RuntimeError("simulation deadlock: a run never reached the head")
        self.t = max(self.t, r.arrived) + self.cfg.head_result_s
        return self.inflight.popleft()

    def cancel(self, runs: Sequence[_Run]) -> None:
        self.world.advance(self.t)
        for r in runs:
            self.world.cancel(r, self.t)
        self.n_cancelled += len(runs)

    def draft(self, k: int, tip_wrong: float, root: int) -> float:
        """Drafts k tokens after `root`; returns the first wrong position (inf: none)."""
        self.t += self.cfg.draft_fixed_s + self.cfg.draft_per_token_s * k
        self.draft_n += k
        if tip_wrong < _INF:
            return tip_wrong
        for j in range(1, k + 1):
            if self.rng.random() >= self.cfg.acceptance:
                return root + j
        return _INF

    def emit(self, n: int) -> bool:
        """n tokens accepted now; True once n_tokens are reached."""
        for _ in range(n):
            self.times.append(self.t)
            self.f += 1
            if len(self.times) >= self.cfg.n_tokens:
                return True
        return False

    def result(self, mode: str) -> SimResult:
        busy = [self.busy0] + self.world.busy[1:]
        return SimResult(mode, self.times[: self.cfg.n_tokens], self.n_launched, self.n_cancelled, self.draft_n,
                         self.draft_acc, busy)

    # -- the three policies
    def iterative(self) -> None:
        while True:
            self.submit(1, False, self.f - 1)
            self.wait()
            if self.emit(1):
                return

    def speculative(self) -> None:
        while True:
            limits = self.policy.limits()
            k = limits.n_draft if limits is not None else 0
            root = self.f - 1
            wrong = self.draft(k, _INF, root) if k else _INF
            self.submit(1 + k, True, root, k=k, wrong_at=wrong)
            self.wait()
            matched = (min(wrong, root + k + 1) - root - 1) if k else 0
            self.draft_acc += matched
            if k:
                self.policy.observe(matched, rejected=matched < k)
            if self.emit(matched + 1):
                return

    def pipeinfer(self) -> None:
        self.n_rejected = 0
        self.tip_len, self.tip_wrong = self.f, _INF
        self._launch_ns()
        self._speculate()
        while self.inflight:
            self._speculate()
            r = self.wait()
            if r.cancel_at < _INF or r.skipped:
                continue
            if not r.spec:
                if r.pos != self.f - 1:
                    continue  # stale: a speculative run already decided this position
                if self.emit(1):
                    return
                self._after_accept()
                continue
            depth = self._walk(r)
            if depth is None or depth == 0:
                continue
            f = self.f
            matched = min(r.wrong_at, r.pos + r.k + 1) - f
            self.draft_acc += depth + matched
            self.policy.observe(matched, rejected=f + matched <= r.pos + r.k)
            if self.emit(matched + 1):
                return
            self._after_accept()

    def _launch_ns(self) -> None:
        self.submit(1, False, self.f - 1)

    def _n_spec(self) -> int:
        return sum(1 for r in self.inflight if r.spec and r.cancel_at == _INF)

    def _launch_spec(self, burst: int) -> bool:
        limits = self.policy.limits(burst, self.n_rejected)
        if limits is None:
            return False
        k = limits.n_draft
        root = self.tip_len - 1
        wrong = self.draft(k, self.tip_wrong, root)
        self.submit(k, True, root, k=k, wrong_at=wrong)
        self.tip_len, self.tip_wrong = root + 1 + k, wrong
        return True

    def _speculate(self) -> None:
        launched = 0
        while self._n_spec() < self.policy.max_in_flight:
            if (launched or self._n_spec()) and self.poll():
                break
            if not self._launch_spec(launched):
                break
            launched += 1

    def _walk(self, r: _Run) -> Optional[int]:
        """Depth of r's node at position f-1 (0: its root), None if r contradicts the accepted tokens or
        can no longer predict an undecided position."""
        f = self.f
        if r.wrong_at < f or f - 1 > r.pos + r.k:
            return None
        return max(0, f - 1 - r.pos)

    def _after_accept(self) -> None:
        self.n_rejected = 0
        stale = [r for r in self.inflight if r.spec and r.cancel_at == _INF and self._walk(r) is None]
        if stale:
            self.cancel(stale)
        if self.tip_len <= self.f or self.tip_wrong < self.f:
            self.tip_len, self.tip_wrong = self.f, _INF
        self._launch_ns()


def simulate(cfg: SimConfig, mode: str) -> SimResult:
    """Simulates one generation of cfg.n_tokens tokens in `mode` ("iterative", "speculative", "pipeinfer")."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    head = _Head(cfg)
    getattr(head, mode)()
    return head.result(mode)
