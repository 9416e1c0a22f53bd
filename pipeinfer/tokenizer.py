"""Tokenizer built from GGUF metadata that yields the same token ids and piece bytes as llama.cpp.

This module owns: reading and validating the tokenizer.ggml.* keys, token attributes (llama.cpp's
llama_token_attr, including the control/end-of-generation tokens it detects by their text), splitting
the text at special tokens, the two encoders ("gpt2": byte-level BPE over pre-tokenizer words; "llama":
SentencePiece-style score merging with byte fallback), token -> bytes pieces, whole-sequence decoding
and incremental UTF-8 streaming. The pre-tokenizer regexes live in pipeinfer._pretokenize. It must not
read files, run models or depend on the C++ core: it sees only the metadata mapping.

Facts about llama.cpp's behaviour are taken from its src/llama-vocab.cpp and src/unicode.cpp
(llama_vocab::impl::load, tokenizer_st_partition, tokenize, token_to_piece, detokenize).
"""
from __future__ import annotations

import heapq
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union, cast

from pipeinfer import _pretokenize as pt

__all__ = ["Tokenizer", "StreamDecoder", "TokenAttr"]


class TokenAttr:
    """Bit flags of a token (llama.cpp llama_token_attr)."""

    UNDEFINED = 0
    UNKNOWN = 1 << 0
    UNUSED = 1 << 1
    NORMAL = 1 << 2
    CONTROL = 1 << 3
    USER_DEFINED = 1 << 4
    BYTE = 1 << 5
    NORMALIZED = 1 << 6
    LSTRIP = 1 << 7
    RSTRIP = 1 << 8


# tokenizer.ggml.token_type value -> attribute (llama.cpp llama_token_type)
_TYPE_TO_ATTR = {
    0: TokenAttr.UNDEFINED,
    1: TokenAttr.NORMAL,
    2: TokenAttr.UNKNOWN,
    3: TokenAttr.CONTROL,
    4: TokenAttr.USER_DEFINED,
    5: TokenAttr.UNUSED,
    6: TokenAttr.BYTE,
}
_SUPPRESSED = TokenAttr.UNKNOWN | TokenAttr.CONTROL  # pieces hidden when special=False
_PARTITIONED = TokenAttr.CONTROL | TokenAttr.USER_DEFINED | TokenAttr.UNKNOWN
_C_SPACE = " \t\n\v\f\r"  # C isspace() in the C locale
_SPM_SPACE = "\u2581"

_K = "tokenizer.ggml."
# texts llama.cpp uses to find tokens whose id the file does not give (llama_vocab::impl::load)
_EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
              "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>")
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}
_EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
              "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
              "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
              "<｜end▁of▁sentence｜>", "[e~[")
# special-id keys: (attribute name, key suffix); deprecated FIM keys last, as in llama.cpp
_ID_KEYS = (
    ("bos_id", "bos_token_id"), ("eos_id", "eos_token_id"), ("eot_id", "eot_token_id"),
    ("eom_id", "eom_token_id"), ("unk_id", "unknown_token_id"), ("sep_id", "seperator_token_id"),
    ("pad_id", "padding_token_id"), ("mask_id", "mask_token_id"), ("fim_pre", "fim_pre_token_id"),
    ("fim_suf", "fim_suf_token_id"), ("fim_mid", "fim_mid_token_id"), ("fim_pad", "fim_pad_token_id"),
    ("fim_rep", "fim_rep_token_id"), ("fim_sep", "fim_sep_token_id"), ("fim_pre", "prefix_token_id"),
    ("fim_suf", "suffix_token_id"), ("fim_mid", "middle_token_id"),
)
_WORD_CACHE_LIMIT = 1 << 16

Fragment = Union[str, int]  # raw text, or a special token id


def _is_int(v: Any) -> bool:
    return hasattr(v, "__index__") and not isinstance(v, bool)


def _parse_byte_token(text: str) -> Optional[int]:
    """Returns the byte of an SPM byte token "<0xHH>", or None if `text` is not of that form."""
    if len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
        digits = text[3:5]
        if all(c in "0123456789abcdefABCDEF" for c in digits):
            return int(digits, 16)
    return None


class Tokenizer:
    """Text <-> token ids for a GGUF vocabulary, equal to llama.cpp's llama_tokenize/llama_detokenize.

    Build it with `Tokenizer.from_metadata(meta)`. Public attributes: n_vocab, bos_id, eos_id, eot_id,
    eom_id, unk_id, pad_id (int or None), add_bos, add_eos, add_space_prefix, clean_spaces (bool),
    vocab_type ("bpe" or "spm") and pre (the tokenizer.ggml.pre value, "" when absent).
    """

    def __init__(self) -> None:  # use from_metadata
        self.n_vocab = 0
        self.vocab_type = ""
        self.pre = ""
        self.bos_id: Optional[int] = None
        self.eos_id: Optional[int] = None
        self.eot_id: Optional[int] = None
        self.eom_id: Optional[int] = None
        self.unk_id: Optional[int] = None
        self.pad_id: Optional[int] = None
        self.add_bos = False
        self.add_eos = False
        self.add_space_prefix = False
        self.clean_spaces = False
        self._ignore_merges = False
        self._no_default_bos = False  # chatglm pre types: no default BOS id
        self._special_ids: Dict[str, Optional[int]] = {}
        self._texts: List[str] = []
        self._attrs: List[int] = []
        self._scores: List[float] = []
        self._ids: Dict[str, int] = {}
        self._ranks: Dict[Tuple[str, str], int] = {}
        self._regexes: Tuple[str, ...] = ()
        self._specials: List[int] = []  # partition order: longest text (bytes) first
        self._eog: frozenset = frozenset()
        self._pieces: List[Optional[bytes]] = []  # token_to_piece(special=True), filled on demand
        self._word_cache: Dict[str, Tuple[int, ...]] = {}

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> "Tokenizer":
        """Builds the tokenizer from GGUF metadata (key -> value).

        Args:
            meta: GGUF key -> value; strings str, integers int, floats float, bools bool, numeric arrays
                numpy arrays (or sequences), string arrays list[str].

        Returns:
            the tokenizer.

        Raises:
            ValueError: a tokenizer key is missing, has the wrong type or length, names a token id outside
                the vocabulary, or holds a malformed token/merge (the message names the key).
        """
        self = cls()
        model = meta.get(_K + "model")
        if not isinstance(model, str):
            raise ValueError(f"GGUF key '{_K}model': expected a string naming the tokenizer, found {model!r}")
        if model == "gpt2":
            self.vocab_type = "bpe"
        elif model == "llama":
            self.vocab_type = "spm"
        else:
            raise ValueError(f"GGUF key '{_K}model': unsupported tokenizer '{model}' (supported: gpt2, llama)")
        self._load_tokens(meta)
        self._load_options(meta)
        self._load_special_ids(meta)
        self._detect_special_tokens(meta)
        self._pieces = [None] * self.n_vocab
        self._specials = sorted(
            (i for i, a in enumerate(self._attrs) if a & _PARTITIONED),
            key=lambda i: (-len(self._texts[i].encode("utf-8")), i),
        )
        return self

    def _load_tokens(self, meta: Mapping[str, Any]) -> None:
        tokens = meta.get(_K + "tokens")
        if not isinstance(tokens, (list, tuple)) or not tokens:
            raise ValueError(f"GGUF key '{_K}tokens': expected a non-empty array of strings")
        n = len(tokens)
        self.n_vocab = n
        texts: List[str] = []
        for i, t in enumerate(tokens):
            if not isinstance(t, str):
                raise ValueError(f"GGUF key '{_K}tokens': entry {i} is {type(t).__name__}, expected str")
            texts.append(t if t else f"[EMPTY_{i}]")  # llama.cpp renames empty tokens the same way
        ids: Dict[str, int] = {}
        for i, t in enumerate(texts):
            if t in ids:
                raise ValueError(f"GGUF key '{_K}tokens': token {i} {t!r} duplicates token {ids[t]}")
            ids[t] = i
        self._texts, self._ids = texts, ids

        types = meta.get(_K + "token_type")
        if types is None:
            attrs = [TokenAttr.NORMAL] * n
        else:
            if len(types) != n:
                raise ValueError(f"GGUF key '{_K}token_type': has {len(types)} entries, expected {n} "
                                 f"(the length of {_K}tokens)")
            attrs = [_TYPE_TO_ATTR.get(int(v), TokenAttr.UNDEFINED) for v in types]
        self._attrs = attrs

        scores = meta.get(_K + "scores")
        if scores is None:
            self._scores = [0.0] * n
        else:
            if len(scores) != n:
                raise ValueError(f"GGUF key '{_K}scores': has {len(scores)} entries, expected {n} "
                                 f"(the length of {_K}tokens)")
            self._scores = [float(s) for s in scores]

        for i, a in enumerate(attrs):
            if a & TokenAttr.BYTE and _parse_byte_token(texts[i]) is None:
                raise ValueError(f"GGUF key '{_K}tokens': token {i} {texts[i]!r} has type BYTE "
                                 f"({_K}token_type) but is not of the form <0xHH>")
        if self.vocab_type == "bpe":
            merges = meta.get(_K + "merges")
            if not isinstance(merges, (list, tuple)):
                raise ValueError(f"GGUF key '{_K}merges': required for tokenizer 'gpt2', expected an array "
                                 f"of strings, found {type(merges).__name__}")
            ranks: Dict[Tuple[str, str], int] = {}
            for r, m in enumerate(merges):
                pos = m.find(" ", 1) if isinstance(m, str) else -1
                if pos < 0:
                    raise ValueError(f"GGUF key '{_K}merges': entry {r} {m!r} is not two tokens separated "
                                     f"by a space")
                ranks.setdefault((m[:pos], m[pos + 1:]), r)  # first occurrence wins, as emplace does
            self._ranks = ranks

    def _load_options(self, meta: Mapping[str, Any]) -> None:
        pre = meta.get(_K + "pre", "")
        if not isinstance(pre, str):
            raise ValueError(f"GGUF key '{_K}pre': expected a string, found {type(pre).__name__}")
        self.pre = pre
        if self.vocab_type == "bpe":
            try:
                _, self._regexes, opts = pt.pre_type_info(pre)
            except KeyError:
                raise ValueError(f"GGUF key '{_K}pre': pre-tokenizer '{pre}' is not supported") from None
            self.add_space_prefix = False
            self.clean_spaces = opts.get("clean_spaces", True)
            self._ignore_merges = opts.get("ignore_merges", False)
            self.add_bos = opts.get("add_bos", False)
            self._no_default_bos = opts.get("no_bos", False)
        else:
            self.add_space_prefix = True
            self.clean_spaces = False
            self.add_bos = True
        self.add_eos = False
        for attr, key in (("add_space_prefix", "add_space_prefix"), ("add_bos", "add_bos_token"),
                          ("add_eos", "add_eos_token")):
            if _K + key in meta:
                v = meta[_K + key]
                if not isinstance(v, bool) and not (hasattr(v, "dtype") and v.dtype == bool):
                    raise ValueError(f"GGUF key '{_K}{key}': expected a bool, found {v!r}")
                setattr(self, attr, bool(v))

    def _load_special_ids(self, meta: Mapping[str, Any]) -> None:
        n = self.n_vocab
        ids: Dict[str, Optional[int]] = {name: None for name, _ in _ID_KEYS}
        if self.vocab_type == "spm":
            ids.update(bos_id=1, eos_id=2, unk_id=0)
        elif not self._no_default_bos:
            ids.update(bos_id=11, eos_id=11)
        else:
            ids.update(eos_id=11)
        for name, v in list(ids.items()):
            if v is not None and v >= n:
                ids[name] = None  # a default that does not fit this vocabulary
        for name, key in _ID_KEYS:
            if _K + key not in meta:
                continue
            v = meta[_K + key]
            if not _is_int(v):
                raise ValueError(f"GGUF key '{_K}{key}': expected an integer token id, found {v!r}")
            v = int(v)
            if not 0 <= v < n:
                raise ValueError(f"GGUF key '{_K}{key}': token id {v} is outside the vocabulary "
                                 f"(n_vocab {n})")
            ids[name] = v
        self._special_ids = ids
        self.bos_id, self.eos_id, self.unk_id, self.pad_id = ids["bos_id"], ids["eos_id"], ids["unk_id"], ids["pad_id"]

    def _mark_control(self, tid: int) -> None:
        self._attrs[tid] |= TokenAttr.CONTROL

    def _find_first(self, texts: Sequence[str]) -> Optional[int]:
        # llama.cpp takes the first match of an unordered_map walk (hash order); we take the first text
        # of the list that the vocabulary has, so "<|im_end|>" wins over "<|endoftext|>"
        for t in texts:
            if t in self._ids:
                return self._ids[t]
        return None

    def _detect_special_tokens(self, meta: Mapping[str, Any]) -> None:
        ids = self._special_ids
        for name, texts in (("eot_id", _EOT_TEXTS), ("eom_id", _EOM_TEXTS)) + tuple(_FIM_TEXTS.items()):
            if ids[name] is None:
                tid = self._find_first(texts)
                if tid is not None:
                    ids[name] = tid
                    self._mark_control(tid)
        # control tokens named "...unused..." are unused (llama.cpp's auto-detection, e.g. Gemma's <unused0>)
        for tid, a in enumerate(self._attrs):
            if a & TokenAttr.CONTROL and "unused" in self._texts[tid]:
                self._attrs[tid] = a | TokenAttr.UNUSED
        eog: Set[int] = {t for t in (ids["fim_pad"], ids["fim_rep"], ids["fim_sep"]) if t is not None}
        for t in _EOG_TEXTS:
            tid = self._ids.get(t)
            if tid is not None:
                eog.add(tid)
                self._mark_control(tid)
        for t in ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"):  # gpt-oss: always render
            if t in self._ids:
                self._attrs[self._ids[t]] = TokenAttr.USER_DEFINED
        for special_id in (ids["eos_id"], ids["eot_id"], ids["eom_id"]):
            if special_id is not None:
                eog.add(special_id)
        # o200k_harmony / solar-open: "<|end|>" is not end-of-generation when these are present
        eog_texts = {self._texts[t]: t for t in eog}
        if "<|end|>" in eog_texts and (
            ("<|return|>" in eog_texts and ("<|call|>" in eog_texts or "<|calls|>" in eog_texts))
            or ("<|flush|>" in eog_texts and ("<|call|>" in eog_texts or "<|calls|>" in eog_texts))
        ):
            end_id = eog_texts["<|end|>"]
            eog.discard(end_id)
            self._attrs[end_id] = TokenAttr.USER_DEFINED
        # gemma4 / plamo: their "</s>" is an ordinary token
        if "</s>" in eog_texts and ("<|tool_response>" in eog_texts or "<|plamo:eos|>" in eog_texts):
            eog.discard(eog_texts["</s>"])
            self._attrs[eog_texts["</s>"]] = TokenAttr.NORMAL
        self._eog = frozenset(eog)
        self.eot_id, self.eom_id = ids["eot_id"], ids["eom_id"]
        self._apply_name_rules(meta)

    def _apply_name_rules(self, meta: Mapping[str, Any]) -> None:
        """Per-model strip attributes llama.cpp sets from general.name / tokenizer.ggml.pre."""
        name = str(meta.get("general.name", "")).lower()
        arch = str(meta.get("general.architecture", ""))
        if any(s in self.pre for s in ("jina-v2-de", "jina-v2-es", "jina-v2-code")) or any(
            s in arch for s in ("nomic-bert-moe", "jina-bert-v3")
        ):
            self._set_bit("<mask>", TokenAttr.LSTRIP, True)
        elif "phi-3" in name or "phi3" in name:
            for tid, a in enumerate(self._attrs):
                if a & _PARTITIONED:
                    self._attrs[tid] |= TokenAttr.RSTRIP
            self._set_bit("</s>", TokenAttr.RSTRIP, True)
            for t in ("<unk>", "<s>", "<|endoftext|>"):
                self._set_bit(t, TokenAttr.RSTRIP, False)
        elif "modern-bert" in name:
            self._set_bit("[MASK]", TokenAttr.LSTRIP, True)

    def _set_bit(self, text: str, bit: int, value: bool) -> None:
        tid = self._ids.get(text)
        if tid is not None:
            self._attrs[tid] = (self._attrs[tid] | bit) if value else (self._attrs[tid] & ~bit)

    # ------------------------------------------------------------------ queries

    def _check_id(self, token_id: int) -> int:
        if not _is_int(token_id) or not 0 <= int(token_id) < self.n_vocab:
            raise ValueError(f"token id {token_id!r} is outside the vocabulary (n_vocab {self.n_vocab})")
        return int(token_id)

    def token_attr(self, token_id: int) -> int:
        """Returns the TokenAttr bit flags of a token (after llama.cpp's text-based detection)."""
        return self._attrs[self._check_id(token_id)]

    def token_text(self, token_id: int) -> str:
        """Returns the vocabulary text of a token (as stored in tokenizer.ggml.tokens)."""
        return self._texts[self._check_id(token_id)]

    def is_eog(self, token_id: int) -> bool:
        """True for end-of-generation tokens (eos, eot, eom, FIM pad/repo/sep and the texts llama.cpp
        detects: <|im_end|>, <|endoftext|>, <end_of_turn>, ...)."""
        return token_id in self._eog

    @property
    def eog_ids(self) -> frozenset:
        """The set of end-of-generation token ids."""
        return self._eog

    def is_special(self, token_id: int) -> bool:
        """True for control and unknown tokens: those whose piece is empty when special=False."""
        return bool(self._attrs[self._check_id(token_id)] & _SUPPRESSED)

    def is_user_defined(self, token_id: int) -> bool:
        """True for user-defined tokens (always split out of the text, always rendered)."""
        return bool(self._attrs[self._check_id(token_id)] & TokenAttr.USER_DEFINED)

    # ------------------------------------------------------------------ encoding

    def encode(self, text: str, add_special: bool = True, parse_special: bool = False) -> List[int]:
        """Tokenizes `text` like llama.cpp's llama_tokenize(text, add_special, parse_special).

        Args:
            text: the text.
            add_special: add BOS/EOS when the vocabulary asks for them (add_bos / add_eos).
            parse_special: also recognise control tokens written in the text (e.g. "<|im_start|>");
                user-defined tokens are always recognised.

        Returns:
            the token ids.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode: text must be str, got {type(text).__name__}")
        frags = self._partition(text, parse_special) if text else []
        out: List[int] = []
        if add_special and self.add_bos:
            if self.bos_id is None:
                raise ValueError("encode: the vocabulary asks for a BOS token but has no BOS id")
            out.append(self.bos_id)
        if self.vocab_type == "spm":
            prev_special = True  # a space is prefixed to the first fragment and to those after a token
            for f in frags:
                if isinstance(f, int):
                    out.append(f)
                    prev_special = True
                else:
                    if self.add_space_prefix and prev_special:
                        f = " " + f
                    self._encode_spm(f.replace(" ", _SPM_SPACE), out)
                    prev_special = False
        else:
            for f in frags:
                if isinstance(f, int):
                    out.append(f)
                else:
                    cache = self._word_cache
                    for word in pt.split_words(f, self._regexes):
                        got = cache.get(word)
                        out.extend(got if got is not None else self._encode_bpe_word(word))
        if add_special and self.add_eos:
            if self.eos_id is None:
                raise ValueError("encode: the vocabulary asks for an EOS token but has no EOS id")
            out.append(self.eos_id)
        return out

    def _partition(self, text: str, parse_special: bool) -> List[Fragment]:
        """Splits `text` at special tokens, longest token first (llama.cpp tokenizer_st_partition)."""
        frags: List[Fragment] = [text]
        for tid in self._specials:
            attr = self._attrs[tid]
            if not parse_special and attr & _SUPPRESSED:
                continue
            tok = self._texts[tid]
            if not any(isinstance(f, str) and tok in f for f in frags):
                continue
            new: List[Fragment] = []
            for f in frags:
                if isinstance(f, int) or tok not in f:
                    new.append(f)
                    continue
                pos = 0
                while True:
                    m = f.find(tok, pos)
                    if m < 0:
                        break
                    left = f[pos:m]
                    if attr & TokenAttr.LSTRIP:
                        left = left.rstrip(_C_SPACE)
                    if left:
                        new.append(left)
                    new.append(tid)
                    pos = m + len(tok)
                    if attr & TokenAttr.RSTRIP:
                        while pos < len(f) and f[pos] in _C_SPACE:
                            pos += 1
                if pos < len(f):
                    new.append(f[pos:])
            frags = new
        return frags

    def _encode_bpe_word(self, raw: str) -> Tuple[int, ...]:
        """BPE of one pre-tokenizer word: lowest merge rank first, leftmost on ties (llm_tokenizer_bpe)."""
        ids = self._ids
        word = pt.byte_encode(raw)
        if self._ignore_merges and word in ids:
            symbols = [word]
        else:
            symbols = _merge(list(word), self._ranks, lowest_first=True)
        out: List[int] = []
        for s in symbols:
            tid = ids.get(s)
            if tid is not None:
                out.append(tid)
            else:  # llama.cpp then looks up each byte of the symbol as a one-byte token
                out.extend(ids[c] for c in s if ord(c) < 128 and c in ids)
        result = tuple(out)
        if len(self._word_cache) >= _WORD_CACHE_LIMIT:
            self._word_cache.clear()
        self._word_cache[raw] = result
        return result

    def _encode_spm(self, text: str, out: List[int]) -> None:
        """SentencePiece-style merging of one escaped fragment (llm_tokenizer_spm_session)."""
        ids = self._ids
        for s in _merge(list(text), _SpmPairScores(ids, self._scores), lowest_first=False):
            tid = ids.get(s)
            if tid is not None:
                out.append(tid)
                continue
            for b in s.encode("utf-8"):
                out.append(self._byte_to_token(b))

    def _byte_to_token(self, b: int) -> int:
        tid = self._ids.get(f"<0x{b:02X}>")
        if tid is None and b < 128:
            tid = self._ids.get(chr(b))
        if tid is None:
            if self.unk_id is None:
                raise ValueError(f"encode: byte 0x{b:02X} has no byte token <0x{b:02X}> in the vocabulary "
                                 f"and there is no unknown token")
            tid = self.unk_id  # llama.cpp aborts here; we fall back to <unk>
        return tid

    # ------------------------------------------------------------------ decoding

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """Returns the bytes llama.cpp's llama_token_to_piece(token, lstrip=0, special) writes.

        Args:
            token_id: the token.
            special: render control/unknown tokens as their text (otherwise they give b"").
        """
        tid = self._check_id(token_id)
        if not special and self._attrs[tid] & _SUPPRESSED:
            return b""
        piece = self._pieces[tid]
        if piece is None:
            piece = self._pieces[tid] = self._piece(tid, self._attrs[tid])
        return piece

    def _piece(self, tid: int, attr: int) -> bytes:
        text = self._texts[tid]
        if attr & (_SUPPRESSED | TokenAttr.USER_DEFINED):
            return text.encode("utf-8")
        if self.vocab_type == "spm":
            if attr & TokenAttr.NORMAL:
                return text.replace(_SPM_SPACE, " ").encode("utf-8")
            if attr & TokenAttr.BYTE:
                return bytes([cast(int, _parse_byte_token(text))])  # validated at construction
            return b""
        if attr & TokenAttr.BYTE:  # byte fallback tokens <0xHH> (Gemma-4 style BPE)
            return bytes([cast(int, _parse_byte_token(text))])
        if attr & TokenAttr.NORMAL:
            out = bytearray()
            for c in text:
                b = pt.CHAR_TO_BYTE.get(c)
                if b is not None:
                    out.append(b)
                else:  # llama_decode_text's marker for a character outside the byte alphabet
                    out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
            return bytes(out)
        return b""

    def detokenize(self, ids: Sequence[int], remove_special: bool = False, unparse_special: bool = True) -> bytes:
        """Returns the bytes of llama.cpp's llama_detokenize(ids, remove_special, unparse_special)."""
        ids = [int(t) for t in ids]
        if ids and not (0 <= min(ids) and max(ids) < self.n_vocab):
            bad = next(t for t in ids if not 0 <= t < self.n_vocab)
            raise ValueError(f"token id {bad} is outside the vocabulary (n_vocab {self.n_vocab})")
        remove_space = self.add_space_prefix
        if remove_special and self.add_bos and ids and ids[0] == self.bos_id:
            remove_space = False
            ids = ids[1:]
        if remove_special and self.add_eos and ids and ids[-1] == self.eos_id:
            ids = ids[:-1]
        pieces, attrs = self._pieces, self._attrs
        parts: List[bytes] = []
        for t in ids:
            if not unparse_special and attrs[t] & _SUPPRESSED:
                piece = b""
            else:
                cached = pieces[t]
                if cached is None:
                    cached = pieces[t] = self._piece(t, attrs[t])
                piece = cached
            parts.append(piece)
        if remove_space and parts and parts[0][:1] == b" ":
            parts[0] = parts[0][1:]
        out = b"".join(parts)
        return _clean_spaces(bytearray(out)) if self.clean_spaces else out

    def decode(self, ids: Sequence[int], skip_special: bool = False) -> str:
        """Decodes token ids to text (invalid UTF-8 becomes U+FFFD).

        Args:
            ids: token ids.
            skip_special: drop control/unknown tokens and a leading BOS / trailing EOS the vocabulary adds
                (llama_detokenize with remove_special=True, unparse_special=False); otherwise render them.
        """
        data = self.detokenize(ids, remove_special=skip_special, unparse_special=not skip_special)
        return data.decode("utf-8", errors="replace")

    def stream_decoder(self, skip_special: bool = False) -> "StreamDecoder":
        """Returns an incremental decoder that turns token ids into text as complete UTF-8 arrives."""
        return StreamDecoder(self, skip_special)


class StreamDecoder:
    """Turns a stream of token ids into text, holding back bytes of an unfinished UTF-8 character.

    Concatenating every feed() result and the final flush() gives the UTF-8 decoding of the
    concatenated piece bytes (llama.cpp's token_to_piece, no space stripping or cleanup).
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False) -> None:
        self._tok = tokenizer
        self._special = not skip_special
        self._pending = bytearray()

    def feed(self, token_id: int) -> str:
        """Adds one token; returns the newly completed text (possibly "")."""
        self._pending += self._tok.token_to_piece(token_id, self._special)
        cut = _complete_prefix_len(self._pending)
        if cut == 0:
            return ""
        text = bytes(self._pending[:cut]).decode("utf-8", errors="replace")
        del self._pending[:cut]
        return text

    def flush(self) -> str:
        """Returns whatever is held back (an unfinished character becomes U+FFFD) and resets."""
        text = bytes(self._pending).decode("utf-8", errors="replace")
        self._pending.clear()
        return text


def _complete_prefix_len(buf: bytearray) -> int:
    """Length of the longest prefix of `buf` that does not end inside an unfinished UTF-8 sequence."""
    n = len(buf)
    for k in range(1, min(4, n) + 1):
        b = buf[n - k]
        if b & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n - k if need > k else n
        return n
    return n


def _merge(symbols: List[str], priority, lowest_first: bool) -> List[str]:
    """Repeatedly merges the best adjacent pair of symbols, leftmost first on ties.

    Args:
        symbols: initial symbols (modified in place).
        priority: mapping (left, right) -> number for the pairs that can merge (anything with .get).
        lowest_first: True for BPE ranks (lowest merges first), False for SPM scores (highest first).

    Returns:
        the final symbols, in order. A heap over a doubly linked list keeps it O(n log n), as in
        llama.cpp's llm_tokenizer_bpe / llm_tokenizer_spm; outdated heap entries are skipped. Picking
        the best (priority, left position) among current neighbours at every step is exactly what
        llama.cpp's queue does.
    """
    n = len(symbols)
    if n < 2:
        return symbols
    get = priority.get
    sign = 1.0 if lowest_first else -1.0
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    prv = list(range(-1, n - 1))
    heap: List[Tuple[float, int, int, str]] = []
    for i in range(n - 1):
        p = get((symbols[i], symbols[i + 1]))
        if p is not None:
            heap.append((sign * p, i, i + 1, symbols[i] + symbols[i + 1]))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        _, left, right, text = pop(heap)
        a, b = symbols[left], symbols[right]
        if not a or not b or nxt[left] != right or len(a) + len(b) != len(text):
            continue  # outdated entry: a side was merged away or grew
        symbols[left] = text
        symbols[right] = ""
        r2 = nxt[right]
        nxt[left] = r2
        if r2 >= 0:
            prv[r2] = left
            p = get((text, symbols[r2]))
            if p is not None:
                push(heap, (sign * p, left, r2, text + symbols[r2]))
        l0 = prv[left]
        if l0 >= 0:
            p = get((symbols[l0], text))
            if p is not None:
                push(heap, (sign * p, l0, left, symbols[l0] + text))
    return [s for s in symbols if s]


class _SpmPairScores:
    """(left, right) -> score of the token left+right, for _merge (llm_tokenizer_spm try_add_bigram)."""

    __slots__ = ("_ids", "_scores")

    def __init__(self, ids: Dict[str, int], scores: List[float]) -> None:
        self._ids, self._scores = ids, scores

    def get(self, pair: Tuple[str, str]) -> Optional[float]:
        tid = self._ids.get(pair[0] + pair[1])
        return None if tid is None else self._scores[tid]


_RE_SPACE_BEFORE_PUNCT = re.compile(rb" (?=[?!.,])")


def _clean_spaces(text: bytearray) -> bytes:
    """llama_detokenize's clean_up_tokenization_spaces passes, reproduced on the byte buffer.

    Pass 1 (" ?", " !", " .", " ," lose the space) reads only original bytes, so a regex does it; passes
    2 and 3 rewrite the buffer while reading it and are emulated step by step when they can apply.
    """
    t = bytearray(_RE_SPACE_BEFORE_PUNCT.sub(b"", bytes(text)))
    total = len(t)
    if b" ' " in t:  # pass 2: a single apostrophe between spaces loses both spaces
        n2, total = total, (1 if total else 0)
        i = 1
        while i < n2:
            x = t[i]
            if x == 0x27 and i + 1 < n2 and t[i - 1] == 0x20 and t[i + 1] == 0x20:
                total -= 1
                i += 1
                t[i] = 0
            t[total] = x
            total += 1
            i += 1
        del t[total:]
    if b" '" in t:  # pass 3: " 's", " 'm", " 're", " 've" lose the space
        n3, total = total, (1 if total else 0)
        for i in range(1, n3):
            x = t[i]
            if t[i - 1] == 0x20 and x == 0x27 and i + 1 < n3:
                x1 = t[i + 1]
                if x1 in b"sm":
                    total -= 1
                elif x1 not in b"td" and i + 2 < n3:
                    x2 = t[i + 2]
                    if (x1 == 0x72 and x2 == 0x65) or (x1 == 0x76 and x2 == 0x65):
                        total -= 1
            t[total] = x
            total += 1
        del t[total:]
    return bytes(t)
