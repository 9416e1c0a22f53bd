"""Pre-tokenization for byte-level BPE vocabularies, reproducing llama.cpp's `unicode_regex_split`.

This module owns: the per-`tokenizer.ggml.pre` table of split regexes (facts taken from llama.cpp
src/llama-vocab.cpp, `llm_tokenizer_bpe`), the splitting of a text into words with them, and the GPT-2
byte <-> unicode mapping that turns each word into the alphabet of the vocabulary. It must not know
about vocabularies, merges or special tokens (pipeinfer.tokenizer does that).

How llama.cpp splits, and how this module matches it:
- The regexes of a pre type are applied one after another. Each one splits every current piece further:
  its matches AND the gaps between matches both become pieces, and a regex never sees across the border
  of a piece (lookaheads stop there).
- Regexes that use a unicode category (\\p{L}, \\p{N}, \\p{P}, \\p{M}, \\p{S}, \\p{Lu}, ...) run on a
  "collapsed" copy of the text in which every code point >= 128 is replaced by one byte that stands for
  its category (letter 0xD2, number 0xD1, punctuation 0xD3, mark 0xD4, symbol 0xD5, whitespace 0x0B,
  anything else 0xD0) and every \\p{X} is replaced by a class holding that byte plus the ASCII members of
  the category. We do the same, with Python's `re` in ASCII mode (ASCII \\s is [ \\t\\n\\r\\f\\v], as
  C++ std::regex in the C locale). llama.cpp's hand-written splitters for the GPT-2 and Llama-3 regexes are
  equivalent to the regexes themselves, so the regexes are used here for those too.
- Regexes without categories run on the real code points, with non-ASCII whitespace replaced by 0x0B.
Unicode categories come from Python's `unicodedata`; llama.cpp ships its own tables, possibly of a newer
Unicode version, so code points assigned after Python's Unicode version may be split differently.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

# White_Space code points (the set llama.cpp's unicode_set_whitespace holds).
_WHITESPACE = frozenset(
    list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)

# Collapsed stand-ins (llama.cpp unicode.cpp, k_ucat_cpt) and the ASCII members of each category
# (k_ucat_map), written as the inside of a Python character class. Note that llama.cpp's symbol set
# leaves out '~' although Unicode counts it as a math symbol; we keep that.
_CAT_CLASS = {
    "N": "\xd1" + "0-9",
    "L": "\xd2" + "A-Za-z",
    "P": "\xd3" + r"!-#%-*,-/:;?@\[-\]_{}",
    "M": "\xd4",
    "S": "\xd5" + r"$+<=>^`|",
}
_CAT_NAMES = {"N": "N", "L": "L", "P": "P", "M": "M", "S": "S", "Lu": "L", "Ll": "L", "Lt": "L", "Lm": "L", "Lo": "L"}
_COLLAPSED_CHAR = {"N": "\xd1", "L": "\xd2", "P": "\xd3", "M": "\xd4", "S": "\xd5"}

# --- regex sets, spelled as in llama.cpp (src/llama-vocab.cpp, llm_tokenizer_bpe constructor) ---------
_RE_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_RE_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_RE_TEKKEN = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_PRE_REGEXES: Dict[str, Tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", _RE_GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"),
    "llama3": (_RE_LLAMA3,),
    "deepseek-coder": (r"[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", r"[一-龥ࠀ-一가-퟿]+", r"\p{N}"),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", _RE_GPT2, r"[0-9][0-9][0-9]"),
    "starcoder": (r"\p{N}", _RE_GPT2),
    "gpt2": (_RE_GPT2,),
    "qwen2": (_RE_QWEN2,),
    "qwen35": (
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
        r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    "seed-coder": (
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}"
        r"| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    "ufakzeka": (r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",),
    "bailingmoe": (
        r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
        r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
    ),
    "poro": (r" ?[^(\s|.,!?…。，、।۔،)]+",),
    "chatglm4": (_RE_LLAMA3,),
    "viking": (r" ?[^(\s|.,!?…。，、।۔،)]+", r"\p{N}"),
    "tekken": (_RE_TEKKEN,),
    "gpt4o": (_RE_GPT4O,),
}

# tokenizer.ggml.pre value -> (regex set, options). Options mirror llama.cpp's llama_vocab::impl::load:
# clean_spaces (detokenizer cleanup), ignore_merges (whole-word lookup before BPE), add_bos (default of
# add_bos before tokenizer.ggml.add_bos_token is read).
_PRE_ALIASES: Dict[str, Tuple[str, Dict[str, bool]]] = {}


def _alias(names: Sequence[str], regex_set: str, **opts: bool) -> None:
    for name in names:
        _PRE_ALIASES[name] = (regex_set, opts)


_alias(["default"], "default")
_alias(["llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano"], "llama3",
       ignore_merges=True, add_bos=True)
_alias(["dbrx", "smaug-bpe"], "llama3")
_alias(["deepseek-coder"], "deepseek-coder", clean_spaces=False)
_alias(["falcon"], "falcon")
_alias(["mpt", "olmo", "jais", "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
        "a.x-4.0", "mellum", "modern-bert", "exaone4", "jina-v1-en", "jina-v2-code", "roberta-bpe"], "gpt2")
_alias(["trillion", "granite-docling"], "gpt2", clean_spaces=False)
_alias(["starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2"], "starcoder")
_alias(["command-r", "smollm"], "starcoder", clean_spaces=False)
_alias(["qwen2", "deepseek-r1-qwen", "kormo", "hunyuan", "solar-open", "grok-2", "f2llmv2"], "qwen2",
       clean_spaces=False)
_alias(["qwen35"], "qwen35", clean_spaces=False)
_alias(["seed-coder"], "seed-coder", clean_spaces=False)
_alias(["bailingmoe", "bailingmoe2", "llada-moe"], "bailingmoe", clean_spaces=False)
_alias(["stablelm2", "megrez"], "qwen2")
_alias(["poro-chat", "bloom", "gpt3-finnish"], "poro")
_PRE_ALIASES["poro-chat"] = ("poro", {"clean_spaces": False})
_alias(["chatglm-bpe"], "chatglm4", no_bos=True)
_alias(["glm4", "glm5"], "chatglm4", no_bos=True, ignore_merges=True)
_alias(["ufakzeka"], "ufakzeka", clean_spaces=False)
_alias(["viking"], "viking", clean_spaces=False)
_alias(["tekken"], "tekken", clean_spaces=False, ignore_merges=True, add_bos=True)
_alias(["gpt-4o", "llama4", "minimax-m2", "kanana2", "talkie"], "gpt4o", clean_spaces=False)


def pre_type_info(pre: str) -> Tuple[str, Tuple[str, ...], Dict[str, bool]]:
    """Returns (regex set name, regexes, options) for a tokenizer.ggml.pre value.

    A missing (empty) value means llama.cpp's "default" set. Raises KeyError for any other value this
    module does not know: llama.cpp refuses unknown names, and the pre types it handles with custom code
    (deepseek-llm, deepseek-v3, kimi-k2, afmoe, gemma4, ...) are not reproduced here.
    """
    set_name, opts = _PRE_ALIASES["default" if pre == "" else pre]
    return set_name, _PRE_REGEXES[set_name], dict(opts)


# --- unicode categories and the collapsed text --------------------------------------------------------


@lru_cache(maxsize=None)
def _collapsed(ch: str) -> str:
    cpt = ord(ch)
    if cpt < 128:
        return ch
    if cpt in _WHITESPACE:
        return "\x0b"
    return _COLLAPSED_CHAR.get(unicodedata.category(ch)[0], "\xd0")


def _collapse(text: str) -> str:
    """Maps every code point >= 128 to its category stand-in (same length as `text`)."""
    table = {ord(ch): _collapsed(ch) for ch in set(text) if ord(ch) >= 128}
    return text.translate(table) if table else text


def _ws_fallback(text: str) -> str:
    """Replaces non-ASCII whitespace by 0x0B (what llama.cpp does before running std::wregex)."""
    table = {ord(ch): "\x0b" for ch in set(text) if ord(ch) >= 128 and ord(ch) in _WHITESPACE}
    return text.translate(table) if table else text


_CAT_RE = re.compile(r"\\p\{([A-Za-z]{1,2})\}")


def _uses_categories(expr: str) -> bool:
    return any(name in _CAT_NAMES for name in _CAT_RE.findall(expr))


def translate_regex(expr: str) -> str:
    """Translates a llama.cpp pre-tokenizer regex into a Python `re` pattern.

    \\p{X} becomes the collapsed class of its category (inside or outside a [...] class), and an
    unescaped `$` outside a class becomes `\\Z` (ECMAScript `$` never matches before a final newline).
    """
    out: List[str] = []
    inside = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "\\" and i + 1 < len(expr):
            m = _CAT_RE.match(expr, i)
            if m and m.group(1) in _CAT_NAMES:
                body = _CAT_CLASS[_CAT_NAMES[m.group(1)]]
                out.append(body if inside else "[" + body + "]")
                i = m.end()
                continue
            out.append(expr[i : i + 2])
            i += 2
            continue
        if c == "[" and not inside:
            inside = True
        elif c == "]" and inside:
            inside = False
        elif c == "$" and not inside:
            out.append(r"\Z")
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out)


@lru_cache(maxsize=None)
def _compiled(expr: str) -> Tuple["re.Pattern[str]", bool]:
    return re.compile(translate_regex(expr), re.ASCII), _uses_categories(expr)


def split_words(text: str, regexes: Sequence[str]) -> List[str]:
    """Splits `text` into pre-tokenizer words, as llama.cpp's unicode_regex_split (before byte encoding).

    Args:
        text: the raw text of one fragment (no special tokens in it).
        regexes: the regex set of the pre type, applied in order.

    Returns:
        the words, in order; their concatenation is `text`.
    """
    if not text:
        return []
    collapsed = None
    ws_only = None
    # pieces as (start, end) code point offsets into text
    pieces: List[Tuple[int, int]] = [(0, len(text))]
    for expr in regexes:
        pattern, use_collapsed = _compiled(expr)
        if use_collapsed:
            if collapsed is None:
                collapsed = _collapse(text)
            subject = collapsed
        else:
            if ws_only is None:
                ws_only = _ws_fallback(text)
            subject = ws_only
        new_pieces: List[Tuple[int, int]] = []
        for start, end in pieces:
            seg = subject[start:end] if (start, end) != (0, len(subject)) else subject
            prev = 0
            for m in pattern.finditer(seg):
                ms, me = m.span()
                if ms > prev:
                    new_pieces.append((start + prev, start + ms))
                if me > ms:
                    new_pieces.append((start + ms, start + me))
                prev = me
            if prev < len(seg):
                new_pieces.append((start + prev, end))
        pieces = new_pieces
    return [text[s:e] for s, e in pieces]


# --- GPT-2 byte <-> unicode alphabet (llama.cpp unicode.cpp unicode_byte_to_utf8_map) ----------------


def _byte_alphabet() -> List[str]:
    direct = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table: List[str] = [""] * 256
    for b in direct:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR: List[str] = _byte_alphabet()
CHAR_TO_BYTE: Dict[str, int] = {ch: b for b, ch in enumerate(BYTE_TO_CHAR)}
# translate table: a str decoded as latin-1 (one char per byte) -> GPT-2 alphabet
_LATIN1_TO_ALPHABET = {b: BYTE_TO_CHAR[b] for b in range(256)}


def byte_encode(word: str) -> str:
    """Returns the UTF-8 bytes of `word` spelled in the GPT-2 byte alphabet."""
    return word.encode("utf-8").decode("latin-1").translate(_LATIN1_TO_ALPHABET)
