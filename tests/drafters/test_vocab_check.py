"""check_vocab: identical vocabularies pass, padding differences are tolerated, real differences are named
(token id and both texts, or the special id); real Qwen draft/target pair passes, SmolLM2 vs Qwen fails."""
from __future__ import annotations

import numpy as np
import pytest

from pipeinfer import _core
from pipeinfer.drafters import check_vocab, is_padding_token

NORMAL, CONTROL, UNUSED = 1, 3, 5


def _meta(tokens, types=None, bos=0, eos=1, model="gpt2", **extra):
    m = {
        "tokenizer.ggml.model": model,
        "tokenizer.ggml.tokens": list(tokens),
        "tokenizer.ggml.token_type": np.asarray(types if types is not None else [NORMAL] * len(tokens), np.int32),
        "tokenizer.ggml.bos_token_id": bos,
        "tokenizer.ggml.eos_token_id": eos,
    }
    m.update(extra)
    return m


BASE = ["<s>", "</s>", "a", "b", "ab", "Ġthe"]


def test_identical_vocabularies_pass():
    check_vocab(_meta(BASE), _meta(BASE))


@pytest.mark.parametrize(
    "extra, extra_types",
    [
        (["[PAD6]", "[PAD7]"], [UNUSED, UNUSED]),
        (["<|PAD_TOKEN|>"], [CONTROL]),  # padding by name
        (["x", "y"], [UNUSED, UNUSED]),  # marked unused by the tokenizer
        (["<pad>", "[PAD]"], [NORMAL, NORMAL]),
    ],
)
@pytest.mark.parametrize("larger", ["target", "draft"])
def test_padding_tail_is_tolerated(extra, extra_types, larger):
    small = _meta(BASE)
    big = _meta(BASE + extra, [NORMAL] * len(BASE) + extra_types)
    if larger == "target":
        check_vocab(big, small)
    else:
        check_vocab(small, big)


def test_differently_named_padding_at_the_same_id_is_tolerated():
    t = _meta(BASE + ["[PAD6]"], [NORMAL] * 6 + [UNUSED])
    d = _meta(BASE + ["<|PAD_TOKEN|>"], [NORMAL] * 6 + [CONTROL])
    check_vocab(t, d)


def test_first_differing_token_is_named():
    d = _meta(["<s>", "</s>", "a", "B", "ab", "x"])
    with pytest.raises(ValueError, match=r"token id 3: target 'b', draft 'B'"):
        check_vocab(_meta(BASE), d)


def test_non_padding_tail_fails():
    big = _meta(BASE + ["[PAD6]", "hello"], [NORMAL] * 6 + [UNUSED, NORMAL])
    with pytest.raises(ValueError, match=r"draft's extra token id 7 'hello'.*not padding"):
        check_vocab(_meta(BASE), big)
    with pytest.raises(ValueError, match=r"target 8 tokens, draft 6"):
        check_vocab(big, _meta(BASE))


@pytest.mark.parametrize(
    "kw, name",
    [(dict(bos=2), "bos"), (dict(eos=3), "eos"),
     ({"tokenizer.ggml.add_bos_token": True}, "add_bos_token")],
)
def test_special_ids_are_compared(kw, name):
    t = _meta(BASE, **{"tokenizer.ggml.add_bos_token": False})
    d = _meta(BASE, **{"tokenizer.ggml.add_bos_token": False, **{k: v for k, v in kw.items() if "." in k}},
              **{k: v for k, v in kw.items() if "." not in k})
    with pytest.raises(ValueError, match=rf"\b{name}\b.*differ: target .*, draft "):
        check_vocab(t, d)


def test_special_id_missing_on_one_side_is_not_compared():
    d = _meta(BASE)
    del d["tokenizer.ggml.bos_token_id"]
    check_vocab(_meta(BASE), d)


def test_tokenizer_kind_and_missing_tokens():
    with pytest.raises(ValueError, match=r"tokenizer\.ggml\.model is 'gpt2', draft 'llama'"):
        check_vocab(_meta(BASE), _meta(BASE, model="llama"))
    with pytest.raises(ValueError, match="draft model's metadata has no tokenizer.ggml.tokens"):
        check_vocab(_meta(BASE), {"general.architecture": "llama"})


def test_is_padding_token():
    assert is_padding_token("[PAD151931]", UNUSED)
    assert is_padding_token("<|PAD_TOKEN|>", CONTROL)
    assert is_padding_token("<unused12>", None)
    assert is_padding_token("anything", UNUSED)
    assert is_padding_token("[PAD]", NORMAL) and is_padding_token("<pad>", NORMAL)
    assert not is_padding_token("pads", NORMAL)  # a padding name must be bracketed
    assert not is_padding_token("padding", NORMAL)
    assert not is_padding_token("<|endoftext|>", CONTROL)
    assert not is_padding_token("Ġpadding", NORMAL)


def test_synthetic_models(tiny_model):
    bpe_llama, _ = tiny_model("llama", "f32")
    bpe_qwen, _ = tiny_model("qwen2", "f32")
    spm, _ = tiny_model("llama", "f32", vocab="spm")
    meta = {p: _core.GGUFFile(str(p)).metadata() for p in (bpe_llama, bpe_qwen, spm)}
    check_vocab(meta[bpe_llama], meta[bpe_qwen])
    with pytest.raises(ValueError, match="tokenizers differ"):
        check_vocab(meta[bpe_llama], meta[spm])


@pytest.mark.realmodel
def test_real_qwen_draft_matches_its_target(real_model_path):
    draft = _core.GGUFFile(str(real_model_path("qwen2.5-coder-0.5b"))).metadata()
    target = _core.GGUFFile(str(real_model_path("qwen2.5-coder-1.5b"))).metadata()
    check_vocab(target, draft)


@pytest.mark.realmodel
def test_real_smollm2_cannot_draft_for_qwen(real_model_path):
    draft = _core.GGUFFile(str(real_model_path("smollm2-135m"))).metadata()
    target = _core.GGUFFile(str(real_model_path("qwen2.5-coder-1.5b"))).metadata()
    with pytest.raises(ValueError, match=r"token id 0: target '!', draft '<\|endoftext\|>'"):
        check_vocab(target, draft)
