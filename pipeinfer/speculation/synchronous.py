"""Synchronous speculative decoding (Leviathan et al. / Chen et al.; the paper's speculative baseline):
draft a tree, verify it in one target run together with the last accepted token, accept, repeat."""
from __future__ import annotations

from typing import Iterator

from pipeinfer.speculation.interfaces import Drafter
from pipeinfer.speculation.policy import SpeculationPolicy
from pipeinfer.speculation.session import Session
from pipeinfer.speculation.tree import DraftTree
from pipeinfer.speculation.verification import TreeBatch, trim_tree, verify_tree

__all__ = ["synchronous"]


def synchronous(s: Session, drafter: Drafter, policy: SpeculationPolicy) -> Iterator[int]:
    tok, _ = s.decide(s.first_logits, ())
    s.accept(tok)
    yield tok
    buf = -1
    try:
        while not s.full:
            root = len(s.gen) - 1
            limits = policy.limits()
            room = s.n_ctx - len(s.gen)
            tree = drafter.propose(s.gen, limits) if limits is not None and room > 1 else DraftTree([])
            tree = trim_tree(tree, room - 1)
            buf, seqs = s.acquire(policy.n_parallel) if len(tree) else (-1, [])
            t = TreeBatch.build(tree, root, seqs, root_row=True)
            s.stats.draft_n += len(tree)
            if len(tree):
                s.stats.spec_runs_launched += 1
            s.submit([s.gen[root]] + t.tokens(), [root] + t.positions(), [[0]] + t.node_seqs, spec=bool(len(tree)))
            _, _, out = s.wait()
            rows = out.copy()
            n_before = len(s.gen)
            yield from verify_tree(s, t, rows, -1)
            n_matched = len(t.matched)
            s.stats.draft_n_accepted += n_matched
            if len(tree):
                policy.observe(n_matched, rejected=bool(t.children.get(t.matched[-1] if t.matched else -1)))
                s.stats.verifications += 1
                s.stats.accepted_lengths.append(len(s.gen) - n_before)
            # the root's entry is canonical (sequence 0); confirmed drafts become canonical too
            s.cover(root + 1)
            if n_matched:
                s.commit(t.node_seqs[t.matched[-1]][0], root + 1 + n_matched)
            if buf >= 0:
                s.release(buf)
                buf = -1
    finally:
        if buf >= 0:
            s.release(buf)
