"""NgramDrafter: draft-free prompt lookup (the continuation of earlier occurrences of the context's tail).

This module owns an incremental n-gram index of the context and the lookup that turns it into draft
trees through `tree.grow_tree`. It must not run models. Same idea as llama.cpp's prompt lookup and
llama-cpp-python's LlamaPromptLookupDecoding, with several occurrences combined into a tree.

Lookup: for n from max_ngram down to min_ngram, the last n context tokens are looked up; the first n with
earlier occurrences wins. Its (at most max_occurrences) most recent occurrences each predict the tokens that
followed them. A continuation that runs into the end of the context continues with its own predicted tokens
(copy-with-overlap, as in LZ77), so a periodic context is extended periodically.

Confidence: the occurrences form a trie of continuations. A node reached by `count` occurrences whose
parent is reached by `count_parent` (the number of occurrences used, at the tip) gets
p = count / (count_parent + smoothing). With the default smoothing 1.0, one occurrence gives 0.5 and k
agreeing occurrences give k / (k + 1); occurrences that disagree split the mass. Siblings are ordered by
count, then by recency (the most recent occurrence first); so branch 0 follows the most recent occurrence
among the most frequent continuations. The stop (p_accept) and split (p_split) rules then apply as for a
draft model.

Index: maps every n-gram (min_ngram <= n <= max_ngram) of the context to the positions of the tokens that
followed it, in increasing order. The context grows by appends (O(max_ngram) work per new token); when a call's
context is not an extension of the previous one, the entries past the common prefix are removed again.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from pipeinfer.speculation.interfaces import Drafter, DraftLimits, _check_int, check_context, check_limits
from pipeinfer.speculation.tree import Candidates, DraftTree, Leaf, grow_tree
from pipeinfer.validate import is_real

__all__ = ["NgramDrafter"]



class NgramDrafter(Drafter):
    """Proposes what followed earlier occurrences of the context's last n tokens.

    Args:
        max_ngram: longest suffix looked up.
        min_ngram: shortest suffix looked up (1 <= min_ngram <= max_ngram).
        max_occurrences: most recent occurrences combined into one tree.
        smoothing: the confidence denominator's extra mass (>= 0; see the module docstring).
        n_vocab: vocabulary size, only used to validate contexts (None: any ids >= 0).
    """

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1, *, max_occurrences: int = 8,
                 smoothing: float = 1.0, n_vocab: Optional[int] = None) -> None:
        self.max_ngram = _check_int("max_ngram", max_ngram, 1)
        self.min_ngram = _check_int("min_ngram", min_ngram, 1)
        if self.min_ngram > self.max_ngram:
            raise ValueError(f"min_ngram ({min_ngram}) must be <= max_ngram ({max_ngram})")
        self.max_occurrences = _check_int("max_occurrences", max_occurrences, 1)
        if not is_real(smoothing) or not smoothing >= 0:
            raise ValueError(f"smoothing must be a real number >= 0, got {smoothing!r}")
        self.smoothing = float(smoothing)
        self.n_vocab = None if n_vocab is None else _check_int("n_vocab", n_vocab, 1)
        self._tokens: List[int] = []
        self._index: Dict[Tuple[int, ...], List[int]] = {}
        self.last_ngram = 0  # n of the suffix the last propose matched (0: none)

    # ------------------------------------------------------------------------------------------ public
    def begin(self, prompt: Sequence[int]) -> None:
        self._sync(check_context(prompt, self.n_vocab))

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        limits = check_limits(limits)
        ctx = check_context(context, self.n_vocab)
        self._sync(ctx)
        self.last_ngram = 0
        if limits.n_draft == 0:
            return DraftTree([])
        occ = self._lookup()
        if not occ:
            return DraftTree([])
        conts = [self._continuation(e, limits.n_draft) for e in occ]  # most recent first
        alive: Dict[int, List[int]] = {-1: list(range(len(conts)))}  # node -> occurrences through it

        def candidates(through: List[int], depth: int) -> Candidates:
            counts: Dict[int, int] = {}
            for o in through:  # insertion order = recency order of first appearance
                if depth < len(conts[o]):
                    counts[conts[o][depth]] = counts.get(conts[o][depth], 0) + 1
            denom = len(through) + self.smoothing
            ranked = sorted(counts.items(), key=lambda kv: -kv[1])  # stable: recency breaks ties
            return [(tok, c / denom) for tok, c in ranked]

        def expand(leaves: List[Leaf]) -> List[Candidates]:
            out = []
            for leaf in leaves:
                through = [o for o in alive[leaf.parent] if conts[o][leaf.depth - 1] == leaf.token]
                alive[leaf.node] = through
                out.append(candidates(through, leaf.depth))
            return out

        return grow_tree(limits, candidates(alive[-1], 0), expand)

    # ----------------------------------------------------------------------------------------- private
    def _lookup(self) -> List[int]:
        """Follow positions of the most recent occurrences of the longest matching suffix, newest first."""
        toks, n_tok = self._tokens, len(self._tokens)
        for n in range(min(self.max_ngram, n_tok), self.min_ngram - 1, -1):
            hits = self._index.get(tuple(toks[n_tok - n:]))
            if hits:
                self.last_ngram = n
                return hits[: -self.max_occurrences - 1: -1]
        return []

    def _continuation(self, e: int, k: int) -> List[int]:
        """k tokens predicted by the occurrence followed by position e (overlap copies its own output)."""
        toks, n_tok = self._tokens, len(self._tokens)
        out = toks[e:e + k]
        while len(out) < k:
            out.append(out[e + len(out) - n_tok])
        return out

    def _sync(self, ctx: List[int]) -> None:
        n_old = len(self._tokens)
        if ctx[:n_old] != self._tokens:
            common = 0
            for a, b in zip(self._tokens, ctx):
                if a != b:
                    break
                common += 1
            self._truncate(common)
        for t in ctx[len(self._tokens):]:
            self._append(t)

    def _append(self, t: int) -> None:
        toks = self._tokens
        i = len(toks)  # position of t: the n-grams ending just before it are followed by t
        for n in range(self.min_ngram, min(self.max_ngram, i) + 1):
            self._index.setdefault(tuple(toks[i - n:i]), []).append(i)
        toks.append(t)

    def _truncate(self, length: int) -> None:
        toks = self._tokens
        for i in range(len(toks) - 1, length - 1, -1):
            for n in range(self.min_ngram, min(self.max_ngram, i) + 1):
                key = tuple(toks[i - n:i])
                hits = self._index[key]
                hits.pop()  # positions are appended in increasing order, so i is the last one
                if not hits:
                    del self._index[key]
        del toks[length:]
