"""ModelDrafter: draft trees from a small GGUF model run by the native engine.

This module owns the draft model's KV cache and its bookkeeping across `propose` calls. It drafts
greedily with probabilities (softmax of the logits, top-1, and the top candidates for splits; spec
section 2.4) through `tree.grow_tree`. It must not verify drafts, talk to the target model or decide the
speculation policy (limits come from the caller).

KV layout (draft model, `n_seq_max = 1 + max_branches`):
- sequence 0 holds the accepted context `self._ctx` at positions 0..len-1. Each call brings it to the new
  context by longest common prefix: the tail after the first difference is removed (kv_seq_rm) and only
  the new tokens are evaluated.
- sequence 1 + b holds draft branch b (creation order): sequence 0 is copied into sequence 1 before
  drafting (metadata only); a forked branch receives a copy of its parent branch's sequence; each drafted
  token is evaluated at position len(context) - 1 + depth in its branch's sequence. Branch sequences are
  cleared at the start of every call.
- reuse of drafted tokens: when the next context extends the old one along a branch of the previous tree
  (typically branch 0, drafted in flight), the K/V those drafted tokens already have in their branch
  sequence is copied into sequence 0 (kv_seq_cp) instead of being evaluated again, and the candidates
  computed after them are reused. `stats` counts tokens evaluated and tokens reused this way.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from pipeinfer import _core
from pipeinfer.speculation.interfaces import Drafter, DraftLimits, _check_int, check_context, check_limits
from pipeinfer.speculation.tree import Candidates, DraftTree, Leaf, grow_tree

__all__ = ["ModelDrafter", "DrafterStats", "top_candidates"]

TOP_K = 8  # candidates kept per drafted position (the reference broadcasts the top-8; spec 2.4)


def top_candidates(logits: np.ndarray, k: int = TOP_K) -> List[Tuple[int, float]]:
    """The k most probable tokens of one logits row as (token, p), p descending, lower id first on ties.

    p is the softmax of the full row (float64), so it is the draft model's probability.
    """
    row = np.asarray(logits, dtype=np.float64)  # (n_vocab,)
    k = min(k, row.shape[0])
    top = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
    top = top[np.lexsort((top, -row[top]))]  # by logit descending, then id ascending
    m = row[top[0]]
    z = np.exp(row - m).sum()
    return [(int(t), float(np.exp(row[t] - m) / z)) for t in top]


@dataclass
class DrafterStats:
    """Counters of a ModelDrafter since construction.

    Attributes:
        calls: propose calls.
        decodes: engine decode calls (context and draft batches).
        context_evaluated: context tokens evaluated into sequence 0.
        draft_evaluated: drafted tokens evaluated in branch sequences.
        reused: context tokens taken over from a previous tree's branch KV (kv_seq_cp) instead of being
            evaluated: the evaluations saved.
    """

    calls: int = 0
    decodes: int = 0
    context_evaluated: int = 0
    draft_evaluated: int = 0
    reused: int = 0

    @property
    def evaluated(self) -> int:
        return self.context_evaluated + self.draft_evaluated

    def as_dict(self) -> Dict[str, int]:
        return {"calls": self.calls, "decodes": self.decodes, "context_evaluated": self.context_evaluated,
                "draft_evaluated": self.draft_evaluated, "reused": self.reused, "evaluated": self.evaluated}


@dataclass
class _Previous:
    """What the previous call left in the branch sequences."""

    base: int  # len(context) of that call: position of depth-1 nodes
    tree: DraftTree
    branch_seq: Dict[int, int]  # node index -> the branch sequence whose KV holds it (evaluated nodes only)
    cands: Dict[int, Candidates]  # node index -> candidates after it (evaluated nodes only)



class ModelDrafter(Drafter):
    """Greedy draft trees from a GGUF draft model.

    Args:
        model: path to a GGUF file or a known model name (pipeinfer.models.resolve).
        n_ctx: KV cells of the draft model; 0 = min(trained context, 4096). A context that leaves no free
            cell gets an empty tree.
        n_threads: compute threads.
        max_branches: most branches one tree may have (limits.n_parallel <= max_branches).
        n_batch: most context tokens evaluated per engine call.
        reuse: keep the context's KV across calls (longest common prefix) and take over drafted tokens'
            KV; False recomputes everything on every call (a reference for tests).
        exact: llama.cpp's exact arithmetic (EngineConfig.exact) instead of the default row-interleaved
            weights (faster steps, logits equal to llama.cpp's only up to rounding; a drafter's proposals
            need not be exact).

    Attributes:
        path: the GGUF file.
        n_vocab: rows of the draft model's output (token ids it can propose).
        stats: DrafterStats.
    """

    cheap = False  # every draft token is a forward pass of the draft model on the head

    def __init__(self, model: Union[str, os.PathLike], n_ctx: int = 0, n_threads: int = 1, max_branches: int = 4,
                 *, n_batch: int = 512, reuse: bool = True, exact: bool = False) -> None:
        from pipeinfer.models import repack_cache_dir, resolve

        self.n_ctx_requested = _check_int("n_ctx", n_ctx, 0)
        self.n_threads = _check_int("n_threads", n_threads, 1)
        self.max_branches = _check_int("max_branches", max_branches, 1)
        self.n_batch = _check_int("n_batch", n_batch, 1)
        self.reuse = bool(reuse)
        self.path = resolve(model)
        self._meta: Optional[Dict[str, Any]] = None
        self._pipe = _core.Pipeline(str(self.path), n_ctx=self.n_ctx_requested, n_threads=self.n_threads,
                                    n_seq_max=1 + self.max_branches, repack=not exact,
                                    repack_cache_dir="" if exact else str(repack_cache_dir()))
        self.n_vocab = int(self._pipe.n_vocab)
        self.stats = DrafterStats()
        self._ctx: List[int] = []  # tokens whose K/V sit in sequence 0 at positions 0..len-1
        self._tip: Optional[Candidates] = None  # candidates after self._ctx[-1]; None = not known
        self._prev: Optional[_Previous] = None
        self._closed = False

    # ------------------------------------------------------------------------------------------ public
    @property
    def n_ctx(self) -> int:
        return int(self._pipe.n_ctx)

    @property
    def metadata(self) -> Dict[str, Any]:
        """The draft model's GGUF metadata (read on first use)."""
        if self._meta is None:
            self._meta = _core.GGUFFile(str(self.path)).metadata()
        return self._meta

    def begin(self, prompt: Sequence[int]) -> None:
        """Evaluates the prompt now, so the first propose only drafts."""
        ctx = check_context(prompt, self.n_vocab)
        if ctx and len(ctx) <= self.n_ctx:
            self._sync(ctx)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        limits = check_limits(limits)
        if limits.n_parallel > self.max_branches:
            raise ValueError(
                f"limits.n_parallel is {limits.n_parallel} but this ModelDrafter was built with max_branches="
                f"{self.max_branches}"
            )
        if self._closed:
            raise RuntimeError("the ModelDrafter is closed")
        ctx = check_context(context, self.n_vocab)
        if not ctx:
            raise ValueError("context is empty: a draft continues at least one token")
        self.stats.calls += 1
        room = self.n_ctx - len(ctx)  # free cells (and positions) for drafted tokens
        if limits.n_draft == 0 or room <= 0:
            return DraftTree([])
        self._sync(ctx)
        base = len(ctx)
        if limits.n_draft > room:  # every drafted token needs a cell
            limits = replace(limits, n_draft=room)
        self._pipe.kv_seq_cp(0, 1, 0, -1)
        branch_seq: Dict[int, int] = {}
        cands: Dict[int, Candidates] = {}

        def expand(leaves: List[Leaf]) -> List[Candidates]:
            for leaf in leaves:
                if leaf.fork_of is not None:
                    # the parent branch's sequence holds context + the path up to this leaf's parent
                    self._pipe.kv_seq_cp(1 + leaf.fork_of, 1 + leaf.branch, 0, -1)
            n = len(leaves)
            out = self._decode([lf.token for lf in leaves], [base - 1 + lf.depth for lf in leaves],
                               [1 + lf.branch for lf in leaves], np.ones(n, np.uint8))
            self.stats.draft_evaluated += n
            result: List[Candidates] = []
            for r, leaf in enumerate(leaves):
                c = top_candidates(out[r])
                branch_seq[leaf.node] = 1 + leaf.branch
                cands[leaf.node] = c
                result.append(c)
            return result

        assert self._tip is not None
        tree = grow_tree(limits, self._tip, expand)
        self._prev = _Previous(base, tree, branch_seq, cands) if self.reuse else None
        return tree

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pipe.close()

    # ----------------------------------------------------------------------------------------- private
    def _decode(self, tokens: List[int], pos: List[int], seqs: List[int], want: np.ndarray) -> np.ndarray:
        self.stats.decodes += 1
        return self._pipe.decode(np.asarray(tokens, np.int32), np.asarray(pos, np.int32),
                                 np.asarray(seqs, np.int32), want)

    def _clear_branches(self) -> None:
        for s in range(1, 1 + self.max_branches):
            self._pipe.kv_seq_rm(s, 0, -1)

    def _take_over_drafts(self, ctx: List[int]) -> None:
        """Moves the K/V of previously drafted tokens that `ctx` continues with into sequence 0."""
        prev, self._prev = self._prev, None
        if prev is None or len(self._ctx) != prev.base or len(ctx) <= prev.base or ctx[:prev.base] != self._ctx:
            return
        best_path: List[int] = []
        for path in prev.tree.branches():  # branch 0 first: it wins ties
            j = 0
            while (j < len(path) and prev.base + j < len(ctx) and path[j] in prev.branch_seq
                   and prev.tree.nodes[path[j]].token == ctx[prev.base + j]):
                j += 1
            if j > len(best_path):
                best_path = path[:j]
        if not best_path:
            return
        last = best_path[-1]
        self._pipe.kv_seq_cp(prev.branch_seq[last], 0, prev.base, prev.base + len(best_path))
        self._ctx.extend(ctx[prev.base:prev.base + len(best_path)])
        self._tip = prev.cands[last]
        self.stats.reused += len(best_path)

    def _sync(self, ctx: List[int]) -> None:
        """Brings sequence 0 to hold ctx and self._tip to the candidates after ctx[-1]."""
        if not self.reuse:
            self._pipe.kv_clear()
            self._ctx, self._tip = [], None
        else:
            self._take_over_drafts(ctx)
            self._clear_branches()
        n_old = len(self._ctx)
        common = n_old if ctx[:n_old] == self._ctx else _common_prefix(self._ctx, ctx)
        if common == len(ctx) and (common < n_old or self._tip is None):
            common -= 1  # the tip's logits are needed: evaluate it again
        if common < n_old:
            self._pipe.kv_seq_rm(0, common, -1)
            del self._ctx[common:]
            self._tip = None
        for start in range(common, len(ctx), self.n_batch):
            chunk = ctx[start:start + self.n_batch]
            last = start + len(chunk) == len(ctx)
            want = np.zeros(len(chunk), np.uint8)
            want[-1] = last
            out = self._decode(chunk, list(range(start, start + len(chunk))), [0] * len(chunk), want)
            self.stats.context_evaluated += len(chunk)
            self._ctx.extend(chunk)
            if last:
                self._tip = top_candidates(out[-1])


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if diff.size else n
