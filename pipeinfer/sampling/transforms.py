"""The sampler chain's transforms: small pure numpy functions over one logits vector.

The chain mirrors llama.cpp's default order (common/common.h `common_params_sampling::samplers`, with
the logit-bias sampler added first by `common_sampler_init`):

    logit_bias -> penalties -> top_k -> typical_p -> top_p -> min_p -> temperature -> dist

so top-p and min-p act on the temperature-1 distribution, and temperature only reshapes the kept set.
Removed tokens are represented by a logit of -inf; every filter keeps at least one token.

Cost per call is a handful of O(n_vocab) numpy passes plus a sort of the surviving tokens: at most
`top_k` of them (default 40); with top_k disabled, top-p sorts only the head of the distribution that
holds mass top_p. No Python loop runs over the vocabulary.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "MAX_LOGIT", "softmax", "log_softmax", "apply_logit_bias", "apply_penalties", "apply_top_k", "apply_typical_p",
    "apply_top_p", "apply_min_p", "apply_temperature", "check_logits",
]  # fmt: skip

# Logits above this are rejected (see params.py for the bounds that keep every step finite).
MAX_LOGIT = 1e30

# ----------------------------------------------------------------------------------------------------
# Pure transforms over a logits vector. Each takes a 1-D float array (n_vocab,) and returns a new
# float64 array of the same shape; removed tokens are -inf. None of them mutates its input.
# ----------------------------------------------------------------------------------------------------


def _alive(logits: np.ndarray) -> np.ndarray:
    """Ids of tokens not yet removed, ascending."""
    return np.flatnonzero(logits > -np.inf)


def _keep_only(logits: np.ndarray, keep_ids: np.ndarray) -> np.ndarray:
    out = np.full_like(logits, -np.inf)
    out[keep_ids] = logits[keep_ids]
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax in float64; -inf entries get probability 0.

    Raises:
        ValueError: when no entry is finite (there is no distribution to return).
    """
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x) if x.size else -np.inf
    if not np.isfinite(m):
        raise ValueError(f"softmax: no finite logit among {x.size} entries (all tokens removed or -inf)")
    e = np.exp(x - m)
    return e / e.sum()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-softmax in float64: logits - logsumexp(logits); -inf entries stay -inf.

    Raises:
        ValueError: when no entry is finite.
    """
    x = np.asarray(logits, dtype=np.float64)
    m = np.max(x) if x.size else -np.inf
    if not np.isfinite(m):
        raise ValueError(f"log_softmax: no finite logit among {x.size} entries (all tokens removed or -inf)")
    return x - (m + np.log(np.sum(np.exp(x - m))))


def _bias_inplace(x: np.ndarray, bias: Optional[Mapping[int, float]]) -> None:
    if not bias:
        return
    ids = np.fromiter(bias.keys(), dtype=np.int64, count=len(bias))
    vals = np.fromiter(bias.values(), dtype=np.float64, count=len(bias))
    if ids.min() < 0 or ids.max() >= x.size:
        bad = int(ids[(ids < 0) | (ids >= x.size)][0])
        raise ValueError(f"logit_bias: token id {bad} out of vocabulary (n_vocab={x.size})")
    x[ids] += vals


def apply_logit_bias(logits: np.ndarray, bias: Optional[Mapping[int, float]]) -> np.ndarray:
    """Adds bias[id] to logits[id]; a -inf bias removes the token.

    Raises:
        ValueError: a bias token id is outside [0, n_vocab).
    """
    out = np.array(logits, dtype=np.float64)
    _bias_inplace(out, bias)
    return out


def _penalize_inplace(x: np.ndarray, history: Any, repeat_penalty: float, repeat_last_n: int,
                      presence_penalty: float, frequency_penalty: float) -> None:
    if repeat_last_n == 0 or (repeat_penalty == 1.0 and presence_penalty == 0.0 and frequency_penalty == 0.0):
        return
    hist = np.asarray(history, dtype=np.int64).reshape(-1)
    window = hist if repeat_last_n < 0 else hist[max(0, hist.size - repeat_last_n):]
    if window.size == 0:
        return
    ids, counts = np.unique(window, return_counts=True)  # (n_distinct,) int64 each, ids ascending
    if ids[0] < 0 or ids[-1] >= x.size:
        bad = int(ids[0] if ids[0] < 0 else ids[-1])
        raise ValueError(f"penalties: history token id {bad} out of vocabulary (n_vocab={x.size})")
    v = x[ids]
    with np.errstate(over="ignore"):  # a huge negative logit times the penalty may round to -inf: fine
        v = np.where(v > 0, v / repeat_penalty, v * repeat_penalty)
    x[ids] = v - counts * frequency_penalty - presence_penalty


def apply_penalties(
    logits: np.ndarray,
    history: Union[Sequence[int], np.ndarray],
    *,
    repeat_penalty: float = 1.0,
    repeat_last_n: int = 64,
    presence_penalty: float = 0.0,
    frequency_penalty: float = 0.0,
) -> np.ndarray:
    """Penalizes tokens that occur in the last `repeat_last_n` entries of `history` (llama.cpp rule).

    For a token seen `c` > 0 times in the window: logit /= repeat_penalty when logit > 0, else
    logit *= repeat_penalty; then logit -= c * frequency_penalty + presence_penalty.
    repeat_last_n = 0 disables; -1 uses the whole history.

    Raises:
        ValueError: a history id inside the window is outside [0, n_vocab).
    """
    out = np.array(logits, dtype=np.float64)
    _penalize_inplace(out, history, repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty)
    return out


def _top_k_ids(logits: np.ndarray, k: int) -> np.ndarray:
    """Ascending ids of the k highest finite-or-not-removed logits; lower ids win ties at the k-th value.
    k <= 0 or k >= the number of surviving tokens returns all surviving ids."""
    alive = logits > -np.inf  # (n_vocab,) bool
    n_alive = int(np.count_nonzero(alive))
    if k <= 0 or k >= n_alive:
        return np.flatnonzero(alive)
    kth = np.partition(logits, logits.size - k)[logits.size - k]  # the k-th largest value, O(n)
    above = np.flatnonzero(logits > kth)
    ties = np.flatnonzero(logits == kth)[: k - above.size]  # ascending: lowest ids fill the remaining slots
    return np.union1d(above, ties)


def apply_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Keeps the k highest logits (lower id wins ties at the boundary); k <= 0 or k >= n keeps all."""
    out = np.array(logits, dtype=np.float64)
    if k <= 0:
        return out
    return _keep_only(out, _top_k_ids(out, k))


def apply_typical_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Locally typical sampling (Meister et al. 2022): keeps the tokens whose surprisal is closest to
    the entropy until their mass exceeds p (llama.cpp rule, at least one token). p >= 1 keeps all."""
    out = np.array(logits, dtype=np.float64)
    if p >= 1.0:
        return out
    ids = _alive(out)
    probs = softmax(out[ids])
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
    ent = -np.sum(probs[probs > 0] * logp[probs > 0])
    order = np.argsort(np.abs(-logp - ent), kind="stable")
    cum = np.cumsum(probs[order])
    n_keep = int(np.searchsorted(cum, p, side="right")) + 1  # first index with cum > p, inclusive
    return _keep_only(out, ids[order[: min(n_keep, ids.size)]])


def apply_top_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Nucleus filter: keeps the most likely tokens up to and including the one where the cumulative
    probability reaches p (at least one token). p >= 1 keeps all."""
    out = np.array(logits, dtype=np.float64)
    if p >= 1.0:
        return out
    ids = _alive(out)
    probs = softmax(out[ids])  # (n_alive,) float64
    # Sorting the whole vocabulary is the slow part; sort only the m most likely tokens (all ties at
    # the m-th value included) once their mass reaches p. The sorted candidates are exactly the head
    # of the fully sorted order, so the cumulative sums and the cut are the same as a full sort.
    m = 256
    while True:
        if m < ids.size:
            kth = np.partition(probs, ids.size - m)[ids.size - m]
            cand = np.flatnonzero(probs >= kth)
        else:
            cand = np.arange(ids.size)
        order = cand[np.argsort(-probs[cand], kind="stable")]  # by probability, lower id first on ties
        cum = np.cumsum(probs[order])
        if cum[-1] >= p or cand.size == ids.size:
            break
        m *= 4
    n_keep = int(np.searchsorted(cum, p, side="left")) + 1  # first index with cum >= p, inclusive
    return _keep_only(out, ids[order[: min(n_keep, order.size)]])


def apply_min_p(logits: np.ndarray, p: float) -> np.ndarray:
    """Keeps tokens with probability >= p * (max probability); p <= 0 keeps all."""
    out = np.array(logits, dtype=np.float64)
    if p <= 0.0:
        return out
    m = np.max(out)
    if not np.isfinite(m):
        raise ValueError(f"min_p: no finite logit among {out.size} entries")
    out[out < m + math.log(p)] = -np.inf  # p_i / p_max = exp(l_i - l_max); the argmax always survives
    return out


def apply_temperature(logits: np.ndarray, t: float) -> np.ndarray:
    """Returns (logits - max) / t, the same distribution as logits / t but overflow-free for tiny t
    (far-away tokens go to -inf); t == 0 keeps only the argmax (lowest id on ties)."""
    out = np.array(logits, dtype=np.float64)
    if t == 0.0:
        return _keep_only(out, np.array([int(np.argmax(out))]))
    if t != 1.0:
        m = np.max(out)
        if not np.isfinite(m):
            raise ValueError(f"temperature: no finite logit among {out.size} entries")
        with np.errstate(over="ignore"):
            out = (out - m) / t
    return out


def check_logits(logits: Any) -> np.ndarray:
    x = np.asarray(logits)
    if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"sampler: logits must be a non-empty 1-D float array (n_vocab,), got shape "
                         f"{x.shape} dtype {x.dtype}")
    if np.isnan(x).any():
        raise ValueError(f"sampler: logits contain NaN (first at index {int(np.flatnonzero(np.isnan(x))[0])})")
    if (x > MAX_LOGIT).any():
        i = int(np.flatnonzero(x > MAX_LOGIT)[0])
        raise ValueError(f"sampler: logits must be finite or -inf and at most {MAX_LOGIT:g}; "
                         f"found {x[i]} at index {i}")
    if not (x > -np.inf).any():
        raise ValueError(f"sampler: all {x.size} logits are -inf; no token can be sampled")
    return x
