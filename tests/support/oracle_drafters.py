"""Test-only drafters with known behaviour, and an independent oracle of the draft-tree rules.

This module owns (1) OracleDrafter, which always proposes the true continuation, and WrongDrafter, whose
every proposed token differs from the truth, both chains honouring n_draft, for tests of the speculation
control loop (acceptance of everything / of nothing); and (2) `reference_draft_tree`, a deliberately plain
re-statement of PipeInfer's tree rules (spec section 2.4) over a function that maps a token path to next-token
probabilities, used to check pipeinfer.drafters without sharing its code. It must not import
pipeinfer.drafters.tree's grow_tree.
"""
from __future__ import annotations

import itertools
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from pipeinfer.drafters import Drafter, DraftLimits, DraftNode, DraftTree

__all__ = ["OracleDrafter", "WrongDrafter", "reference_draft_tree", "softmax64", "top_k_desc", "check_tree_invariants"]


class OracleDrafter(Drafter):
    """Proposes truth[len(context) : len(context) + n_draft] as a chain with probability p.

    Args:
        truth: the full expected token sequence, prompt included.
        p: probability attached to every node (1.0: never stopped by p_accept).
        n_vocab: reported vocabulary size (default max(truth) + 1).

    A context that is not a prefix of truth gets an empty tree (the oracle only knows the true path).
    """

    def __init__(self, truth: Sequence[int], p: float = 1.0, n_vocab: Optional[int] = None) -> None:
        self.truth = [int(t) for t in truth]
        self.p = float(p)
        self.n_vocab = n_vocab if n_vocab is not None else (max(self.truth) + 1 if self.truth else 1)
        self.calls = 0

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        self.calls += 1
        ctx = [int(t) for t in context]
        if self.p < limits.p_accept or ctx != self.truth[: len(ctx)]:
            return DraftTree([])
        return DraftTree.chain(self.truth[len(ctx): len(ctx) + limits.n_draft], self.p)


class WrongDrafter(Drafter):
    """Proposes, at every position len(context) + i, a token different from truth at that position.

    The wrong token is (true + 1) % n_vocab. Positions past the end of truth get no draft.

    Args:
        truth: the full expected token sequence, prompt included.
        n_vocab: vocabulary size (>= 2); default max(truth) + 2, so wrong tokens stay in range of any
            vocabulary that holds every true token plus one.
        p: probability attached to every node.
    """

    def __init__(self, truth: Sequence[int], n_vocab: Optional[int] = None, p: float = 1.0) -> None:
        self.truth = [int(t) for t in truth]
        self.n_vocab = n_vocab if n_vocab is not None else (max(self.truth) + 2 if self.truth else 2)
        if self.n_vocab < 2:
            raise ValueError(f"n_vocab must be >= 2 for a token that differs, got {self.n_vocab}")
        self.p = float(p)
        self.calls = 0

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        self.calls += 1
        if self.p < limits.p_accept:
            return DraftTree([])
        n = len(context)
        true = self.truth[n: n + limits.n_draft]
        return DraftTree.chain([(t + 1) % self.n_vocab for t in true], self.p)


# --------------------------------------------------------------------------------------------------------
# reference of the tree rules


def softmax64(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def top_k_desc(probs: np.ndarray, k: int = 8) -> List[Tuple[int, float]]:
    """(token, p) of the k most probable tokens, p descending, lower id first on ties."""
    order = sorted(range(len(probs)), key=lambda t: (-probs[t], t))[:k]
    return [(t, float(probs[t])) for t in order]


def reference_draft_tree(
    next_probs: Callable[[List[int]], np.ndarray], limits: DraftLimits, k: int = 8
) -> Tuple[DraftTree, List[float]]:
    """The tree PipeInfer's rules give, by direct simulation.

    Args:
        next_probs: drafted path (list of tokens after the tip) -> next-token probabilities (n_vocab,).
        limits: n_draft (strict total cap), n_parallel, p_accept, p_split.
        k: candidates considered per step (top-1 plus k - 1 split candidates).

    Returns:
        (tree, margins): margins lists |p - threshold| of every stop/split decision taken and the gap
        between the top-1 and top-2 probabilities of every expanded node, so a test can assert it is far
        from any tie.
    """
    nodes: List[DraftNode] = []
    margins: List[float] = []
    # each branch: dict(path=list of tokens, last=node index or -1, active=bool)
    branches = [dict(path=[], last=-1, active=True)]
    while len(nodes) < limits.n_draft:
        added = False
        snapshot = list(branches)
        for br in snapshot:
            if not br["active"]:
                continue
            if len(nodes) >= limits.n_draft:
                br["active"] = False
                continue
            cands = top_k_desc(next_probs(br["path"]), k)
            margins.append(cands[0][1] - cands[1][1])
            margins.append(abs(cands[0][1] - limits.p_accept))
            if cands[0][1] < limits.p_accept:
                br["active"] = False
                continue
            parent_path, parent = list(br["path"]), br["last"]
            nodes.append(DraftNode(cands[0][0], parent, cands[0][1]))
            br["path"] = parent_path + [cands[0][0]]
            br["last"] = len(nodes) - 1
            added = True
            for tok, p in cands[1:]:
                if len(branches) >= limits.n_parallel or len(nodes) >= limits.n_draft:
                    break
                margins.append(abs(p - limits.p_split))
                if not p > limits.p_split:
                    break
                nodes.append(DraftNode(tok, parent, p))
                branches.append(dict(path=parent_path + [tok], last=len(nodes) - 1, active=True))
        if not added:
            break
    return DraftTree(nodes), margins


def check_tree_invariants(tree: DraftTree, limits: DraftLimits) -> None:
    """Structure every drafter's tree must have."""
    assert len(tree) <= limits.n_draft
    for i, nd in enumerate(tree.nodes):
        assert -1 <= nd.parent < i
        assert 0.0 <= nd.p <= 1.0
    branches = tree.branches()
    assert len(branches) <= limits.n_parallel
    # every node lies on some branch, and every branch runs from a child of the tip to a leaf
    assert sorted(set(itertools.chain.from_iterable(branches))) == list(range(len(tree)))
    for b in branches:
        assert tree.nodes[b[0]].parent == -1
        assert all(tree.nodes[b[k]].parent == b[k - 1] for k in range(1, len(b)))
        assert tree.children(b[-1]) == []
        assert [tree.depth(i) for i in b] == list(range(1, len(b) + 1))
    # breadth order: depth never decreases along the node list
    depths = [tree.depth(i) for i in range(len(tree))]
    assert depths == sorted(depths)
    # siblings hold distinct tokens
    for i in range(-1, len(tree)):
        toks = tree.tokens(tree.children(i))
        assert len(toks) == len(set(toks))
