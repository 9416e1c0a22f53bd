"""NoisyDrafter: a deliberately degraded drafter, to sweep the acceptance rate in experiments.

This module owns one wrapper: it asks a base drafter for a tree and replaces each drafted token, with
probability `error_rate` and independently of the others, by a different token drawn uniformly from the
vocabulary. The tree's shape and probabilities stay as the base proposed them, so the control loop
speculates exactly as much as with the base drafter; only fewer drafts survive verification. With a
base that is always right, the expected accepted prefix of a k-token chain is sum_{i=1..k} (1 - e)^i.
It must not run models or decide the speculation policy.

Determinism: the corruption of a node depends only on (seed, context length, node index, base token)
through a hash, not on a shared random stream, so a run is reproducible whatever the order and number
of `propose` calls (pipeinfer mode drafts a variable number of times per token, depending on timing).
"""
from __future__ import annotations

import hashlib
import math
import struct
from typing import Dict, List, Optional, Sequence, Set, Tuple

from pipeinfer.speculation.interfaces import Drafter, DraftLimits, check_limits
from pipeinfer.speculation.tree import DraftNode, DraftTree
from pipeinfer.validate import is_int, is_real

__all__ = ["NoisyDrafter"]

_UNIT = float(1 << 64)  # 2^64: turns a 64-bit hash into a uniform float in [0, 1)


class NoisyDrafter(Drafter):
    """Wraps `base` and corrupts each drafted token with probability `error_rate`.

    Args:
        base: the drafter whose trees are corrupted.
        error_rate: probability in [0, 1] that a drafted token is replaced by a different one.
        seed: selects the pseudo-random corruption pattern (same seed, same context: same tree).
        n_vocab: vocabulary the replacement tokens are drawn from (>= 2); default: base.n_vocab, which
            must then be known.

    Attributes:
        n_proposed: drafted tokens seen so far; n_corrupted: how many of them were replaced.
    """

    n_vocab: int  # always known here (checked in __init__), unlike Drafter.n_vocab

    def __init__(self, base: Drafter, error_rate: float, seed: int = 0, *, n_vocab: Optional[int] = None) -> None:
        if not isinstance(base, Drafter):
            raise ValueError(f"base must be a pipeinfer.drafters.Drafter, got {type(base).__name__}")
        if not is_real(error_rate) or not math.isfinite(error_rate) or not 0.0 <= error_rate <= 1.0:
            raise ValueError(f"error_rate must be a number in [0, 1], got {error_rate!r}")
        if not is_int(seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        vocab = n_vocab if n_vocab is not None else base.n_vocab
        if vocab is None:
            raise ValueError("n_vocab is needed: the base drafter does not report its vocabulary (n_vocab=None)")
        if not is_int(vocab) or vocab < 2:
            raise ValueError(f"n_vocab must be an integer >= 2 (a replacement must differ), got {vocab!r}")
        self.base = base
        self.error_rate = float(error_rate)
        self.seed = int(seed)
        self.n_vocab = int(vocab)
        self.n_proposed = 0
        self.n_corrupted = 0

    def begin(self, prompt: Sequence[int]) -> None:
        self.base.begin(prompt)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        limits = check_limits(limits)
        tree = self.base.propose(context, limits)
        n_ctx = len(context)
        nodes: List[DraftNode] = []
        for i, nd in enumerate(tree.nodes):
            tok = nd.token
            u, r = self._draws(n_ctx, i, tok)
            self.n_proposed += 1
            if u < self.error_rate:
                # a uniform token among the n_vocab - 1 others
                tok = (tok + 1 + int(r * (self.n_vocab - 1))) % self.n_vocab
                self.n_corrupted += 1
            nodes.append(DraftNode(tok, nd.parent, nd.p))
        return _dedup_siblings(nodes)

    def close(self) -> None:
        self.base.close()

    def _draws(self, n_ctx: int, node: int, token: int) -> "tuple[float, float]":
        """Two independent uniforms in [0, 1) for one node, from a hash of its identity."""
        h = hashlib.blake2b(struct.pack("<qqqq", self.seed, n_ctx, node, token), digest_size=16).digest()
        a, b = struct.unpack("<QQ", h)
        return a / _UNIT, b / _UNIT


def _dedup_siblings(nodes: "list[DraftNode]") -> DraftTree:
    """Drops a node (and its subtree) whose token repeats an earlier sibling's, a corruption can cause
    it; siblings must hold distinct tokens."""
    keep_index: Dict[int, int] = {-1: -1}  # index in nodes -> index in out (-1: the tip)
    seen: Set[Tuple[int, int]] = set()  # (parent in out, token)
    out: List[DraftNode] = []
    for i, nd in enumerate(nodes):
        if nd.parent not in keep_index:
            continue  # its parent was dropped
        parent = keep_index[nd.parent]
        if (parent, nd.token) in seen:
            continue
        seen.add((parent, nd.token))
        keep_index[i] = len(out)
        out.append(DraftNode(nd.token, parent, nd.p))
    return DraftTree(out)
