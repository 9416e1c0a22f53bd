"""A pipeline in virtual time that runs the engine's own decoders (pipeinfer.speculation), unchanged.

This module owns `SimTarget`, an implementation of the speculation package's Target protocol over a
discrete-event model of the pipeline, and `simulate`, which runs one greedy generation of a decoder
(iterative, synchronous or PipeInfer, with the real SpeculationPolicy and its controller) against it.
The decoder cannot tell the difference: every run it launches, every result it waits for, every
cancellation and every draft goes through the same calls as on the native pipeline; only the clock
is virtual. It must not measure anything (calibrate.py fits the costs).

The model:
- The head (rank 0) is one serial resource: `submit` computes stage 0 of the run on its clock, plus
  `head_submit_s`; taking a result costs `head_result_s`; drafting on the head costs
  `draft_fixed_s + draft_per_token_s * k` (TimedDrafter).
- Stages 1..N-1 serve runs first in first out; a run of b tokens costs `fixed_s + per_token_s * b`.
- Each hop is a serial link: n bytes occupy it for 8 n / bandwidth and arrive `latency_s` after they
  leave; activations are `act_bytes_per_token` per token, results `result_bytes_per_row` per row.
- A cancellation reaches every worker one link latency after the head sends it; a run not started
  there is skipped, a run in progress stops at the next layer boundary. Skipped runs still travel.
- A draft rank (SimDraftRank) is a resource of its own: it drafts one token per `draft_per_token_s`
  beyond the accepted tokens (up to `ahead`), each proposal reaching the head one link latency later;
  told of a rejection, it restarts from the accepted prefix after the latency. Drafting on the head
  instead (TimedDrafter) costs the head's clock.
- The target's text is a fixed sequence (`truth`); a row at position p returns truth[p + 1]. The
  decoders only read rows whose context they accepted, which is truth by construction, so this is
  the target's greedy choice exactly. Drafts come from the real drafters (typically a NoisyDrafter
  over a replay of the truth: the oracle drafter of the experiments).
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pipeinfer.speculation import (DECODERS, DecodeStats, Drafter, DraftLimits, DraftTree, Session,
                                   SpeculationPolicy)

__all__ = ["StageCost", "Link", "SimConfig", "SimTarget", "TimedDrafter", "SimDraftRank", "SimResult", "simulate",
           "MODES"]

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
    """The simulated pipeline's costs (module docstring).

    Args:
        stages: per-stage costs; stages[0] runs on the head.
        link: every hop's cost.
        act_bytes_per_token: activation bytes per token per hop (4 n_embd for f32).
        result_bytes_per_row: result bytes per row, last stage to head (4 for greedy argmax ids).
        head_submit_s / head_result_s: the head's time per launch / per result taken.
        draft_fixed_s / draft_per_token_s: the head's drafting time for k tokens.
    """

    stages: List[StageCost]
    link: Link = field(default_factory=Link)
    act_bytes_per_token: float = 0.0
    result_bytes_per_row: float = 4.0
    head_submit_s: float = 0.0
    head_result_s: float = 0.0
    draft_fixed_s: float = 0.0
    draft_per_token_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages must hold at least one StageCost")


@dataclass
class _Run:
    rid: int
    n: int
    rows: np.ndarray  # int32 (n,): the target's greedy token after each position
    cancel_at: float = _INF
    skipped: bool = False
    arrived: float = _INF


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
            self.step()
        self.now = max(self.now, t)

    def step(self) -> bool:
        """Processes the next event; False if there is none."""
        if not self.events:
            return False
        tt, _, fn, args = heapq.heappop(self.events)
        self.now = tt
        fn(*args)
        return True

    def send(self, s: int, r: _Run, t: float) -> None:
        """A run leaves stage s at time t (stage 0: the head, after computing it)."""
        c = self.cfg
        per = c.result_bytes_per_row if s == self.n - 1 else c.act_bytes_per_token
        start = max(t, self.link_free[s])
        done = start + c.link.transfer_s(0.0 if r.skipped else r.n * per)
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
        if r.skipped or self._cancel_seen(r) <= self.now:
            r.skipped = True
            self._at(self.now, self._finish, s, self.version[s])
        else:
            self._at(self.now + self.cfg.stages[s].time(r.n), self._finish, s, self.version[s])
            if self._cancel_seen(r) < _INF:
                self._at(self._cancel_seen(r), self._cancel_arrives, s, r)

    def _cancel_seen(self, r: _Run) -> float:
        return r.cancel_at + self.cfg.link.latency_s

    def _finish(self, s: int, version: int) -> None:
        if version != self.version[s]:
            return  # superseded by an earlier stop (cancellation mid-run)
        r = self.current[s]
        assert r is not None
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
        r.cancel_at = min(r.cancel_at, t)
        for s in range(1, self.n):
            if self.current[s] is r:
                self._at(t + self.cfg.link.latency_s, self._cancel_arrives, s, r)


class SimTarget:
    """The Target protocol in virtual time (module docstring).

    Args:
        cfg: the costs.
        truth: the target's token sequence (prompt and greedy continuation).
        n_ctx: context cells.
        n_buffers / n_branches: the speculative KV buffers (ring bookkeeping only).
    """

    n_vocab = 1 << 30

    def __init__(self, cfg: SimConfig, truth: Sequence[int], n_ctx: int, n_buffers: int = 4, n_branches: int = 1) -> None:
        self.cfg = cfg
        self.truth = np.asarray(truth, np.int32)
        self.n_ctx = n_ctx
        self.n_stages = len(cfg.stages)
        self.world = _World(cfg)
        self.t = 0.0
        self.next_id = 0
        self.outstanding: Deque[_Run] = deque()
        self.by_id: Dict[int, _Run] = {}
        self.n_branches = n_branches
        self.free = list(range(n_buffers))
        self.busy0 = 0.0
        self.launched: List[int] = []  # tokens of every run launched

    def now(self) -> float:
        return self.t

    def charge(self, seconds: float) -> None:
        """The head spends `seconds` (drafting, its own bookkeeping)."""
        self.t += seconds

    # ---- runs
    def submit(self, tokens: np.ndarray, pos: np.ndarray, seq_ids: Any, logits: np.ndarray, exact_rows: bool = True,
               argmax_only: bool = True) -> int:
        c = self.cfg
        self.world.advance(self.t)
        p = np.asarray(pos, np.int64) + 1
        rows = np.where(p < len(self.truth), self.truth[np.minimum(p, len(self.truth) - 1)], 0).astype(np.int32)
        r = _Run(self.next_id, len(p), rows)  # beyond the truth: the generation has ended there anyway
        self.launched.append(r.n)
        self.next_id += 1
        d = c.stages[0].time(r.n)
        self.t += c.head_submit_s + d
        self.busy0 += d
        if self.n_stages == 1:
            r.arrived = self.t  # a one-stage pipeline computes the run inside submit
        else:
            self.world.send(0, r, self.t)
        self.outstanding.append(r)
        self.by_id[r.rid] = r
        return r.rid

    def poll(self) -> bool:
        self.world.advance(self.t)
        return bool(self.outstanding) and self.outstanding[0].arrived <= self.t

    def advance_until(self, t_limit: float) -> None:
        """Moves the head's clock to t_limit, or earlier to when the oldest outstanding result arrives."""
        while True:
            if self.outstanding and self.outstanding[0].arrived <= t_limit:
                self.t = max(self.t, self.outstanding[0].arrived)
                return
            if not self.world.events or self.world.events[0][0] > t_limit:
                break
            self.world.step()
        self.t = max(self.t, t_limit)

    def wait(self) -> Tuple[int, bool, np.ndarray]:
        r = self.outstanding[0]
        self.world.advance(self.t)
        while r.arrived == _INF:
            if not self.world.step():
                raise RuntimeError("simulation deadlock: a run never reached the head")
        self.t = max(self.t, r.arrived) + self.cfg.head_result_s
        self.outstanding.popleft()
        self.by_id.pop(r.rid, None)
        return r.rid, r.skipped, (np.zeros(0, np.int32) if r.skipped else r.rows)

    def cancel(self, run_ids: Sequence[int]) -> None:
        self.world.advance(self.t)
        for rid in run_ids:
            r = self.by_id.get(rid)
            if r is not None:
                self.world.cancel(r, self.t)

    @property
    def n_in_flight(self) -> int:
        return len(self.outstanding)

    # ---- KV (bookkeeping only: the simulated target has no cache)
    @property
    def kv_n_free(self) -> int:
        return self.n_ctx * 8

    def kv_seq_rm(self, seq: int, p0: int, p1: int) -> None:
        pass

    def kv_seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        pass

    def kv_seq_pos_max(self, seq: int) -> int:
        return -1

    def spec_acquire(self) -> int:
        return self.free.pop(0) if self.free else -1

    def spec_release(self, buffer: int) -> None:
        self.free.append(buffer)

    def spec_seq(self, buffer: int, branch: int = 0) -> int:
        return 1 + buffer * self.n_branches + branch

    def spec_commit(self, seq: int, p0: int, p1: int) -> None:
        pass

    def stage_busy(self) -> List[float]:
        return [self.busy0] + self.world.busy[1:]


class TimedDrafter(Drafter):
    """A drafter whose calls cost the simulated head draft_fixed_s + draft_per_token_s per drafted token."""

    def __init__(self, base: Drafter, target: SimTarget) -> None:
        self.base = base
        self.target = target
        self.n_vocab = base.n_vocab
        self.cheap = base.cheap and target.cfg.draft_per_token_s == 0.0

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        tree = self.base.propose(context, limits)
        c = self.target.cfg
        self.target.charge(c.draft_fixed_s + c.draft_per_token_s * len(tree))
        return tree


class SimDraftRank(Drafter):
    """A draft rank in virtual time, with RemoteDrafter's semantics (drafters/remote.py): it drafts
    `base`'s proposals one token at a time, draft_per_token_s each, up to `ahead` tokens beyond the
    accepted ones; the head sees each token one link latency after it is drafted."""

    asynchronous = True
    cheap = True

    def __init__(self, base: Drafter, target: SimTarget, ahead: int) -> None:
        self.base = base
        self.target = target
        self.ahead = ahead
        self.n_vocab = base.n_vocab
        self.ctx: List[int] = []  # the draft rank's context: accepted tokens + its drafts
        self.ready: List[float] = []  # when each token of ctx is visible to the head (accepted: 0)
        self.n_accepted = 0
        self.busy_until = 0.0  # when the draft rank can start its next token
        self.ended = False
        self.interval_s = self._cost()

    def _lat(self) -> float:
        return self.target.cfg.link.latency_s

    def accepted(self, tokens: Sequence[int]) -> None:
        toks = [int(t) for t in tokens]
        now = self.target.now()
        n = 0
        while n < min(len(toks), len(self.ctx)) and toks[n] == self.ctx[n]:
            n += 1
        if n < len(toks) or not self.ctx:  # a rejection (or the start): restart from the accepted prefix
            self.ctx, self.ready = list(toks), [0.0] * len(toks)
            self.busy_until = max(now + self._lat(), min(self.busy_until, now + self._lat() + self._cost()))
            self.ended = False
        self.n_accepted = len(toks)
        self.busy_until = max(self.busy_until, now + self._lat())

    def _cost(self) -> float:
        c = self.target.cfg
        return c.draft_fixed_s + c.draft_per_token_s

    def _run_until(self, t: float) -> None:
        """Drafts every token the rank finishes by time t (and one more, whose ready time is then known)."""
        while not self.ended and len(self.ctx) - self.n_accepted < self.ahead and self.busy_until <= t:
            tree = self.base.propose(self.ctx, DraftLimits(n_draft=1))
            if not len(tree):
                self.ended = True
                return
            done = self.busy_until + self._cost()
            self.ctx.append(tree.nodes[0].token)
            self.ready.append(done + self._lat())
            self.busy_until = done

    def _visible(self) -> int:
        now = self.target.now()
        self._run_until(now)
        n = self.n_accepted
        while n < len(self.ctx) and self.ready[n] <= now:
            n += 1
        return n

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        vis = self._visible()
        n = len(context)
        if n > vis or [int(t) for t in context] != self.ctx[:n]:
            return DraftTree([])
        return DraftTree.chain(self.ctx[n:min(vis, n + limits.n_draft)])

    def pending(self, context: Sequence[int], n: int) -> bool:
        vis = self._visible()
        if len(context) > len(self.ctx) or [int(t) for t in context] != self.ctx[:len(context)]:
            return False
        want = len(context) + n
        return vis < want and not (self.ended and vis >= len(self.ctx)) and \
            len(context) - self.n_accepted < self.ahead

    def wait(self, timeout_s: float) -> bool:
        now = self.target.now()
        self._run_until(now)
        vis = self._visible()
        nxt = self.ready[vis] if vis < len(self.ctx) else (self.busy_until + self._cost() + self._lat()
                                                          if not self.ended else math.inf)
        self.target.advance_until(min(now + timeout_s, nxt))
        return self._visible() > vis


@dataclass
class SimResult:
    mode: str
    token_times: List[float]  # when each token was accepted (the first: 0, from the prompt's logits)
    stats: Dict[str, Any]  # the decoder's DecodeStats
    stage_busy_s: List[float]
    launched: List[int] = field(default_factory=list)  # tokens of every run launched

    @property
    def predicted_per_second(self) -> float:
        t = self.token_times[-1]
        return len(self.token_times) / t if t > 0 else _INF

    @property
    def ttft_decode_ms(self) -> float:
        return 1e3 * self.token_times[1] if len(self.token_times) > 1 else 0.0

    @property
    def itl_ms_mean(self) -> float:
        return 1e3 * float(np.mean(np.diff(self.token_times))) if len(self.token_times) > 1 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {"mode": self.mode, "tokens": len(self.token_times), "predicted_per_second": self.predicted_per_second,
                "ttft_decode_ms": self.ttft_decode_ms, "itl_ms_mean": self.itl_ms_mean, **self.stats,
                "stage_busy_s": list(self.stage_busy_s)}


def simulate(cfg: SimConfig, mode: str, drafter: Optional[Drafter], truth: Sequence[int], n_prompt: int,
             n_tokens: int, policy: Optional[SpeculationPolicy] = None, draft_rank: bool = False) -> SimResult:
    """One greedy generation of n_tokens tokens after truth[:n_prompt], by the engine's decoder for `mode`,
    with the drafter on the head (its costs charged to the head) or on a draft rank.

    Time 0 is the end of prefill (the first token comes from the prompt's logits at time 0), as in the
    engine's timings; the policy (a copy is not made: pass a fresh one to start unmeasured) measures
    in virtual time.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if len(truth) < n_prompt + n_tokens:
        raise ValueError(f"truth holds {len(truth)} tokens, fewer than the prompt + n_tokens")
    policy = policy if policy is not None else SpeculationPolicy()
    target = SimTarget(cfg, truth, n_ctx=n_prompt + n_tokens, n_buffers=policy.n_buffers,
                       n_branches=policy.n_parallel)
    gen = [int(t) for t in truth[:n_prompt]]
    stats = DecodeStats()
    trace: list = []
    s = Session(target, _Greedy(), gen, np.int32(truth[n_prompt]), target.n_ctx, stats, clock=target.now, trace=trace,
                costs=policy.costs)
    if mode == "iterative":
        tokens = DECODERS[mode](s)
    else:
        if drafter is None:
            raise ValueError(f"mode {mode!r} needs a drafter")
        if draft_rank:
            ahead = policy.n_draft * (policy.max_in_flight if mode == "pipeinfer" else 1)
            d: Drafter = SimDraftRank(drafter, target, ahead)
        else:
            d = TimedDrafter(drafter, target)
        d.begin(gen)
        tokens = DECODERS[mode](s, d, policy)
    times = []
    for tok in tokens:
        times.append(target.now())
        if len(times) >= n_tokens:
            break
    tokens.close()
    if gen[n_prompt:n_prompt + len(times)] != [int(t) for t in truth[n_prompt:n_prompt + len(times)]]:
        raise RuntimeError("the simulated decoder emitted tokens that differ from the truth")
    return SimResult(mode, times, stats.as_dict(), target.stage_busy(), list(target.launched))


class _Greedy:
    """A greedy sampler that processes nothing: the session then lets the 'last stage' choose (ids)."""

    is_greedy = True
    rng = None
    params = type("P", (), {"logit_bias": None, "repeat_last_n": 0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
                            "frequency_penalty": 0.0})()
