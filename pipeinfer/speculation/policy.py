"""The speculation policy: how much to speculate, decided from what speculation measurably yields here.

`SpeculationPolicy` holds the user's limits (the paper's knobs: n_draft, p_accept, p_split,
n_parallel, p_recovery, p_decay; plus the micro-batches allowed in flight) and, when `adaptive`, a
controller that measures instead of guessing:

1. Measurements (costs.py), fed by the decoders: the latency of runs by size, the spacing of results
   of runs in flight together (the pipeline's throughput), the head's own time, the time the drafter
   takes per token, and the acceptance of drafted tokens.
2. Prediction: for each arm (k drafts per micro-batch, D chained micro-batches in flight; k = 0: no
   speculation) the expected accepted tokens per second of one epoch (costs.predict).
3. Correction by outcome: every epoch's measured duration is compared with the model's duration of
   an epoch of that arm that accepted the same tokens (the acceptance is measured on its own, so the
   luck of the drafts does not count twice); each arm's predicted rate is scaled by its measured
   ratio (an arm never run: by the ratio of all speculative arms), so systematic errors of the cost
   model (contention, interference of cancelled runs, queueing) are corrected by measured times.
4. Choice: the speculative arm with the best corrected rate, if it beats plain decoding by a 3%
   margin even at a pessimistic acceptance (one standard deviation below the estimate, so that a few
   lucky drafts do not switch it on); else no speculation: it switches itself off where it loses. While off, the acceptance keeps being measured from drafts that are proposed but
   not run ("shadow drafts", for drafters that are cheap to ask), or by a short probe every few
   tokens otherwise, so speculation comes back when the text becomes predictable.

It must not launch runs, verify drafts or read a clock (the decoders pass the time).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from pipeinfer.speculation.costs import Acceptance, Arm, CostModel, epoch_seconds, predict
from pipeinfer.speculation.interfaces import DraftLimits
from pipeinfer.validate import check_bool, check_int, check_real

__all__ = ["SpeculationPolicy", "Arm"]

_K_CHOICES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
_PROBE_EVERY = 8  # off epochs between probes when drafts cannot be shadowed
# Speculation must be predicted to beat plain decoding by this much: its costs beyond the model's
# (buffers, cancelled work, drafting energy) make a tie a loss.
_MARGIN = 0.03


@dataclass
class SpeculationPolicy:
    """How much to speculate.

    Args:
        n_draft: maximum draft tokens per speculative micro-batch (all branches together).
        p_accept: a branch stops drafting when its top-1 draft probability falls below this
            (plus the burst adjustment below).
        p_split: a candidate with draft probability above this forks a new branch.
        n_parallel: maximum branches per micro-batch (1 = chains).
        p_recovery: cutoff increase per additional micro-batch launched in one burst (limits how far
            ahead of verification the head speculates).
        p_decay: cutoff decrease per speculation attempt that produced no draft (lets an idle head
            speculate opportunistically); reset when a token is accepted.
        max_in_flight: most speculative micro-batches in flight at once (PipeInfer), the anchor included.
        n_buffers: KV buffers of the multibuffer ring (>= max_in_flight).
        adaptive: choose the draft length and the chaining depth (up to n_draft and max_in_flight), or
            no speculation at all, from measured costs and outcomes (module docstring). False: always
            n_draft drafts and max_in_flight micro-batches.
    """

    n_draft: int = 8
    p_accept: float = 0.1
    p_split: float = 0.8
    n_parallel: int = 1
    p_recovery: float = 0.0
    p_decay: float = 0.0
    max_in_flight: int = 4
    n_buffers: int = 0  # 0: max_in_flight
    adaptive: bool = True

    def __post_init__(self) -> None:
        check_int("n_draft", self.n_draft, 1, 256)
        check_int("n_parallel", self.n_parallel, 1, 16)
        check_int("max_in_flight", self.max_in_flight, 1, 1024)
        check_int("n_buffers", self.n_buffers, 0, 4096)
        for name in ("p_accept", "p_split", "p_recovery", "p_decay"):
            check_real(name, getattr(self, name), 0.0, 1.0)
        if self.n_buffers == 0:
            self.n_buffers = self.max_in_flight
        if self.n_buffers < self.max_in_flight:
            raise ValueError(f"n_buffers ({self.n_buffers}) must be >= max_in_flight ({self.max_in_flight})")
        if self.n_parallel > self.n_draft:
            raise ValueError(f"n_parallel ({self.n_parallel}) cannot exceed n_draft ({self.n_draft})")
        check_bool("adaptive", self.adaptive)
        self.costs = CostModel()
        self.acceptance = Acceptance()
        self._arms: Dict[Arm, List[float]] = {}  # arm -> [model seconds, measured seconds] (discounted)
        self._off_epochs = 0
        self.shadowing = False  # the decoder measures acceptance from drafts it does not run while off
        self._last: Optional[tuple] = None  # (inputs, arm) of the last plan: unchanged inputs, same arm
        self.begin(1, chained=True)

    # ------------------------------------------------------------------------------- the generation
    def begin(self, n_stages: int, chained: bool) -> None:
        """A generation starts: on `n_stages` stages, with chained micro-batches (PipeInfer) or not
        (synchronous). Costs measured so far are kept (they belong to the hardware); the acceptance
        starts again (it belongs to the text) from a prior of two observations at the last
        generation's estimate (the drafter and model are the same), or 0.6 on the first."""
        self.costs.n_stages = max(1, n_stages)
        self.chained = chained
        self.acceptance.restart()
        self._off_epochs = 0
        self._last = None

    def arms(self) -> List[Arm]:
        """The arms the controller chooses among: no speculation, and k drafts (up to n_draft) with
        0..max_in_flight-1 chained micro-batches (chained decoders only)."""
        ks = [k for k in _K_CHOICES if k < self.n_draft] + [self.n_draft]
        depths = range(self.max_in_flight) if self.chained else range(1)
        return [Arm(0)] + [Arm(k, d) for k in ks for d in depths]

    def plan(self) -> Arm:
        """The arm of the next epoch."""
        if not self.adaptive:
            return Arm(self.n_draft, self.max_in_flight - 1 if self.chained else 0)
        if not self.costs.known:
            return Arm(0)  # nothing measured yet: the first run (one token) measures the pipeline
        a = self.acceptance.value
        inputs = (self.costs.signature(), tuple(self._correction(arm) for arm in sorted(self._arms, key=repr)))
        if self._last is not None and self._last[2].off:
            # off, every epoch is one token: re-plan every 4th, or when the acceptance moved (a plan costs
            # the head more than a token's bookkeeping)
            self._off_epochs += 1
            if self._off_epochs % 4 and abs(self._last[0] - a) < 0.05:
                return self._last[2]
            self._off_epochs -= 1  # counted again below
        elif self._last is not None and abs(self._last[0] - a) < 0.01 and _close(self._last[1], inputs):
            return self._last[2]  # nothing that matters changed: the same arm
        # the best way to speculate at the estimated acceptance; it is used only if it beats plain
        # decoding (by the margin) even at a pessimistic acceptance: speculation must prove itself
        plain = self.corrected_rate(Arm(0), a)
        off_rate = plain * (1.0 + _MARGIN)
        best, best_rate = Arm(0), -1.0
        for arm in self.arms():
            r = self._bounded_rate(arm, a, plain) if not arm.off else -1.0
            if r > best_rate + 1e-12:
                best, best_rate = arm, r
        if best.off or self._bounded_rate(best, self.acceptance.lower(), plain) <= off_rate:
            best = Arm(0)
        self._last = (a, inputs, best)
        if best.off:
            self._off_epochs += 1
            if self._off_epochs % _PROBE_EVERY == 0 and not self.shadowing:
                # nothing measures the acceptance while off: try the best speculative arm once
                return max((arm for arm in self.arms() if not arm.off), key=lambda x: self.corrected_rate(x, a))
        return best

    def _bounded_rate(self, arm: Arm, a: float, plain: float) -> float:
        """The corrected rate of a speculative arm, at most its expected tokens per epoch at the rate of
        plain decoding: an epoch takes at least the run of its first token, so speculation cannot beat
        plain decoding by more than the drafts it gets accepted. (Without this bound, an arm whose
        measured epochs ran faster than modelled, e.g. because fewer drafts arrived than it asked for,
        could look better than plain decoding at an acceptance near zero.)"""
        tokens, rate = self._tokens_and_rate(arm, a)
        return min(rate, tokens * plain)

    def corrected_rate(self, arm: Arm, a: float) -> float:
        return self._tokens_and_rate(arm, a)[1]

    def _tokens_and_rate(self, arm: Arm, a: float) -> Tuple[float, float]:
        """(expected tokens per epoch, corrected tokens per second) of an arm at acceptance a."""
        tokens, seconds = predict(arm, a, self.costs)
        return tokens, (tokens / seconds * self._correction(arm) if seconds > 0 else 0.0)

    def _correction(self, arm: Arm) -> float:
        """Model over measured seconds of this arm's epochs (prior: about two epochs at the ratio of all
        speculative arms, itself with a prior of 1); > 1 when the arm runs faster than modelled."""
        scale = self.costs.latency(1) if self.costs.known else 1.0  # the prior's weight, in seconds
        spec = [v for k, v in self._arms.items() if not k.off]
        glob = ((sum(v[0] for v in spec) + 2.0 * scale) / (sum(v[1] for v in spec) + 2.0 * scale)
                if not arm.off else 1.0)
        model, measured = self._arms.get(arm, (0.0, 0.0))
        return (model + 2.0 * scale * glob) / (measured + 2.0 * scale)

    def limits(self, arm: Arm, burst: int = 0, n_rejected: int = 0) -> Optional[DraftLimits]:
        """Draft limits of one micro-batch of `arm` (None when the arm drafts nothing or the adjusted
        cutoff reaches 1). burst: micro-batches already launched since the last result arrived;
        n_rejected: speculation attempts without a draft since the last accepted token."""
        if arm.off:
            return None
        adjust = burst * self.p_recovery - n_rejected * self.p_decay
        p_accept = self.p_accept + adjust
        if p_accept >= 1.0:
            return None
        return DraftLimits(n_draft=arm.k, n_parallel=min(self.n_parallel, arm.k),
                           p_accept=min(max(p_accept, 0.0), 1.0), p_split=min(max(self.p_split + adjust, 0.0), 1.0))

    # ----------------------------------------------------------------------------- measurements
    def epoch(self, arm: Arm, tokens: int, seconds: float, anchored: bool = True) -> None:
        """A stretch of `arm` ended: it accepted `tokens` in `seconds` (an epoch: launch of its anchor to
        the launch of the next; anchored False: a stretch continuing a chain in flight)."""
        if seconds <= 0.0 or tokens <= 0 or not self.costs.known:
            return
        model = epoch_seconds(arm, self.costs, tokens, anchored)
        m, s = self._arms.get(arm, (0.0, 0.0))
        decay = 0.8
        self._arms[arm] = [decay * m + model, decay * s + seconds]

    def verified(self, accepted: int, rejected: bool) -> None:
        """A verified chain of drafts (their context right): `accepted` confirmed in a row, then one
        rejected or none."""
        self.acceptance.observe(accepted, rejected)


def _close(a: tuple, b: tuple, tol: float = 0.02) -> bool:
    """Every number of two plan inputs within tol (relative) of the other's."""
    fa, fb = _flat(a), _flat(b)
    return len(fa) == len(fb) and all(abs(x - y) <= tol * max(abs(x), abs(y), 1e-9) for x, y in zip(fa, fb))


def _flat(t: object) -> List[float]:
    if isinstance(t, tuple):
        return [x for e in t for x in _flat(e)]
    return [float(t)]  # type: ignore[arg-type]

