"""A generation request's arguments, checked: the prompt's token ids and the SamplingParams.

This module owns the rules for what `Pipeline.stream` / `generate` / `create_*completion` accept: a
prompt is text (str) or a sequence of integer token ids; sampling arguments are SamplingParams (an
object, keyword fields, or both: keywords override the object's fields); `max_tokens` follows one
contract (SamplingParams.max_tokens). Bad input raises TypeError / ValueError naming the argument. It
does not tokenize or run anything itself (the engine passes its tokenizer).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from pipeinfer.sampling import SamplingParams
from pipeinfer.validate import is_int

__all__ = ["SAMPLING_ARGS", "UNSET", "sampling_params", "prompt_ids", "check_token_ids", "text_of"]

# The sampling keyword arguments of stream() / generate(): every SamplingParams field.
SAMPLING_ARGS = frozenset(f.name for f in dataclasses.fields(SamplingParams))


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


UNSET: Any = _Unset()  # an argument the caller did not give


def sampling_params(params: Optional[SamplingParams], sampling: Mapping[str, Any], *, max_tokens: Any = UNSET,
                    default_seed: Optional[int] = None) -> SamplingParams:
    """The request's SamplingParams: ``params`` (or the defaults) with the keyword fields replaced.

    Raises:
        TypeError: ``params`` is not a SamplingParams, or a keyword is not a sampling field.
        ValueError: a field's value is out of range (SamplingParams names it).
    """
    if params is not None and not isinstance(params, SamplingParams):
        raise TypeError(f"params must be a pipeinfer.SamplingParams, got {type(params).__name__}")
    unknown = sorted(set(sampling) - SAMPLING_ARGS)
    if unknown:
        raise TypeError(f"unknown sampling argument(s): {', '.join(unknown)} (the fields of SamplingParams are "
                        f"{', '.join(sorted(SAMPLING_ARGS))})")
    fields: Dict[str, Any] = dict(sampling)
    if max_tokens is not UNSET:
        fields["max_tokens"] = max_tokens
    if params is None and fields.get("seed") is None and default_seed is not None:
        fields["seed"] = default_seed
    base = params if params is not None else SamplingParams()
    return dataclasses.replace(base, **fields) if fields else base


def check_token_ids(tokens: Any, n_vocab: int, what: str = "prompt") -> List[int]:
    """The ids as a list of ints, each an integer (not a bool, float or byte string) in [0, n_vocab).

    Raises:
        TypeError: ``tokens`` is not a sequence of integers (str and bytes included).
        ValueError: an id is outside the vocabulary, or there is none.
    """
    if isinstance(tokens, (str, bytes, bytearray, memoryview)) or not isinstance(tokens, Sequence) and \
            not hasattr(tokens, "__array__"):
        raise TypeError(f"{what} must be text (str) or a sequence of integer token ids, got {type(tokens).__name__}"
                        + (" (decode bytes to str first)" if isinstance(tokens, (bytes, bytearray)) else ""))
    ids = list(tokens)
    for i, t in enumerate(ids):
        if not is_int(t):
            raise TypeError(f"{what}[{i}] must be an integer token id, got {t!r} ({type(t).__name__})")
    ids = [int(t) for t in ids]
    if not ids:
        raise ValueError(f"the {what} is empty (no tokens); give text or at least one token id")
    bad = [t for t in ids if t < 0 or t >= n_vocab]
    if bad:
        raise ValueError(f"{what}: token id {bad[0]} is out of the vocabulary [0, {n_vocab})")
    return ids


def text_of(prompt: Any, what: str = "prompt") -> str:
    """A text prompt, checked to be encodable Unicode (no lone surrogates)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"the {what} is not valid Unicode text: {e.reason} at character {e.start}") from None
    return prompt


def prompt_ids(prompt: Any, tokenize: Callable[[str], List[int]], n_vocab: int, n_ctx: int) -> List[int]:
    """The prompt's token ids: text is tokenized, ids are checked; at least one context cell must remain.

    Raises:
        TypeError: the prompt is neither text nor a sequence of integer ids (None, bytes, floats...).
        ValueError: empty, ids outside the vocabulary, invalid Unicode, or too long for n_ctx.
    """
    if prompt is None:
        raise TypeError("prompt must be text (str) or a sequence of integer token ids, got None")
    ids = check_token_ids(tokenize(text_of(prompt)) if isinstance(prompt, str) else prompt, n_vocab)
    if len(ids) >= n_ctx:
        raise ValueError(f"prompt has {len(ids)} tokens but the context holds {n_ctx} (n_ctx); at least one "
                         "cell must remain for generation")
    return ids
