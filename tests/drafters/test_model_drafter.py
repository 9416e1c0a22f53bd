"""ModelDrafter on tiny synthetic models: greedy chains, stop/split rules against an independent float64
reference, KV reuse (identical trees to recomputing everything, fewer evaluations, consistent cache),
context-length limits and argument validation."""
from __future__ import annotations

import random

import numpy as np
import pytest

from oracle_drafters import check_tree_invariants, reference_draft_tree, softmax64
from pipeinfer import _core
from pipeinfer.drafters import DraftLimits, ModelDrafter, NgramDrafter, make_drafter
from reference_forward import reference_forward, reference_greedy

PROMPT = [5, 6, 7, 8, 9, 40, 41, 42]
# engine (f32 weights, f16-precision KV) vs float64 reference probabilities: relative, because a value that
# lands on the other side of an f16 rounding boundary moves a logit by ~1e-5
P_RTOL = 1e-4
MARGIN = 1e-5  # every stop/split/top-1 decision of a compared tree must be this far from a tie


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request, tiny_model):
    return tiny_model(request.param, "f32")


# The drafters below run in the default mode: its attention keeps the probabilities in f32
# (kernels/attention-fast.h), so the reference rounds q, k and v to f16 but not p (attn_p_f16=False).
def _ref_tree(model, context, limits):
    def next_probs(path):
        return softmax64(reference_forward(model, list(context) + list(path), attn_f16=True, attn_p_f16=False)[-1])

    tree, margins = reference_draft_tree(next_probs, limits)
    assert min(margins, default=1.0) > MARGIN, "ill-conditioned case: a decision is a near tie"
    return tree


def assert_same_tree(got, want):
    assert [(n.token, n.parent) for n in got.nodes] == [(n.token, n.parent) for n in want.nodes]
    assert np.allclose([n.p for n in got.nodes], [n.p for n in want.nodes], rtol=P_RTOL, atol=0)


def _engine_greedy(path, prompt, n, exact=False):
    """Greedy continuation by the engine itself, one token per decode on a fresh pipeline (in the
    drafter's default layout unless exact)."""
    p = _core.Pipeline(str(path), n_ctx=64, repack=not exact)
    try:
        out = p.decode(np.asarray(prompt, np.int32), np.arange(len(prompt), dtype=np.int32),
                       np.zeros(len(prompt), np.int32), np.eye(1, len(prompt), len(prompt) - 1, dtype=np.uint8)[0])
        toks = []
        for i in range(n):
            toks.append(int(np.argmax(out[-1])))
            pos = len(prompt) + i
            out = p.decode(np.asarray([toks[-1]], np.int32), np.asarray([pos], np.int32), np.zeros(1, np.int32),
                           np.ones(1, np.uint8))
        return toks
    finally:
        p.close()


# ----------------------------------------------------------------------------------------------- chains


def test_chain_equals_greedy_continuation(tiny):
    path, model = tiny
    with ModelDrafter(path, n_ctx=64) as d:
        tree = d.propose(PROMPT, DraftLimits(n_draft=8, p_accept=0.0))
        assert len(tree) == 8 and len(tree.branches()) == 1
        want = reference_greedy(model, PROMPT, 8, attn_f16=True, attn_p_f16=False)
        assert tree.chain_tokens() == want
        assert tree.chain_tokens() == _engine_greedy(path, PROMPT, 8)
        # p is the draft model's softmax probability of each greedy token
        ref_p = [softmax64(reference_forward(model, PROMPT + want[:i], attn_f16=True, attn_p_f16=False)[-1])[want[i]] for i in range(8)]
        assert np.allclose([n.p for n in tree.nodes], ref_p, rtol=P_RTOL, atol=0)


def test_chain_with_quantized_draft_model(tiny_model):
    path, model = tiny_model("llama", "q8_0")
    with ModelDrafter(path, n_ctx=64) as d:
        assert d.propose(PROMPT, DraftLimits(n_draft=6)).chain_tokens() == _engine_greedy(path, PROMPT, 6)


def test_exact_draft_model_and_model_options(tiny_model):
    """exact=True drafts in llama.cpp's layout: the greedy chain of the exact engine; make_drafter
    applies model_options to a draft model and ignores them for n-gram drafters."""
    path, _ = tiny_model("llama", "q8_0")
    want = _engine_greedy(path, PROMPT, 6, exact=True)
    with ModelDrafter(path, n_ctx=64, exact=True) as d:
        assert d.propose(PROMPT, DraftLimits(n_draft=6, p_accept=0.0)).chain_tokens() == want
    d = make_drafter(str(path), model_options={"exact": True}, n_ctx=64)
    try:
        assert d.propose(PROMPT, DraftLimits(n_draft=6, p_accept=0.0)).chain_tokens() == want
    finally:
        d.close()
    assert isinstance(make_drafter("ngram", model_options={"exact": True}), NgramDrafter)


# ---------------------------------------------------------------------------------- stop and split rules

RULE_CASES = [
    DraftLimits(n_draft=8, p_accept=0.025),
    DraftLimits(n_draft=8, p_accept=0.03),
    DraftLimits(n_draft=10, n_parallel=3, p_split=0.025),
    DraftLimits(n_draft=10, n_parallel=4, p_accept=0.024, p_split=0.022),
    DraftLimits(n_draft=5, n_parallel=4, p_split=0.02),
    DraftLimits(n_draft=6, n_parallel=2, p_split=0.0),
]


@pytest.mark.parametrize("limits", RULE_CASES)
def test_trees_match_reference(tiny, limits):
    path, model = tiny
    want = _ref_tree(model, PROMPT, limits)
    with ModelDrafter(path, n_ctx=64) as d:
        got = d.propose(PROMPT, limits)
    check_tree_invariants(got, limits)
    assert_same_tree(got, want)


def _greedy_probs(model, n):
    toks = reference_greedy(model, PROMPT, n, attn_f16=True, attn_p_f16=False)
    return toks, [softmax64(reference_forward(model, PROMPT + toks[:i], attn_f16=True, attn_p_f16=False)[-1])[toks[i]] for i in range(n)]


def test_stop_rule_ends_the_chain_at_the_first_improbable_token(tiny):
    path, model = tiny
    toks, ps = _greedy_probs(model, 8)
    # first depth k whose probability is below all earlier ones: a cutoff between them stops there
    k = next(i for i in range(1, 8) if ps[i] < min(ps[:i]))
    p_accept = (ps[k] + min(ps[:k])) / 2
    lim = DraftLimits(n_draft=8, p_accept=p_accept)
    with ModelDrafter(path, n_ctx=64) as d:
        tree = d.propose(PROMPT, lim)
        assert tree.chain_tokens() == toks[:k]
        assert_same_tree(tree, _ref_tree(model, PROMPT, lim))
        # just below the top-1 probability of the tip: nothing is drafted
        assert len(d.propose(PROMPT, DraftLimits(n_draft=8, p_accept=ps[0] + 1e-4))) == 0


def test_split_rule_forks_the_candidates_above_p_split(tiny):
    path, model = tiny
    root = sorted(softmax64(reference_forward(model, PROMPT, attn_f16=True, attn_p_f16=False)[-1]), reverse=True)
    lim = DraftLimits(n_draft=12, n_parallel=3, p_split=(root[2] + root[3]) / 2)
    with ModelDrafter(path, n_ctx=64) as d:
        tree = d.propose(PROMPT, lim)
    # the top-3 candidates of the tip start the three branches; no room is left for other forks
    assert len(tree.children(-1)) == 3 and len(tree.branches()) == 3
    first = sorted((tree.nodes[i].p for i in tree.children(-1)), reverse=True)
    assert np.allclose(first, root[:3], rtol=P_RTOL, atol=0)
    assert len(tree) == 12
    assert_same_tree(tree, _ref_tree(model, PROMPT, lim))


def test_p_accept_above_every_probability_gives_empty_tree(tiny):
    path, _ = tiny
    with ModelDrafter(path, n_ctx=64) as d:
        assert len(d.propose(PROMPT, DraftLimits(n_draft=8, p_accept=0.99))) == 0
        assert len(d.propose(PROMPT, DraftLimits(n_draft=0))) == 0


# ------------------------------------------------------------------------------------------------ KV reuse


def _n_cells_ok(d: ModelDrafter, ctx_len: int, drafted_evaluated: int) -> None:
    # sequence 0 holds exactly the context; the only other cells are this call's evaluated drafts
    assert d._pipe.kv_seq_pos_max(0) == ctx_len - 1
    assert d._pipe.kv_n_used == ctx_len + drafted_evaluated


def test_in_flight_extension_reuses_branch_kv(tiny):
    path, model = tiny
    lim = DraftLimits(n_draft=6)
    with ModelDrafter(path, n_ctx=64) as d, ModelDrafter(path, n_ctx=64, reuse=False) as ref:
        t1 = d.propose(PROMPT, lim)
        chain = t1.chain_tokens()
        # the control loop drafts on from the tip of the drafts in flight
        ctx2 = PROMPT + chain
        before = d.stats.as_dict()
        t2 = d.propose(ctx2, lim)
        assert d.stats.reused - before["reused"] == 5  # the 6th drafted token was never evaluated
        assert d.stats.context_evaluated - before["context_evaluated"] == 1
        assert_same_tree(t2, ref.propose(ctx2, lim))
        assert t2.chain_tokens() == reference_greedy(model, ctx2, 6, attn_f16=True, attn_p_f16=False)
        _n_cells_ok(d, len(ctx2), 5)
        # verification accepted 3 drafts and the target's bonus token differs from the 4th
        ctx3 = ctx2 + t2.chain_tokens()[:3] + [(t2.chain_tokens()[3] + 1) % model.n_vocab]
        before = d.stats.as_dict()
        t3 = d.propose(ctx3, lim)
        assert d.stats.reused - before["reused"] == 3
        assert d.stats.context_evaluated - before["context_evaluated"] == 1
        assert_same_tree(t3, ref.propose(ctx3, lim))


def test_reuse_from_a_forked_branch(tiny):
    path, model = tiny
    lim = DraftLimits(n_draft=10, n_parallel=3, p_split=0.025)
    with ModelDrafter(path, n_ctx=64) as d, ModelDrafter(path, n_ctx=64, reuse=False) as ref:
        t1 = d.propose(PROMPT, lim)
        b = t1.branches()
        assert len(b) == 3
        ctx = PROMPT + t1.tokens(b[2])[:3]  # the target agreed with branch 2 for three tokens
        before = d.stats.reused
        t2 = d.propose(ctx, lim)
        assert d.stats.reused - before == 3
        assert_same_tree(t2, ref.propose(ctx, lim))
        assert_same_tree(t2, _ref_tree(model, ctx, lim))


def test_rollback_and_repeat_calls(tiny):
    path, model = tiny
    lim = DraftLimits(n_draft=4, n_parallel=2, p_split=0.025)
    with ModelDrafter(path, n_ctx=64) as d:
        t1 = d.propose(PROMPT, lim)
        n_eval = d.stats.evaluated
        assert_same_tree(d.propose(PROMPT, lim), t1)  # same context: nothing re-evaluated but the drafts
        assert d.stats.context_evaluated == len(PROMPT)
        assert d.stats.evaluated - n_eval == d.stats.draft_evaluated - (n_eval - len(PROMPT))
        for ctx in (PROMPT[:5], PROMPT[:5] + [100, 101], PROMPT, PROMPT[:1]):
            got = d.propose(ctx, lim)
            assert_same_tree(got, _ref_tree(model, ctx, lim))
            assert d._pipe.kv_seq_pos_max(0) == len(ctx) - 1


@pytest.mark.parametrize("seed", range(4))
def test_random_walk_reuse_equals_recompute(tiny, seed):
    """Calls as a control loop makes them: drafts in flight, accepted prefixes, bonus tokens, rollbacks."""
    path, model = tiny
    rng = random.Random(seed)
    with ModelDrafter(path, n_ctx=96, max_branches=3) as d, ModelDrafter(path, n_ctx=96, max_branches=3,
                                                                         reuse=False) as ref:
        ctx = list(PROMPT)
        d.begin(ctx)
        prev_tree = None
        for _ in range(14):
            lim = DraftLimits(n_draft=rng.randint(1, 6), n_parallel=rng.randint(1, 3),
                              p_accept=rng.choice([0.0, 0.02]), p_split=rng.choice([0.02, 0.03, 1.0]))
            ev0 = d.stats.draft_evaluated
            tree = d.propose(ctx, lim)
            assert_same_tree(tree, ref.propose(ctx, lim))
            check_tree_invariants(tree, lim)
            _n_cells_ok(d, len(ctx), d.stats.draft_evaluated - ev0)
            prev_tree = tree
            branches = prev_tree.branches()
            move = rng.random()
            if branches and move < 0.7:  # accept a prefix of some branch, maybe plus a bonus token
                b = branches[rng.randrange(len(branches))]
                ctx = ctx + prev_tree.tokens(b)[: rng.randint(1, len(b))]
                if rng.random() < 0.5:
                    ctx.append(rng.randrange(model.n_vocab))
            elif move < 0.85:  # rollback
                ctx = ctx[: rng.randint(1, len(ctx))]
            else:
                ctx = ctx + [rng.randrange(model.n_vocab) for _ in range(rng.randint(1, 3))]
            ctx = ctx[:80]
        assert d.stats.reused > 0
        assert d.stats.evaluated < ref.stats.evaluated


def test_begin_prefills_the_prompt(tiny):
    path, _ = tiny
    with ModelDrafter(path, n_ctx=64, n_batch=3) as d, ModelDrafter(path, n_ctx=64) as ref:
        d.begin(PROMPT)
        assert d.stats.context_evaluated == len(PROMPT)
        assert d.stats.decodes == 3  # chunks of n_batch = 3
        tree = d.propose(PROMPT, DraftLimits(n_draft=4))
        assert d.stats.context_evaluated == len(PROMPT)
        assert_same_tree(tree, ref.propose(PROMPT, DraftLimits(n_draft=4)))


def test_context_near_n_ctx_is_capped_not_an_error(tiny):
    path, _ = tiny
    with ModelDrafter(path, n_ctx=16) as d:
        ctx = (PROMPT * 2)[:14]
        tree = d.propose(ctx, DraftLimits(n_draft=8, n_parallel=2, p_split=0.0))
        assert 1 <= len(tree) <= 2
        assert max(tree.depth(i) for i in range(len(tree))) <= 2
        assert len(d.propose(PROMPT * 2, DraftLimits(n_draft=8))) == 0  # 16 tokens: no free cell
        assert len(d.propose(PROMPT * 3, DraftLimits(n_draft=8))) == 0  # longer than n_ctx
        assert len(d.propose(PROMPT, DraftLimits(n_draft=8))) == 8  # and it recovers


# ------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kw, field",
    [(dict(n_ctx=-1), "n_ctx"), (dict(n_threads=0), "n_threads"), (dict(max_branches=0), "max_branches"),
     (dict(n_batch=0), "n_batch"), (dict(n_threads=1.5), "n_threads")],
)
def test_constructor_validation(tiny_model, kw, field):
    path, _ = tiny_model("llama", "f32")
    with pytest.raises(ValueError, match=field):
        ModelDrafter(path, **kw)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="no-such-model"):
        ModelDrafter("no-such-model")


def test_propose_validation(tiny_model):
    path, model = tiny_model("llama", "f32")
    d = ModelDrafter(path, n_ctx=32, max_branches=2)
    assert d.n_vocab == model.n_vocab
    with pytest.raises(ValueError, match="n_parallel"):
        d.propose(PROMPT, DraftLimits(n_parallel=3))
    with pytest.raises(ValueError, match="context"):
        d.propose([], DraftLimits())
    with pytest.raises(ValueError, match="context holds token id 320"):
        d.propose([1, model.n_vocab], DraftLimits())
    with pytest.raises(ValueError, match="context holds token id -1"):
        d.propose([1, -1], DraftLimits())
    with pytest.raises(TypeError, match="DraftLimits"):
        d.propose(PROMPT, {"n_draft": 4})
    d.close()
    d.close()
    with pytest.raises(RuntimeError, match="closed"):
        d.propose(PROMPT, DraftLimits())
