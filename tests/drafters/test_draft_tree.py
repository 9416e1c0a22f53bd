"""DraftTree / DraftLimits structure and validation, and grow_tree's stop, split and size rules on
hand-made candidate functions (no model)."""
from __future__ import annotations

import random

import pytest

from oracle_drafters import check_tree_invariants, reference_draft_tree
from pipeinfer.drafters import DraftLimits, DraftNode, DraftTree, grow_tree


def _tree(*pairs):
    return DraftTree([DraftNode(t, parent, 1.0) for t, parent in pairs])


# ------------------------------------------------------------------------------------------ DraftTree


def test_empty_tree():
    t = DraftTree([])
    assert len(t) == 0 and t.branches() == [] and t.chain_tokens() == []


def test_chain_tree_branches_depth_and_tokens():
    t = DraftTree.chain([7, 8, 9], p=[0.9, 0.8, 0.7])
    assert [nd.parent for nd in t.nodes] == [-1, 0, 1]
    assert t.branches() == [[0, 1, 2]]
    assert [t.depth(i) for i in range(3)] == [1, 2, 3]
    assert t.chain_tokens() == [7, 8, 9]
    assert [nd.p for nd in t] == [0.9, 0.8, 0.7]


def test_branches_follow_first_child_first():
    # tip -> 0 (a) -> 2 (c) -> 4 (e); tip -> 1 (b); 0 -> 3 (d)
    t = _tree((10, -1), (11, -1), (12, 0), (13, 0), (14, 2))
    assert t.branches() == [[0, 2, 4], [0, 3], [1]]
    assert t.children(-1) == [0, 1] and t.children(0) == [2, 3]
    assert t.path(4) == [0, 2, 4]
    assert t.tokens(t.branches()[1]) == [10, 13]


@pytest.mark.parametrize("parent", [1, 5, -2])
def test_tree_rejects_parent_not_earlier(parent):
    assert DraftTree([DraftNode(1, -1, 1.0), DraftNode(2, 0, 1.0)]).branches() == [[0, 1]]
    with pytest.raises(ValueError, match=r"nodes\[1\]\.parent"):
        DraftTree([DraftNode(1, -1, 1.0), DraftNode(2, parent, 1.0)])
    with pytest.raises(ValueError, match=r"nodes\[0\]\.parent"):
        DraftTree([DraftNode(1, 0, 1.0)])


def test_chain_rejects_wrong_number_of_probabilities():
    with pytest.raises(ValueError, match="p has 1 entries"):
        DraftTree.chain([1, 2], p=[0.5])


# ---------------------------------------------------------------------------------------- DraftLimits


def test_limits_defaults():
    lim = DraftLimits()
    assert (lim.n_draft, lim.n_parallel, lim.p_accept, lim.p_split) == (4, 1, 0.0, 1.0)


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(n_draft=-1), "n_draft"),
        (dict(n_draft=2.5), "n_draft"),
        (dict(n_draft=True), "n_draft"),
        (dict(n_parallel=0), "n_parallel"),
        (dict(p_accept=float("nan")), "p_accept"),
        (dict(p_accept="0.5"), "p_accept"),
        (dict(p_split=None), "p_split"),
    ],
)
def test_limits_validation_names_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        DraftLimits(**kw)


# ------------------------------------------------------------------------------------------ grow_tree


def _table_expand(table, calls=None):
    """expand() over a dict: tuple(path tokens) -> candidates; paths are rebuilt from the leaves."""
    paths = {-1: ()}

    def expand(leaves):
        if calls is not None:
            calls.append([lf.node for lf in leaves])
        out = []
        for lf in leaves:
            paths[lf.node] = paths[lf.parent] + (lf.token,)
            out.append(table.get(paths[lf.node], []))
        return out

    return expand


def test_stop_rule_stops_a_branch_below_p_accept():
    table = {(1,): [(2, 0.6)], (1, 2): [(3, 0.3)], (1, 2, 3): [(4, 0.9)]}
    tree = grow_tree(DraftLimits(n_draft=10, p_accept=0.5), [(1, 0.9)], _table_expand(table))
    assert tree.chain_tokens() == [1, 2]  # 3 has p 0.3 < 0.5
    assert grow_tree(DraftLimits(n_draft=10, p_accept=0.95), [(1, 0.9)], _table_expand(table)).nodes == []
    # p equal to p_accept does not stop
    assert len(grow_tree(DraftLimits(n_draft=10, p_accept=0.3), [(1, 0.9)], _table_expand(table))) == 4


def test_split_rule_forks_only_above_p_split_and_up_to_n_parallel():
    root = [(1, 0.5), (2, 0.3), (3, 0.15), (4, 0.05)]
    table = {(1,): [(11, 0.9)], (2,): [(21, 0.9)], (3,): [(31, 0.9)]}
    lim = DraftLimits(n_draft=20, n_parallel=4, p_split=0.1)
    tree = grow_tree(lim, root, _table_expand(table))
    assert [tree.tokens(b) for b in tree.branches()] == [[1, 11], [2, 21], [3, 31]]
    # strictly greater: p_split = 0.15 excludes token 3
    tree = grow_tree(DraftLimits(n_draft=20, n_parallel=4, p_split=0.15), root, _table_expand(table))
    assert [tree.tokens(b) for b in tree.branches()] == [[1, 11], [2, 21]]
    # n_parallel bounds the branches
    tree = grow_tree(DraftLimits(n_draft=20, n_parallel=2, p_split=0.1), root, _table_expand(table))
    assert [tree.tokens(b) for b in tree.branches()] == [[1, 11], [2, 21]]
    # default p_split = 1.0: never forks
    assert grow_tree(DraftLimits(n_draft=20, n_parallel=4), root, _table_expand(table)).branches() == [[0, 1]]


def test_size_cap_counts_all_branches_and_skips_needless_expansion():
    root = [(1, 0.5), (2, 0.4)]
    table = {(1,): [(11, 0.9)], (2,): [(21, 0.9)], (1, 11): [(12, 0.9)], (2, 21): [(22, 0.9)]}
    calls = []
    tree = grow_tree(DraftLimits(n_draft=3, n_parallel=2, p_split=0.3), root, _table_expand(table, calls))
    assert len(tree) == 3
    assert [tree.tokens(b) for b in tree.branches()] == [[1, 11], [2]]
    assert calls == [[0, 1]]  # the last node (11) was not expanded: drafting ended at the cap
    assert grow_tree(DraftLimits(n_draft=0), root, _table_expand(table)).nodes == []


def test_max_depth_limits_depth():
    table = {(1,) * k: [(1, 0.9)] for k in range(1, 10)}
    tree = grow_tree(DraftLimits(n_draft=10), [(1, 0.9)], _table_expand(table), max_depth=3)
    assert len(tree) == 3


def _random_table(rng: random.Random, n_vocab: int = 6, k: int = 4):
    cache = {}

    def cands(path):
        if path not in cache:
            w = [rng.random() ** 3 for _ in range(n_vocab)]
            s = sum(w)
            order = sorted(range(n_vocab), key=lambda t: (-w[t], t))[:k]
            cache[path] = [(t, w[t] / s) for t in order]
        return cache[path]

    return cands


@pytest.mark.parametrize("seed", range(30))
def test_grow_tree_matches_reference_rules_and_invariants(seed):
    import numpy as np

    rng = random.Random(seed)
    cands = _random_table(rng)
    lim = DraftLimits(n_draft=rng.randint(1, 12), n_parallel=rng.randint(1, 4),
                      p_accept=rng.choice([0.0, 0.1, 0.2, 0.3]), p_split=rng.choice([0.05, 0.1, 0.2, 1.0]))
    paths = {-1: ()}

    def expand(leaves):
        out = []
        for lf in leaves:
            paths[lf.node] = paths[lf.parent] + (lf.token,)
            out.append(cands(paths[lf.node]))
        return out

    tree = grow_tree(lim, cands(()), expand)
    check_tree_invariants(tree, lim)

    def next_probs(path):
        p = np.zeros(6)
        for t, q in cands(tuple(path)):
            p[t] = q
        return p

    want, _ = reference_draft_tree(next_probs, lim, k=4)
    assert tree.nodes == want.nodes
