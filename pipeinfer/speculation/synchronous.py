"""Synchronous speculative decoding (Leviathan et al. / Chen et al.; the paper's speculative baseline):
draft a tree, verify it in one target run together with the last accepted token, accept, repeat.

Each round is one epoch of the policy: it chooses the draft length (or no draft: a plain one-token
round) from what rounds measurably yield. A plain round chooses the next round's arm while its own
run is in flight.
"""
from __future__ import annotations

from typing import Generator

from pipeinfer.speculation.costs import Arm
from pipeinfer.speculation.interfaces import Drafter
from pipeinfer.speculation.policy import SpeculationPolicy
from pipeinfer.speculation.session import Session
from pipeinfer.speculation.shadow import ShadowDrafts
from pipeinfer.speculation.tree import DraftTree
from pipeinfer.speculation.verification import TreeBatch, trim_tree, verify_tree

__all__ = ["synchronous"]


def synchronous(s: Session, drafter: Drafter, policy: SpeculationPolicy) -> Generator[int, None, None]:
    policy.begin(s.target.n_stages, chained=False)
    shadow = ShadowDrafts(drafter, policy)
    tok, _ = s.decide(s.first_logits, ())
    s.accept(tok)
    yield tok
    drafter.accepted(s.gen)
    buf = -1
    epoch = None  # (arm, start time, tokens before)
    nxt = None  # the next round's arm, when it was chosen while this round's run was in flight
    try:
        while not s.full:
            now = s.now()
            if epoch is not None:
                policy.epoch(epoch[0], len(s.gen) - epoch[2], now - epoch[1])
            arm = nxt if nxt is not None else policy.plan()
            s.event("arm", k=arm.k, depth=arm.depth)
            epoch = (arm, now, len(s.gen))
            tree = _draft(s, drafter, policy, arm)
            if not arm.off:
                shadow.drop()
            root = len(s.gen) - 1
            buf, seqs = s.acquire(policy.n_parallel) if len(tree) else (-1, [])
            t = TreeBatch.build(tree, root, seqs, root_row=True)
            s.stats.draft_n += len(tree)
            if len(tree):
                s.stats.spec_runs_launched += 1
            s.submit([s.gen[root]] + t.tokens(), [root] + t.positions(), [[0]] + t.node_seqs, spec=bool(len(tree)))
            nxt = None
            if arm.off:
                # A plain round: what the head does for speculation (the drafter's update, the shadow
                # draft, the next round's choice) happens while its run is in flight, so the path from a
                # result to the next launch is as short as plain decoding's.
                drafter.accepted(s.gen)
                shadow.propose(s.gen)
                nxt = policy.plan()
            _, _, out = s.wait()
            rows = out.copy()
            n_before = len(s.gen)
            for tok in verify_tree(s, t, rows, -1):
                shadow.check(s.gen)
                yield tok
            n_matched = len(t.matched)
            s.stats.draft_n_accepted += n_matched
            if len(tree):
                policy.verified(n_matched, rejected=bool(t.children.get(t.matched[-1] if t.matched else -1)))
                s.stats.verifications += 1
                s.stats.accepted_lengths.append(len(s.gen) - n_before)
            # the root's entry is canonical (sequence 0); confirmed drafts become canonical too
            s.cover(root + 1)
            if n_matched:
                s.commit(t.node_seqs[t.matched[-1]][0], root + 1 + n_matched)
            if buf >= 0:
                s.release(buf)
                buf = -1
            if nxt is None or not nxt.off:
                drafter.accepted(s.gen)  # the next round drafts from these tokens
    finally:
        if buf >= 0:
            s.release(buf)


def _draft(s: Session, drafter: Drafter, policy: SpeculationPolicy, arm: Arm) -> DraftTree:
    """The round's draft tree (empty when the arm drafts nothing or no room is left)."""
    limits = policy.limits(arm)
    room = s.n_ctx - len(s.gen)
    if limits is None or room <= 1:
        return DraftTree([])
    t0 = s.now()
    tree = drafter.propose(s.gen, limits)
    while drafter.asynchronous and len(tree) < limits.n_draft and drafter.pending(s.gen, limits.n_draft):
        s.wait_drafts(drafter, 0.05)  # synchronous: the round waits for its drafts
        tree = drafter.propose(s.gen, limits)
    tree = trim_tree(tree, room - 1)
    if s.costs is not None:
        s.costs.observe_draft(len(tree), s.now() - t0)
    return tree
