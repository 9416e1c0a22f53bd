"""NoisyDrafter corrupts each drafted token with the requested probability, reproducibly."""
from __future__ import annotations

import pytest

from pipeinfer.drafters import DraftLimits, DraftNode, Drafter, DraftTree, NoisyDrafter
from pipeinfer.evaluation.drafting import ReplayDrafter, build_drafter, drafter_label

TRUTH = list(range(100, 400))


def _corruption_rate(error_rate: float, seed: int = 0) -> float:
    d = NoisyDrafter(ReplayDrafter(TRUTH, n_vocab=1000), error_rate, seed)
    wrong = total = 0
    for n in range(10, 250):
        tree = d.propose(TRUTH[:n], DraftLimits(n_draft=4))
        assert len(tree) == 4
        for i, nd in enumerate(tree.nodes):
            total += 1
            wrong += nd.token != TRUTH[n + i]
            assert 0 <= nd.token < 1000
    assert d.n_proposed == total and d.n_corrupted == wrong
    return wrong / total


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_error_rate_is_the_fraction_of_corrupted_tokens(rate):
    # 960 tokens: binomial standard deviation <= 0.017, so 0.06 is > 3.5 sigma
    assert _corruption_rate(rate) == pytest.approx(rate, abs=0.06)


def test_same_seed_same_trees_other_seed_differs():
    a = NoisyDrafter(ReplayDrafter(TRUTH, 1000), 0.5, seed=1)
    b = NoisyDrafter(ReplayDrafter(TRUTH, 1000), 0.5, seed=1)
    c = NoisyDrafter(ReplayDrafter(TRUTH, 1000), 0.5, seed=2)
    ta = [a.propose(TRUTH[:n], DraftLimits(n_draft=4)).nodes for n in range(10, 60)]
    assert ta == [b.propose(TRUTH[:n], DraftLimits(n_draft=4)).nodes for n in range(10, 60)]
    assert ta != [c.propose(TRUTH[:n], DraftLimits(n_draft=4)).nodes for n in range(10, 60)]


class _Forked(Drafter):
    n_vocab = 2

    def propose(self, context, limits):
        return DraftTree([DraftNode(0, -1, 0.6), DraftNode(1, -1, 0.4), DraftNode(1, 0, 0.5)])


def test_tree_shape_kept_and_sibling_tokens_stay_distinct():
    d = NoisyDrafter(_Forked(), 1.0, seed=0)  # with 2 tokens every corruption swaps 0 <-> 1
    tree = d.propose([0], DraftLimits(n_draft=3, n_parallel=2))
    assert [nd.token for nd in tree.nodes] == [1, 0, 0]
    assert [nd.parent for nd in tree.nodes] == [-1, -1, 0]
    assert [nd.p for nd in tree.nodes] == [0.6, 0.4, 0.5]


def test_argument_checks():
    base = ReplayDrafter(TRUTH, 1000)
    with pytest.raises(ValueError, match="error_rate"):
        NoisyDrafter(base, 1.5)
    with pytest.raises(ValueError, match="base"):
        NoisyDrafter(object(), 0.1)
    with pytest.raises(ValueError, match="seed"):
        NoisyDrafter(base, 0.1, seed=1.5)

    class NoVocab(Drafter):
        def propose(self, context, limits):
            return DraftTree([])

    with pytest.raises(ValueError, match="n_vocab"):
        NoisyDrafter(NoVocab(), 0.1)
    assert NoisyDrafter(NoVocab(), 0.1, n_vocab=10).n_vocab == 10


def test_drafter_specs():
    meta = {"tokenizer.ggml.tokens": ["a"] * 1000}
    assert build_drafter(None, meta) is None
    d = build_drafter({"kind": "replay", "truth": TRUTH, "error_rate": 0.25, "seed": 3}, meta)
    assert isinstance(d, NoisyDrafter) and d.error_rate == 0.25 and d.n_vocab == 1000
    assert drafter_label({"kind": "replay", "error_rate": 0.25}) == "oracle+noise0.25"
    assert drafter_label({"kind": "ngram"}) == "ngram"
    with pytest.raises(ValueError, match="kind"):
        build_drafter({"kind": "magic"}, meta)
