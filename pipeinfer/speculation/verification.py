"""Verification: which drafted tokens the target confirms, and the token it emits at each position.

This module owns the acceptance rule and the walk of a draft tree laid out as a target batch. It must
not launch runs or edit the KV cache (session.py does).

Acceptance is exact at every temperature. Our drafters propose deterministic tokens (the draft
model's argmax, n-gram lookups), i.e. the proposal distribution q is a point mass on the drafted
token. Leviathan/Chen speculative sampling with such a q accepts draft x with probability
min(1, p(x) / q(x)) = p(x) and otherwise resamples from the residual max(0, p - q), which is p with x
removed and renormalised. For a draft tree, the candidates at one position are tried one after the
other, each against the residual left by the previous ones (SpecInfer-style multi-draft
verification); the emitted token is then distributed exactly as p. At temperature 0, p is one-hot
and the rule reduces to "accept iff the draft equals the target's argmax".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from pipeinfer.sampling.chooser import accept_candidates, candidate_index
from pipeinfer.speculation.tree import DraftNode, DraftTree

if TYPE_CHECKING:
    from pipeinfer.speculation.session import Session

__all__ = ["verify_position", "TreeBatch", "verify_tree", "trim_tree"]


def verify_position(
    probs: Optional[np.ndarray], logits: np.ndarray, candidates: Sequence[int], rng: np.random.Generator
) -> Tuple[int, int]:
    """Decides the token at one position given the target's distribution and the drafted candidates.

    Args:
        probs: the target's final sampling distribution (float64, sums to 1), or None for greedy.
        logits: the raw logits row (used for greedy: argmax, lowest id on ties).
        candidates: distinct drafted tokens at this position, most preferred first (may be empty).
        rng: the sampler's random generator.

    Returns:
        (token, index of the accepted candidate or -1). The token is distributed exactly as probs.
    """
    if probs is None:
        tok = int(np.argmax(logits))
        return tok, candidate_index(tok, candidates)
    return accept_candidates(probs, candidates, rng)


@dataclass
class TreeBatch:
    """A draft tree laid out as a target batch: node i sits at position root_pos + depth(i), in the
    sequences of the branches through it.

    Attributes:
        tree: the draft tree.
        root_pos: position of the token the tree continues (the tip).
        children: node index (-1 = the tip) -> child node indices, preferred first.
        node_seqs: node -> KV sequences of the branches through it.
        branch_seq: branch j -> its sequence.
        root_row: the batch's row 0 is the tip itself (synchronous mode), so node i's row is i + 1.
        matched: nodes confirmed by the last verification, root to leaf.
    """

    tree: DraftTree
    root_pos: int
    children: Dict[int, List[int]]
    node_seqs: List[List[int]]
    branch_seq: List[int]
    root_row: bool = False
    matched: List[int] = field(default_factory=list)

    @classmethod
    def build(cls, tree: DraftTree, root_pos: int, branch_seqs: Sequence[int], root_row: bool = False) -> "TreeBatch":
        children: Dict[int, List[int]] = {-1: []}
        for i, nd in enumerate(tree.nodes):
            children.setdefault(i, [])
            children.setdefault(nd.parent, []).append(i)
        node_seqs: List[List[int]] = [[] for _ in tree.nodes]
        for j, path in enumerate(tree.branches()):
            for i in path:
                node_seqs[i].append(branch_seqs[j])
        return cls(tree, root_pos, children, node_seqs, list(branch_seqs[: len(tree.branches())]), root_row)

    def positions(self) -> List[int]:
        return [self.root_pos + self.tree.depth(i) for i in range(len(self.tree.nodes))]

    def tokens(self) -> List[int]:
        return [nd.token for nd in self.tree.nodes]

    def branch0_tokens(self) -> List[int]:
        return [self.tree.nodes[i].token for i in self.tree.branches()[0]]

    def follow(self, node: int, token: int) -> Optional[int]:
        """The child of `node` drafting `token` (the first such), or None."""
        for c in self.children.get(node, []):
            if self.tree.nodes[c].token == token:
                return c
        return None


def verify_tree(session: "Session", t: TreeBatch, rows: np.ndarray, start: int) -> Iterator[int]:
    """Verifies a tree from node `start` (whose token is the last accepted one; -1: the tip, whose row
    is rows[0] only when t.root_row): decides and accepts one token per step, yields it, and records in
    t.matched the drafted nodes confirmed. Stops at the first rejection, at a leaf, or when the
    context is full."""
    node = start
    row_of = (lambda i: rows[i + 1]) if t.root_row else (lambda i: rows[i])
    t.matched = []
    while True:
        kids = t.children.get(node, [])
        tok, idx = session.decide(row_of(node), [t.tree.nodes[c].token for c in kids])
        session.accept(tok)
        if idx >= 0:
            t.matched.append(kids[idx])
        yield tok
        if idx < 0 or session.full:
            return
        node = kids[idx]


def trim_tree(tree: DraftTree, max_depth: int) -> DraftTree:
    """Drops nodes deeper than max_depth (the context's end)."""
    if max_depth <= 0:
        return DraftTree([])
    if all(tree.depth(i) <= max_depth for i in range(len(tree.nodes))):
        return tree
    keep = [i for i in range(len(tree.nodes)) if tree.depth(i) <= max_depth]
    remap = {old: new for new, old in enumerate(keep)}
    return DraftTree([DraftNode(tree.nodes[i].token, remap.get(tree.nodes[i].parent, -1), tree.nodes[i].p)
                      for i in keep])
