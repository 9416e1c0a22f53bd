"""Pre-tokenizer splits (pipeinfer._pretokenize) for the pre types of the real models and the GPT-2 /
Llama-3 families: hand-checked cases, and a cross-check against the `regex` package running the
original patterns (when that package is installed)."""
from __future__ import annotations

import random

import pytest

from pipeinfer import _pretokenize as pt


def split(pre: str, text: str):
    return pt.split_words(text, pt.pre_type_info(pre)[1])


@pytest.mark.parametrize(
    "pre, text, words",
    [
        # smollm / starcoder: every digit alone first, then the GPT-2 regex inside each piece
        ("smollm", "a123 b", ["a", "1", "2", "3", " b"]),
        ("smollm", "x  = 10;\n", ["x", " ", " =", " ", "1", "0", ";", "\n"]),
        # qwen2: one digit per word, newline runs kept together, punctuation takes trailing newlines
        ("qwen2", "Hello  world\n\n\n  x", ["Hello", " ", " world", "\n\n\n", " ", " x"]),
        ("qwen2", "end.\n\nx 42", ["end", ".\n\n", "x", " ", "4", "2"]),
        ("qwen2", "I'LL don't", ["I", "'LL", " don", "'t"]),
        # llama3: up to three digits per word
        ("llama-bpe", "1234567 x", ["123", "456", "7", " x"]),
        # gpt-2: contractions are lower case only, spaces attach to the following word
        ("gpt-2", "I'LL it's  a", ["I", "'", "LL", " it", "'s", " ", " a"]),
        # missing pre type: llama.cpp's default regex set
        ("", "abc 12345", ["abc", " ", "123", "45"]),
        # deepseek-coder: CJK runs, single digits, letters with one leading space
        ("deepseek-coder", "ab 中文12", ["ab", " ", "中文", "1", "2"]),
    ],
)
def test_hand_checked_splits(pre, text, words):
    assert split(pre, text) == words


def test_non_ascii_categories():
    # letters of any script are \p{L}; a combining mark is not, so it is split from its base letter
    assert split("qwen2", "naïve Ωmega") == ["naïve", " Ωmega"]
    assert split("qwen2", "e\u0301x") == ["e", "\u0301x"]  # the mark is the optional non-letter prefix
    assert split("gpt-2", "e\u0301x") == ["e", "\u0301", "x"]
    # non-ASCII whitespace behaves as whitespace; NBSP before a word attaches like a space (qwen2)
    assert split("qwen2", "a\u3000b") == ["a", "\u3000b"]
    assert split("gpt-2", "a\u00a0\u00a0b") == ["a", "\u00a0", "\u00a0", "b"]


def test_words_concatenate_to_text():
    rng = random.Random(11)
    alphabet = "ab Z9 \t\n'.,!中é\u0301🙂\u00a0-"
    for pre in ("smollm", "qwen2", "llama-bpe", "gpt-2", "", "deepseek-coder", "falcon", "bloom"):
        for _ in range(50):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            words = split(pre, text)
            assert "".join(words) == text
            assert all(words)


def test_collapsed_classes_hold_the_ascii_members_of_each_category():
    import re
    import unicodedata

    for cat, body in pt._CAT_CLASS.items():
        cls = re.compile("[" + body + "]", re.ASCII)
        got = {chr(c) for c in range(128) if cls.match(chr(c))}
        want = {chr(c) for c in range(128) if unicodedata.category(chr(c))[0] == cat}
        # llama.cpp's symbol class leaves out '~' (unicode.cpp k_ucat_map); we keep that quirk
        assert got ^ want == ({"~"} if cat == "S" else set()), cat


def test_regex_translation_keeps_classes():
    assert pt.translate_regex(r"\p{L}+") == "[\xd2A-Za-z]+"
    assert pt.translate_regex(r"[^\s\p{L}\p{N}]") == "[^\\s\xd2A-Za-z\xd10-9]"
    assert pt.translate_regex(r"\s+$") == r"\s+\Z"


# the original patterns (as the models' tokenizer.json write them), for the cross-check
_ORIGINAL = {
    "gpt-2": [r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
    "smollm": [r"\p{N}", r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"],
    "qwen2": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "llama-bpe": [r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+"],
}


def _isolated_split(regex, patterns, text):
    pieces = [text] if text else []
    for pat in patterns:
        new = []
        for p in pieces:
            prev = 0
            for m in regex.finditer(pat, p):
                if m.start() > prev:
                    new.append(p[prev:m.start()])
                if m.end() > m.start():
                    new.append(m.group())
                prev = m.end()
            if prev < len(p):
                new.append(p[prev:])
        pieces = new
    return pieces


@pytest.mark.parametrize("pre", sorted(_ORIGINAL))
def test_matches_original_patterns(pre):
    import regex  # a dependency: missing must fail, not skip
    rng = random.Random(5)
    # characters from long-assigned Unicode blocks, so both Unicode tables agree
    alphabet = "aZk 9\t\n\r'sLlTéΩж中ア٣\u0301\u00a0\u3000.,;!?-_()🙂\x0b"
    for _ in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert split(pre, text) == _isolated_split(regex, _ORIGINAL[pre], text), repr(text)
