"""TokenChooser on plain numpy rows: greedy is the argmax of the processed logits (bias, penalties,
bans, constraint), T > 0 is exact rejection sampling of drafted candidates, logprobs are the
log-softmax of the processed logits, a constraint advances once per chosen token and cuts drafts
without changing state."""
from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import pytest

from pipeinfer.sampling import SamplingParams, TokenChooser, log_softmax, make_sampler
from pipeinfer.speculation import DraftNode, DraftTree

GREEDY = dict(temperature=0.0)


def row(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


class Alternating:
    """A toy constraint over a vocabulary: even ids at even steps, odd ids at odd steps; token 0 is
    allowed only as the first token."""

    def __init__(self) -> None:
        self.step = 0
        self.advanced: List[int] = []

    def _ok(self, step: int, tok: int) -> bool:
        return tok % 2 == step % 2 and (tok != 0 or step == 0)

    def allowed(self, n_vocab: int) -> np.ndarray:
        return np.array([self._ok(self.step, t) for t in range(n_vocab)])

    def advance(self, token: int) -> None:
        if not self._ok(self.step, token):
            raise ValueError(f"token {token} not allowed")
        self.step += 1
        self.advanced.append(token)

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        for i, t in enumerate(tokens):
            if not self._ok(self.step + i, t):
                return i
        return len(tokens)


def test_bias_forbidding_the_top_token_changes_the_greedy_choice():
    # the example: [0, 5, 4] with {1: -100} is 2, as Sampler.sample says
    ch = TokenChooser(SamplingParams(logit_bias={1: -100}, **GREEDY))
    assert not ch.argmax_only
    assert ch.choose(row(0, 5, 4), [7 % 3], ()) == (2, -1)
    assert make_sampler(SamplingParams(logit_bias={1: -100}, **GREEDY)).sample(row(0, 5, 4)) == 2


def test_penalties_apply_to_greedy_choices():
    params = SamplingParams(repeat_penalty=4.0, presence_penalty=1.0, **GREEDY)
    ch = TokenChooser(params)
    assert not ch.argmax_only
    # token 1 is in the history: 5 / 4 - 1 = 0.25 < 4
    assert ch.choose(row(0, 5, 4), [1, 1], ()) == (2, -1)
    # the next position sees the chosen token too
    assert ch.choose(row(0, 5, 4.5), [1, 1, 2], (1,)) == (1, 0)


def test_plain_greedy_is_argmax_only_and_takes_the_last_stage_ids():
    ch = TokenChooser(SamplingParams(**GREEDY))
    assert ch.argmax_only
    assert ch.choose(np.int32(5), [1, 2], (3, 5, 9)) == (5, 1)
    assert ch.choose(row(0, 1, 3, 2), [1, 2, 5], (3, 2)) == (2, 1)
    assert ch.n_chosen == 2


@pytest.mark.parametrize("fields", [
    dict(logit_bias={1: 1.0}), dict(repeat_penalty=1.1), dict(presence_penalty=0.5), dict(frequency_penalty=-0.5),
    dict(logprobs=0), dict(min_tokens=1), dict(ignore_eos=True), dict(temperature=0.7),
])  # fmt: skip
def test_any_processing_turns_argmax_only_off(fields):
    params = SamplingParams(**{**GREEDY, **fields})
    ch = TokenChooser(params, eog_ids=[0])
    assert not ch.argmax_only
    with pytest.raises(ValueError, match="pass the logits row"):
        ch.choose(np.int32(1), [1], ())


def test_penalties_with_repeat_last_n_zero_are_no_processing():
    assert TokenChooser(SamplingParams(repeat_penalty=2.0, repeat_last_n=0, **GREEDY)).argmax_only
    assert not TokenChooser(SamplingParams(**GREEDY), constraint=Alternating()).argmax_only


def test_min_tokens_bans_eog_and_stop_ids_until_reached():
    params = SamplingParams(min_tokens=2, stop_token_ids=[3], **GREEDY)
    ch = TokenChooser(params, eog_ids=[0])
    hist = [5, 6]
    r = row(9, 1, 2, 8)  # 0 (eog) and 3 (stop id) lead
    assert ch.choose(r, hist, ()) == (2, -1)
    assert ch.choose(r, hist + [2], ()) == (2, -1)
    assert ch.choose(r, hist + [2, 2], ()) == (0, -1)  # two generated: the eog may come


def test_ignore_eos_bans_eog_for_the_whole_generation():
    ch = TokenChooser(SamplingParams(ignore_eos=True, **GREEDY), eog_ids=[0, 2])
    for i in range(5):
        assert ch.choose(row(9, 1, 8, 3), [4] + [3] * i, ())[0] == 3


def test_every_token_removed_raises_naming_the_causes():
    ch = TokenChooser(SamplingParams(ignore_eos=True, logit_bias={1: -math.inf}, **GREEDY), eog_ids=[0])
    with pytest.raises(ValueError, match="logit_bias, ignore_eos removed every token"):
        ch.choose(row(1, 2), [1], ())


def test_history_must_follow_the_chosen_tokens():
    ch = TokenChooser(SamplingParams(**GREEDY))
    ch.choose(row(1, 2), [0, 0], ())
    with pytest.raises(RuntimeError, match="one call per emitted token"):
        ch.choose(row(1, 2), [0, 0], ())


def test_logprobs_are_the_log_softmax_of_the_processed_logits():
    params = SamplingParams(logprobs=3, logit_bias={0: -math.inf, 1: 2.0}, repeat_penalty=2.0, **GREEDY)
    ch = TokenChooser(params)
    r = row(10, 1, 3, 3, -2)
    hist = [3]
    tok, _ = ch.choose(r, hist, ())
    x = np.array([-np.inf, 3.0, 3.0, 1.5, -2.0])  # bias then the repeat penalty on token 3
    want = log_softmax(x)
    rec = ch.logprobs[0]
    assert tok == 1 and rec.token == 1
    assert rec.logprob == pytest.approx(want[1], abs=1e-12)
    assert [t for t, _ in rec.top] == [1, 2, 3]  # tie 1/2: lower id first; 0 is banned
    assert [v for _, v in rec.top] == pytest.approx([want[1], want[2], want[3]], abs=1e-12)


def test_logprobs_zero_records_only_the_chosen_token_and_top_never_lists_banned_ones():
    ch = TokenChooser(SamplingParams(logprobs=0, temperature=0.5, seed=1))
    ch.choose(row(0, 1, 2), [0], ())
    assert ch.logprobs[0].top == ()
    ch = TokenChooser(SamplingParams(logprobs=5, logit_bias={0: -math.inf}, **GREEDY))
    ch.choose(row(0, 1, 2), [0], ())
    assert [t for t, _ in ch.logprobs[0].top] == [2, 1]


def test_sampling_emits_tokens_distributed_as_the_processed_distribution():
    # candidates 1 then 3 drafted; the emitted token must still follow p (with the bias applied)
    params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, logit_bias={2: -1.0}, seed=123)
    r = row(0.0, 1.0, 2.0, 0.5, -1.0)
    p = make_sampler(params).probs(r)
    n = 20000
    counts = np.zeros(5)
    accepted = 0
    ch = TokenChooser(params)
    hist: List[int] = [0]
    for _ in range(n):
        tok, idx = ch.choose(r, hist, (1, 3))
        hist.append(tok)
        counts[tok] += 1
        accepted += idx >= 0
        assert idx == -1 or (1, 3)[idx] == tok
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(counts / n - p) < 5 * sigma + 1e-9)
    assert accepted / n == pytest.approx(p[1] + p[3], abs=0.02)


def test_constraint_masks_greedy_and_advances_once_per_token():
    c = Alternating()
    ch = TokenChooser(SamplingParams(**GREEDY), constraint=c)
    assert not ch.argmax_only
    r = row(5, 9, 3, 8, 1)  # unconstrained argmax 1
    assert ch.choose(r, [1], ()) == (0, -1)  # step 0: even ids
    assert ch.choose(r, [1, 0], (3, 1)) == (1, 1)  # step 1: odd ids: 1 beats 3
    assert ch.choose(r, [1, 0, 1], ()) == (2, -1)  # step 2: even, 0 no longer allowed
    assert c.advanced == [0, 1, 2]


def test_cut_draft_removes_branches_that_break_the_constraint_without_changing_state():
    c = Alternating()
    ch = TokenChooser(SamplingParams(**GREEDY), constraint=c)
    ch.choose(row(5, 1), [9], ())  # chose 0; next step is odd
    # tip -> 3 -> 4 -> 5 (valid), tip -> 3 -> 7 (7 odd at an even step: cut), tip -> 2 (cut with its child)
    tree = DraftTree([DraftNode(3, -1, 0.9), DraftNode(2, -1, 0.5), DraftNode(4, 0, 0.8), DraftNode(7, 0, 0.3),
                      DraftNode(9, 1, 0.9), DraftNode(5, 2, 0.9)])
    cut = ch.cut_draft([9, 0], tree)
    assert [(n.token, n.parent) for n in cut.nodes] == [(3, -1), (4, 0), (5, 1)]
    assert isinstance(cut, DraftTree) and c.step == 1 and ch.n_chosen == 1
    # a tree continuing speculative tokens in flight: [3] is already drafted beyond the chosen tokens
    assert [n.token for n in ch.cut_draft([9, 0, 3], DraftTree.chain([4, 6, 5])).nodes] == [4]
    assert c.step == 1


def test_cut_draft_is_the_identity_without_a_constraint():
    ch = TokenChooser(SamplingParams(**GREEDY))
    tree = DraftTree.chain([1, 2, 3])
    assert ch.cut_draft([0], tree) is tree
    ch.choose(row(1, 2), [0], ())
    assert ch.cut_draft([0, 1], tree) is tree


class OnlyEnd:
    """A toy complete grammar: only token 0 (end of generation) may come."""

    def allowed(self, n_vocab: int) -> np.ndarray:
        return np.arange(n_vocab) == 0

    def advance(self, token: int) -> None:
        assert token == 0

    def valid_prefix(self, tokens: Sequence[int]) -> int:
        return 1 if tokens and tokens[0] == 0 else 0


def test_a_complete_grammar_ends_the_generation_despite_ignore_eos_and_min_tokens():
    ch = TokenChooser(SamplingParams(ignore_eos=True, min_tokens=5, **GREEDY), eog_ids=[0], constraint=OnlyEnd())
    assert ch.choose(row(0, 5, 4), [3], ()) == (0, -1)
    # without a constraint the bans stand, and removing everything is an error naming them
    ch = TokenChooser(SamplingParams(ignore_eos=True, logit_bias={1: -math.inf}, **GREEDY), eog_ids=[0])
    with pytest.raises(ValueError, match="ignore_eos"):
        ch.choose(row(0, 5), [3], ())
