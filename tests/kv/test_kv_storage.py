"""KV cache storage types and memory-true contexts: f16 (default) and q8_0 caches, their byte counts,
the memory check made before allocating, the trained-context limit, and the kv_type travelling to
every pipeline stage."""
from __future__ import annotations

import numpy as np
import pytest

import pipeinfer
from oracle_drafters import OracleDrafter
from pipeinfer import _core
from pipeinfer.speculation import SpeculationPolicy

PROMPT = [5, 17, 99, 3, 250, 42, 7, 130]
NO_EOG = {0: -1e6, 1: -1e6, 2: -1e6}


def _args(tokens, pos0=0):
    n = len(tokens)
    return (np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32), np.zeros(n, np.int32),
            np.ones(n, np.uint8))


def _f16_bytes(n_layer, n_ctx, n_embd_kv):
    # K transposed with rows of n_ctx (rounded up to 32) + 32 cells, V one row per cell; 2 bytes a value
    return n_layer * (((n_ctx + 31) // 32 * 32 + 32) * n_embd_kv + n_ctx * n_embd_kv) * 2


@pytest.fixture(scope="module")
def model(tiny_model):
    # head_dim 32: q8_0 storage splits each head into whole blocks
    path, m = tiny_model("qwen2", "q8_0", n_layer=4, n_embd=128, n_head=4, n_head_kv=2, n_ff=256)
    return str(path), m


def test_kv_bytes_f16_and_q8_0(model):
    path, m = model
    n_embd_kv = m.hparams["n_embd_kv"]
    with pipeinfer.Pipeline(path, n_ctx=128, n_threads=1) as p:
        assert p._native.kv_type == "f16"
        assert p._native.kv_bytes == _f16_bytes(4, 128, n_embd_kv)
    with pipeinfer.Pipeline(path, n_ctx=128, n_threads=1, kv_type="q8_0") as p:
        assert p._native.kv_type == "q8_0"
        assert p._native.kv_bytes == 4 * 128 * 2 * (n_embd_kv // 32) * 34  # one block_q8_0 per 32 values


def test_q8_0_cache_logits_close_to_f16(model):
    path, _ = model
    with pipeinfer.Pipeline(path, n_ctx=64, n_threads=1) as p:
        f16 = p.eval_logits(PROMPT)
    with pipeinfer.Pipeline(path, n_ctx=64, n_threads=1, kv_type="q8_0") as p:
        q8 = p.eval_logits(PROMPT)
    assert not np.array_equal(f16, q8)
    # q8_0 keeps about 8 bits of each cached value: logits move by a small fraction of their spread
    assert np.max(np.abs(q8 - f16)) < 0.05 * np.ptp(f16)


@pytest.mark.parametrize("split", [[2, 2], [1, 2, 1]])
def test_q8_0_cache_reaches_every_stage(model, split):
    """The stages agree bit for bit with one stage: every worker stores K/V as q8_0 too."""
    path, _ = model
    one = _core.Pipeline(path, n_ctx=64, kv_type="q8_0")
    want = one.decode(*_args(PROMPT)).copy()
    one.close()
    p = _core.Pipeline(path, n_ctx=64, n_stages=len(split), stage_layers=split, kv_type="q8_0")
    try:
        np.testing.assert_array_equal(p.decode(*_args(PROMPT)), want)
    finally:
        p.close()


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_q8_0_cache_speculative_greedy_equals_plain(model, mode):
    path, _ = model
    with pipeinfer.Pipeline(path, n_ctx=96, n_threads=1, kv_type="q8_0") as p:
        want = p.generate(PROMPT, max_tokens=20, temperature=0, logit_bias=NO_EOG).tokens
    with pipeinfer.Pipeline(path, n_ctx=96, n_threads=1, kv_type="q8_0", stages=2, mode=mode,
                            draft=OracleDrafter(PROMPT + want),
                            speculation=SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)) as p:
        s = p.generate(PROMPT, max_tokens=20, temperature=0, logit_bias=NO_EOG)
    assert s.tokens == want
    assert s.stats.as_dict()["draft_n_accepted"] > 0


def test_kv_type_rejected_by_name(model):
    path, _ = model
    with pytest.raises(ValueError, match="kv_type must be 'f16' or 'q8_0', got 'f32'"):
        pipeinfer.Pipeline(path, n_ctx=64, kv_type="f32")
    with pytest.raises(ValueError, match="kv_type must be 'f16' or 'q8_0'"):
        _core.Pipeline(path, n_ctx=64, kv_type="q4_0")


def test_q8_0_cache_needs_head_size_multiple_of_32(tiny_model):
    path, _ = tiny_model("llama", "f32", n_embd=64, n_head=4, n_head_kv=2)  # head_dim 16
    with pytest.raises(pipeinfer.UnsupportedError, match="head size that is a multiple of 32, the model's is 16"):
        _core.Pipeline(str(path), n_ctx=64, kv_type="q8_0")


def test_context_above_trained_context_is_refused(model):
    path, m = model
    n_train = m.hparams["n_ctx_train"]
    with pytest.raises(ValueError, match=rf"n_ctx {n_train + 1} exceeds the model's trained context of {n_train} "
                                         r"tokens \(qwen2.context_length\)"):
        pipeinfer.Pipeline(path, n_ctx=n_train + 1)
    with pipeinfer.Pipeline(path, n_ctx=n_train, n_threads=1) as p:  # the trained context itself is fine
        assert p.n_ctx == n_train


def test_kv_cache_larger_than_memory_fails_before_allocating(tiny_model):
    """16 layers x 2^24 cells x 512 K/V values x 2 bytes: about 275 GB, checked before any allocation."""
    n_ctx = 1 << 24
    path, _ = tiny_model("llama", "q8_0", n_layer=16, n_embd=256, n_head=4, n_head_kv=4, n_ctx_train=n_ctx)
    need = _f16_bytes(16, n_ctx, 256)
    with pytest.raises(pipeinfer.InsufficientMemoryError) as e:
        pipeinfer.Pipeline(str(path), n_ctx=n_ctx, n_threads=1)
    msg = str(e.value)
    assert f"KV cache (n_ctx {n_ctx}, 16 layers" in msg and f"needs {need} bytes" in msg
    assert "are available" in msg and "kv_type='q8_0'" in msg
    assert isinstance(e.value, MemoryError)


def test_trained_context_is_per_slot(model):
    """Serving slots split the cells: each slot's share, not the total, is held to the trained context."""
    path, m = model
    n_train = m.hparams["n_ctx_train"]
    with pipeinfer.Pipeline(path, n_ctx=2 * n_train, n_threads=1, parallel=2) as p:
        assert p._native.n_ctx == 2 * n_train and p.n_ctx == n_train  # the engine's cells; each slot's share
    with pytest.raises(ValueError, match=rf"n_ctx {2 * n_train + 2} over 2 slots \({n_train + 1} per sequence\)"):
        pipeinfer.Pipeline(path, n_ctx=2 * n_train + 2, n_threads=1, parallel=2)
