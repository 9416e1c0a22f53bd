"""The speculation policy: how much to speculate (pure Python; replaceable).

The paper's knobs (PipeInfer, arXiv 2407.11798, section on adaptive speculation; reference code
``run_speculation_loop``) plus a cap on runs in flight. It must not launch runs or verify drafts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from pipeinfer.speculation.interfaces import DraftLimits


@dataclass
class SpeculationPolicy:
    """How much to speculate.

    Args:
        n_draft: maximum draft tokens per speculative micro-batch (all branches together).
        p_accept: a branch stops drafting when its top-1 draft probability falls below this
            (plus the adaptive adjustment below).
        p_split: a candidate with draft probability above this forks a new branch.
        n_parallel: maximum branches per micro-batch (1 = chains).
        p_recovery: cutoff increase per additional micro-batch launched in one burst (limits how far
            ahead of verification the head speculates); reset when a result arrives.
        p_decay: cutoff decrease per speculation attempt that produced no draft (lets an idle head
            speculate opportunistically); reset when a token is accepted.
        max_in_flight: cap on speculative micro-batches in flight at once.
        n_buffers: KV buffers of the multibuffer ring (>= max_in_flight).
        adaptive: shorten drafts, or stop speculating, when the observed acceptance makes them a loss
            (see :meth:`limits`); speculation resumes with short probes to re-measure.
        draft_cost: the cost of verifying one extra draft token, in units of one target token (a
            k-token verification costs about 1 + draft_cost * k; memory-bound decoding makes it small).
    """

    n_draft: int = 4
    p_accept: float = 0.1
    p_split: float = 0.8
    n_parallel: int = 1
    p_recovery: float = 0.0
    p_decay: float = 0.0
    max_in_flight: int = 4
    n_buffers: int = 0  # 0: max_in_flight
    adaptive: bool = True
    draft_cost: float = 0.35

    def __post_init__(self) -> None:
        _int("n_draft", self.n_draft, 1, 256)
        _int("n_parallel", self.n_parallel, 1, 16)
        _int("max_in_flight", self.max_in_flight, 1, 1024)
        _int("n_buffers", self.n_buffers, 0, 4096)
        for name in ("p_accept", "p_split", "p_recovery", "p_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
        if self.n_buffers == 0:
            self.n_buffers = self.max_in_flight
        if self.n_buffers < self.max_in_flight:
            raise ValueError(f"n_buffers ({self.n_buffers}) must be >= max_in_flight ({self.max_in_flight})")
        if self.n_parallel > self.n_draft:
            raise ValueError(f"n_parallel ({self.n_parallel}) cannot exceed n_draft ({self.n_draft})")
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"adaptive must be a bool, got {self.adaptive!r}")
        if isinstance(self.draft_cost, bool) or not isinstance(self.draft_cost, (int, float)) or \
                not 0.0 <= self.draft_cost <= 10.0:
            raise ValueError(f"draft_cost must be a number in [0, 10], got {self.draft_cost!r}")
        self.reset()

    # ---- adaptation: a running estimate of the per-token acceptance probability
    def reset(self, drafting_cost: float = 0.0) -> None:
        """Forgets what was observed (a new generation starts optimistic).

        drafting_cost: what producing one draft token costs, in target tokens (a draft model on the
        head: about its weight bytes over the target's; 0 for draft-free drafters). It is added to
        draft_cost when choosing the draft length.
        """
        self._accepted = 2.0  # pseudo-counts: prior acceptance 2/3
        self._rejected = 1.0
        self._skipped = 0
        self._drafting_cost = max(0.0, float(drafting_cost))

    def observe(self, accepted: int, rejected: bool) -> None:
        """Records a verified micro-batch: how many drafts the target confirmed, and whether it
        stopped on a rejected draft (rather than running out of drafts)."""
        decay = 0.9  # older observations fade: acceptance changes along a text
        self._accepted = decay * self._accepted + accepted
        self._rejected = decay * self._rejected + (1.0 if rejected else 0.0)

    @property
    def acceptance(self) -> float:
        """Estimated probability that the next drafted token is accepted."""
        return self._accepted / (self._accepted + self._rejected)

    def draft_length(self) -> int:
        """The draft length with the best expected gain, 0 if speculating is expected to lose.

        With acceptance a, k drafts yield a + a^2 + ... + a^k extra tokens on average and cost
        draft_cost * k; pick the k <= n_draft that maximises the difference.
        """
        if not self.adaptive:
            return self.n_draft
        a = self.acceptance
        cost = self.draft_cost + self._drafting_cost
        best_k, best = 0, 0.0
        gain = 0.0
        for k in range(1, self.n_draft + 1):
            gain += a ** k
            value = gain - cost * k
            if value > best + 1e-12:
                best_k, best = k, value
        return best_k

    def limits(self, burst_index: int = 0, n_rejected: int = 0, depth: int = 0) -> Optional[DraftLimits]:
        """Draft limits for the next micro-batch, or None when the adjusted cutoff reaches 1 or (adaptive)
        the micro-batch is expected to lose.

        burst_index: micro-batches already launched since the last result arrived;
        n_rejected: speculation attempts without a draft since the last accepted token;
        depth: speculative micro-batches already in flight ahead of this one in the same chain (a
            chained micro-batch only pays off if all of them are accepted first).
        """
        adjust = burst_index * self.p_recovery - n_rejected * self.p_decay
        p_accept = self.p_accept + adjust
        if p_accept >= 1.0:
            return None
        n_draft = self.draft_length()
        if n_draft and depth and self.adaptive:
            a = self.acceptance
            reach = a ** (n_draft * depth)  # probability that the chain is still valid here
            gain = sum(a ** i for i in range(1, n_draft + 1)) * reach
            if gain <= (self.draft_cost + self._drafting_cost) * n_draft:
                return None
        if n_draft == 0:
            # speculation is expected to lose: probe with one draft token now and then to notice
            # when the text becomes predictable again
            self._skipped += 1
            if self._skipped % 8 != 0 or burst_index > 0:
                return None
            n_draft = 1
        return DraftLimits(
            n_draft=n_draft,
            n_parallel=min(self.n_parallel, n_draft),
            p_accept=min(max(p_accept, 0.0), 1.0),
            p_split=min(max(self.p_split + adjust, 0.0), 1.0),
        )


def _int(name: str, v: object, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
