"""Shadow drafts: the acceptance of a drafter measured while speculation is off.

When the policy has switched speculation off, nothing measures whether drafts would now be accepted.
A drafter that is cheap to ask (`Drafter.cheap`) is asked for a draft anyway; the draft is not run:
as the target's tokens arrive, they are compared with it and the policy's acceptance estimate learns
from the comparison exactly as from a verification. An asynchronous drafter (a draft rank) drafts
ahead on its own: each accepted token is compared with what it had drafted for that position, if
anything. It owns that comparison only.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

from pipeinfer.speculation.interfaces import Drafter, DraftLimits
from pipeinfer.speculation.policy import SpeculationPolicy

__all__ = ["ShadowDrafts"]


class ShadowDrafts:
    """Drafts proposed but not run, checked against the tokens that come instead."""

    def __init__(self, drafter: Drafter, policy: SpeculationPolicy) -> None:
        self.enabled = bool(getattr(drafter, "cheap", False)) and policy.adaptive
        self.drafter = drafter
        self.policy = policy
        policy.shadowing = self.enabled
        self._base = 0
        self._draft: List[int] = []
        self._watch: Optional[int] = None  # asynchronous drafter: first position not compared yet

    def propose(self, gen: Sequence[int]) -> None:
        """Drafts the best arm's draft length continuing gen (unless a shadow draft is still being
        checked); an asynchronous drafter is watched from gen on instead."""
        if not self.enabled or self._draft:
            return
        if self.drafter.asynchronous:
            self._watch = len(gen)
            return
        k = best_k(self.policy) or self.policy.n_draft
        tree = self.drafter.propose(gen, DraftLimits(n_draft=k, p_accept=self.policy.p_accept))
        self._base = len(gen)
        self._draft = tree.chain_tokens()

    def check(self, gen: Sequence[int]) -> None:
        """Compares the shadow draft with the tokens accepted since it was drafted."""
        if self._watch is not None:
            self._check_async(gen)
            return
        if not self._draft or len(gen) <= self._base:
            return
        n = min(len(self._draft), len(gen) - self._base)
        j = 0
        while j < n and self._draft[j] == gen[self._base + j]:
            j += 1
        if j < n:  # a wrong draft: the acceptance learns j confirmed then one rejected
            self.policy.verified(j, True)
            self._draft = []
        elif n == len(self._draft):
            self.policy.verified(n, False)
            self._draft = []

    def _check_async(self, gen: Sequence[int]) -> None:
        """Each token accepted since the watch began, against the draft rank's token for its position
        (before the drafter hears of it); one observation per token, the first wrong one ends the watch."""
        assert self._watch is not None
        while self._watch < len(gen):
            p = self._watch
            tree = self.drafter.propose(gen[:p], DraftLimits(n_draft=1, p_accept=self.policy.p_accept))
            self._watch = p + 1
            if not len(tree):
                continue  # nothing drafted there (yet): no evidence
            if tree.nodes[0].token == gen[p]:
                self.policy.verified(1, False)
            else:
                self.policy.verified(0, True)
                self._watch = None  # the drafter restarts from the correction: a new watch begins later
                return

    def drop(self) -> None:
        self._draft = []
        self._watch = None


def best_k(policy: SpeculationPolicy) -> Optional[int]:
    """The draft length of the best speculative arm (what a probe or a shadow draft tries)."""
    a = policy.acceptance.value
    arms = [arm for arm in policy.arms() if not arm.off]
    if not arms or not policy.costs.known:
        return policy.n_draft
    return max(arms, key=lambda x: policy.corrected_rate(x, a)).k
