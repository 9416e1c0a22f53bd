"""Tracing: with trace=True every stage reports a span per run it computed (for timelines)."""
from __future__ import annotations

import numpy as np

from pipeinfer import _core


def test_every_stage_reports_its_run_spans(tiny_model):
    path, _ = tiny_model("llama", "q8_0", n_layer=3)
    p = _core.Pipeline(str(path), n_ctx=64, n_stages=3, trace=True)
    try:
        p.stats()  # spans are reported once: start clean
        ids = [p.submit(np.array([5, 6], np.int32), np.array([2 * i, 2 * i + 1], np.int32), np.zeros(2, np.int32),
                        np.ones(2, np.uint8)) for i in range(3)]
        for _ in ids:
            p.wait()
        reports = p.stats()
        assert len(reports) == 3
        for st in reports:
            spans = st["spans"]
            assert [sp[0] for sp in spans] == ids
            for run_id, t0, t1, n_tokens, layers, skipped in spans:
                assert t1 >= t0 and n_tokens == 2 and layers == st["layer_end"] - st["layer_begin"] and not skipped
        # stage s computes a run after stage s-1 has
        for s in (1, 2):
            for a, b in zip(reports[s - 1]["spans"], reports[s]["spans"]):
                assert b[1] >= a[2]
        assert all(st["spans"] == [] for st in p.stats())  # taken by the previous call
    finally:
        p.close()


def test_no_spans_without_tracing(tiny_model):
    path, _ = tiny_model("llama", "q8_0", n_layer=2)
    p = _core.Pipeline(str(path), n_ctx=64, n_stages=2)
    try:
        p.decode(np.array([1, 2], np.int32), np.arange(2, dtype=np.int32), np.zeros(2, np.int32), np.ones(2, np.uint8))
        assert all(st["spans"] == [] for st in p.stats())
    finally:
        p.close()
