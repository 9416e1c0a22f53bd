"""Draft trees and the tree-growing rule shared by drafters.

This module owns the data a drafter hands to the speculation control loop (DraftNode, DraftTree) and
`grow_tree`: the PipeInfer rule that turns per-leaf candidate lists into a tree (stop rule, split rule,
size cap; spec section 2.4). The limits a drafter obeys and the Drafter interface live in
interfaces.py. It is pure Python: it must not import `pipeinfer._core`, run models or know about KV
caches.

Tree layout (the contract every drafter in this package follows):
- `DraftTree.nodes` lists parents before children. Trees grown by `grow_tree` are in breadth order: every
  depth-d node precedes every depth-(d+1) node; within one depth, nodes follow their branch's creation
  order.
- The children of a node are ordered by node index, and the first child is the drafter's preferred
  continuation (its top-1 token). `branches()` lists root-to-leaf paths in depth-first order over that
  child order, so branch 0 follows the first child at every level: the most probable chain.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from pipeinfer.speculation.interfaces import DraftLimits

__all__ = ["DraftNode", "DraftTree", "Leaf", "Candidates", "grow_tree"]

# (token, p) pairs sorted by p descending: the continuations a drafter considers after one node
Candidates = Sequence[Tuple[int, float]]


@dataclass(frozen=True)
class DraftNode:
    """One drafted token.

    Attributes:
        token: the token id.
        parent: index of the parent node in DraftTree.nodes; -1 = child of the tip (the last context
            token).
        p: the drafter's probability for this token given its path (1.0 if the drafter has none).
    """

    token: int
    parent: int
    p: float


@dataclass
class DraftTree:
    """A tree of drafted tokens continuing a context (layout: see the module docstring).

    Construction checks the structure: every parent is -1 or an earlier node (ValueError naming
    `nodes[i].parent` otherwise).
    """

    nodes: List[DraftNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = list(self.nodes)
        for i, nd in enumerate(self.nodes):
            if not isinstance(nd, DraftNode):
                raise ValueError(f"nodes[{i}] must be a DraftNode, got {type(nd).__name__}")
            if not -1 <= nd.parent < i:
                raise ValueError(
                    f"nodes[{i}].parent must be -1 (the tip) or an earlier node index in [0, {i}), got {nd.parent}"
                )

    @classmethod
    def chain(cls, tokens: Sequence[int], p: Sequence[float] | float = 1.0) -> "DraftTree":
        """A single branch: tokens[0] is a child of the tip, tokens[i] a child of tokens[i-1]."""
        # float spelled out beside numbers.Real: mypy does not narrow the union by the numbers ABCs
        ps = [float(p)] * len(tokens) if isinstance(p, (float, numbers.Real)) else [float(x) for x in p]
        if len(ps) != len(tokens):
            raise ValueError(f"p has {len(ps)} entries, expected one per token ({len(tokens)})")
        return cls([DraftNode(int(t), i - 1, q) for i, (t, q) in enumerate(zip(tokens, ps))])

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[DraftNode]:
        return iter(self.nodes)

    def depth(self, i: int) -> int:
        """Depth of node i: 1 for children of the tip (its position is len(context) - 1 + depth)."""
        d = 1
        j = self.nodes[i].parent
        while j >= 0:
            d += 1
            j = self.nodes[j].parent
        return d

    def children(self, i: int) -> List[int]:
        """Indices of the children of node i (i = -1: of the tip), in index order (first = preferred)."""
        return [k for k, nd in enumerate(self.nodes) if nd.parent == i]

    def path(self, i: int) -> List[int]:
        """Node indices from the tip's child down to node i."""
        out = []
        while i >= 0:
            out.append(i)
            i = self.nodes[i].parent
        return out[::-1]

    def branches(self) -> List[List[int]]:
        """Root-to-leaf node index paths, depth-first over children in index order (branch 0 first)."""
        if all(nd.parent == i - 1 for i, nd in enumerate(self.nodes)):
            return [list(range(len(self.nodes)))] if self.nodes else []  # a chain (the common case)
        kids: List[List[int]] = [[] for _ in range(len(self.nodes) + 1)]  # slot 0 = the tip
        for k, nd in enumerate(self.nodes):
            kids[nd.parent + 1].append(k)
        out: List[List[int]] = []
        stack: List[Tuple[int, List[int]]] = [(k, [k]) for k in reversed(kids[0])]
        while stack:
            k, path = stack.pop()
            if not kids[k + 1]:
                out.append(path)
                continue
            for c in reversed(kids[k + 1]):
                stack.append((c, path + [c]))
        return out

    def tokens(self, path: Sequence[int]) -> List[int]:
        """The token ids of a list of node indices (e.g. one of `branches()`)."""
        return [self.nodes[i].token for i in path]

    def chain_tokens(self) -> List[int]:
        """Tokens of branch 0 ([] for an empty tree)."""
        b = self.branches()
        return self.tokens(b[0]) if b else []


@dataclass
class Leaf:
    """A node added in the current step of `grow_tree`, whose candidates the caller must supply.

    Attributes:
        node: its index in the tree.
        parent: its parent node index (-1 = the tip).
        token: its token.
        depth: its depth (1 = child of the tip).
        branch: index of the branch it extends, in creation order (0 = the first branch).
        fork_of: for the first node of a new branch, the branch it forked from (its path up to `parent` is
            the parent branch's path before this step); None when it extends its own branch.
    """

    node: int
    parent: int
    token: int
    depth: int
    branch: int
    fork_of: Optional[int] = None


def grow_tree(
    limits: "DraftLimits",
    root: Candidates,
    expand: Callable[[List[Leaf]], List[Candidates]],
    max_depth: Optional[int] = None,
) -> DraftTree:
    """Grows a draft tree step by step with PipeInfer's rules (spec section 2.4).

    Each step visits the active branches in creation order. A branch whose top-1 candidate has p <
    p_accept (or that has no candidate) stops. Otherwise its top-1 becomes its next node, then each further
    candidate f = 1, 2, ... with p_f > p_split forks a new branch (a sibling of that node) while there are
    fewer than n_parallel branches. No node is added once the tree holds n_draft nodes. After the step
    `expand(leaves)` must return the candidates after each new node (sorted by p, descending); it is not
    called when the size cap or max_depth ends drafting, so the last nodes are never evaluated needlessly.

    Args:
        limits: the call's limits.
        root: candidates after the tip.
        expand: leaves -> candidates, one list per leaf in the same order.
        max_depth: optional depth limit (e.g. free positions of a KV cache).

    Returns:
        The tree, in breadth order.
    """
    nodes: List[DraftNode] = []
    cap = limits.n_draft
    # per branch: [last node index, candidates after it, active]
    branches: List[list] = [[-1, root, True]]
    depth = 0
    while len(nodes) < cap and (max_depth is None or depth < max_depth):
        depth += 1
        leaves: List[Leaf] = []
        for b in range(len(branches)):
            last, cands, active = branches[b]
            if not active:
                continue
            if len(nodes) >= cap or not cands or cands[0][1] < limits.p_accept:
                branches[b][2] = False
                continue
            tok, p = cands[0]
            nodes.append(DraftNode(int(tok), last, float(p)))
            leaves.append(Leaf(len(nodes) - 1, last, int(tok), depth, b))
            branches[b][0] = len(nodes) - 1
            for tok_f, p_f in cands[1:]:
                if len(branches) >= limits.n_parallel or len(nodes) >= cap or not p_f > limits.p_split:
                    break
                nodes.append(DraftNode(int(tok_f), last, float(p_f)))
                leaves.append(Leaf(len(nodes) - 1, last, int(tok_f), depth, len(branches), fork_of=b))
                branches.append([len(nodes) - 1, None, True])
        if not leaves or len(nodes) >= cap or (max_depth is not None and depth >= max_depth):
            break
        new = expand(leaves)
        if len(new) != len(leaves):
            raise RuntimeError(f"expand returned {len(new)} candidate lists for {len(leaves)} leaves")
        for leaf, cands in zip(leaves, new):
            branches[leaf.branch][1] = cands
    return DraftTree(nodes)
