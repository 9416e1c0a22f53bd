"""What speculation costs and yields here, measured while decoding (pure Python).

This module owns the online measurements the speculation controller decides from, and the formulas
that turn them into a predicted rate of accepted tokens per second for each way of speculating:

- `Acceptance`: the probability that a drafted token is confirmed, given that the tokens before it
  were (drafts after a rejection are not counted), with exponential forgetting.
- `LinearFit`: a discounted least-squares line y = c0 + c1 * b (b = tokens in a run).
- `CostModel`: the latency of a run of b tokens launched into a pipeline with no valid run ahead of
  it (`latency`), the spacing of the results of runs launched back to back (`spacing`, the pipeline's
  throughput: its slowest stage), and the head's time between a result and the next launch (`head_s`).
- `predict`: tokens per epoch and seconds per epoch for an arm (k drafts per micro-batch, D chained
  micro-batches kept in flight behind the anchor; k = 0: no speculation). An epoch runs from the launch
  of an anchor (the run of the last accepted token) to the next one, i.e. until the first rejection.

It must not launch runs or choose arms (policy.py does); it never reads a clock itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

__all__ = ["Acceptance", "LinearFit", "CostModel", "Arm", "predict", "epoch_seconds", "rate"]

_MAX_STEPS = 512  # micro-batches followed per predicted epoch


@dataclass(frozen=True)
class Arm:
    """A way to speculate: k drafted tokens per micro-batch, D chained micro-batches in flight behind the
    anchor (D = 0: synchronous speculation; k = 0: none)."""

    k: int
    depth: int = 0

    @property
    def off(self) -> bool:
        return self.k == 0


class Acceptance:
    """Estimated probability that a drafted token is accepted when its context was right.

    Args:
        prior: the estimate before any observation.
        weight: pseudo-observations behind the prior.
        forget: weight kept by older observations per new one (acceptance changes along a text).
    """

    def __init__(self, prior: float = 0.6, weight: float = 2.0, forget: float = 0.97) -> None:
        self.prior, self.weight, self.forget = prior, weight, forget
        self.reset()

    def reset(self) -> None:
        self.acc = self.prior * self.weight
        self.n = self.weight

    def restart(self) -> None:
        """A new text begins: the estimate so far becomes the prior (same weight), so a drafter that was
        poorly (or well) accepted on this model's last text starts there instead of at the fixed prior."""
        if self.n > self.weight:  # something was observed
            self.prior = self.value
        self.reset()

    def observe(self, accepted: int, rejected: bool) -> None:
        """A verified chain: `accepted` drafts confirmed in a row, then one rejected or none."""
        for _ in range(accepted):
            self._one(1.0)
        if rejected:
            self._one(0.0)

    def _one(self, x: float) -> None:
        self.acc = self.forget * self.acc + x
        self.n = self.forget * self.n + 1.0

    @property
    def value(self) -> float:
        return min(max(self.acc / self.n, 0.0), 0.999)

    def lower(self, z: float = 1.0) -> float:
        """A pessimistic estimate: z standard deviations below the mean (Beta posterior), so that little
        evidence does not look like good drafts."""
        m = self.value
        return max(0.0, m - z * math.sqrt(m * (1.0 - m) / (self.n + 1.0)))


class LinearFit:
    """y = c0 + c1 * x by least squares over discounted samples (older ones fade by `forget` each).

    Until two distinct x have been seen the slope is `slope_prior` times the intercept, so a single
    run size gives a usable line.
    """

    def __init__(self, forget: float = 0.95, slope_prior: float = 0.05) -> None:
        self.forget, self.slope_prior = forget, slope_prior
        self.w = self.sx = self.sy = self.sxx = self.sxy = 0.0
        self._coef: Optional[Tuple[float, float]] = None  # cached until the next sample

    def add(self, x: float, y: float) -> None:
        f = self.forget
        self.w, self.sx, self.sy = f * self.w + 1.0, f * self.sx + x, f * self.sy + y
        self.sxx, self.sxy = f * self.sxx + x * x, f * self.sxy + x * y
        self._coef = None

    @property
    def known(self) -> bool:
        return self.w > 0.0

    def coefficients(self) -> Tuple[float, float]:
        if self._coef is None:
            self._coef = self._fit()
        return self._coef

    def _fit(self) -> Tuple[float, float]:
        if self.w <= 0.0:
            raise ValueError("LinearFit has no sample")
        mx, my = self.sx / self.w, self.sy / self.w
        var = self.sxx / self.w - mx * mx
        if var > 1e-9 * max(1.0, mx * mx):
            c1 = max(0.0, (self.sxy / self.w - mx * my) / var)
            c0 = my - c1 * mx
            if c0 > 0.0:
                return c0, c1
        # one size seen (or a fit through a negative intercept): y = c0 * (1 + slope_prior * x)
        c0 = my / (1.0 + self.slope_prior * mx)
        return c0, c0 * self.slope_prior

    def __call__(self, x: float) -> float:
        c0, c1 = self.coefficients()
        return c0 + c1 * x


class CostModel:
    """Run latency, result spacing and head time, measured on this pipeline."""

    def __init__(self, n_stages: int = 1) -> None:
        self.n_stages = max(1, n_stages)
        self.lat = LinearFit()
        self.gap = LinearFit()
        self._head = 0.0
        self._head_n = 0.0
        self._draft = 0.0
        self._draft_n = 0.0

    @property
    def known(self) -> bool:
        return self.lat.known

    def latency(self, b: float) -> float:
        return self.lat(b)

    def spacing(self, b: float) -> float:
        """Seconds between the results of runs of b tokens launched back to back: measured when seen,
        else the latency over the stage count (a balanced pipeline); never above the latency."""
        lat = self.lat(b)
        if self.gap.known:
            return min(self.gap(b), lat)
        return lat / self.n_stages

    @property
    def head_s(self) -> float:
        return self._head / self._head_n if self._head_n else 0.0

    def observe_latency(self, b: int, seconds: float) -> None:
        self.lat.add(b, seconds)

    def observe_spacing(self, b: int, seconds: float) -> None:
        self.gap.add(b, seconds)

    def signature(self) -> Tuple[float, ...]:
        """A summary that changes when the predictions would (the policy re-plans on a change)."""
        if not self.known:
            return ()
        return (self.latency(1), self.latency(9), self.spacing(1), self.spacing(8), self.head_s, self.draft_s)

    @property
    def draft_s(self) -> float:
        """The head's seconds per drafted token (drafting on the head delays its launches)."""
        return self._draft / self._draft_n if self._draft_n else 0.0

    def observe_head(self, seconds: float) -> None:
        self._head = 0.9 * self._head + seconds
        self._head_n = 0.9 * self._head_n + 1.0

    def observe_draft(self, n_tokens: int, seconds: float) -> None:
        if n_tokens > 0:
            self._draft = 0.9 * self._draft + seconds
            self._draft_n = 0.9 * self._draft_n + n_tokens


def _schedule(arm: Arm, cm: CostModel) -> Tuple[List[float], float]:
    """When the results of an epoch of a chained arm arrive (micro-batch 0 = the anchor), for the first
    2 (D + 1) micro-batches, and the step between later ones.

    Micro-batch m arrives right after the one before it (one pipeline spacing), or one latency after its
    launch if that is later: with the anchor for m <= D, else once micro-batch m - D - 1 was consumed.
    After this transient the arrivals are a step apart: the spacing, or the latency loop of D + 1
    micro-batches in flight, whichever is slower.
    """
    h = cm.head_s
    k, depth = arm.k, arm.depth
    d = cm.draft_s * k  # the head drafts each micro-batch before launching it
    gap, lat_k = max(cm.spacing(k), d), cm.latency(k) + d
    arrivals: List[float] = [cm.latency(1 + k) + d]
    for m in range(1, 2 * (depth + 1) + 1):
        launched = 0.0 if m <= depth else arrivals[m - depth - 1] + h
        arrivals.append(max(arrivals[m - 1] + gap, launched + lat_k))
    return arrivals, max(gap, (h + lat_k) / (depth + 1))


def predict(arm: Arm, a: float, cm: CostModel) -> Tuple[float, float]:
    """(expected accepted tokens, expected seconds) of one epoch of `arm`, given acceptance a.

    k = 0: one token per run. D = 0: the anchor alone, i.e. one round of synchronous speculation
    (1 + k tokens verified in one run; the expected yield is sum_{i<=k} a^i). D > 0: the anchor's
    drafts are followed by micro-batches of k drafts continuing them, D of them in flight, a new one
    launched as each result is consumed (_schedule). The epoch ends at the first rejected draft (then
    its correction is the epoch's last token).
    """
    h = cm.head_s
    if arm.off:
        return 1.0, cm.latency(1) + h
    k, depth = arm.k, arm.depth
    if depth == 0:
        tokens = (1.0 - a ** (k + 1)) / (1.0 - a) if a < 1.0 else k + 1.0
        return tokens, cm.latency(1 + k) + cm.draft_s * k + h
    arrivals, step = _schedule(arm, cm)
    n_exact = len(arrivals) - 1
    pk = a ** k  # a micro-batch fully accepted
    # drafts accepted in a micro-batch that holds the rejection, on average
    j_rej = sum(j * a ** j * (1.0 - a) for j in range(k)) / (1.0 - pk) if pk < 1.0 else 0.0
    tokens = time = 0.0
    p_reach = 1.0  # probability that micro-batches 0..m-1 were all accepted
    for m in range(n_exact):
        p_end = p_reach * (1.0 - pk)
        tokens += p_end * (m * k + j_rej + 1.0)
        time += p_end * arrivals[m]
        p_reach *= pk
    # m >= n_exact: ends at n_exact + j with probability p_reach (1 - pk) pk^j, arriving at A + j * step
    tail = pk / (1.0 - pk) if pk < 1.0 else float(_MAX_STEPS)
    tokens += p_reach * (n_exact * k + j_rej + 1.0 + k * tail)
    time += p_reach * (arrivals[n_exact] + step * tail)
    return tokens, time + h


def epoch_seconds(arm: Arm, cm: CostModel, tokens: int, anchored: bool = True) -> float:
    """The model's duration of an epoch of `arm` that accepted `tokens` tokens (its realised outcome):
    what the policy compares with the measured duration, so that its corrections concern costs only
    (the acceptance is measured on its own). anchored: the stretch began with an anchor; otherwise it
    continued a chain already in flight and is charged its steady step per micro-batch."""
    h = cm.head_s
    if arm.off:
        return tokens * (cm.latency(1) + h)
    if arm.depth == 0:
        return cm.latency(1 + arm.k) + cm.draft_s * arm.k + h
    arrivals, step = _schedule(arm, cm)
    m = max(0, tokens - 1) // arm.k  # the micro-batch that ended the epoch
    if not anchored:
        return max(1, -(-tokens // arm.k)) * step
    t = arrivals[m] if m < len(arrivals) else arrivals[-1] + (m - len(arrivals) + 1) * step
    return t + h


def rate(arm: Arm, a: float, cm: CostModel) -> float:
    """Predicted accepted tokens per second of an arm."""
    tokens, seconds = predict(arm, a, cm)
    return tokens / seconds if seconds > 0 else math.inf
