"""NgramDrafter: lookup on repetitive sequences, longest-suffix preference, trees from several occurrences,
the documented confidence, incremental index under appends and rollbacks, validation."""
from __future__ import annotations

import random

import pytest

from oracle_drafters import check_tree_invariants
from pipeinfer.drafters import DraftLimits, NgramDrafter


def _chain(d, ctx, n=8, **kw):
    return d.propose(ctx, DraftLimits(n_draft=n, **kw)).chain_tokens()


def test_periodic_sequence_is_continued_periodically():
    d = NgramDrafter()
    assert _chain(d, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2], 6) == [3, 4, 1, 2, 3, 4]
    # the continuation overlaps its own output when the match is close to the end
    assert _chain(d, [9, 7, 7, 7], 5) == [7, 7, 7, 7, 7]
    assert _chain(d, [5, 1, 2, 1, 2], 5) == [1, 2, 1, 2, 1]


def test_no_earlier_occurrence_gives_empty_tree():
    d = NgramDrafter()
    assert len(d.propose([1, 2, 3, 4], DraftLimits())) == 0
    assert len(d.propose([1], DraftLimits())) == 0
    assert len(d.propose([], DraftLimits())) == 0


def test_longest_matching_suffix_wins():
    # suffix (2, 3): followed by 9 at its only earlier occurrence; suffix (3,) alone was last followed by 5
    ctx = [1, 2, 3, 9, 8, 3, 5, 0, 2, 3]
    d = NgramDrafter(max_ngram=3)
    assert _chain(d, ctx, 2) == [9, 8]
    assert d.last_ngram == 2
    d1 = NgramDrafter(max_ngram=1)
    assert _chain(d1, ctx, 2) == [5, 0]
    assert d1.last_ngram == 1
    # min_ngram = 2 refuses single-token matches
    assert len(NgramDrafter(max_ngram=3, min_ngram=2).propose([4, 3, 5, 3], DraftLimits())) == 0


def test_most_recent_occurrence_and_confidence():
    # (1, 2) was followed by 7 then by 8; the most recent (8) leads; each has count 1 of 2 occurrences
    ctx = [1, 2, 7, 0, 1, 2, 8, 0, 1, 2]
    d = NgramDrafter(max_ngram=2)
    tree = d.propose(ctx, DraftLimits(n_draft=3))
    assert tree.chain_tokens() == [8, 0, 1]
    assert [n.p for n in tree.nodes] == pytest.approx([1 / 3, 1 / 2, 1 / 2])  # count / (parent count + 1)
    # agreement raises confidence: three occurrences all followed by 4
    tree = d.propose([1, 2, 4, 1, 2, 4, 1, 2, 4, 1, 2], DraftLimits(n_draft=1))
    assert tree.chain_tokens() == [4] and tree.nodes[0].p == pytest.approx(3 / 4)
    # smoothing 0: agreeing occurrences give probability 1
    assert NgramDrafter(smoothing=0.0).propose([3, 4, 3], DraftLimits(n_draft=1)).nodes[0].p == 1.0


def test_stop_rule_applies_to_the_confidence():
    ctx = [1, 2, 7, 0, 1, 2, 8, 0, 1, 2]
    d = NgramDrafter(max_ngram=2)
    assert len(d.propose(ctx, DraftLimits(n_draft=4, p_accept=0.4))) == 0  # 1/3 < 0.4
    assert len(d.propose(ctx, DraftLimits(n_draft=4, p_accept=0.3))) == 4


def test_distinct_occurrences_become_branches():
    ctx = [1, 2, 7, 5, 1, 2, 8, 6, 1, 2, 9, 4, 1, 2]
    d = NgramDrafter(max_ngram=2)
    lim = DraftLimits(n_draft=9, n_parallel=3, p_split=0.2)
    tree = d.propose(ctx, lim)
    check_tree_invariants(tree, lim)
    assert [tree.tokens(b) for b in tree.branches()] == [[9, 4, 1], [8, 6, 1], [7, 5, 1]]
    # fewer branches allowed: the most recent occurrences win
    tree = d.propose(ctx, DraftLimits(n_draft=9, n_parallel=2, p_split=0.2))
    assert [tree.tokens(b) for b in tree.branches()] == [[9, 4, 1, 2, 9], [8, 6, 1, 2]]
    # max_occurrences bounds what is combined
    tree = NgramDrafter(max_ngram=2, max_occurrences=1).propose(ctx, lim)
    assert len(tree.branches()) == 1 and tree.nodes[0].p == pytest.approx(0.5)


def test_branches_fork_where_occurrences_diverge():
    # both occurrences of (5,) continue with 6, then 1 vs 2
    ctx = [5, 6, 1, 0, 5, 6, 2, 0, 5]
    tree = NgramDrafter(max_ngram=1).propose(ctx, DraftLimits(n_draft=6, n_parallel=2, p_split=0.25))
    assert [tree.tokens(b) for b in tree.branches()] == [[6, 2, 0, 5], [6, 1, 0]]  # 6 nodes
    assert tree.children(0) == [1, 2]
    assert tree.nodes[0].p == pytest.approx(2 / 3)


def _fresh_tree(ctx, lim, **kw):
    return NgramDrafter(**kw).propose(ctx, lim)


@pytest.mark.parametrize("seed", range(10))
def test_incremental_index_equals_fresh_index_under_appends_and_rollbacks(seed):
    rng = random.Random(seed)
    kw = dict(max_ngram=rng.randint(1, 4), max_occurrences=rng.randint(1, 5))
    kw["min_ngram"] = rng.randint(1, kw["max_ngram"])
    d = NgramDrafter(**kw)
    ctx = [rng.randrange(4) for _ in range(10)]
    d.begin(ctx)
    for _ in range(40):
        lim = DraftLimits(n_draft=rng.randint(1, 8), n_parallel=rng.randint(1, 3), p_split=rng.choice([0.1, 0.3, 1.0]))
        tree = d.propose(ctx, lim)
        check_tree_invariants(tree, lim)
        assert tree.nodes == _fresh_tree(ctx, lim, **kw).nodes
        r = rng.random()
        if r < 0.6:
            ctx = ctx + tree.chain_tokens()[: rng.randint(0, 3)] + [rng.randrange(4)]
        elif r < 0.8:
            ctx = ctx[: rng.randint(0, len(ctx))]
        else:
            ctx = [rng.randrange(4) for _ in range(rng.randint(0, 12))]
    # after everything, the index holds exactly the n-grams of the final context
    fresh = NgramDrafter(**kw)
    fresh.begin(ctx)
    d.propose(ctx, DraftLimits())
    assert d._index == fresh._index


def test_long_context_appends_are_incremental():
    d = NgramDrafter(max_ngram=3)
    rng = random.Random(0)
    ctx = [rng.randrange(50) for _ in range(20000)]
    d.begin(ctx)
    n_keys = len(d._index)
    ctx.append(1)
    d.propose(ctx, DraftLimits())
    assert len(d._tokens) == 20001
    assert len(d._index) - n_keys <= 3  # one token added at most three new n-gram keys


@pytest.mark.parametrize(
    "kw, field",
    [(dict(max_ngram=0), "max_ngram"), (dict(min_ngram=0), "min_ngram"), (dict(max_ngram=2, min_ngram=3), "min_ngram"),
     (dict(max_occurrences=0), "max_occurrences"), (dict(smoothing=-1.0), "smoothing"), (dict(n_vocab=0), "n_vocab")],
)
def test_constructor_validation(kw, field):
    with pytest.raises(ValueError, match=field):
        NgramDrafter(**kw)


def test_propose_validation():
    d = NgramDrafter(n_vocab=10)
    with pytest.raises(ValueError, match="context holds token id 10"):
        d.propose([1, 10], DraftLimits())
    with pytest.raises(TypeError, match="DraftLimits"):
        d.propose([1, 2], None)
    assert NgramDrafter().n_vocab is None
