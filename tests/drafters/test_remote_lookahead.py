"""A draft rank drafts only what the decoder can use: while the policy has switched speculation off, the
drafts of the arm it would switch back to (not `ahead`, the drafts of every micro-batch in flight), and as
far as `ahead` again when it is back on."""
from __future__ import annotations

from typing import List, Tuple

import pytest

import pipeinfer
from oracle_drafters import WrongDrafter
from pipeinfer.drafters.remote import RemoteDrafter
from pipeinfer.speculation import SpeculationPolicy
from pipeinfer.speculation.costs import Arm

PROMPT = [5, 17, 99, 3, 250, 42]
NO_EOG = {0: -1e6, 1: -1e6, 2: -1e6}


class _FakeNative:
    """The head's draft channel: records what is sent to the draft rank, delivers nothing."""

    def __init__(self) -> None:
        self.syncs: List[Tuple[int, int, List[int], int]] = []

    def sync_drafter(self, epoch: int, n_common: int, tokens: List[int], ahead: int, p_min: float = 0.0) -> None:
        self.syncs.append((epoch, n_common, list(tokens), ahead))

    def draft_poll(self) -> list:
        return []


def test_lookahead_is_sent_at_once_and_bounded_by_ahead():
    native = _FakeNative()
    d = RemoteDrafter(native, ahead=12)
    d.lookahead(1)  # before the first sync: remembered, nothing sent
    assert native.syncs == []
    d.begin([1, 2, 3])
    assert native.syncs[-1] == (0, 0, [1, 2, 3], 1)
    d.lookahead(None)  # on again: as far as `ahead`, same epoch and context
    assert native.syncs[-1] == (0, 3, [], 12)
    n = len(native.syncs)
    d.lookahead(50)  # capped at ahead: unchanged, nothing sent
    assert len(native.syncs) == n
    d.lookahead(0)  # at least one token (the shadow check's)
    assert native.syncs[-1] == (0, 3, [], 1)
    d.accepted([1, 2, 4])  # a restart keeps the limit
    assert native.syncs[-1] == (1, 2, [4], 1)  # the common prefix kept, the rest replaced


def test_pending_stops_at_the_lookahead():
    d = RemoteDrafter(_FakeNative(), ahead=8)
    d.begin([1, 2, 3])
    assert d.pending([1, 2, 3], 4)  # nothing drafted yet, 4 <= 8 wanted
    d.lookahead(1)
    assert d.pending([1, 2, 3], 4)  # one token may still come
    d.remote.append(9)
    d.p.append(1.0)
    assert not d.pending([1, 2, 3], 4)  # the one token is there: nothing more will be drafted


class _OffPolicy(SpeculationPolicy):
    """A policy that has switched speculation off (plain decoding in every epoch)."""

    def plan(self) -> Arm:
        return Arm(0)


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
@pytest.mark.parametrize("off", [True, False])
def test_the_decoders_tell_the_draft_rank_how_far_to_draft(tiny_model, mode, off):
    target, _ = tiny_model("qwen2", "q8_0", n_layer=4)
    with pipeinfer.Pipeline(str(target), n_ctx=160, n_threads=1) as p:
        want = p.generate(PROMPT, max_tokens=16, temperature=0, logit_bias=NO_EOG).tokens
        n_vocab = p.n_vocab
    policy = _OffPolicy(n_draft=4) if off else SpeculationPolicy(n_draft=4, adaptive=False)
    with pipeinfer.Pipeline(str(target), n_ctx=160, n_threads=1, stages=2, mode=mode,
                            draft=WrongDrafter(PROMPT + want, n_vocab=n_vocab), draft_ranks=1, speculation=policy) as q:
        assert isinstance(q.drafter, RemoteDrafter) and q.drafter.ahead >= 4
        s = q.generate(PROMPT, max_tokens=16, temperature=0, logit_bias=NO_EOG)
        assert s.tokens == want
        if off:  # one micro-batch's drafts are kept ready, and nothing is run
            assert 1 <= q.drafter.limit <= 4 and s.stats.draft_n == 0  # one micro-batch of the best arm
            if mode == "pipeinfer":
                assert q.drafter.ahead == 16  # n_draft x max_in_flight
        else:
            assert q.drafter.limit == q.drafter.ahead and s.stats.draft_n > 0
