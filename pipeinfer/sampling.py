"""Token sampling: validated sampling parameters and a sampler chain of small pure numpy functions.

This module owns the policy that turns one logits vector into one token id: logit bias, repetition
penalties, the top-k / typical-p / top-p / min-p filters, temperature, and the final random draw. It
also exposes the final distribution (`Sampler.probs`) that speculative rejection sampling compares
against. It is pure numpy and must not import `pipeinfer._core`, do I/O, or keep per-sequence state
other than its random generator (the caller passes the token history on every call).

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
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "MAX_TEMPERATURE",
    "MAX_LOGIT",
    "MAX_STOP_STRINGS",
    "SamplingParams",
    "Sampler",
    "make_sampler",
    "softmax",
    "apply_logit_bias",
    "apply_penalties",
    "apply_top_k",
    "apply_typical_p",
    "apply_top_p",
    "apply_min_p",
    "apply_temperature",
]

# Temperatures above this are rejected: the llama.cpp DoS report (issue #19367) used 999999, and at
# 100 the kept set is already close to uniform for any realistic logit range.
MAX_TEMPERATURE = 100.0
# OpenAI-style penalties are bounded to [-2, 2] (OpenAI API, vLLM SamplingParams).
_PENALTY_RANGE = (-2.0, 2.0)
# Magnitude bounds that keep every float64 step below overflow: logits <= 1e30, |bias| <= 1e6 and a
# repeat penalty in [1e-6, 1e6] bound any penalized logit by 1e36 (float64 overflows near 1.8e308).
MAX_LOGIT = 1e30
_MAX_BIAS = 1e6
_REPEAT_PENALTY_RANGE = (1e-6, 1e6)
# Stop strings are matched on every generated piece; bound their number and length.
MAX_STOP_STRINGS = 64
_MAX_STOP_LEN = 1024
_SEED_LIMIT = 2**64


# ----------------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------------


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"SamplingParams.{name}: got {value!r}, expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(name: str, value: Any, lo: float, hi: float, lo_open: bool, hi_open: bool, allowed: str) -> float:
    if not _is_real(value) or not math.isfinite(float(value)):
        raise _bad(name, value, allowed)
    v = float(value)
    if v < lo or v > hi or (lo_open and v == lo) or (hi_open and v == hi):
        raise _bad(name, value, allowed)
    return v


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs, named and defaulted like llama-cpp-python's `create_completion`.

    Every field is validated when the object is built; a bad value raises ValueError naming the field,
    the value and the allowed range. Numbers are normalized (float/int), `stop` to a tuple of strings,
    `stop_token_ids` to a tuple of ints and `logit_bias` to a read-only {int: float} mapping.

    Args:
        temperature: finite, in [0, MAX_TEMPERATURE]. 0 means greedy (argmax, lowest id on ties), as in
            vLLM and llama.cpp; penalties and logit bias still apply before the argmax.
        top_k: integer >= 0; 0 disables the filter (llama-cpp-python treats <= 0 the same way; we
            reject negatives so -2 or 1.5 cannot slip through). Ties at the k-th logit keep lower ids.
        top_p: in (0, 1]; 1 disables. Keeps the smallest most-likely set whose mass reaches top_p.
        min_p: in [0, 1]; 0 disables. Keeps tokens with p >= min_p * p_max.
        typical_p: in (0, 1]; 1 disables (locally typical sampling).
        repeat_penalty: in [1e-6, 1e6]; 1 disables (0 and negatives are rejected). Positive logits of
            recent tokens are divided by it, negative ones multiplied (llama.cpp rule).
        repeat_last_n: integer >= -1: how many of the most recent history tokens the penalties look at;
            0 disables all penalties (documented no-op, not an error), -1 means the whole history.
        presence_penalty: in [-2, 2]; subtracted once from every token present in the window.
        frequency_penalty: in [-2, 2]; subtracted once per occurrence in the window.
        logit_bias: None or {token_id: bias}; ids are integers >= 0 (decimal strings, as in OpenAI JSON,
            are accepted); a bias is in [-1e6, 1e6] or -inf (-inf bans the token; OpenAI's -100 works
            too). Ids beyond the vocabulary are reported when the sampler first sees logits.
        seed: None (fresh OS entropy) or an integer in [0, 2**64). -1 is rejected: use None.
        max_tokens: None (until end-of-sequence or the context end) or an integer >= 1; default 16 as in
            llama-cpp-python. 0 and negatives are rejected. Generators cap it at the context end.
        stop: None, one string or a sequence of strings; each non-empty, at most 1024 characters, at most
            MAX_STOP_STRINGS of them. The stop string itself is never emitted (OpenAI semantics).
        stop_token_ids: token ids (integers >= 0) that end generation in addition to end-of-sequence.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Optional[Mapping[int, float]] = field(default=None, hash=False)
    seed: Optional[int] = None
    max_tokens: Optional[int] = 16
    stop: Union[str, Sequence[str], None] = ()
    stop_token_ids: Sequence[int] = ()

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)

        t = _check_real("temperature", self.temperature, 0.0, MAX_TEMPERATURE, False, False,
                        f"a finite number in [0, {MAX_TEMPERATURE:g}] (0 = greedy)")
        put("temperature", t)
        if not _is_int(self.top_k) or self.top_k < 0:
            raise _bad("top_k", self.top_k, "an integer >= 0 (0 = disabled)")
        put("top_k", int(self.top_k))
        put("top_p", _check_real("top_p", self.top_p, 0.0, 1.0, True, False, "a number in (0, 1] (1 = disabled)"))
        put("min_p", _check_real("min_p", self.min_p, 0.0, 1.0, False, False, "a number in [0, 1] (0 = disabled)"))
        put("typical_p", _check_real("typical_p", self.typical_p, 0.0, 1.0, True, False,
                                     "a number in (0, 1] (1 = disabled)"))
        rp_lo, rp_hi = _REPEAT_PENALTY_RANGE
        put("repeat_penalty", _check_real("repeat_penalty", self.repeat_penalty, rp_lo, rp_hi, False, False,
                                          f"a number > 0 in [{rp_lo:g}, {rp_hi:g}] (1 = disabled)"))
        if not _is_int(self.repeat_last_n) or self.repeat_last_n < -1:
            raise _bad("repeat_last_n", self.repeat_last_n,
                       "an integer >= -1 (-1 = whole history, 0 = penalties disabled)")
        put("repeat_last_n", int(self.repeat_last_n))
        lo, hi = _PENALTY_RANGE
        for name in ("presence_penalty", "frequency_penalty"):
            put(name, _check_real(name, getattr(self, name), lo, hi, False, False,
                                  f"a finite number in [{lo:g}, {hi:g}] (0 = disabled)"))
        put("logit_bias", _normalize_logit_bias(self.logit_bias))
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < _SEED_LIMIT):
            raise _bad("seed", self.seed, "None (random) or an integer in [0, 2**64)")
        if self.seed is not None:
            put("seed", int(self.seed))
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise _bad("max_tokens", self.max_tokens, "None (until end of sequence or context) or an integer >= 1")
        if self.max_tokens is not None:
            put("max_tokens", int(self.max_tokens))
        put("stop", _normalize_stop(self.stop))
        put("stop_token_ids", _normalize_token_ids("stop_token_ids", self.stop_token_ids))

    @property
    def is_greedy(self) -> bool:
        """True when sampling is deterministic argmax (temperature 0 or top_k 1)."""
        return self.temperature == 0.0 or self.top_k == 1

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SamplingParams":
        """Builds params from a dict (e.g. a JSON request body); unknown keys raise ValueError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"SamplingParams: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**dict(d))


class _FrozenDict(dict):
    """A read-only dict (picklable, unlike types.MappingProxyType, so params can cross MPI ranks)."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("SamplingParams.logit_bias is read-only; build new SamplingParams instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (dict(self),))


def _normalize_logit_bias(bias: Any) -> Optional[Mapping[int, float]]:
    if bias is None:
        return None
    if not isinstance(bias, Mapping):
        raise _bad("logit_bias", bias, "None or a mapping {token_id: bias}")
    out = {}
    for key, value in bias.items():
        tid = key
        if isinstance(key, str) and key.strip().isdigit():
            tid = int(key.strip())
        if not _is_int(tid) or tid < 0:
            raise _bad("logit_bias", bias, f"token ids that are integers >= 0; key {key!r} is not")
        if not _is_real(value) or not (float(value) == -math.inf or abs(float(value)) <= _MAX_BIAS):
            raise _bad("logit_bias", bias,
                       f"biases in [-{_MAX_BIAS:g}, {_MAX_BIAS:g}] or -inf; token {tid} has {value!r}")
        out[int(tid)] = float(value)
    return _FrozenDict(out)


def _normalize_stop(stop: Any) -> Tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else stop
    if not isinstance(items, Iterable):
        raise _bad("stop", stop, "None, a string or a sequence of strings")
    items = tuple(items)
    if len(items) > MAX_STOP_STRINGS:
        raise _bad("stop", f"<{len(items)} strings>", f"at most {MAX_STOP_STRINGS} stop strings")
    for s in items:
        if not isinstance(s, str) or not s or len(s) > _MAX_STOP_LEN:
            raise _bad("stop", stop, f"non-empty strings of at most {_MAX_STOP_LEN} characters; found {s!r}")
    return items


def _normalize_token_ids(name: str, ids: Any) -> Tuple[int, ...]:
    if ids is None:
        return ()
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise _bad(name, ids, "a sequence of integer token ids >= 0")
    out = tuple(ids)
    for t in out:
        if not _is_int(t) or t < 0:
            raise _bad(name, ids, f"integer token ids >= 0; found {t!r}")
    return tuple(int(t) for t in out)


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


# ----------------------------------------------------------------------------------------------------
# Sampler
# ----------------------------------------------------------------------------------------------------


def _check_logits(logits: Any) -> np.ndarray:
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
        x = np.array(_check_logits(logits), dtype=np.float64)  # (n_vocab,) float64, our own copy
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
        x = self.adjusted_logits(logits, history)
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
