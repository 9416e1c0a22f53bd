"""Tokenizer of the real models against llama.cpp's own output (tests/data, made by
scripts/make_reference.py with llama-cpp-python): ids, piece bytes, detokenized bytes, end-of-generation
set and token attributes, plus streaming reassembly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeinfer.tokenizer import TokenAttr, Tokenizer

DATA = Path(__file__).resolve().parents[1] / "data"
MODELS = ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"]

pytestmark = pytest.mark.realmodel


def _reference(name: str, kind: str) -> dict:
    path = DATA / f"{kind}_{name}.json"  # committed with the tests (tests/data/README.md)
    return json.loads(path.read_text(encoding="utf-8"))


def _metadata(path):
    """GGUF metadata through the C++ reader."""
    from pipeinfer import _core

    return _core.GGUFFile(str(path)).metadata()


@pytest.fixture(scope="module", params=MODELS)
def model(request, real_model_path):
    """(name, Tokenizer from the model's GGUF metadata, token reference)."""
    name = request.param
    ref = _reference(name, "tokens")
    path = real_model_path(name)
    return name, Tokenizer.from_metadata(_metadata(path)), ref


def test_gguf_py_adapter_agrees_with_core_reader(real_model_path):
    """tests/support/gguf_meta.py gives the same tokenizer as the C++ GGUF reader (SmolLM2: small)."""
    from pipeinfer import _core as core
    from gguf_meta import read_metadata

    path = real_model_path("smollm2-135m")
    a, b = read_metadata(path), core.GGUFFile(str(path)).metadata()
    keys = sorted(k for k in a if k.startswith("tokenizer.ggml."))
    assert keys == sorted(k for k in b if k.startswith("tokenizer.ggml."))
    for k in keys:
        va, vb = a[k], b[k]
        if hasattr(va, "dtype"):
            assert va.dtype == vb.dtype and (va == vb).all(), k
        else:
            assert va == vb and type(va) is type(vb), k


def _combos(case):
    for key, ids in case["ids"].items():
        add_bos = key.startswith("add_bos=1")
        special = key.endswith("special=1")
        yield add_bos, special, ids


def test_ids_equal_llama_cpp(model):
    _, tok, ref = model
    mismatches = []
    for case in ref["cases"]:
        for add_bos, special, want in _combos(case):
            got = tok.encode(case["text"], add_special=add_bos, parse_special=special)
            if got != want:
                mismatches.append((case["text"], add_bos, special, want, got))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
    assert len(ref["cases"]) >= 40


def test_vocab_flags_equal_llama_cpp(model):
    _, tok, ref = model
    assert tok.n_vocab == ref["n_vocab"]
    assert (tok.bos_id, tok.eos_id) == (ref["bos_id"], ref["eos_id"])
    # llama.cpp picks eot among several candidate texts in hash-map order; only membership is stable
    assert tok.eot_id in ref["eog_ids"] and ref["eot_id"] in ref["eog_ids"]
    assert (tok.add_bos, tok.add_eos) == (ref["add_bos"], ref["add_eos"])
    assert sorted(tok.eog_ids) == ref["eog_ids"]
    assert all(tok.is_eog(t) for t in ref["eog_ids"])


def test_token_attributes_equal_llama_cpp(model):
    _, tok, ref = model
    want = {int(k): v for k, v in ref["attrs_not_normal"].items()}
    wrong = [(t, want.get(t, TokenAttr.NORMAL), tok.token_attr(t)) for t in range(tok.n_vocab)
             if tok.token_attr(t) != want.get(t, TokenAttr.NORMAL)]
    assert not wrong, f"{len(wrong)} tokens differ (id, llama.cpp, ours): {wrong[:5]}"


def test_piece_bytes_equal_llama_cpp(model):
    _, tok, ref = model
    for key, (with_special, without_special) in ref["pieces_hex"].items():
        t = int(key)
        assert tok.token_to_piece(t, special=True) == bytes.fromhex(with_special), t
        assert tok.token_to_piece(t, special=False) == bytes.fromhex(without_special), t


def test_detokenize_equal_llama_cpp(model):
    _, tok, ref = model
    for case in ref["cases"]:
        ids = case["ids"]["add_bos=1,special=1"]
        assert tok.detokenize(ids, remove_special=False, unparse_special=True) == bytes.fromhex(
            case["detok_keep_special_hex"]), case["text"]
        assert tok.detokenize(ids, remove_special=True, unparse_special=False) == bytes.fromhex(
            case["detok_skip_special_hex"]), case["text"]


def test_stream_decode_reassembles_text(model):
    _, tok, ref = model
    for case in ref["cases"]:
        ids = case["ids"]["add_bos=0,special=0"]  # plain text: byte-level BPE is lossless
        dec = tok.stream_decoder()
        parts = [dec.feed(t) for t in ids]
        parts.append(dec.flush())
        assert "".join(parts) == case["text"]
        assert not any("\ufffd" in p for p in parts), case["text"]  # no character was cut in two


def test_greedy_prompts_tokenize_alike(model):
    name, tok, _ = model
    greedy = _reference(name, "greedy")
    for run in greedy["runs"]:
        assert tok.encode(run["prompt"]) == run["prompt_ids"]
        assert len(run["generated_ids"]) == greedy["settings"]["n_generated"]
        assert tok.detokenize(run["generated_ids"]) == bytes.fromhex(run["text_hex"])
