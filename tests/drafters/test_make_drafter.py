"""make_drafter for every spec form, CallableDrafter (llama-cpp-python LlamaDraftModel shape), and the
test-only OracleDrafter / WrongDrafter."""
from __future__ import annotations

import numpy as np
import pytest

from oracle_drafters import OracleDrafter, WrongDrafter
from pipeinfer import _core
from pipeinfer.drafters import (
    CallableDrafter,
    Drafter,
    DraftLimits,
    ModelDrafter,
    NgramDrafter,
    make_drafter,
)

PROMPT = [5, 6, 7, 8, 9, 40, 41, 42]


def test_none_gives_none():
    assert make_drafter(None) is None


@pytest.mark.parametrize("spec, n", [("ngram", 3), ("ngram:1", 1), ("ngram:5", 5)])
def test_ngram_specs(spec, n):
    d = make_drafter(spec)
    assert isinstance(d, NgramDrafter) and d.max_ngram == n and d.n_vocab is None
    assert d.propose([1, 2, 1], DraftLimits(n_draft=2)).chain_tokens() == [2, 1]


def test_ngram_keyword_arguments_and_target_vocab():
    d = make_drafter("ngram:4", {"tokenizer.ggml.tokens": ["a"] * 50}, min_ngram=2, max_occurrences=3)
    assert (d.max_ngram, d.min_ngram, d.max_occurrences, d.n_vocab) == (4, 2, 3, 50)


@pytest.mark.parametrize("spec", ["ngram:", "ngram:0", "ngram:x", "ngram:-2"])
def test_bad_ngram_specs(spec):
    with pytest.raises(ValueError, match="ngram"):
        make_drafter(spec)


def test_ngram_size_given_twice():
    with pytest.raises(ValueError, match="max_ngram"):
        make_drafter("ngram:2", max_ngram=3)


def test_model_path_with_vocab_check(tiny_model):
    path, model = tiny_model("llama", "f32")
    target_path, _ = tiny_model("qwen2", "f32")  # same synthetic BPE vocabulary
    target_meta = _core.GGUFFile(str(target_path)).metadata()
    for spec in (path, str(path)):
        d = make_drafter(spec, target_meta, n_ctx=32, max_branches=2)
        try:
            assert isinstance(d, ModelDrafter)
            assert d.n_ctx == 32 and d.max_branches == 2 and d.n_vocab == model.n_vocab
            assert d.metadata["tokenizer.ggml.tokens"] == target_meta["tokenizer.ggml.tokens"]
            assert len(d.propose(PROMPT, DraftLimits(n_draft=3))) == 3
        finally:
            d.close()


def test_model_path_with_incompatible_vocab(tiny_model):
    path, _ = tiny_model("llama", "f32")
    spm_path, _ = tiny_model("llama", "f32", vocab="spm")
    with pytest.raises(ValueError, match="tokenizers differ"):
        make_drafter(path, _core.GGUFFile(str(spm_path)).metadata())


def test_unknown_model_name():
    with pytest.raises(ValueError, match="not-a-model"):
        make_drafter("not-a-model")


def test_existing_drafter_is_returned():
    d = NgramDrafter()
    assert make_drafter(d) is d
    with pytest.raises(ValueError, match="existing Drafter"):
        make_drafter(d, n_ctx=4)


def test_plain_callable():
    seen = []

    def draft(tokens):
        seen.append(tokens)
        return [int(tokens[-1]) + 1, int(tokens[-1]) + 2, int(tokens[-1]) + 3]

    d = make_drafter(draft)
    assert isinstance(d, CallableDrafter)
    tree = d.propose([3, 4], DraftLimits(n_draft=2))
    assert tree.chain_tokens() == [5, 6] and [n.p for n in tree.nodes] == [1.0, 1.0]
    assert seen[0].dtype == np.intc and seen[0].tolist() == [3, 4]
    assert len(d.propose([3, 4], DraftLimits(n_draft=0))) == 0


class PromptLookup:
    """A LlamaDraftModel-shaped object (llama-cpp-python: __call__(input_ids, /, **kwargs) -> ndarray)."""

    def __init__(self, max_ngram_size=2, num_pred_tokens=10):
        self.max_ngram_size, self.num_pred_tokens = max_ngram_size, num_pred_tokens

    def __call__(self, input_ids, /, **kwargs):
        ids = input_ids.tolist()
        for n in range(self.max_ngram_size, 0, -1):
            tail = ids[-n:]
            for start in range(len(ids) - n - 1, -1, -1):
                if ids[start:start + n] == tail:
                    return np.asarray(ids[start + n:start + n + self.num_pred_tokens], dtype=np.intc)
        return np.zeros(0, dtype=np.intc)


def test_llama_draft_model_shaped_object():
    d = make_drafter(PromptLookup(), {"tokenizer.ggml.tokens": ["t"] * 100}, p=0.6)
    assert isinstance(d, CallableDrafter) and d.n_vocab == 100
    tree = d.propose([1, 2, 3, 9, 1, 2], DraftLimits(n_draft=3))
    assert tree.chain_tokens() == [3, 9, 1] and tree.nodes[0].p == 0.6
    assert len(d.propose([1, 2, 3, 9, 1, 2], DraftLimits(n_draft=3, p_accept=0.7))) == 0
    assert len(d.propose([1, 2, 3], DraftLimits(n_draft=3))) == 0


def test_callable_output_validation():
    with pytest.raises(ValueError, match="token id 7"):
        CallableDrafter(lambda t: [7], n_vocab=5).propose([1], DraftLimits())
    with pytest.raises(ValueError, match="non-integer"):
        CallableDrafter(lambda t: [1.5]).propose([1], DraftLimits())
    with pytest.raises(ValueError, match="p must be"):
        CallableDrafter(lambda t: [1], p=1.5)


@pytest.mark.parametrize("spec", [3, 2.5, b"ngram", object()])
def test_unsupported_spec_types(spec):
    with pytest.raises(TypeError, match="draft spec"):
        make_drafter(spec)


def test_drafters_are_drafters():
    assert issubclass(ModelDrafter, Drafter) and issubclass(NgramDrafter, Drafter)
    assert issubclass(CallableDrafter, Drafter) and issubclass(OracleDrafter, Drafter)


# ------------------------------------------------------------------------------------- test-only drafters

TRUTH = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_oracle_drafter_proposes_the_truth():
    d = OracleDrafter(TRUTH)
    assert make_drafter(d) is d
    assert d.propose(TRUTH[:3], DraftLimits(n_draft=4)).chain_tokens() == [4, 5, 6, 7]
    assert d.propose(TRUTH[:8], DraftLimits(n_draft=4)).chain_tokens() == [9, 0]
    assert len(d.propose(TRUTH, DraftLimits(n_draft=4))) == 0
    assert len(d.propose([1, 2, 9], DraftLimits(n_draft=4))) == 0  # not on the true path
    assert len(OracleDrafter(TRUTH, p=0.3).propose(TRUTH[:3], DraftLimits(p_accept=0.5))) == 0
    assert len(d.propose(TRUTH[:3], DraftLimits(n_draft=2, n_parallel=3)).branches()) == 1


def test_wrong_drafter_differs_everywhere():
    d = WrongDrafter(TRUTH)
    for n in range(len(TRUTH)):
        got = d.propose(TRUTH[:n], DraftLimits(n_draft=5)).chain_tokens()
        want = TRUTH[n:n + 5]
        assert len(got) == len(want)
        assert all(g != w and 0 <= g < d.n_vocab for g, w in zip(got, want))
    # with an explicit vocabulary the largest id wraps to 0
    assert WrongDrafter([3, 4], n_vocab=5).propose([3], DraftLimits()).chain_tokens() == [0]
    with pytest.raises(ValueError, match="n_vocab"):
        WrongDrafter([0], n_vocab=1)
