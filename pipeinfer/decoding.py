"""The three decoding modes of one engine: ``iterative``, ``speculative`` and ``pipeinfer``.

Each mode is a generator of accepted tokens over the native pipeline (``_core.Pipeline``); the
public ``Pipeline`` turns tokens into text and applies stop conditions and limits. Per launched run,
Python sends token ids and receives one logits row per drafted token; everything per layer happens in
C++.

KV layout (all modes): sequence 0 is canonical and visible to every sequence; each speculative run
owns a buffer of the KV multibuffer ring (one sequence per draft-tree branch) holding only its own
drafted tokens. Committing accepted drafts is one ``spec_commit`` (sequence 0 added to their cells),
dropping a run is one ``spec_release`` (its sequences cleared): O(1) events, not O(buffers).

PipeInfer (arXiv 2407.11798): after every acceptance the head launches a one-token non-speculative
run of the last accepted token (its canonical KV entry) and keeps launching speculative micro-batches
continuing the furthest valid speculation while earlier runs are in flight; results are verified in
launch order, and runs invalidated by a rejection are cancelled on every stage at once.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence

import numpy as np

from pipeinfer.drafters import Drafter, DraftTree
from pipeinfer.sampling import Sampler
from pipeinfer.speculation import SpeculationPolicy, verify_position


@dataclass
class DecodeStats:
    """Counters of one generation (names follow llama.cpp where one exists)."""

    draft_n: int = 0  # draft tokens sent to the target
    draft_n_accepted: int = 0  # draft tokens the target confirmed
    runs_launched: int = 0  # target runs (non-speculative and speculative)
    spec_runs_launched: int = 0
    runs_cancelled: int = 0  # speculative runs invalidated while in flight
    verifications: int = 0  # speculative runs whose result was verified
    accepted_lengths: List[int] = field(default_factory=list)  # tokens accepted per verified speculative run

    def as_dict(self) -> Dict[str, Any]:
        n_acc = self.accepted_lengths
        return {
            "draft_n": self.draft_n,
            "draft_n_accepted": self.draft_n_accepted,
            "acceptance_rate": self.draft_n_accepted / self.draft_n if self.draft_n else 0.0,
            "mean_accepted_length": float(np.mean(n_acc)) if n_acc else 0.0,
            "runs_launched": self.runs_launched,
            "spec_runs_launched": self.spec_runs_launched,
            "runs_cancelled": self.runs_cancelled,
        }


class _Step:
    """What a decoder needs from the engine for one generation."""

    def __init__(self, native: Any, sampler: Sampler, tokens: List[int], first_logits: np.ndarray, n_ctx: int,
                 stats: DecodeStats) -> None:
        self.native = native
        self.sampler = sampler
        self.gen = tokens  # prompt + accepted tokens (shared with the caller)
        self.first_logits = first_logits
        self.n_ctx = n_ctx
        self.stats = stats

    def decide(self, logits: np.ndarray, candidates: Sequence[int]) -> "tuple[int, int]":
        """The token at position len(gen), with the drafted candidates for it. `logits` is a logits row,
        or (greedy runs submitted with argmax_only) the id the last stage already chose."""
        if np.ndim(logits) == 0:
            tok = int(logits)
            return tok, next((i for i, c in enumerate(candidates) if c == tok), -1)
        probs = None if self.sampler.is_greedy else self.sampler.probs(logits, self.gen)
        return verify_position(probs, logits, candidates, self.sampler.rng)

    def submit(self, tokens: Sequence[int], pos: Sequence[int], seqs: Any) -> int:
        n = len(tokens)
        self.stats.runs_launched += 1
        # greedy decoding needs only each row's argmax: the last stage sends ids instead of logits
        return self.native.submit(np.asarray(tokens, np.int32), np.asarray(pos, np.int32), seqs, np.ones(n, np.uint8),
                                  exact_rows=True, argmax_only=self.sampler.is_greedy)


def iterative(step: _Step) -> Iterator[int]:
    """Plain decoding: one token in flight through all stages."""
    logits = step.first_logits
    while True:
        tok, _ = step.decide(logits, ())
        step.gen.append(tok)
        yield tok
        if len(step.gen) >= step.n_ctx:
            return
        step.submit([tok], [len(step.gen) - 1], np.zeros(1, np.int32))
        _, _, out = step.native.wait()
        logits = out[0].copy()


# ------------------------------------------------------------------------------------- draft trees


@dataclass
class _Tree:
    """A draft tree laid out as a target batch: node i sits at position root_pos + depth(i)."""

    tree: DraftTree
    root_pos: int
    children: Dict[int, List[int]]  # node index (-1 = root) -> child node indices, preferred first
    node_seqs: List[List[int]]  # node -> KV sequences of the branches through it
    branch_seq: List[int]  # branch j -> its sequence
    root_row: bool = False  # the batch's row 0 is the root token (synchronous speculative mode)
    matched: List[int] = field(default_factory=list)  # nodes confirmed by the last verification

    @classmethod
    def build(cls, tree: DraftTree, root_pos: int, branch_seqs: Sequence[int]) -> "_Tree":
        children: Dict[int, List[int]] = {-1: []}
        for i, nd in enumerate(tree.nodes):
            children.setdefault(i, [])
            children.setdefault(nd.parent, []).append(i)
        node_seqs: List[List[int]] = [[] for _ in tree.nodes]
        for j, path in enumerate(tree.branches()):
            for i in path:
                node_seqs[i].append(branch_seqs[j])
        return cls(tree, root_pos, children, node_seqs, list(branch_seqs[: len(tree.branches())]))

    def positions(self) -> List[int]:
        return [self.root_pos + self.tree.depth(i) for i in range(len(self.tree.nodes))]

    def tokens(self) -> List[int]:
        return [nd.token for nd in self.tree.nodes]

    def child_tokens(self, node: int) -> List[int]:
        return [self.tree.nodes[c].token for c in self.children.get(node, [])]

    def branch0_tokens(self) -> List[int]:
        return [self.tree.nodes[i].token for i in self.tree.branches()[0]]


def _verify_tree(step: _Step, t: _Tree, rows: np.ndarray, start: int) -> Iterator[int]:
    """Verifies a tree from node `start` (whose token is gen[-1]; -1 only when the row of the root is
    rows[0]); yields accepted tokens and records in t.matched the drafted nodes confirmed."""
    node = start
    row_of = (lambda i: rows[i + 1]) if t.root_row else (lambda i: rows[i])
    t.matched = []
    while True:
        kids = t.children.get(node, [])
        logits = row_of(node)
        tok, idx = step.decide(logits, [t.tree.nodes[c].token for c in kids])
        step.gen.append(tok)
        if idx >= 0:
            t.matched.append(kids[idx])
        yield tok
        if idx < 0 or len(step.gen) >= step.n_ctx:
            return
        node = kids[idx]


def speculative(step: _Step, drafter: Drafter, policy: SpeculationPolicy) -> Iterator[int]:
    """Standard synchronous speculative decoding: draft, verify in one target run, accept, repeat."""
    native = step.native
    logits = step.first_logits
    tok, _ = step.decide(logits, ())
    step.gen.append(tok)
    yield tok
    buf = -1
    try:
        while len(step.gen) < step.n_ctx:
            root = len(step.gen) - 1
            limits = policy.limits()
            room = step.n_ctx - len(step.gen)
            tree = drafter.propose(step.gen, limits) if limits is not None and room > 1 else DraftTree([])
            tree = _trim(tree, room - 1)
            buf = native.spec_acquire() if len(tree) else -1
            seqs = [native.spec_seq(buf, j) for j in range(policy.n_parallel)] if buf >= 0 else []
            t = _Tree.build(tree, root, seqs)
            t.root_row = True
            batch_tokens = [step.gen[root]] + t.tokens()
            batch_pos = [root] + t.positions()
            batch_seqs = [[0]] + t.node_seqs
            step.stats.draft_n += len(tree)
            if len(tree):
                step.stats.spec_runs_launched += 1
            step.submit(batch_tokens, batch_pos, batch_seqs)
            _, _, out = native.wait()
            rows = out.copy()
            n_before = len(step.gen)
            yield from _verify_tree(step, t, rows, -1)
            n_matched = len(t.matched)
            step.stats.draft_n_accepted += n_matched
            if len(tree):
                policy.observe(n_matched, rejected=bool(t.children.get(t.matched[-1] if t.matched else -1)))
                step.stats.verifications += 1
                step.stats.accepted_lengths.append(len(step.gen) - n_before)
            if n_matched:
                deepest = t.matched[-1]
                native.spec_commit(t.node_seqs[deepest][0], root + 1, root + 1 + n_matched)
            if buf >= 0:
                native.spec_release(buf)
                buf = -1
    finally:
        if buf >= 0:
            native.spec_release(buf)


def _trim(tree: DraftTree, max_depth: int) -> DraftTree:
    """Drops nodes deeper than max_depth (context end)."""
    if max_depth <= 0:
        return DraftTree([])
    if all(tree.depth(i) <= max_depth for i in range(len(tree.nodes))):
        return tree
    keep = [i for i in range(len(tree.nodes)) if tree.depth(i) <= max_depth]
    remap = {old: new for new, old in enumerate(keep)}
    nodes = [type(tree.nodes[i])(tree.nodes[i].token, remap.get(tree.nodes[i].parent, -1), tree.nodes[i].p)
             for i in keep]
    return DraftTree(nodes)


# ------------------------------------------------------------------------------------------- PipeInfer


@dataclass
class _Run:
    run_id: int
    spec: bool
    pos: int  # non-speculative: the token's position; speculative: the root's position
    ctx: List[int] = field(default_factory=list)  # speculative: tokens at positions [check_from, root]
    check_from: int = 0
    tree: Optional[_Tree] = None
    buf: int = -1
    cancelled: bool = False


class PipeInferDecoder:
    """Asynchronous continuous speculation over the pipeline (see module docstring)."""

    def __init__(self, step: _Step, drafter: Drafter, policy: SpeculationPolicy) -> None:
        self.s = step
        self.native = step.native
        self.drafter = drafter
        self.policy = policy
        self.inflight: Deque[_Run] = deque()
        self.n_rejected = 0
        # The context the next micro-batch continues: gen, or gen + drafted tokens of an in-flight run.
        self.tip: List[int] = []
        self.tip_seq = -1  # sequence holding the tip's drafted tokens beyond the canonical ones
        self.tip_buf = -1
        # Positions < canon_end have their canonical KV entry (committed, or its run launched). The
        # entry of the last accepted token comes from a non-speculative run, unless a speculative run
        # in flight already holds that token at that position: then its verification commits it and
        # the non-speculative run is skipped (with good drafts most of them would arrive stale).
        self.canon_end = len(step.gen)
        self.ns_skipped = 0

    # -- launching
    def _launch_ns(self) -> None:
        g = self.s.gen
        rid = self.s.submit([g[-1]], [len(g) - 1], np.zeros(1, np.int32))
        self.inflight.append(_Run(rid, False, len(g) - 1))
        self.canon_end = max(self.canon_end, len(g))

    def _cover(self) -> "Optional[tuple[_Run, int]]":
        """The oldest speculative run in flight that holds the last accepted token at its position,
        with that node (its row predicts the next token; its cell becomes canonical when verified)."""
        for r in self.inflight:
            if r.spec and not r.cancelled:
                node = self._walk(r)
                if node is not None and node >= 0:
                    return r, node
        return None

    def _n_spec(self) -> int:
        return sum(1 for r in self.inflight if r.spec and not r.cancelled)

    def _launch_spec(self, burst: int) -> bool:
        limits = self.policy.limits(burst, self.n_rejected, depth=self._n_spec())
        if limits is None:
            return False
        ctx = self.tip
        root = len(ctx) - 1
        room = self.s.n_ctx - len(ctx)
        if room <= 0:
            return False
        tree = _trim(self.drafter.propose(ctx, limits), room)
        if not len(tree):
            self.n_rejected += 1
            return False
        if self.native.kv_n_free < len(tree) + 2:
            return False  # a full cache pauses speculation
        buf = self.native.spec_acquire()
        if buf < 0:
            return False  # a full ring pauses speculation
        seqs = [self.native.spec_seq(buf, j) for j in range(self.policy.n_parallel)]
        t = _Tree.build(tree, root, seqs)
        f = len(self.s.gen)
        if self.tip_seq >= 0 and root >= self.canon_end:
            # the chain's drafted tokens beyond the canonical ones live in tip_seq: share them
            for sq in t.branch_seq:
                self.native.kv_seq_cp(self.tip_seq, sq, self.canon_end, root + 1)
        rid = self.s.submit(t.tokens(), t.positions(), t.node_seqs)
        self.s.stats.spec_runs_launched += 1
        self.s.stats.draft_n += len(tree)
        self.inflight.append(_Run(rid, True, root, ctx[f - 1:], f - 1, t, buf))
        self.tip = ctx + t.branch0_tokens()
        self.tip_seq, self.tip_buf = t.branch_seq[0], buf
        return True

    def _speculate(self) -> int:
        """Launches micro-batches while the oldest result is outstanding. One micro-batch is launched
        even when the result is already there if none is in flight (a one-stage pipeline computes
        every run inside submit, so it would otherwise never speculate)."""
        launched = 0
        while self._n_spec() < self.policy.max_in_flight:
            if (launched or self._n_spec()) and self.native.poll():
                break
            if not self._launch_spec(launched):
                break
            launched += 1
        return launched

    # -- validity
    def _walk(self, r: _Run) -> Optional[int]:
        """The node of run r at position len(gen)-1 (-1: the root), or None if r contradicts gen or can
        no longer predict anything undecided."""
        g = self.s.gen
        f = len(g)
        for k in range(r.check_from, min(f, r.pos + 1)):
            if r.ctx[k - r.check_from] != g[k]:
                return None
        node, pos = -1, r.pos
        while pos < f - 1:
            nxt = [c for c in r.tree.children.get(node, []) if r.tree.tree.nodes[c].token == g[pos + 1]]
            if not nxt:
                return None
            node, pos = nxt[0], pos + 1
        return node

    def _rejected_depth(self, r: _Run) -> Optional[int]:
        """For an invalidated run: how many of its own drafted tokens matched before its tree
        contradicted the accepted tokens, or None if the contradiction lies in the chain before it."""
        g = self.s.gen
        for k in range(r.check_from, min(len(g), r.pos + 1)):
            if r.ctx[k - r.check_from] != g[k]:
                return None
        node, pos, depth = -1, r.pos, 0
        while pos < len(g) - 1:
            nxt = [c for c in r.tree.children.get(node, []) if r.tree.tree.nodes[c].token == g[pos + 1]]
            if not nxt:
                return depth if r.tree.children.get(node) else None
            node, pos, depth = nxt[0], pos + 1, depth + 1
        return None

    def _release(self, r: _Run) -> None:
        if r.buf >= 0:
            self.native.spec_release(r.buf)
            if r.buf == self.tip_buf:
                self._reset_tip()
            r.buf = -1

    def _reset_tip(self) -> None:
        self.tip = list(self.s.gen)
        self.tip_seq = self.tip_buf = -1

    def _after_accept(self) -> None:
        self.n_rejected = 0
        cancel = []
        for r in self.inflight:
            if r.spec and not r.cancelled and self._walk(r) is None:
                depth = self._rejected_depth(r)
                if depth is not None:  # its own draft was wrong: the policy learns from it
                    self.policy.observe(depth, rejected=True)
                r.cancelled = True
                cancel.append(r.run_id)
                self._release(r)
        if cancel:
            self.native.cancel(cancel)
            self.s.stats.runs_cancelled += len(cancel)
        g = self.s.gen
        if len(g) >= self.s.n_ctx:
            return
        # The next micro-batch continues the tip; the tip's sequence must hold every non-canonical
        # position up to the last accepted token (new runs copy [canon_end, root] from it).
        tip_ok = self.tip_seq >= 0 and len(self.tip) >= len(g) and self.tip[: len(g)] == g
        cover = self._cover()
        if cover is None:
            if not tip_ok or len(self.tip) == len(g):
                self._reset_tip()
            self._launch_ns()
            return
        self.ns_skipped += 1
        if not tip_ok:
            r, node = cover
            self.tip = list(g)
            self.tip_seq, self.tip_buf = r.tree.node_seqs[node][0], r.buf

    # -- the loop
    def tokens(self) -> Iterator[int]:
        s = self.s
        tok, _ = s.decide(s.first_logits, ())
        s.gen.append(tok)
        yield tok
        try:
            if len(s.gen) >= s.n_ctx:
                return
            self._reset_tip()
            self._launch_ns()
            self._speculate()
            while self.inflight:
                self._speculate()
                rid, skipped, out = self.native.wait()
                r = self.inflight.popleft()
                if r.run_id != rid:
                    raise RuntimeError(f"pipeline returned run {rid} while run {r.run_id} was expected")
                if r.cancelled or skipped:
                    self._release(r)
                    continue
                if not r.spec:
                    if r.pos != len(s.gen) - 1:
                        continue  # stale: a speculative run already decided this position
                    tok, _ = s.decide(out[0], ())
                    s.gen.append(tok)
                    yield tok
                    if len(s.gen) >= s.n_ctx:
                        return
                    self._after_accept()
                    continue
                node = self._walk(r)
                if node is None or node == -1:
                    self._release(r)
                    continue
                rows = out.copy()
                n_before = len(s.gen)
                t = r.tree
                # drafted tokens already confirmed by earlier runs count as accepted drafts too
                s.stats.draft_n_accepted += (t.tree.depth(node) if node >= 0 else 0)
                try:
                    yield from _verify_tree(s, t, rows, node)
                    s.stats.verifications += 1
                    s.stats.accepted_lengths.append(len(s.gen) - n_before)
                    s.stats.draft_n_accepted += len(t.matched)
                    last = t.matched[-1] if t.matched else node
                    self.policy.observe(len(t.matched), rejected=bool(t.children.get(last)))
                    # the path's cells from the canonical frontier to the deepest confirmed node
                    # (positions [canon_end, n_before + matched)) become canonical
                    end = n_before + len(t.matched)
                    if end > self.canon_end:
                        self.native.spec_commit(t.node_seqs[last][0], self.canon_end, end)
                        self.canon_end = end
                finally:
                    # also when the consumer stops mid-verification (then nothing is committed)
                    self._release(r)
                if len(s.gen) >= s.n_ctx:
                    return
                self._after_accept()
        finally:
            self._drain()

    def _drain(self) -> None:
        """Cancels what is in flight, consumes every outstanding result and frees the buffers."""
        ids = [r.run_id for r in self.inflight if r.spec and not r.cancelled]
        if ids:
            self.native.cancel(ids)
        # The native pipeline's count is authoritative: an interrupt (Ctrl-C) can land between its
        # wait() and our popleft().
        while self.native.n_in_flight:
            self.native.wait()
        while self.inflight:
            self._release(self.inflight.popleft())


def pipeinfer(step: _Step, drafter: Drafter, policy: SpeculationPolicy) -> Iterator[int]:
    return PipeInferDecoder(step, drafter, policy).tokens()
