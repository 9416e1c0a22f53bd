"""Small pure helpers of pipeinfer.evaluation: link parsing, the linear cost fit, result files."""
from __future__ import annotations

import json
import math

import pytest

from pipeinfer.evaluation import netem
from pipeinfer.evaluation.calibrate import fit_linear
from pipeinfer.evaluation.results import write_results


def test_link_units():
    assert netem.rate_bps("100mbit") == 1e8
    assert netem.rate_bps("10gbit") == 1e10
    assert math.isinf(netem.rate_bps("-"))
    assert netem.delay_s("0.5ms") == pytest.approx(5e-4)
    assert netem.delay_s("50us") == pytest.approx(5e-5)
    assert netem.delay_s("-") == 0.0
    with pytest.raises(ValueError, match="rate"):
        netem.rate_bps("fast")
    with pytest.raises(ValueError, match="delay"):
        netem.delay_s("2 parsecs")
    env = netem.tcp_env()
    assert env["FI_PROVIDER"] == "tcp" and env["MPIR_CVAR_NOLOCAL"] == "1"
    assert [p.name for p in netem.PROFILES][1:] == ["10gbit+0.05ms", "1gbit+0.5ms", "100mbit+2ms"]


def test_fit_linear_recovers_exact_lines_and_clips():
    assert fit_linear([1, 2, 4, 8], [3.0, 5.0, 9.0, 17.0]) == pytest.approx((1.0, 2.0))
    fixed, slope = fit_linear([1, 2, 4], [1.0, 0.9, 0.5])  # decreasing: no negative slope
    assert slope == 0.0 and fixed == pytest.approx(0.8)
    fixed, slope = fit_linear([1, 2], [1.0, 3.0])  # the line would cross below zero: through the origin
    assert fixed == 0.0 and slope > 0
    assert fit_linear([4, 4], [2.0, 4.0]) == (3.0, 0.0)
    with pytest.raises(ValueError, match='sample'):
        fit_linear([], [])


def test_write_results(tmp_path):
    doc = {"experiment": "x", "records": [{"mode": "iterative", "stages_detail": [], "stage_busy_s": [0.5, 0.25],
                                           "predicted_per_second": 12.5, "output_ok": True}]}
    paths = write_results(tmp_path / "o", "x", doc)
    assert json.loads(paths["json"].read_text())["records"][0]["predicted_per_second"] == 12.5
    lines = paths["csv"].read_text().splitlines()
    head = lines[0].split(",")
    row = dict(zip(head, lines[1].split(",")))
    assert row["mode"] == "iterative" and row["stage_busy_s"] == "0.5;0.25" and row["output_ok"] == "True"
