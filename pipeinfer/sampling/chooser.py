"""TokenChooser: the one place where a generation's tokens are chosen, in every decoding mode.

A decoder (pipeinfer.speculation) hands the chooser each verified position's logits row, the tokens
accepted so far and the drafted candidates for that position; the chooser returns the token and which
candidate (if any) it confirms. It owns, for one generation:

- the processed logits: logit bias, repetition penalties, the bans of `min_tokens` / `ignore_eos`, and
  the grammar mask of a constraint (constraint.py); greedy is the argmax of these, so bias, penalties
  and grammars apply at temperature 0 too;
- at temperature > 0, exact multi-candidate rejection sampling against the final distribution of the
  sampler chain over the processed logits (each candidate is a point-mass proposal: accepted with its
  residual probability, the residual renormalised without it; the emitted token is distributed
  exactly as the distribution);
- the per-token log-probability records (`logprobs`), and the constraint's state, advanced once per
  chosen token;
- `cut_draft`: drafts that break the constraint are cut before they are verified.

It is pure numpy (no pipeinfer._core) and knows nothing about KV caches or runs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from pipeinfer.sampling.params import SamplingParams
from pipeinfer.sampling.sampler import Sampler
from pipeinfer.sampling.transforms import log_softmax

__all__ = ["TokenChooser", "TokenLogprob", "Constraint", "accept_candidates"]


@dataclass(frozen=True)
class TokenLogprob:
    """The log-probability record of one chosen token.

    Attributes:
        token: the chosen token id.
        logprob: its natural-log probability under the processed logits (log-softmax of the logits after
            bias, penalties, bans and grammar mask; before top-k / top-p / min-p / temperature).
        top: the most likely tokens at that position as (id, logprob), most likely first (lower id
            first on ties), as many as SamplingParams.logprobs asks (banned tokens are never listed).
    """

    token: int
    logprob: float
    top: Tuple[Tuple[int, float], ...] = ()


class Constraint(Protocol):
    """What the chooser needs from a structured-output constraint (a grammar, a regex, a JSON schema).

    The constraint's state follows the tokens chosen so far (one `advance` per chosen token).
    """

    def allowed(self, n_vocab: int) -> np.ndarray:
        """Bool mask (n_vocab,) of the tokens allowed next in the current state."""

    def advance(self, token: int) -> None:
        """Moves the state past `token` (ValueError if the token is not allowed)."""

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        """How many of `tokens` (continuing the current state) the constraint accepts in a row; does not
        change the state."""


def accept_candidates(probs: np.ndarray, candidates: Sequence[int], rng: np.random.Generator) -> Tuple[int, int]:
    """Exact multi-candidate rejection sampling with point-mass proposals.

    Tries the candidates in order, each with its probability under the residual left by the previous
    ones; the first accepted one is returned, else a draw from the last residual. The returned token is
    distributed exactly as `probs`.

    Args:
        probs: the target distribution (n_vocab,) float64 summing to 1.
        candidates: distinct drafted tokens, preferred first (may be empty).
        rng: the generator to draw from.

    Returns:
        (token, index of the accepted candidate or -1).
    """
    residual = probs
    for i, c in enumerate(candidates):
        pc = float(residual[c]) if 0 <= c < len(residual) else 0.0
        if pc > 0.0 and rng.random() < pc:
            return int(c), i
        if pc > 0.0:
            residual = residual.copy()
            residual[c] = 0.0
            total = residual.sum()
            if total <= 0.0:  # every mass was on the candidates tried: impossible unless rounding
                return int(c), i
            residual /= total
    return int(rng.choice(len(residual), p=residual)), -1


def candidate_index(token: int, candidates: Sequence[int]) -> int:
    """The index of `token` among the drafted candidates, or -1."""
    return next((i for i, c in enumerate(candidates) if c == token), -1)


class TokenChooser:
    """Chooses the tokens of one generation (see the module docstring).

    Args:
        params: the generation's sampling parameters.
        eog_ids: the model's end-of-generation token ids (banned by ignore_eos, and with the
            stop_token_ids until min_tokens tokens were generated; a constraint whose grammar is complete
            and allows only these tokens overrides the bans, so the generation ends).
        constraint: a structured-output constraint, or None.

    Attributes:
        argmax_only: True when no processing applies (greedy, no bias, penalties, bans, logprobs or
            constraint): the last pipeline stage may then return each row's argmax id instead of the
            row, and `choose` accepts that id.
        logprobs: one TokenLogprob per chosen token when params.logprobs is not None.
        n_chosen: tokens chosen so far.
    """

    def __init__(self, params: SamplingParams, *, eog_ids: Iterable[int] = (),
                 constraint: Optional[Constraint] = None) -> None:
        if not isinstance(params, SamplingParams):
            raise TypeError(f"TokenChooser needs SamplingParams, got {type(params).__name__}")
        self.params = params
        self.sampler = Sampler(params)
        self.constraint = constraint
        self._eog = np.array(sorted({int(t) for t in eog_ids}), dtype=np.int64)
        self._min_ban = np.array(sorted({int(t) for t in eog_ids} | set(params.stop_token_ids)), dtype=np.int64)
        self.argmax_only = (params.is_greedy and not params.changes_logits and params.logprobs is None
                            and constraint is None)
        self.logprobs: List[TokenLogprob] = []
        self.n_chosen = 0
        self._start: Optional[int] = None  # len(history) at the first choice: the prompt's length

    @property
    def rng(self) -> np.random.Generator:
        return self.sampler.rng

    # ------------------------------------------------------------------------------------ choosing
    def choose(self, row: Any, history: Sequence[int], candidates: Sequence[int] = ()) -> Tuple[int, int]:
        """The token at position len(history), and the index of the candidate it confirms or -1.

        Args:
            row: the position's logits row (float, (n_vocab,)), or, when `argmax_only`, the id the
                last stage chose.
            history: prompt + tokens chosen so far (exactly those: one call per emitted token, in order).
            candidates: distinct drafted tokens for this position, preferred first.
        """
        if self._start is None:
            self._start = len(history)
        elif len(history) != self._start + self.n_chosen:
            raise RuntimeError(f"TokenChooser.choose: history has {len(history)} tokens, expected the prompt's "
                               f"{self._start} + {self.n_chosen} chosen (one call per emitted token, in order)")
        if np.ndim(row) == 0:
            if not self.argmax_only:
                raise ValueError("TokenChooser.choose: got a token id, but this generation processes the logits "
                                 "(bias, penalties, logprobs or a grammar): pass the logits row")
            tok = int(row)
            idx = candidate_index(tok, candidates)
        else:
            x = self.processed(row, history)
            if self.params.is_greedy:
                tok = int(np.argmax(x))
                idx = candidate_index(tok, candidates)
            else:
                tok, idx = accept_candidates(self.sampler.chain_probs(x), candidates, self.sampler.rng)
            if self.params.logprobs is not None:
                self.logprobs.append(self._record(x, tok))
        if self.constraint is not None:
            self.constraint.advance(tok)
        self.n_chosen += 1
        return tok, idx

    def processed(self, row: Any, history: Sequence[int]) -> np.ndarray:
        """The processed logits for the next position: (n_vocab,) float64, banned tokens -inf.

        Does not change the chooser's state. Raises ValueError when nothing is left to choose (every
        token banned or masked), naming the causes that apply.
        """
        x = self.sampler.adjusted_logits(row, history)
        p = self.params
        if self.constraint is not None:
            x[~self.constraint.allowed(x.size)] = -np.inf
        banned = np.zeros(0, dtype=np.int64)
        if p.ignore_eos:
            banned = self._eog
        if p.min_tokens and len(history) - (self._start or len(history)) < p.min_tokens:
            banned = np.union1d(banned, self._min_ban)
        banned = banned[banned < x.size]
        if banned.size:
            kept = x.copy()
            kept[banned] = -np.inf
            # a complete grammar that allows only end tokens ends the generation despite the bans
            if np.max(kept) > -np.inf or self.constraint is None:
                x = kept
        if not np.max(x) > -np.inf:
            causes = [c for c, on in (("logit_bias", bool(p.logit_bias)), ("ignore_eos", p.ignore_eos),
                                      ("min_tokens", p.min_tokens > 0), ("the grammar", self.constraint is not None))
                      if on]
            raise ValueError(f"no token can be chosen: {', '.join(causes)} removed every token at position "
                             f"{len(history)}")
        return x

    def _record(self, x: np.ndarray, tok: int) -> TokenLogprob:
        lp = log_softmax(x)
        k = self.params.logprobs or 0
        top: Tuple[Tuple[int, float], ...] = ()
        if k:
            alive = int(np.count_nonzero(lp > -np.inf))
            k = min(k, alive)
            part = np.argpartition(-lp, k - 1)[:k] if k < lp.size else np.arange(lp.size)
            kth = lp[part].min()
            cand = np.flatnonzero(lp >= kth)  # ties at the k-th value: lower ids first
            order = cand[np.argsort(-lp[cand], kind="stable")][:k]
            top = tuple((int(i), float(lp[i])) for i in order)
        return TokenLogprob(tok, float(lp[tok]), top)

    def shifted(self, n_history: int) -> None:
        """The history was shortened (context shift) to n_history tokens, the chosen ones still counted."""
        self._start = n_history - self.n_chosen

    # ------------------------------------------------------------------------------------- drafts
    def cut_draft(self, history: Sequence[int], tree: Any) -> Any:
        """The draft tree without the nodes the constraint rejects (each with its subtree).

        Args:
            history: the tokens the tree continues: prompt + chosen tokens, possibly followed by
                speculative tokens still in flight.
            tree: a pipeinfer.speculation DraftTree (nodes with token / parent, parents first; branches()).

        Returns:
            `tree` itself when nothing is cut (always, without a constraint), else a new tree of the same
            type. Never changes the chooser's state.
        """
        if self.constraint is None or not len(tree.nodes) or self._start is None:
            return tree
        done = self._start + self.n_chosen
        if len(history) < done:
            return tree  # not a continuation of the chosen tokens: verification will mask it anyway
        extra = [int(t) for t in history[done:]]
        keep = [False] * len(tree.nodes)
        for path in tree.branches():
            n_ok = self.constraint.valid_prefix(extra + [tree.nodes[i].token for i in path]) - len(extra)
            for i in path[:max(0, n_ok)]:
                keep[i] = True
        if all(keep):
            return tree
        remap = {-1: -1}
        nodes: List[Any] = []
        for i, nd in enumerate(tree.nodes):
            if keep[i]:
                remap[i] = len(nodes)
                nodes.append(dataclasses.replace(nd, parent=remap[nd.parent]))
        return type(tree)(nodes)
