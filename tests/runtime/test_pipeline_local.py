"""The pipeline runtime with stages on threads (local transport): stage splits, asynchronous runs,
cancellation, KV commands through the event stream, random message delays, and faults."""
from __future__ import annotations

import time

import numpy as np
import pytest

import pipeinfer
from pipeinfer import _core

PROMPT = [5, 17, 99, 3, 250, 42, 7, 130]


def _args(tokens, pos0=0, seq=0, all_logits=True):
    n = len(tokens)
    flags = np.ones(n, np.uint8) if all_logits else np.eye(1, n, n - 1, dtype=np.uint8)[0]
    return (np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32), np.full(n, seq, np.int32), flags)


def _greedy(p, prompt, n):
    logits = p.decode(*_args(prompt, all_logits=False))[-1]
    out, pos = [], len(prompt)
    for _ in range(n):
        tok = int(np.argmax(logits))
        out.append(tok)
        logits = p.decode(*_args([tok], pos0=pos))[0]
        pos += 1
    return out


@pytest.fixture(scope="module")
def model4(tiny_model):
    path, model = tiny_model("llama", "q8_0", n_layer=4)
    return str(path), model


@pytest.mark.parametrize("split", [[4], [2, 2], [1, 2, 1], [1, 1, 1, 1]])
def test_stages_give_identical_logits_and_greedy_tokens(model4, split):
    path, _ = model4
    ref = _core.Pipeline(path, n_ctx=64)
    want_logits = ref.decode(*_args(PROMPT)).copy()
    ref.kv_clear()
    want_tokens = _greedy(ref, PROMPT, 12)
    p = _core.Pipeline(path, n_ctx=64, n_stages=len(split), stage_layers=split)
    try:
        assert p.n_stages == len(split) and list(p.stage_layers) == split
        np.testing.assert_array_equal(p.decode(*_args(PROMPT)), want_logits)
        p.kv_clear()
        assert _greedy(p, PROMPT, 12) == want_tokens
        stats = p.stats()
        assert [s["layer_end"] - s["layer_begin"] for s in stats] == split
        assert all(s["runs"] == stats[0]["runs"] for s in stats)
        if len(split) > 1:
            assert stats[0]["bytes_sent"] > 0
    finally:
        p.close()


def test_split_by_bytes_is_default(model4):
    path, _ = model4
    p = _core.Pipeline(path, n_ctx=32, n_stages=3)
    try:
        assert sum(p.stage_layers) == 4 and len(p.stage_layers) == 3 and min(p.stage_layers) >= 1
    finally:
        p.close()


def test_random_message_delays_do_not_change_results(model4):
    path, _ = model4
    want = _greedy(_core.Pipeline(path, n_ctx=64), PROMPT, 10)
    for seed in (1, 2):
        p = _core.Pipeline(path, n_ctx=64, n_stages=4, max_delay_us=3000, delay_seed=seed)
        try:
            assert _greedy(p, PROMPT, 10) == want
        finally:
            p.close()


def test_async_runs_return_in_launch_order(model4):
    """Several runs in flight at once on different sequences; each result equals the sync result."""
    path, _ = model4
    ref = _core.Pipeline(path, n_ctx=64, n_seq_max=4)
    p = _core.Pipeline(path, n_ctx=64, n_seq_max=4, n_stages=4)
    try:
        ref.decode(*_args(PROMPT))
        p.decode(*_args(PROMPT))
        for q in (ref, p):
            for s in (1, 2, 3):
                q.kv_seq_cp(0, s, 0, -1)
        conts = {1: [11, 12, 13], 2: [21], 3: [31, 32]}
        want = {s: ref.decode(*_args(c, pos0=len(PROMPT), seq=s)).copy() for s, c in conts.items()}
        ids = {p.submit(*_args(c, pos0=len(PROMPT), seq=s)): s for s, c in conts.items()}
        assert p.n_in_flight == 3
        for rid in sorted(ids):
            got_id, skipped, logits = p.wait()
            assert got_id == rid and not skipped
            np.testing.assert_array_equal(logits, want[ids[rid]])
        assert p.n_in_flight == 0
    finally:
        p.close()


def test_cancelled_runs_skip_layers_and_kv_stays_consistent(model4):
    path, model = model4
    from reference_forward import reference_forward

    p = _core.Pipeline(path, n_ctx=128, n_seq_max=8, n_stages=4, stage_layers=[1, 1, 1, 1])
    try:
        p.decode(*_args(PROMPT))
        for s in range(1, 8):
            p.kv_seq_cp(0, s, 0, -1)
        ids = [p.submit(*_args(list(range(40, 56)), pos0=len(PROMPT), seq=s)) for s in range(1, 6)]
        p.cancel(ids)
        results = [p.wait() for _ in ids]
        assert [r[0] for r in results] == ids
        assert any(skipped for _, skipped, _ in results)
        stats = p.stats()
        assert sum(s["layers_skipped"] + s["runs_skipped"] for s in stats[1:]) > 0
        # drop whatever the cancelled runs left in the cache, on every stage, then continue seq 0
        for s in range(1, 6):
            p.kv_seq_rm(s, len(PROMPT), -1)
        cont = [9, 8, 7]
        got = p.decode(*_args(cont, pos0=len(PROMPT))).copy()
        ref = reference_forward(model, PROMPT + cont, attn_f16=True)[len(PROMPT):]
        assert float(np.max(np.abs(got - ref)) / (ref.max() - ref.min())) < 0.015
        assert p.kv_n_used == len(PROMPT) + len(cont)
    finally:
        p.close()


def test_cancel_of_unknown_or_finished_runs_is_harmless(model4):
    path, _ = model4
    p = _core.Pipeline(path, n_ctx=64, n_stages=2)
    try:
        want = p.decode(*_args(PROMPT)).copy()
        p.cancel([0, 12345, -7])
        p.kv_clear()
        np.testing.assert_array_equal(p.decode(*_args(PROMPT)), want)
    finally:
        p.close()


def test_act_f16_is_close(model4):
    path, _ = model4
    want = _core.Pipeline(path, n_ctx=64).decode(*_args(PROMPT)).copy()
    p = _core.Pipeline(path, n_ctx=64, n_stages=2, act_f16=True)
    try:
        got = p.decode(*_args(PROMPT))
        assert float(np.max(np.abs(got - want))) < 0.01 * float(want.max() - want.min())
    finally:
        p.close()


def test_worker_error_surfaces_on_head(model4):
    """A KV cache too small for a batch fails on every stage; the head raises the typed error."""
    path, _ = model4
    p = _core.Pipeline(path, n_ctx=4, n_stages=2)
    try:
        with pytest.raises(pipeinfer.KVCacheFullError):
            p.decode(*_args(PROMPT))
    finally:
        p.close()


def test_bad_configurations(model4):
    path, _ = model4
    with pytest.raises(ValueError, match="cannot split 4 layers into 5 stages"):
        _core.Pipeline(path, n_stages=5)
    with pytest.raises(ValueError, match="sum to 3"):
        _core.Pipeline(path, n_stages=2, stage_layers=[1, 2])
    with pytest.raises(ValueError, match="unknown transport"):
        _core.Pipeline(path, transport="carrier-pigeon")


def test_close_is_prompt_and_idempotent(model4):
    path, _ = model4
    p = _core.Pipeline(path, n_ctx=64, n_stages=4)
    p.decode(*_args(PROMPT))
    t0 = time.perf_counter()
    p.close()
    p.close()
    assert time.perf_counter() - t0 < 5.0
    with pytest.raises(RuntimeError, match="closed"):
        p.submit(*_args(PROMPT))
