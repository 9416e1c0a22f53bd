"""SamplingParams: every knob of how one generation chooses its tokens, validated when built.

This module owns the parameters and their normalization only; the transforms live in transforms.py,
the chain in sampler.py and the per-generation token chooser in chooser.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

from pipeinfer.validate import check_bool, check_int, check_real, is_int, is_real

__all__ = ["SamplingParams", "MAX_TEMPERATURE", "MAX_STOP_STRINGS", "MAX_TOP_LOGPROBS", "MAX_TOKEN_ID"]

# Temperatures above this are rejected: the llama.cpp DoS report (issue #19367) used 999999, and at
# 100 the kept set is already close to uniform for any realistic logit range.
MAX_TEMPERATURE = 100.0
# OpenAI-style penalties are bounded to [-2, 2] (OpenAI API, vLLM SamplingParams).
_PENALTY_RANGE = (-2.0, 2.0)
# Magnitude bounds that keep every float64 step below overflow: logits <= 1e30, |bias| <= 1e6 and a
# repeat penalty in [1e-6, 1e6] bound any penalized logit by 1e36 (float64 overflows near 1.8e308).
_MAX_BIAS = 1e6
_REPEAT_PENALTY_RANGE = (1e-6, 1e6)
# Stop strings are matched on every generated piece; bound their number and length.
MAX_STOP_STRINGS = 64
_MAX_STOP_LEN = 1024
_SEED_LIMIT = 2**64
# Token ids are int32 on the way to the model; larger ids cannot exist in any vocabulary.
MAX_TOKEN_ID = 2**31 - 1
# OpenAI's top_logprobs bound (chat: 20; completions' logprobs: 5).
MAX_TOP_LOGPROBS = 20


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"SamplingParams.{name}: got {value!r}, expected {allowed}")


def _real(name: str, value: Any, lo: float, hi: float, note: str, lo_open: bool = False) -> float:
    try:
        return check_real(name, value, lo, hi, lo_open=lo_open, note=note)
    except ValueError as e:
        raise ValueError(f"SamplingParams.{name}: {e}") from None


def _int(name: str, value: Any, lo: int, hi: Optional[int] = None, note: str = "") -> int:
    try:
        return check_int(name, value, lo, hi, note)
    except ValueError as e:
        raise ValueError(f"SamplingParams.{name}: {e}") from None


def _bool(name: str, value: Any) -> bool:
    try:
        return check_bool(name, value)
    except ValueError as e:
        raise ValueError(f"SamplingParams.{name}: {e}") from None


@dataclass(frozen=True)
class SamplingParams:
    """Sampling knobs, named and defaulted like llama-cpp-python's `create_completion`.

    Every field is validated when the object is built; a bad value raises ValueError naming the field,
    the value and the allowed range. Numbers are normalized (float/int), `stop` to a tuple of strings,
    `stop_token_ids` to a tuple of ints and `logit_bias` to a read-only {int: float} mapping.

    Args:
        temperature: finite, in [0, MAX_TEMPERATURE]. 0 means greedy: the argmax of the processed
            logits (after logit bias, penalties and any grammar mask; lowest id on ties).
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
        logit_bias: None or {token_id: bias}; ids are integers in [0, 2**31) (decimal strings, as in
            OpenAI JSON, are accepted); a bias is in [-1e6, 1e6] or -inf (-inf bans the token; OpenAI's
            -100 works too). Ids beyond the vocabulary are reported when the sampler first sees logits.
        seed: None (fresh OS entropy) or an integer in [0, 2**64). -1 is rejected: use None.
        max_tokens: tokens to generate at most: an integer >= 1, or None, 0 or -1 for "until the end of
            the context" (llama-cpp-python's contract; normalized to None). Default 16.
        stop: None, one string or a sequence of strings; each non-empty, at most 1024 characters, at most
            MAX_STOP_STRINGS of them. The stop string itself is never emitted (OpenAI semantics).
        stop_token_ids: token ids (integers >= 0) that end generation in addition to end-of-generation
            tokens; the stopping token is not part of the output.
        min_tokens: integer >= 0: end-of-generation tokens and stop_token_ids are banned until this many
            tokens were generated (vLLM's rule).
        ignore_eos: end-of-generation tokens are banned for the whole generation (llama.cpp's rule:
            a -inf bias), so it ends by max_tokens, a stop string or a stop token id.
        logprobs: None (no log-probabilities) or an integer in [0, MAX_TOP_LOGPROBS]: record each chosen
            token's log-probability and that many most likely alternatives, from the processed logits
            (after bias, penalties, bans and grammar; before top-k/top-p/min-p/temperature).
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
    min_tokens: int = 0
    ignore_eos: bool = False
    logprobs: Optional[int] = None

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)

        put("temperature", _real("temperature", self.temperature, 0.0, MAX_TEMPERATURE, "(0 = greedy)"))
        put("top_k", _int("top_k", self.top_k, 0, note="(0 = disabled)"))
        put("top_p", _real("top_p", self.top_p, 0.0, 1.0, "(1 = disabled)", lo_open=True))
        put("min_p", _real("min_p", self.min_p, 0.0, 1.0, "(0 = disabled)"))
        put("typical_p", _real("typical_p", self.typical_p, 0.0, 1.0, "(1 = disabled)", lo_open=True))
        rp_lo, rp_hi = _REPEAT_PENALTY_RANGE
        put("repeat_penalty", _real("repeat_penalty", self.repeat_penalty, rp_lo, rp_hi, "(1 = disabled)"))
        put("repeat_last_n", _int("repeat_last_n", self.repeat_last_n, -1,
                                       note="(-1 = whole history, 0 = penalties disabled)"))
        lo, hi = _PENALTY_RANGE
        for name in ("presence_penalty", "frequency_penalty"):
            put(name, _real(name, getattr(self, name), lo, hi, "(0 = disabled)"))
        put("logit_bias", _normalize_logit_bias(self.logit_bias))
        if self.seed is not None and (not is_int(self.seed) or not 0 <= self.seed < _SEED_LIMIT):
            raise _bad("seed", self.seed, "None (random) or an integer in [0, 2**64)")
        if self.seed is not None:
            put("seed", int(self.seed))
        if self.max_tokens is not None:
            n = _int("max_tokens", self.max_tokens, -1,
                          note="or None (None, 0 and -1: until the end of the context)")
            put("max_tokens", n if n >= 1 else None)
        put("stop", _normalize_stop(self.stop))
        put("stop_token_ids", _normalize_token_ids("stop_token_ids", self.stop_token_ids))
        put("min_tokens", _int("min_tokens", self.min_tokens, 0))
        put("ignore_eos", _bool("ignore_eos", self.ignore_eos))
        if self.logprobs is not None:
            put("logprobs", _int("logprobs", self.logprobs, 0, MAX_TOP_LOGPROBS,
                                      note="or None (the number of alternatives reported per token)"))

    @property
    def is_greedy(self) -> bool:
        """True when sampling is deterministic argmax (temperature 0 or top_k 1)."""
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def changes_logits(self) -> bool:
        """True when logit bias or a penalty may change the logits before the choice (so a greedy choice
        is not the raw argmax)."""
        penalties = self.repeat_last_n != 0 and (
            self.repeat_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0)
        return bool(self.logit_bias) or penalties or self.ignore_eos or self.min_tokens > 0

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
        if not is_int(tid) or not 0 <= tid <= MAX_TOKEN_ID:
            raise _bad("logit_bias", bias, f"token ids that are integers >= 0 (below 2**31); key {key!r} is not")
        if not is_real(value) or not (float(value) == -math.inf or abs(float(value)) <= _MAX_BIAS):
            raise _bad("logit_bias", bias,
                       f"biases in [-{_MAX_BIAS:g}, {_MAX_BIAS:g}] or -inf; token {tid} has {value!r}")
        out[int(tid)] = float(value)
    return _FrozenDict(out)


def _normalize_stop(stop: Any) -> Tuple[str, ...]:
    if stop is None:
        return ()
    items = (stop,) if isinstance(stop, str) else stop
    if isinstance(items, (Mapping, bytes, bytearray)) or not isinstance(items, Iterable):
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
    if isinstance(ids, (str, bytes, bytearray, Mapping)) or not isinstance(ids, Iterable):
        raise _bad(name, ids, "a sequence of integer token ids >= 0")
    out = tuple(ids)
    for t in out:
        if not is_int(t) or not 0 <= t <= MAX_TOKEN_ID:
            raise _bad(name, ids, f"integer token ids >= 0 (below 2**31); found {t!r}")
    return tuple(int(t) for t in out)
