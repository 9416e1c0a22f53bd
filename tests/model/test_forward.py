"""The native forward pass against the float64 numpy oracle (tests/support/reference_forward.py).

Tolerances: the engine rounds K, V, Q and the attention weights to f16 (the precision of llama.cpp's
default f16 KV cache) and, for quantized weights, quantizes activations to Q8 (ggml's vec_dot types),
so logits differ from the float64 oracle by an amount that grows with the weight type's coarseness.
The oracle is run with attn_f16=True (the same f16 roundings), so what remains is the activation
quantization and float summation order. We compare max |engine - oracle| against the oracle's logit
range (max - min), per weight type: f32 0.01%, f16 0.2%, bf16 0.6%, 8-bit 3%, 5/6-bit and below 5%
(measured: f32 ~1e-7, f16 ~6e-4, bf16 ~3e-3, quantized 0.8-1.7%).
"""
from __future__ import annotations

import numpy as np
import pytest

import pipeinfer
from pipeinfer import _core
import reference_forward as oracle


def reference_forward(model, tokens, **kw):
    return oracle.reference_forward(model, tokens, attn_f16=True, **kw)

TOL = {
    "f32": 1e-4, "f16": 0.002, "bf16": 0.006, "q8_0": 0.03,
    "q6_k": 0.05, "q5_0": 0.05, "q5_1": 0.05, "q5_k": 0.05,
    "q4_0": 0.05, "q4_1": 0.05, "q4_k": 0.05, "q3_k": 0.05, "q2_k": 0.05,
}  # fmt: skip

PROMPT = [5, 17, 99, 3, 250, 42, 7, 130]


def _decode_all(p, tokens, pos0=0, seq=0):
    n = len(tokens)
    return p.decode(np.asarray(tokens, np.int32), np.arange(pos0, pos0 + n, dtype=np.int32),
                    np.full(n, seq, np.int32), np.ones(n, np.uint8)).copy()


def _rel_err(got, ref):
    return float(np.max(np.abs(got - ref)) / (np.max(ref) - np.min(ref)))


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("wtype", list(TOL))
def test_logits_match_reference(tiny_model, arch, wtype):
    path, model = tiny_model(arch, wtype)
    p = _core.Pipeline(str(path), n_ctx=64)
    got = _decode_all(p, PROMPT)
    ref = reference_forward(model, PROMPT)
    assert got.shape == ref.shape
    assert _rel_err(got, ref) < TOL[wtype]
    # the argmax of the last row is robust to these errors unless the top two are nearly tied
    top2 = np.sort(ref[-1])[-2:]
    if top2[1] - top2[0] > 0.1 * (ref[-1].max() - ref[-1].min()):
        assert int(np.argmax(got[-1])) == int(np.argmax(ref[-1]))


@pytest.mark.parametrize("wtype", ["f32", "q8_0", "q4_k"])
def test_batch_equals_single_token_steps(tiny_model, wtype):
    path, _ = tiny_model("qwen2", wtype)
    p = _core.Pipeline(str(path), n_ctx=64)
    batched = _decode_all(p, PROMPT)
    p.kv_clear()
    steps = np.stack([_decode_all(p, [t], pos0=i)[0] for i, t in enumerate(PROMPT)])
    np.testing.assert_allclose(batched, steps, rtol=0, atol=1e-4 * float(np.abs(steps).max()))


def test_stages_split_equals_single_stage(tiny_model):
    path, model = tiny_model("llama", "q8_0", n_layer=4)
    one = _decode_all(_core.Pipeline(str(path), n_ctx=64), PROMPT)
    for split in ([1, 3], [2, 2], [1, 1, 1, 1]):
        p = _core.Pipeline(str(path), n_ctx=64, stage_layers=split)
        assert p.n_stages == len(split)
        np.testing.assert_array_equal(_decode_all(p, PROMPT), one)
        assert [s["layer_end"] - s["layer_begin"] for s in p.stats()] == split


def test_sequences_share_prefix_and_diverge(tiny_model):
    """Two sequences share a prompt (seq_cp, metadata only) and continue with different tokens."""
    path, model = tiny_model("qwen2", "f32")
    p = _core.Pipeline(str(path), n_ctx=64, n_seq_max=4)
    prefix, a, b = PROMPT[:5], [11, 12], [21, 22, 23]
    _decode_all(p, prefix, seq=0)
    p.kv_seq_cp(0, 1, 0, -1)
    p.kv_seq_cp(0, 2, 0, -1)
    got_a = _decode_all(p, a, pos0=len(prefix), seq=1)
    got_b = _decode_all(p, b, pos0=len(prefix), seq=2)
    ref_a = reference_forward(model, prefix + a)[len(prefix):]
    ref_b = reference_forward(model, prefix + b)[len(prefix):]
    assert _rel_err(got_a, ref_a) < TOL["f32"]
    assert _rel_err(got_b, ref_b) < TOL["f32"]
    assert p.kv_seq_pos_max(1) == len(prefix) + len(a) - 1
    assert p.kv_seq_pos_max(2) == len(prefix) + len(b) - 1
    # dropping sequence 2's tail and re-decoding different tokens gives the new continuation
    p.kv_seq_rm(2, len(prefix), -1)
    got_c = _decode_all(p, a, pos0=len(prefix), seq=2)
    np.testing.assert_allclose(got_c, got_a, rtol=0, atol=1e-5 * float(np.abs(got_a).max()))
    # keep only sequence 1: the cells of 0 and 2 that 1 does not hold are freed
    p.kv_seq_keep(1)
    assert p.kv_n_used == len(prefix) + len(a)
    assert p.kv_seq_pos_max(0) == -1


def test_logits_only_for_requested_rows(tiny_model):
    path, model = tiny_model("llama", "f32")
    p = _core.Pipeline(str(path), n_ctx=64)
    n = len(PROMPT)
    flags = np.zeros(n, np.uint8)
    flags[[2, 5]] = 1
    out = p.decode(np.asarray(PROMPT, np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32), flags)
    ref = reference_forward(model, PROMPT)[[2, 5]]
    assert out.shape == ref.shape
    assert _rel_err(out, ref) < TOL["f32"]


def test_kv_full_is_an_error_and_leaves_cache_usable(tiny_model):
    path, _ = tiny_model("llama", "f32")
    p = _core.Pipeline(str(path), n_ctx=8)
    _decode_all(p, PROMPT[:6])
    with pytest.raises(pipeinfer.KVCacheFullError, match="KV cache full"):
        _decode_all(p, PROMPT[:3], pos0=6)
    assert p.kv_n_used == 6
    assert _decode_all(p, PROMPT[:2], pos0=6).shape[0] == 2


@pytest.mark.parametrize(
    "tokens, pos, seq, match",
    [
        ([1, 2], [0], [0], "positions but 2 tokens"),
        ([1, 10**6], [0, 1], [0, 0], "out of the vocabulary"),
        ([1, -1], [0, 1], [0, 0], "out of the vocabulary"),
        ([1, 2], [0, -3], [0, 0], "negative position"),
        ([1, 2], [0, 1], [0, 5], "sequence id 5"),
    ],
)
def test_bad_batches_raise(tiny_model, tokens, pos, seq, match):
    path, _ = tiny_model("llama", "f32")
    p = _core.Pipeline(str(path), n_ctx=16)
    with pytest.raises(ValueError, match=match):
        p.decode(np.asarray(tokens, np.int32), np.asarray(pos, np.int32), np.asarray(seq, np.int32),
                 np.ones(len(tokens), np.uint8))
    assert p.kv_n_used == 0


def test_bad_stage_split_raises(tiny_model):
    path, _ = tiny_model("llama", "f32", n_layer=2)
    with pytest.raises(ValueError, match="sum to 3"):
        _core.Pipeline(str(path), stage_layers=[1, 2])
    with pytest.raises(ValueError, match="at least one layer"):
        _core.Pipeline(str(path), stage_layers=[2, 0])


def test_batch_without_wanted_logits_fills_the_cache(tiny_model):
    """A batch that asks for no logits (cache-only prefill) returns no rows and leaves the cache as
    a normal batch would: the next token's logits equal those of a full evaluation."""
    path, model = tiny_model("qwen2", "q4_k")
    p = _core.Pipeline(str(path), n_ctx=64)
    n = len(PROMPT) - 1
    out = p.decode(np.asarray(PROMPT[:n], np.int32), np.arange(n, dtype=np.int32), np.zeros(n, np.int32),
                   np.zeros(n, np.uint8))
    assert out.shape == (0, p.n_vocab)
    last = _decode_all(p, PROMPT[n:], pos0=n)
    p.kv_clear()
    full = _decode_all(p, PROMPT)
    np.testing.assert_allclose(last[0], full[-1], rtol=0, atol=1e-4 * float(np.abs(full).max()))
