"""Draft/target vocabulary compatibility check.

This module owns `check_vocab`: a draft model can only propose tokens for a target when both map the
same ids to the same token texts and agree on the special ids. Padding is tolerated, because the same
tokenizer is often exported with different padding (vLLM PR #13849 for Qwen; llama.cpp PR #3812 checks
texts and special ids in the same spirit). It reads metadata dicts only (as returned by
`pipeinfer._core.GGUFFile(path).metadata()` or gguf-py); it must not open files or run models.
"""
from __future__ import annotations

import re
from typing import Any, List, Mapping, Optional, Sequence

__all__ = ["check_vocab", "is_padding_token", "TOKEN_TYPE_UNUSED"]

TOKEN_TYPE_UNUSED = 5  # gguf TokenType.UNUSED (llama.cpp LLAMA_TOKEN_TYPE_UNUSED)

_KEY_TOKENS = "tokenizer.ggml.tokens"
_KEY_TYPES = "tokenizer.ggml.token_type"
_KEY_MODEL = "tokenizer.ggml.model"
# (metadata key, name used in messages)
_SPECIAL_KEYS = (
    ("tokenizer.ggml.bos_token_id", "bos"),
    ("tokenizer.ggml.eos_token_id", "eos"),
)
_FLAG_KEYS = (("tokenizer.ggml.add_bos_token", "add_bos_token"),)

# "<|PAD_TOKEN|>", "[PAD151931]", "<pad>", "[PAD]", "<unused12>": a bracketed pad/unused name
_PAD_NAME = re.compile(r"(?:<\|?|\[)(?:pad|unused)[\w.-]*(?:\|?>|\])", re.IGNORECASE)


def is_padding_token(text: str, token_type: Optional[int]) -> bool:
    """True for a token that only pads the vocabulary: token_type UNUSED or a padding-like name."""
    if token_type is not None and int(token_type) == TOKEN_TYPE_UNUSED:
        return True
    return bool(_PAD_NAME.fullmatch(text.strip()))


def _tokens(meta: Mapping[str, Any], side: str) -> List[str]:
    toks = meta.get(_KEY_TOKENS)
    if toks is None:
        raise ValueError(f"the {side} model's metadata has no {_KEY_TOKENS} (no tokenizer to compare)")
    return list(toks)


def _types(meta: Mapping[str, Any], n: int) -> Sequence[Optional[int]]:
    types = meta.get(_KEY_TYPES)
    if types is None or len(types) != n:
        return [None] * n
    return [int(t) for t in types]


def check_vocab(target_meta: Mapping[str, Any], draft_meta: Mapping[str, Any]) -> None:
    """Raises ValueError unless the draft model may propose tokens for the target model.

    Checks, in order: the tokenizer kind (tokenizer.ggml.model); the token texts of every id both
    vocabularies hold (ids where both sides are padding may differ); the extra tail of the larger vocabulary,
    which must be padding (token_type UNUSED or a name like "<|PAD_TOKEN|>" / "[PAD...]"); and the special
    ids (bos, eos) and add_bos_token flag where both sides define them. The message names the first
    difference: the token id and both texts, or which special id differs.

    Args:
        target_meta: the target model's GGUF metadata.
        draft_meta: the draft model's GGUF metadata.
    """
    kind_t, kind_d = target_meta.get(_KEY_MODEL), draft_meta.get(_KEY_MODEL)
    if kind_t is not None and kind_d is not None and kind_t != kind_d:
        raise ValueError(f"draft and target tokenizers differ: target {_KEY_MODEL} is {kind_t!r}, draft {kind_d!r}")
    tok_t, tok_d = _tokens(target_meta, "target"), _tokens(draft_meta, "draft")
    typ_t, typ_d = _types(target_meta, len(tok_t)), _types(draft_meta, len(tok_d))
    n = min(len(tok_t), len(tok_d))
    for i in range(n):
        if tok_t[i] != tok_d[i] and not (is_padding_token(tok_t[i], typ_t[i]) and is_padding_token(tok_d[i], typ_d[i])):
            raise ValueError(
                f"draft vocabulary differs from the target's at token id {i}: target {tok_t[i]!r}, draft "
                f"{tok_d[i]!r} (target has {len(tok_t)} tokens, draft {len(tok_d)}); the draft model must use "
                f"the target's tokenizer"
            )
    if len(tok_t) != len(tok_d):
        big, big_types, side = (tok_t, typ_t, "target") if len(tok_t) > len(tok_d) else (tok_d, typ_d, "draft")
        for i in range(n, len(big)):
            if not is_padding_token(big[i], big_types[i]):
                raise ValueError(
                    f"vocabulary sizes differ (target {len(tok_t)} tokens, draft {len(tok_d)}) and the {side}'s "
                    f"extra token id {i} {big[i]!r} (token_type {big_types[i]}) is not padding"
                )
    for key, name in _SPECIAL_KEYS + _FLAG_KEYS:
        vt, vd = target_meta.get(key), draft_meta.get(key)
        if vt is not None and vd is not None and _scalar(vt) != _scalar(vd):
            what = "special token id" if key.endswith("_id") else "flag"
            raise ValueError(
                f"draft and target {what} {name} ({key}) differ: target {_scalar(vt)!r}, draft {_scalar(vd)!r}"
            )


def _scalar(v: Any) -> Any:
    # numpy scalars and 0-d arrays compare and print as plain Python values
    return v.item() if hasattr(v, "item") else v
