"""Tokenizer on tiny hand-built vocabularies: a GPT-2 style byte-level BPE and a SentencePiece style
vocabulary with byte fallback. Expected ids are worked out by hand in the comments."""
from __future__ import annotations

import random

import numpy as np
import pytest

from pipeinfer import _pretokenize as pt
from pipeinfer.tokenizer import Tokenizer, TokenAttr, _clean_spaces, _merge

# ---------------------------------------------------------------- GPT-2 style vocabulary

_BPE_MERGES = [("h", "e"), ("Ġ", "t"), ("Ġt", "he"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("Ġ", "h"),
               ("Ġh", "ello"), ("e", "l"), ("l", "o")]
_BPE_SPECIALS = [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)]


def bpe_meta(pre: str = "gpt-2", **extra):
    """256 byte tokens (id = byte value order of the GPT-2 alphabet), merge results, then specials."""
    tokens = list(pt.BYTE_TO_CHAR)
    for a, b in _BPE_MERGES:
        if a + b not in tokens:
            tokens.append(a + b)
    types = [1] * len(tokens)
    for text, ty in _BPE_SPECIALS:
        tokens.append(text)
        types.append(ty)
    meta = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
        "tokenizer.ggml.merges": [f"{a} {b}" for a, b in _BPE_MERGES],
        "tokenizer.ggml.bos_token_id": tokens.index("<|endoftext|>"),
        "tokenizer.ggml.eos_token_id": tokens.index("<|im_end|>"),
    }
    meta.update(extra)
    return meta


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.from_metadata(bpe_meta())


def ids_of(tok: Tokenizer, *texts: str):
    return [tok._ids[t] for t in texts]


def test_bpe_byte_alphabet_is_gpt2s():
    assert pt.BYTE_TO_CHAR[ord(" ")] == "Ġ"
    assert pt.BYTE_TO_CHAR[ord("\n")] == "Ċ"
    assert pt.BYTE_TO_CHAR[ord("a")] == "a"
    assert len(set(pt.BYTE_TO_CHAR)) == 256
    assert pt.byte_encode(" é") == "ĠÃ©"


def test_bpe_merges_by_rank(bpe):
    # "the": (h,e) rank 0 -> t|he; (t,he) is no merge.  " hello": Ġ h e l l o -> (h,e) rank 0 ->
    # Ġ he l l o -> (l,l) rank 3 -> Ġ he ll o -> (he,ll) rank 4 -> Ġ hell o -> (hell,o) rank 5 -> Ġ hello
    # -> (Ġ,hello) no merge.  (Ġ,h) rank 6 never applies: h was consumed by rank 0 first.
    assert bpe.encode("the hello", add_special=False) == ids_of(bpe, "t", "he", "Ġ", "hello")
    # " the": Ġ t h e -> (h,e) rank 0 -> Ġ t he -> (Ġ,t) rank 1 -> Ġt he -> (Ġt,he) rank 2 -> Ġthe
    assert bpe.encode(" the", add_special=False) == ids_of(bpe, "Ġthe")


def test_bpe_leftmost_wins_on_equal_rank(bpe):
    # "lll": (l,l) rank 3 at positions 0 and 1 -> the left pair merges first: ll | l
    assert bpe.encode("lll", add_special=False) == ids_of(bpe, "ll", "l")


def test_bpe_gpt2_pretokenizer_words(bpe):
    # words: "I" " don" "'t" "  " -> "Ġ" ... ; spaces before a word attach to it, the rest stay apart
    words = pt.split_words("I don't  go", pt.pre_type_info("gpt-2")[1])
    assert words == ["I", " don", "'t", " ", " go"]
    words = pt.split_words("a1b22 !?x\n\n", pt.pre_type_info("gpt-2")[1])
    assert words == ["a", "1", "b", "22", " !?", "x", "\n\n"]


def test_bpe_unicode_bytes(bpe):
    # "é" is the bytes C3 A9; no merges apply, so one byte token each (spelled Ã and © in the alphabet)
    assert bpe.encode("é", add_special=False) == ids_of(bpe, "Ã", "©")
    assert bpe.decode(bpe.encode("é", add_special=False)) == "é"


def test_bpe_special_tokens_only_when_parsed(bpe):
    text = "<|im_start|>he<|im_end|>"
    plain = bpe.encode(text, add_special=False)
    assert bpe._ids["<|im_start|>"] not in plain
    parsed = bpe.encode(text, add_special=False, parse_special=True)
    assert parsed == ids_of(bpe, "<|im_start|>", "he", "<|im_end|>")


def test_bpe_user_defined_tokens_always_split(bpe):
    # USER_DEFINED tokens are split out of the text even when parse_special is False (llama.cpp rule)
    assert bpe.encode("he<tool>he", add_special=False) == ids_of(bpe, "he", "<tool>", "he")


def test_bpe_add_special_follows_flags():
    tok = Tokenizer.from_metadata(bpe_meta())
    assert tok.add_bos is False  # gpt-2 pre type: no BOS by default
    assert tok.encode("he") == ids_of(tok, "he")
    tok = Tokenizer.from_metadata(bpe_meta(**{"tokenizer.ggml.add_bos_token": True,
                                               "tokenizer.ggml.add_eos_token": True}))
    assert tok.encode("he") == [tok.bos_id] + ids_of(tok, "he") + [tok.eos_id]
    assert tok.encode("he", add_special=False) == ids_of(tok, "he")
    assert tok.encode("") == [tok.bos_id, tok.eos_id]
    # llama-bpe turns add_bos on by default
    assert Tokenizer.from_metadata(bpe_meta(pre="llama-bpe")).add_bos is True


def test_bpe_pieces_and_decode(bpe):
    ids = bpe.encode("<|im_start|> the hello", add_special=False, parse_special=True)
    assert [bpe.token_to_piece(i) for i in ids] == [b"<|im_start|>", b" the", b" ", b"hello"]
    assert bpe.token_to_piece(ids[0], special=False) == b""
    assert bpe.decode(ids) == "<|im_start|> the hello"
    assert bpe.decode(ids, skip_special=True) == " the hello"
    # the user-defined token is rendered even without special
    assert bpe.token_to_piece(bpe._ids["<tool>"], special=False) == b"<tool>"


def test_bpe_clean_spaces_on_decode(bpe):
    # gpt-2 pre type cleans " ." and " 's" on decode, as llama_detokenize does
    ids = bpe.encode("he . he 's", add_special=False)
    assert bpe.detokenize(ids) == b"he. he's"
    smol = Tokenizer.from_metadata(bpe_meta(pre="smollm"))  # smollm: no clean-up
    assert smol.detokenize(smol.encode("he . he 's", add_special=False)) == b"he . he 's"


def test_bpe_eog_and_special_queries(bpe):
    end, start, eot = bpe._ids["<|im_end|>"], bpe._ids["<|im_start|>"], bpe._ids["<|endoftext|>"]
    assert bpe.is_eog(end) and bpe.is_eog(eot) and not bpe.is_eog(start)
    assert bpe.is_special(start) and not bpe.is_special(bpe._ids["he"])
    assert bpe.is_user_defined(bpe._ids["<tool>"])
    assert bpe.eot_id in (end, eot)


def test_bpe_eog_detection_marks_control():
    # an <|im_end|> stored as a NORMAL token is still end-of-generation and becomes CONTROL
    meta = bpe_meta()
    types = meta["tokenizer.ggml.token_type"].copy()
    types[meta["tokenizer.ggml.tokens"].index("<|im_end|>")] = 1
    tok = Tokenizer.from_metadata(dict(meta, **{"tokenizer.ggml.token_type": types}))
    end = tok._ids["<|im_end|>"]
    assert tok.is_eog(end)
    assert tok.token_attr(end) & TokenAttr.CONTROL


def test_bpe_phi3_special_tokens_strip_following_spaces():
    # llama.cpp gives phi-3 models RSTRIP on special tokens (except <|endoftext|>): the spaces after
    # them are dropped from the text
    tok = Tokenizer.from_metadata(bpe_meta(**{"general.name": "Phi-3 mini"}))
    assert tok.encode("<|im_start|>  he", add_special=False, parse_special=True) == ids_of(tok, "<|im_start|>", "he")
    assert tok.encode("<|endoftext|> he", add_special=False, parse_special=True) == ids_of(
        tok, "<|endoftext|>", "Ġ", "he")


# ---------------------------------------------------------------- SentencePiece style vocabulary

_SPM_PIECES = [("▁", -5.0), ("a", -6.0), ("b", -6.0), ("c", -6.0), ("▁a", -2.0), ("ab", -1.0), ("▁ab", -0.5),
               ("bc", -3.0), ("aa", -1.0), ("▁<s>", -9.0)]


def spm_meta(**extra):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + [p for p, _ in _SPM_PIECES]
    types = [2, 3, 3] + [6] * 256 + [1] * len(_SPM_PIECES)
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [s for _, s in _SPM_PIECES]
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": np.array(types, dtype=np.int32),
        "tokenizer.ggml.scores": np.array(scores, dtype=np.float32),
    }
    meta.update(extra)
    return meta


@pytest.fixture(scope="module")
def spm():
    return Tokenizer.from_metadata(spm_meta())


def test_spm_defaults(spm):
    assert (spm.bos_id, spm.eos_id, spm.unk_id) == (1, 2, 0)
    assert spm.add_bos and not spm.add_eos and spm.add_space_prefix


def test_spm_score_merging(spm):
    # "ab" -> "▁ab" -> ▁ a b: bigrams ▁a (-2), ab (-1) -> ab wins -> ▁ ab -> ▁ab (-0.5) -> ▁ab
    assert spm.encode("ab") == [1] + ids_of(spm, "▁ab")
    # "abc" -> ▁ a b c: ▁a -2, ab -1, bc -3 -> ab -> ▁ ab c: ▁ab -0.5, "abc" no token -> ▁ab c
    assert spm.encode("abc", add_special=False) == ids_of(spm, "▁ab", "c")
    # "cb": no bigram is a token
    assert spm.encode("cb", add_special=False) == ids_of(spm, "▁", "c", "b")


def test_spm_leftmost_wins_on_equal_score(spm):
    # "aaa" -> ▁ a a a: ▁a -2, aa -1 (at 1), aa -1 (at 2) -> the left aa merges -> ▁ aa a, nothing more
    assert spm.encode("aaa", add_special=False) == ids_of(spm, "▁", "aa", "a")


def test_spm_byte_fallback(spm):
    # "é" is not a piece: its UTF-8 bytes C3 A9 become byte tokens
    assert spm.encode("é", add_special=False) == ids_of(spm, "▁", "<0xC3>", "<0xA9>")
    assert spm.token_to_piece(spm._ids["<0xC3>"]) == b"\xc3"
    assert spm.decode(spm.encode("é b", add_special=False)) == "é b"


def test_spm_space_prefix_after_special_token(spm):
    # a space is prefixed to the first text fragment and to each fragment after a special token;
    # "</s>" is CONTROL, so it is only recognised with parse_special
    ids = spm.encode("a</s>b", add_special=False, parse_special=True)
    assert ids == ids_of(spm, "▁a", "</s>", "▁", "b")
    no_prefix = Tokenizer.from_metadata(spm_meta(**{"tokenizer.ggml.add_space_prefix": False}))
    assert no_prefix.encode("ab", add_special=False) == ids_of(spm, "ab")


def test_spm_decode_strips_prefix_space(spm):
    ids = spm.encode("ab c")  # [<s>, ▁ab, ▁, c]
    assert ids == [1] + ids_of(spm, "▁ab", "▁", "c")
    assert spm.decode(ids) == "<s> ab c"
    # llama_detokenize: with the BOS removed the leading space of the next piece is kept
    assert spm.decode(ids, skip_special=True) == " ab c"
    assert spm.decode(ids[1:]) == "ab c"
    assert spm.token_to_piece(spm._ids["▁ab"]) == b" ab"
    assert spm.token_to_piece(0, special=False) == b""  # <unk> is an UNKNOWN token


# ---------------------------------------------------------------- streaming

@pytest.mark.parametrize("text", ["héllo wörld", "日本語のテキスト", "emoji 🤖👍🏽 done", "e\u0301 \u05e9\u05dc\u05d5\u05dd"])
def test_stream_decoder_reassembles_unicode(bpe, spm, text):
    for tok in (bpe, spm):
        ids = tok.encode(text, add_special=False)
        dec = tok.stream_decoder()
        parts = [dec.feed(i) for i in ids] + [dec.flush()]
        assert "".join(parts) == b"".join(tok.token_to_piece(i) for i in ids).decode("utf-8")
        assert all("\ufffd" not in p for p in parts)  # never a split character


def test_stream_decoder_holds_back_partial_characters(bpe):
    dec = bpe.stream_decoder()
    c3, a9 = ids_of(bpe, "Ã", "©")  # the two bytes of "é"
    assert dec.feed(c3) == ""
    assert dec.feed(a9) == "é"
    assert dec.feed(c3) == ""
    assert dec.flush() == "\ufffd"  # an unfinished character at the end is replaced


# ---------------------------------------------------------------- merge loop and performance

def _naive_merge(symbols, priority, lowest_first):
    symbols = list(symbols)
    while True:
        best, best_i = None, -1
        for i in range(len(symbols) - 1):
            p = priority.get((symbols[i], symbols[i + 1]))
            if p is None:
                continue
            key = p if lowest_first else -p
            if best is None or key < best:
                best, best_i = key, i
        if best is None:
            return symbols
        symbols[best_i:best_i + 2] = [symbols[best_i] + symbols[best_i + 1]]


def test_heap_merge_equals_naive_merge():
    rng = random.Random(7)
    alphabet = "abcd"
    table = {}
    for _ in range(40):
        a = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        b = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
        table.setdefault((a, b), rng.randint(0, 5))  # few distinct priorities: many ties
    prio = table
    for _ in range(300):
        word = [rng.choice(alphabet) for _ in range(rng.randint(1, 30))]
        for lowest in (True, False):
            assert _merge(list(word), prio, lowest) == _naive_merge(word, prio, lowest)


def test_long_inputs_are_bounded(bpe, spm):
    # a 1 MB text, one 60k-character word and a 60k-character SPM fragment: all O(n log n)
    text = ("the hello é 12 " * 70000)[:1_000_000]
    assert bpe.decode(bpe.encode(text, add_special=False)) == text
    word = "hel" * 20000
    assert bpe.encode(word, add_special=False) == ids_of(bpe, "he", "l") * 20000  # (h,e) is rank 0
    assert spm.decode(spm.encode("ab c " * 12000, add_special=False)) == ("ab c " * 12000)


def _clean_spaces_literal(data: bytes) -> bytes:
    """Step-by-step copy of llama_detokenize's three clean-up loops (in-place buffer rewriting)."""
    t = bytearray(data)
    total = len(t)
    for p in range(3):
        n, total = total, (1 if total else 0)
        i = 1
        while i < n:
            x = t[i]
            if p == 0 and t[i - 1] == 32 and x in b"?!.,":
                total -= 1
            if p == 1 and x == 39 and i + 1 < n and t[i - 1] == 32 and t[i + 1] == 32:
                total -= 1
                i += 1
                t[i] = 0
            if p == 2 and t[i - 1] == 32 and x == 39 and i + 1 < n:
                if t[i + 1] in b"sm" or (i + 2 < n and t[i + 1 : i + 3] in (b"re", b"ve")):
                    total -= 1
            t[total] = x
            total += 1
            i += 1
    return bytes(t[:total])


def test_clean_spaces_matches_literal_loops():
    rng = random.Random(3)
    for _ in range(3000):
        data = bytes(rng.choice(b"  '?.,smrevtdx") for _ in range(rng.randint(0, 12)))
        assert _clean_spaces(bytearray(data)) == _clean_spaces_literal(data), data


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize(
    "change, key",
    [
        ({"tokenizer.ggml.token_type": np.ones(5, dtype=np.int32)}, "tokenizer.ggml.token_type"),
        ({"tokenizer.ggml.scores": np.zeros(3, dtype=np.float32)}, "tokenizer.ggml.scores"),
        ({"tokenizer.ggml.eos_token_id": 100000}, "tokenizer.ggml.eos_token_id"),
        ({"tokenizer.ggml.bos_token_id": -1}, "tokenizer.ggml.bos_token_id"),
        ({"tokenizer.ggml.merges": ["he"]}, "tokenizer.ggml.merges"),
        ({"tokenizer.ggml.model": "bert"}, "tokenizer.ggml.model"),
        ({"tokenizer.ggml.add_bos_token": "yes"}, "tokenizer.ggml.add_bos_token"),
        ({"tokenizer.ggml.pre": "kimi-k2"}, "tokenizer.ggml.pre"),
    ],
)
def test_bpe_invalid_metadata(change, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        Tokenizer.from_metadata(dict(bpe_meta(), **change))


def test_missing_keys_are_named():
    meta = bpe_meta()
    del meta["tokenizer.ggml.merges"]
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.merges"):
        Tokenizer.from_metadata(meta)
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.tokens"):
        Tokenizer.from_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.model"):
        Tokenizer.from_metadata({})


def test_spm_malformed_byte_token():
    meta = spm_meta()
    tokens = list(meta["tokenizer.ggml.tokens"])
    tokens[3 + 0x41] = "<0xZZ>"
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.tokens.*<0xZZ>"):
        Tokenizer.from_metadata(dict(meta, **{"tokenizer.ggml.tokens": tokens}))


def test_duplicate_tokens_rejected():
    meta = spm_meta()
    tokens = list(meta["tokenizer.ggml.tokens"])
    tokens[-1] = "ab"
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.tokens.*duplicates"):
        Tokenizer.from_metadata(dict(meta, **{"tokenizer.ggml.tokens": tokens}))


def test_out_of_range_ids_rejected_on_decode(bpe):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([bpe.n_vocab])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.token_to_piece(-1)
