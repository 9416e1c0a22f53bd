"""The sampler chain for one SamplingParams: processed logits, the final distribution, the draw.

This module owns the policy that turns one logits vector into one token id: logit bias, repetition
penalties, the top-k / typical-p / top-p / min-p filters, temperature, and the final random draw
(transforms.py holds each step). It also exposes the final distribution (`Sampler.probs`) that
speculative rejection sampling compares against. It is pure numpy and must not import
`pipeinfer._core`, do I/O, or keep per-sequence state other than its random generator (the caller
passes the token history on every call; chooser.py keeps a generation's state).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np

from pipeinfer.sampling.params import SamplingParams
from pipeinfer.sampling.transforms import (
    _bias_inplace,
    _penalize_inplace,
    _top_k_ids,
    apply_min_p,
    apply_temperature,
    apply_top_p,
    apply_typical_p,
    check_logits,
    softmax,
)

__all__ = ["Sampler", "make_sampler"]


class Sampler:
    """The sampler chain for one `SamplingParams`, with its own seeded random generator.

    Build with `make_sampler(params)`. Not thread-safe (the generator is shared state).
    """

    def __init__(self, params: SamplingParams) -> None:
        if not isinstance(params, SamplingParams):
            raise TypeError(f"Sampler needs SamplingParams, got {type(params).__name__}")
        self.params = params
        self._rng = np.random.Generator(np.random.PCG64(params.seed))

    @property
    def is_greedy(self) -> bool:
        """True when `sample` is a deterministic argmax (temperature 0 or top_k 1)."""
        return self.params.is_greedy

    @property
    def rng(self) -> np.random.Generator:
        """The generator `sample` draws from (speculative acceptance tests may share it)."""
        return self._rng

    def reset(self) -> None:
        """Restarts the random stream from params.seed (a no-op guarantee only when seed is set)."""
        self._rng = np.random.Generator(np.random.PCG64(self.params.seed))

    def adjusted_logits(self, logits: np.ndarray, history: Union[Sequence[int], np.ndarray] = ()) -> np.ndarray:
        """Logits after logit bias and penalties, before any filter: (n_vocab,) float64 (a new array)."""
        p = self.params
        x = np.array(check_logits(logits), dtype=np.float64)  # (n_vocab,) float64, our own copy
        _bias_inplace(x, p.logit_bias)
        _penalize_inplace(x, history, p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty)
        if not np.max(x) > -np.inf:
            raise ValueError("sampler: logit_bias removed every token (all logits are -inf)")
        return x

    def _compact(self, x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, probs) of the non-greedy chain over adjusted logits x: ids ascending int64, probs float64.

        Same transforms as the apply_* functions on the full vector, but after top-k the remaining
        filters run on the compact vector of surviving tokens (ids ascending, so ties still favour
        lower ids). Tokens removed by later filters keep probability 0 in `probs`.
        """
        p = self.params
        ids = _top_k_ids(x, p.top_k)
        sub = x[ids]  # (n_alive,) float64
        sub = apply_typical_p(sub, p.typical_p)
        sub = apply_top_p(sub, p.top_p)
        sub = apply_min_p(sub, p.min_p)
        sub = apply_temperature(sub, p.temperature)
        return ids, softmax(sub)

    def probs(self, logits: np.ndarray, history: Union[Sequence[int], np.ndarray] = ()) -> np.ndarray:
        """The final distribution after the whole chain: (n_vocab,) float64, summing to 1, zero outside
        the kept set. Greedy params give a one-hot vector at the argmax (lowest id on ties).

        Raises:
            ValueError: logits not a 1-D float array, containing NaN or +inf, or with no finite entry
                (also after bias); a bias or history id outside the vocabulary.
        """
        return self.chain_probs(self.adjusted_logits(logits, history))

    def chain_probs(self, x: np.ndarray) -> np.ndarray:
        """The final distribution from processed logits x (float64, bias and penalties already applied,
        banned tokens -inf): (n_vocab,) float64 summing to 1; one-hot at the argmax when greedy."""
        out = np.zeros(x.size, dtype=np.float64)
        if self.is_greedy:
            out[int(np.argmax(x))] = 1.0
            return out
        ids, ps = self._compact(x)
        out[ids] = ps
        return out

    def _draw_unchecked(self, q: np.ndarray) -> int:
        cdf = np.cumsum(q)
        u = self._rng.random() * cdf[-1]
        idx = int(np.searchsorted(cdf, u, side="right"))  # first i with cdf[i] > u, so q[i] > 0
        if idx >= q.size:  # u rounded up to the total: take the last entry with mass
            idx = int(np.flatnonzero(q > 0)[-1])
        return idx

    def draw(self, probs: np.ndarray) -> int:
        """Draws one id from a distribution (n_vocab,) with this sampler's generator (inverse CDF).

        Never returns an id whose probability is 0. Raises ValueError when the vector has negative or
        non-finite entries or zero total mass.
        """
        q = np.asarray(probs, dtype=np.float64)
        if q.ndim != 1 or q.size == 0 or not np.isfinite(q).all() or (q < 0).any():
            raise ValueError("sampler.draw: probs must be a non-empty 1-D array of finite values >= 0")
        if not q.sum() > 0:
            raise ValueError("sampler.draw: probs sum to 0")
        return self._draw_unchecked(q)

    def sample(self, logits: np.ndarray, history: Union[Sequence[int], np.ndarray] = ()) -> int:
        """One token id. Greedy: argmax of the adjusted logits with the lowest id on ties (consumes no
        randomness). Otherwise a draw from `probs(logits, history)`, made on the compact kept set (the
        same stream of random numbers as `draw(probs(...))`); reproducible for a fixed seed."""
        x = self.adjusted_logits(logits, history)
        if self.is_greedy:
            return int(np.argmax(x))
        ids, ps = self._compact(x)
        return int(ids[self._draw_unchecked(ps)])


def make_sampler(params: Optional[SamplingParams] = None, **overrides: Any) -> Sampler:
    """Builds a Sampler from params (defaults when None); keyword overrides replace single fields."""
    base = params if params is not None else SamplingParams()
    if overrides:
        fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"make_sampler: unknown field(s) {unknown}")
        fields.update(overrides)
        base = SamplingParams(**fields)
    return Sampler(base)
