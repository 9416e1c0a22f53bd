"""PipeInfer: asynchronous continuous speculation over the pipeline (arXiv 2407.11798, section III).

After every acceptance the head launches a run of the last accepted token (its canonical KV entry)
and keeps launching speculative micro-batches continuing the furthest valid speculation while earlier
runs are in flight; results are verified in launch order, and runs invalidated by a rejection are
cancelled on every stage at once (early inference cancellation).

Where the run of the accepted token goes (the paper's "non-speculative run"): it anchors the chain.
The first micro-batch drafted after an acceptance carries the accepted token as its row 0 (written to
the canonical sequence; the drafts to the micro-batch's buffer), so one pass over the weights serves
both; a separate one-token run would read every stage's weights once more, and the last stage (with
the output head, often the costliest) twice per rejection. The run is one token only when nothing is
drafted, and for the first token of a generation (so the first decoded token comes as fast as with
plain decoding), with nothing chained behind it until it is back. An anchor is never cancelled: when it is launched, no older valid run is in flight.
The anchor is skipped when a micro-batch in flight already holds the accepted token at its position:
that micro-batch's verification then commits the token's entry.

How much to speculate is the policy's choice: k drafts per micro-batch and D micro-batches chained
behind the anchor, or none (plain decoding), from what speculation measurably yields on this pipeline
(policy.py). It chooses at every anchor (an epoch runs from one anchor to the next, i.e. until a
rejection) and again whenever a verification extends the chain; every stretch of one arm is reported
to the policy with its accepted tokens and duration.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Generator, Iterator, List, Optional, Tuple

import numpy as np

from pipeinfer.speculation.costs import Arm
from pipeinfer.speculation.interfaces import Drafter
from pipeinfer.speculation.policy import SpeculationPolicy
from pipeinfer.speculation.session import Session
from pipeinfer.speculation.shadow import ShadowDrafts
from pipeinfer.speculation.tree import DraftTree
from pipeinfer.speculation.verification import TreeBatch, trim_tree, verify_tree

__all__ = ["PipeInferDecoder", "pipeinfer"]


@dataclass
class _Run:
    """A launched run, as the head remembers it.

    A run with `batch` is speculative (its drafts continue the tip at `pos`); `anchor` runs also carry
    the tip itself as row 0 (its canonical entry). Without `batch` it is a one-token run of the token
    at `pos`.
    """

    run_id: int
    pos: int  # the position of the tip its drafts continue (one-token runs: the token's position)
    batch: Optional[TreeBatch] = None
    ctx: List[int] = field(default_factory=list)  # speculative: the tokens it assumed at [check_from, pos]
    check_from: int = 0
    buf: int = -1
    anchor: bool = False
    cancelled: bool = False

    @property
    def spec(self) -> bool:
        return self.batch is not None


class PipeInferDecoder:
    """The head's control loop (`tokens`), its launches and its validity checks."""

    def __init__(self, session: Session, drafter: Drafter, policy: SpeculationPolicy) -> None:
        self.s = session
        self.drafter = drafter
        self.policy = policy
        self.inflight: Deque[_Run] = deque()
        self.n_rejected = 0  # speculation attempts without a draft since the last acceptance
        # The context the next micro-batch continues: gen, or gen + drafted tokens of an in-flight run,
        # and the sequence holding those drafted tokens beyond the canonical ones.
        self.tip: List[int] = []
        self.tip_seq = -1
        self.tip_buf = -1
        self.ns_skipped = 0
        self.arm = Arm(0)  # the arm in use
        self._anchored = True  # its stretch began with an anchor
        # Until the first decoded token is out, nothing else is launched: micro-batches behind its run
        # would take the head's time (their stage 0) and the stages' (TTFT as plain decoding's)
        self._first_pending = True
        self._since = (0.0, 0)  # when it was chosen, and the tokens accepted before
        self.shadow = ShadowDrafts(drafter, policy)

    # ------------------------------------------------------------------------------------ the loop
    def tokens(self) -> Generator[int, None, None]:
        s = self.s
        self.policy.begin(s.target.n_stages, chained=True)
        tok, _ = s.decide(s.first_logits, ())
        s.accept(tok)
        yield tok
        try:
            if s.full:
                return
            self._reset_tip()
            self._launch_first()
            while self.inflight:
                self._speculate()
                # a drafter on another rank streams drafts: launch them as they come while waiting
                while self.drafter.asynchronous and self._wants_drafts() and not s.poll():
                    if s.wait_drafts(self.drafter, 0.05):
                        self._speculate()
                rid, skipped, out = s.wait()
                r = self.inflight.popleft()
                self._first_pending = False
                if r.run_id != rid:
                    raise RuntimeError(f"pipeline returned run {rid} while run {r.run_id} was expected")
                if r.cancelled or skipped:
                    if r.anchor:
                        raise RuntimeError(f"run {rid} holds a canonical entry but was skipped")
                    self._release(r)
                    continue
                n_before = len(s.gen)
                if r.spec:
                    for tok in self._verify(r, out):
                        self.shadow.check(s.gen)
                        yield tok
                elif r.pos == len(s.gen) - 1:  # else stale: a speculative run decided this position
                    tok, _ = s.decide(out[0], ())
                    s.accept(tok)
                    self.shadow.check(s.gen)
                    yield tok
                if s.full:
                    return
                if len(s.gen) > n_before:
                    self._after_accept()
        finally:
            self._drain()

    def _verify(self, r: _Run, out: np.ndarray) -> Iterator[int]:
        """Verifies a speculative run from the node holding the last accepted token; commits the
        confirmed path and releases the run's buffer."""
        s = self.s
        node = self._walk(r)
        if node is None or (node == -1 and not r.anchor):
            self._release(r)
            return
        t = r.batch
        assert t is not None
        n_before = len(s.gen)
        # drafted tokens already confirmed by earlier runs count as accepted drafts too
        s.stats.draft_n_accepted += t.tree.depth(node) if node >= 0 else 0
        try:
            yield from verify_tree(s, t, out.copy(), node)
            s.stats.verifications += 1
            s.stats.accepted_lengths.append(len(s.gen) - n_before)
            s.stats.draft_n_accepted += len(t.matched)
            last = t.matched[-1] if t.matched else node
            # the drafts confirmed before this result (by the bonus row of the run before) count too
            before = t.tree.depth(node) if node >= 0 else 0
            self.policy.verified(before + len(t.matched), rejected=bool(t.children.get(last)))
            # the path's cells from the canonical frontier to the deepest confirmed node become canonical
            s.commit(t.node_seqs[last][0], n_before + len(t.matched))
        finally:
            # also when the consumer stops mid-verification (then nothing is committed)
            self._release(r)

    # ------------------------------------------------------------------------------------ launching
    def _launch_first(self) -> None:
        """The generation's first decoded token: its run alone, launched before anything else the head
        does for speculation (the drafter's restart, the policy's choice, shadow drafts), so the first
        token comes as fast as with plain decoding."""
        self._launch_token_then_plan(report=False)

    def _launch_token_then_plan(self, report: bool) -> None:
        """The run of the last accepted token, then what the head does for speculation while it is in
        flight: the drafter's update, the policy's choice and the shadow draft."""
        s = self.s
        self._launch_token()
        self.drafter.accepted(s.gen)
        self._choose(report=report)
        self._shadow_or_drop(s.gen)

    def _launch_token(self) -> None:
        """The run of the last accepted token alone (its canonical entry, the next token's logits)."""
        s = self.s
        root = len(s.gen) - 1
        rid = s.submit([s.gen[-1]], [root], np.zeros(1, np.int32))
        self.inflight.append(_Run(rid, root))
        s.cover(len(s.gen))

    def _shadow_or_drop(self, g: List[int]) -> None:
        if self.arm.off:
            self.shadow.propose(g)
        else:
            self.shadow.drop()  # verifications measure the acceptance now

    def _launch_anchor(self) -> None:
        """Starts an epoch: the policy chooses its arm, and the run of the last accepted token is
        launched with the arm's first micro-batch of drafts (one token alone when the arm drafts
        nothing or nothing is drafted)."""
        s = self.s
        g = s.gen
        self._choose()
        self._shadow_or_drop(g)
        root = len(g) - 1
        if not self.arm.off and self.drafter.asynchronous:
            self._await_anchor_drafts(g)
        t = self._draft(g, burst=0)
        if t is None:
            self._launch_token()
            return
        tree, buf, seqs = t
        batch = TreeBatch.build(tree, root, seqs, root_row=True)
        rid = s.submit([g[-1]] + batch.tokens(), [root] + batch.positions(), [[0]] + batch.node_seqs, spec=True)
        s.cover(len(g))
        self._record_spec(rid, batch, buf, anchor=True)

    def _await_anchor_drafts(self, g: List[int]) -> None:
        """A drafter on another rank restarts from the accepted tokens: wait for the anchor's drafts as long
        as a separate run would cost the pipeline (its spacing: the slowest stage's time for one token),
        since launching the token alone now and its drafts later would cost that run, or as long as the
        drafter takes for them when that is a small part of a run's latency; not while a result is
        waiting. With one stage nothing can overlap the drafting, so the anchor waits for all its
        drafts."""
        s = self.s
        limit = 0.0
        if s.target.n_stages == 1:
            limit = math.inf
        elif s.costs is not None and s.costs.known:
            limit = s.costs.spacing(1)
            pace = self.drafter.interval_s
            if pace is not None:
                limit = max(limit, min(self.arm.k * pace, 0.25 * s.costs.latency(1)))
        t_end = s.now() + limit
        while self.drafter.pending(g, self.arm.k) and s.now() < t_end and not s.poll():
            s.wait_drafts(self.drafter, min(0.05, t_end - s.now()))

    def _choose(self, report: bool = True, anchored: bool = True) -> bool:
        """Reports the stretch of the arm in use to the policy and asks it for the arm to use now;
        True if it changed."""
        s = self.s
        now = s.now()
        if report:
            self.policy.epoch(self.arm, len(s.gen) - self._since[1], now - self._since[0], anchored=self._anchored)
        arm = self.policy.plan()
        changed = arm != self.arm
        self.arm = arm
        self._anchored = anchored
        s.event("arm", k=arm.k, depth=arm.depth)
        self._since = (now, len(s.gen))
        return changed

    def _wants_drafts(self) -> bool:
        """More chained micro-batches may be launched and the drafter is still drafting for the tip."""
        return (not self.arm.off and not self._first_pending and self._n_chained() < self.arm.depth
                and self.drafter.pending(self.tip, self.arm.k))

    def _n_spec(self) -> int:
        return sum(1 for r in self.inflight if r.spec and not r.cancelled)

    def _n_chained(self) -> int:
        return sum(1 for r in self.inflight if r.spec and not r.cancelled and not r.anchor)

    def _speculate(self) -> int:
        """Launches micro-batches continuing the tip, up to the arm's depth, while the oldest result is
        outstanding. One micro-batch is launched even when the result is already there if none is in
        flight (a one-stage pipeline computes every run inside submit, so it would otherwise never
        speculate)."""
        launched = 0
        while self._n_chained() < self.arm.depth and not self._first_pending:
            if (launched or self._n_spec()) and self.s.poll():
                break
            if not self._launch_spec(launched):
                break
            launched += 1
        return launched

    def _draft(self, ctx: List[int], burst: int) -> Optional[Tuple[DraftTree, int, List[int]]]:
        """A draft tree continuing ctx with a KV buffer for it, or None (the policy declines, nothing
        is drafted, or the cache or the buffer ring is full)."""
        s = self.s
        limits = self.policy.limits(self.arm, burst, self.n_rejected)
        room = s.n_ctx - len(ctx)
        if limits is None or room <= 0:
            return None
        t0 = s.now()
        tree = trim_tree(self.drafter.propose(ctx, limits), room)
        if s.costs is not None:
            s.costs.observe_draft(len(tree), s.now() - t0)
        if (self.drafter.asynchronous and 0 < len(tree) < limits.n_draft and s.n_in_flight
                and self.drafter.pending(ctx, limits.n_draft)):
            return None  # the rest of the micro-batch is still being drafted and the pipeline is busy
        if not len(tree):
            if not self.drafter.pending(ctx, limits.n_draft):  # not just "not drafted yet"
                self.n_rejected += 1
            return None
        if s.kv_n_free < len(tree) + 2:
            return None  # a full cache pauses speculation
        buf, seqs = s.acquire(self.policy.n_parallel)
        if buf < 0:
            return None  # a full ring pauses speculation
        return tree, buf, seqs

    def _record_spec(self, rid: int, batch: TreeBatch, buf: int, anchor: bool = False) -> None:
        s = self.s
        f = len(s.gen)
        ctx = self.tip if not anchor else list(s.gen)
        s.stats.spec_runs_launched += 1
        s.stats.draft_n += len(batch.tree)
        self.inflight.append(_Run(rid, batch.root_pos, batch, ctx[f - 1:], f - 1, buf, anchor))
        self.tip = ctx + batch.branch0_tokens()
        self.tip_seq, self.tip_buf = batch.branch_seq[0], buf

    def _launch_spec(self, burst: int) -> bool:
        """Launches a micro-batch continuing the tip; False when nothing was launched."""
        s = self.s
        ctx = self.tip
        root = len(ctx) - 1
        t = self._draft(ctx, burst)
        if t is None:
            return False
        tree, buf, seqs = t
        batch = TreeBatch.build(tree, root, seqs)
        if self.tip_seq >= 0 and root >= s.canon_end:
            # the chain's drafted tokens beyond the canonical ones live in tip_seq: share them
            for sq in batch.branch_seq:
                s.copy(self.tip_seq, sq, s.canon_end, root + 1)
        rid = s.submit(batch.tokens(), batch.positions(), batch.node_seqs, spec=True)
        self._record_spec(rid, batch, buf)
        return True

    # ------------------------------------------------------------------------------------ validity
    def _walk(self, r: _Run) -> Optional[int]:
        """The node of run r at position len(gen)-1 (-1: its tip, also when the tip is still ahead of the
        accepted tokens), or None if r contradicts the accepted tokens or ends before them (it can no
        longer predict anything undecided)."""
        end = self._prefix_end(r)
        if end is None:
            return None
        node, pos = end
        f = len(self.s.gen)
        if pos == f - 1:
            return node
        return -1 if pos > f - 1 else None

    def _prefix_end(self, r: _Run) -> Optional[Tuple[int, int]]:
        """How far run r agrees with the accepted tokens: (node, its position) of the deepest node on
        the accepted path, or None if the context r assumed contradicts them."""
        g = self.s.gen
        f = len(g)
        assert r.batch is not None
        for k in range(r.check_from, min(f, r.pos + 1)):
            if r.ctx[k - r.check_from] != g[k]:
                return None
        node, pos = -1, r.pos
        while pos < f - 1:
            nxt = r.batch.follow(node, g[pos + 1])
            if nxt is None:
                break
            node, pos = nxt, pos + 1
        return node, pos

    def _cover(self) -> Optional[Tuple[_Run, int]]:
        """The oldest speculative run in flight that holds the last accepted token at its position,
        with that node (its row predicts the next token; its cell becomes canonical when verified)."""
        for r in self.inflight:
            if r.spec and not r.cancelled:
                node = self._walk(r)
                if node is not None and node >= 0:
                    return r, node
        return None

    def _release(self, r: _Run) -> None:
        if r.buf >= 0:
            self.s.release(r.buf)
            if r.buf == self.tip_buf:
                self._reset_tip()
            r.buf = -1

    def _reset_tip(self) -> None:
        self.tip = list(self.s.gen)
        self.tip_seq = self.tip_buf = -1

    def _after_accept(self) -> None:
        """Cancels the runs the accepted tokens contradict, then makes sure the last accepted token
        has its canonical entry computed (a non-speculative run, unless a micro-batch holds it)."""
        s = self.s
        self.n_rejected = 0
        if self.arm.off and not self.inflight:
            # Speculation is off and nothing is in flight: the run of the accepted token is all there is
            # to launch, so it goes first, and the drafter's update, the policy's choice (for the next
            # epoch) and the shadow drafts happen while it is in flight: the head's path from a result
            # to the next launch is as short as plain decoding's.
            self._reset_tip()
            self._launch_token_then_plan(report=True)
            return
        self.drafter.accepted(s.gen)
        cancel = []
        for r in self.inflight:
            if r.spec and not r.cancelled and self._walk(r) is None:
                if r.anchor:
                    raise RuntimeError(f"run {r.run_id} holds a canonical entry but its drafts' context was contradicted")
                end = self._prefix_end(r)
                if end is not None and r.batch is not None and r.batch.children.get(end[0]):
                    # its own draft was wrong (not the chain before it): the policy learns from it
                    self.policy.verified(end[1] - r.pos, rejected=True)
                r.cancelled = True
                cancel.append(r.run_id)
                self._release(r)
        s.cancel(cancel)
        g = s.gen
        # The next micro-batch continues the tip; the tip's sequence must hold every non-canonical
        # position up to the last accepted token (new runs copy [canon_end, root] from it).
        tip_ok = self.tip_seq >= 0 and len(self.tip) >= len(g) and self.tip[: len(g)] == g
        cover = self._cover()
        if cover is None:
            self._reset_tip()
            self._launch_anchor()
            return
        self.ns_skipped += 1
        if not self.arm.off:
            self._choose(anchored=False)  # the chain goes on: its depth and draft length may change
        if not tip_ok:
            r, node = cover
            assert r.batch is not None
            self.tip = list(g)
            self.tip_seq, self.tip_buf = r.batch.node_seqs[node][0], r.buf

    def _drain(self) -> None:
        """Cancels what is in flight, consumes every outstanding result and frees the buffers."""
        self.s.cancel([r.run_id for r in self.inflight if r.spec and not r.cancelled], invalidated=False)
        self.s.drain()
        while self.inflight:
            self._release(self.inflight.popleft())


def pipeinfer(s: Session, drafter: Drafter, policy: SpeculationPolicy) -> Generator[int, None, None]:
    return PipeInferDecoder(s, drafter, policy).tokens()
