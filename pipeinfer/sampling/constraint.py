"""Structured output: a grammar constraint on the chosen tokens, through llguidance.

llguidance (guidance-ai, used by llama.cpp's LLGUIDANCE build, vLLM and SGLang) is the library: one
small wheel with no dependencies, JSON schema / regex / Lark and GBNF grammars, a token mask computed
lazily per step (no whole-vocabulary index built up front, unlike outlines-core), and the two
operations speculation needs: `validate_tokens` (how many drafted tokens the grammar accepts, without
changing state) and `rollback`. xgrammar needs torch and transformers; outlines-core has no
context-free grammars.

This module owns: turning the API's structured-output arguments (OpenAI `response_format`, a grammar,
a regex) into a grammar, the vocabulary llguidance sees (each token's bytes, special tokens marked so
text never matches them), and `GrammarConstraint` (the chooser's Constraint). It is pure Python/numpy
over llguidance and must not import pipeinfer._core.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

__all__ = ["GrammarConstraint", "GrammarVocabulary", "grammar_from_request"]

# JSON output: whitespace between JSON tokens is bounded, so a model cannot loop on blanks forever
# (llama.cpp's JSON grammars bound it the same way).
_JSON_OPTIONS = {"whitespace_pattern": r"[ \t\n]{0,16}"}


def _llguidance() -> Any:
    try:
        import llguidance
        import llguidance.numpy  # noqa: F401  (the bitmask helpers)
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise ImportError("structured output needs the 'llguidance' package (pip install llguidance)") from e
    return llguidance


def grammar_from_request(response_format: Any = None, grammar: Optional[str] = None,
                         regex: Optional[str] = None) -> Optional[str]:
    """The llguidance grammar of a request's structured-output arguments, or None for free text.

    Args:
        response_format: OpenAI's ``{"type": "text"}``, ``{"type": "json_object"}`` (any JSON object;
            llama-cpp-python's optional ``"schema"`` key narrows it), or ``{"type": "json_schema",
            "json_schema": {"name": ..., "schema": {...}, "strict": ...}}``.
        grammar: a grammar in GBNF (llama.cpp's format) or Lark syntax.
        regex: a regular expression the whole output must match.

    Raises:
        ValueError / TypeError: naming the argument, for malformed values or more than one given.
    """
    given = [n for n, v in (("response_format", response_format), ("grammar", grammar), ("regex", regex))
             if v is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of response_format, grammar and regex, got {' and '.join(given)}")
    llg = _llguidance()
    if grammar is not None:
        if not isinstance(grammar, str) or not grammar.strip():
            raise TypeError(f"grammar must be a non-empty str (GBNF or Lark), got {type(grammar).__name__}")
        try:
            return llg.grammar_from("grammar", grammar)
        except ValueError as e:
            raise ValueError(f"grammar: {e}") from None
    if regex is not None:
        if not isinstance(regex, str):
            raise TypeError(f"regex must be a str, got {type(regex).__name__}")
        return llg.LLMatcher.grammar_from_regex(regex)
    if response_format is None:
        return None
    schema = _schema_of(response_format)
    if schema is None:
        return None
    try:
        return llg.LLMatcher.grammar_from_json_schema(schema, defaults=_JSON_OPTIONS)
    except ValueError as e:
        raise ValueError(f"response_format: the JSON schema is not valid: {e}") from None


def _schema_of(rf: Any) -> Optional[Dict[str, Any]]:
    if not isinstance(rf, Mapping):
        raise TypeError(f"response_format must be a dict such as {{'type': 'json_object'}}, got {type(rf).__name__}")
    kind = rf.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = rf.get("schema", {"type": "object"})
    elif kind == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("schema", {}), Mapping):
            raise ValueError("response_format of type 'json_schema' needs 'json_schema': {'name': ..., "
                             "'schema': {...}}")
        schema = spec.get("schema", {})
    else:
        raise ValueError(f"response_format type must be 'text', 'json_object' or 'json_schema', got {kind!r}")
    if not isinstance(schema, Mapping):
        raise ValueError(f"response_format schema must be a JSON schema object, got {type(schema).__name__}")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise ValueError(f"response_format schema is not JSON-serializable: {e}") from None
    return dict(schema)


class GrammarVocabulary:
    """The vocabulary as llguidance reads it (its TokenizerWrapper contract), built once per model.

    Args:
        pieces: each token's bytes, by id.
        special_ids: control tokens: llguidance sees them as 0xFF + their text, so no text matches them.
        eos_ids: the end-of-generation ids (allowed once the grammar is complete).
        bos_id: the beginning-of-sequence id, or None.
        encode: text -> token ids without special tokens (llguidance tokenizes forced text with it).
    """

    def __init__(self, pieces: Sequence[bytes], special_ids: Iterable[int], eos_ids: Iterable[int],
                 bos_id: Optional[int], encode: Any) -> None:
        special = set(special_ids)
        self.tokens: List[bytes] = [b"\xff" + p if i in special else p for i, p in enumerate(pieces)]
        self.special_token_ids = sorted(special)
        self.eos_ids = sorted(set(eos_ids))
        self.eos_token_id = self.eos_ids[0] if self.eos_ids else None
        self.bos_token_id = bos_id
        self._encode = encode
        self._lltok: Any = None

    @classmethod
    def from_tokenizer(cls, tok: Any) -> "GrammarVocabulary":
        """From a pipeinfer.tokenizer.Tokenizer."""
        ids = range(tok.n_vocab)
        return cls([tok.token_to_piece(i) for i in ids], [i for i in ids if tok.is_special(i)], tok.eog_ids,
                   tok.bos_id, lambda text: tok.encode(text, add_special=False, parse_special=False))

    def __call__(self, data: Any) -> List[int]:
        text = data.decode("utf-8", errors="replace") if isinstance(data, (bytes, bytearray)) else str(data)
        return list(self._encode(text))

    @property
    def n_vocab(self) -> int:
        return len(self.tokens)

    def lltokenizer(self) -> Any:
        """The llguidance LLTokenizer (built on first use: about a second for 150k tokens)."""
        if self._lltok is None:
            llg = _llguidance()
            self._lltok = llg.LLTokenizer(llg.TokenizerWrapper(self), n_vocab=len(self.tokens),
                                          eos_token=self.eos_ids or None)
        return self._lltok


class GrammarConstraint:
    """A pipeinfer.sampling.Constraint over an llguidance grammar (see chooser.Constraint).

    Raises:
        ValueError: the grammar does not compile (the message is llguidance's).
    """

    def __init__(self, vocab: GrammarVocabulary, grammar: str) -> None:
        llg = _llguidance()
        self._vocab = vocab
        self._matcher = llg.LLMatcher(vocab.lltokenizer(), grammar, log_level=0)
        if self._matcher.is_error():
            raise ValueError(f"structured output: {self._matcher.get_error()}")
        self._bitmask = llg.numpy.allocate_token_bitmask(1, vocab.n_vocab)  # (1, ceil(n/32)) int32
        self._fill = llg.numpy.fill_next_token_bitmask

    def allowed(self, n_vocab: int) -> np.ndarray:
        self._fill(self._matcher, self._bitmask)
        bits = np.unpackbits(self._bitmask.view(np.uint8), bitorder="little")  # bit i of word j: token 32j+i
        out = np.zeros(n_vocab, dtype=bool)
        k = min(n_vocab, self._vocab.n_vocab)
        out[:k] = bits[:k].astype(bool)
        return out

    def advance(self, token: int) -> None:
        if not 0 <= token < self._vocab.n_vocab or not self._matcher.consume_token(int(token)):
            raise ValueError(f"token {token} breaks the grammar: {self._matcher.get_error()}")

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        n = next((i for i, t in enumerate(tokens) if not 0 <= t < self._vocab.n_vocab), len(tokens))
        return int(self._matcher.validate_tokens([int(t) for t in tokens[:n]])) if n else 0

    @property
    def is_accepting(self) -> bool:
        """True when the output so far is complete under the grammar."""
        return bool(self._matcher.is_accepting())
