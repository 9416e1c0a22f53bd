"""The default layer split: contiguous stages minimising the costliest stage (then the most even), with
the output head counted on the last stage."""
from __future__ import annotations

import itertools
import random

import pytest

from pipeinfer import _core


def _brute(costs, n):
    best = None
    for cuts in itertools.combinations(range(1, len(costs)), n - 1):
        bounds = (0,) + cuts + (len(costs),)
        stage = [sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])]
        key = (max(stage), sum(c * c for c in stage))
        if best is None or key < best[0]:
            best = (key, [b - a for a, b in zip(bounds, bounds[1:])])
    return best


@pytest.mark.parametrize("seed", range(40))
def test_split_minimises_the_costliest_stage(seed):
    rng = random.Random(seed)
    costs = [rng.randint(1, 50) for _ in range(rng.randint(2, 11))]
    n = rng.randint(1, len(costs))
    got = _core.split_layers_by_bytes(costs, n)
    assert len(got) == n and min(got) >= 1 and sum(got) == len(costs)
    bounds = [0]
    for g in got:
        bounds.append(bounds[-1] + g)
    stage = [sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])]
    (best_max, best_sq), _ = _brute(costs, n)
    assert max(stage) == best_max and sum(c * c for c in stage) == best_sq


def test_output_head_weighs_on_the_last_stage():
    # 23 equal layers and a last layer that also carries a head 14x its size: the last stage keeps one layer
    assert _core.split_layers_by_bytes([10] * 23 + [154], 4) == [7, 8, 8, 1]


@pytest.mark.parametrize("n", [0, 5])
def test_split_rejects_impossible_stage_counts(n):
    with pytest.raises(ValueError, match="stages"):
        _core.split_layers_by_bytes([1, 2, 3, 4], n)
