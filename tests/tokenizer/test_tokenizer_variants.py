"""Tokenizer against llama.cpp on vocabulary-only models (tests/data, made by scripts/make_reference.py):
the SmolLM2 vocabulary under other tokenizer.ggml.pre values (each pre type's regexes and options), and
a small SentencePiece-style vocabulary stored in the data file (score merging, byte fallback, space
prefix, special tokens)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeinfer.tokenizer import Tokenizer

DATA = Path(__file__).resolve().parents[1] / "data"


def _load(name: str) -> dict:
    path = DATA / name  # committed with the tests (tests/data/README.md)
    return json.loads(path.read_text(encoding="utf-8"))


def _check_cases(tok: Tokenizer, cases) -> list:
    """Returns the mismatches between our tokenizer and llama.cpp for reference cases."""
    bad = []
    for case in cases:
        text = case["text"]
        for key, want in case["ids"].items():
            add_bos, special = key.startswith("add_bos=1"), key.endswith("special=1")
            got = tok.encode(text, add_special=add_bos, parse_special=special)
            if got != want:
                bad.append((text, key, want, got))
        full = next(iter(case["ids"].values()))
        for field, args in (("detok_keep_special_hex", (False, True)), ("detok_skip_special_hex", (True, False))):
            want = text.encode("utf-8") if case[field] is None else bytes.fromhex(case[field])
            got = tok.detokenize(full, *args)
            if got != want:
                bad.append((text, field, want, got))
    return bad


@pytest.fixture(scope="module")
def smollm_meta(real_model_path):
    path = real_model_path("smollm2-135m")
    try:
        from pipeinfer import _core

        return _core.GGUFFile(str(path)).metadata()
    except (ImportError, AttributeError):
        from gguf_meta import read_metadata

        return read_metadata(path)


PRE_TYPES = ["gpt-2", "llama-bpe", "deepseek-coder", "falcon", "starcoder", "", "stablelm2", "bloom",
             "poro-chat", "viking", "tekken", "gpt-4o", "chatglm-bpe", "glm4", "seed-coder", "bailingmoe",
             "command-r", "qwen35", "ufakzeka"]


@pytest.mark.realmodel
@pytest.mark.parametrize("pre", PRE_TYPES)
def test_pre_types_equal_llama_cpp(smollm_meta, pre):
    ref = _load("tokens_pretypes.json")
    assert pre in ref["pre_types"], f"tests/data/tokens_pretypes.json has no reference for pre type {pre!r}"
    meta = dict(smollm_meta)
    meta.pop("tokenizer.ggml.pre", None)
    if pre:
        meta["tokenizer.ggml.pre"] = pre
    # the reference files were written with these ids and flags only
    for key in ("tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.add_space_prefix"):
        meta.pop(key, None)
    tok = Tokenizer.from_metadata(meta)
    bad = _check_cases(tok, ref["pre_types"][pre])
    assert not bad, f"pre {pre!r}: {len(bad)} mismatches, first: {bad[0]}"


@pytest.mark.parametrize("variant", ["default", "no_space_prefix"])
def test_synthetic_spm_equals_llama_cpp(variant):
    ref = _load("tokens_synthetic_spm.json")
    vocab = ref["vocab"]
    meta = {
        "tokenizer.ggml.model": vocab["model"],
        "tokenizer.ggml.tokens": vocab["tokens"],
        "tokenizer.ggml.token_type": np.array(vocab["token_type"], dtype=np.int32),
        "tokenizer.ggml.scores": np.array(vocab["scores"], dtype=np.float32),
    }
    for key, value in ref["variants"][variant]["flags"].items():
        meta[f"tokenizer.ggml.{key}"] = value
    tok = Tokenizer.from_metadata(meta)
    cases = ref["variants"][variant]["cases"]
    assert len(cases) >= 40
    bad = _check_cases(tok, cases)
    assert not bad, f"{len(bad)} mismatches, first: {bad[0]}"
    # the vocabulary really exercises byte fallback and multi-character merges
    byte_ids = {i for i, t in enumerate(vocab["token_type"]) if t == 6}
    all_ids = [i for c in cases for ids in c["ids"].values() for i in ids]
    assert byte_ids & set(all_ids)
    assert any(len(vocab["tokens"][i]) >= 3 and i not in byte_ids for i in all_ids)
