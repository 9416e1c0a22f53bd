"""Tests of the test infrastructure itself: the synthetic GGUF writer (synthetic.py) and the float64 numpy
oracle (reference_forward.py). The oracle is checked through invariants and hand-computed cases, and its
rope convention against the llama.cpp converter's q/k permutation."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gguf
import reference_forward as R
import synthetic as S

ALL_TYPES = list(S.WEIGHT_TYPES)
ARCHS = ["llama", "qwen2"]


def _tokens(n: int, seed: int = 1, n_vocab: int = 300) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(3, n_vocab, size=n)]


def _with_weights(model, **updates):
    """(hparams, weights) copy of model with some weights replaced."""
    weights = dict(model.weights)
    weights.update(updates)
    return dict(model.hparams), weights


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


# ---------------------------------------------------------------------------------------------------------
# oracle: hand-computed pieces


def test_rms_norm_hand_computed():
    x = np.array([[3.0, 4.0]])  # mean(x^2) = 12.5
    got = R.rms_norm(x, np.array([1.0, 2.0], dtype=np.float32), eps=0.0)
    r = math.sqrt(12.5)
    np.testing.assert_allclose(got, [[3.0 / r, 8.0 / r]], rtol=1e-15)


@pytest.mark.parametrize("mode", ["normal", "neox"])
def test_rope_hand_computed_two_positions(mode):
    # one head, head_dim 4, base 10000: inverse frequencies 1 and 10000^(-1/2) = 0.01
    x = np.array([[[1.0, 2.0, 3.0, 4.0]], [[1.0, 2.0, 3.0, 4.0]]])  # (2 tokens, 1 head, 4)
    got = R.rope(x, np.array([0, 1]), n_rot=4, theta_base=10000.0, mode=mode)
    np.testing.assert_array_equal(got[0, 0], [1.0, 2.0, 3.0, 4.0])  # position 0 is the identity
    c1, s1, c2, s2 = math.cos(1.0), math.sin(1.0), math.cos(0.01), math.sin(0.01)
    if mode == "normal":  # pairs (0, 1) at angle 1 and (2, 3) at angle 0.01
        want = [1 * c1 - 2 * s1, 1 * s1 + 2 * c1, 3 * c2 - 4 * s2, 3 * s2 + 4 * c2]
    else:  # pairs (0, 2) at angle 1 and (1, 3) at angle 0.01
        want = [1 * c1 - 3 * s1, 2 * c2 - 4 * s2, 1 * s1 + 3 * c1, 2 * s2 + 4 * c2]
    np.testing.assert_allclose(got[1, 0], want, rtol=1e-14)


def test_rope_partial_rotation_passes_tail_through():
    x = np.arange(8, dtype=np.float64).reshape(1, 1, 8)
    for mode in ("normal", "neox"):
        got = R.rope(x, np.array([5]), n_rot=4, theta_base=10000.0, mode=mode)
        np.testing.assert_array_equal(got[0, 0, 4:], x[0, 0, 4:])
        assert not np.allclose(got[0, 0, :4], x[0, 0, :4])


def test_attention_single_head_two_positions_by_hand():
    # head_dim 2 (both rope modes agree), positions 0 and 1, causal
    q = np.array([[[0.3, -0.2]], [[0.5, 1.0]]])  # (2, 1, 2)
    k = np.array([[[1.0, 0.0]], [[0.0, 2.0]]])
    v = np.array([[[1.0, 2.0]], [[-1.0, 4.0]]])
    pos = np.array([0, 1])
    qr = R.rope(q, pos, 2, 10000.0, "normal")
    kr = R.rope(k, pos, 2, 10000.0, "normal")
    out = R.attention(qr, kr, v, R.visible_mask(pos))  # (2, 2)
    # token 0 sees only itself
    np.testing.assert_allclose(out[0], v[0, 0], rtol=1e-15)
    # token 1: q and k1 rotated by 1 rad, k0 unrotated; scale 1/sqrt(2)
    c, s = math.cos(1.0), math.sin(1.0)
    q1 = np.array([0.5 * c - 1.0 * s, 0.5 * s + 1.0 * c])
    k0 = np.array([1.0, 0.0])
    k1 = np.array([0.0 * c - 2.0 * s, 0.0 * s + 2.0 * c])
    s0, s1 = q1 @ k0 / math.sqrt(2), q1 @ k1 / math.sqrt(2)
    p0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
    np.testing.assert_allclose(out[1], p0 * v[0, 0] + (1 - p0) * v[1, 0], rtol=1e-13)


def test_visible_mask_positions_and_sequences():
    # tokens 0, 1: seq 0 at pos 0, 1; token 2: seq 1 at pos 0; token 3: seqs (1, 0) at pos 1
    m = R.visible_mask([0, 1, 0, 1], [0, 0, 1, (1, 0)])
    want = np.array(
        [
            [1, 0, 0, 0],
            [1, 1, 0, 1],  # token 3 belongs to seq 0 too and has pos 1 <= 1
            [0, 0, 1, 0],
            [0, 0, 1, 1],  # token 3 attends with its first seq id (1)
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(m, want)


def test_visible_mask_any_sequence_match():
    m = R.visible_mask([0, 1, 0, 1], [0, 0, 1, (1, 0)], seq_match="any")
    np.testing.assert_array_equal(m[3], [True, True, True, True])
    np.testing.assert_array_equal(m[:3], R.visible_mask([0, 1, 0, 1], [0, 0, 1, (1, 0)])[:3])


def test_attention_f16_rounds_inputs_and_probabilities():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(5, 4, 8)), rng.normal(size=(5, 2, 8)), rng.normal(size=(5, 2, 8))
    mask = R.visible_mask(range(5))
    exact, half = R.attention(q, k, v, mask), R.attention(q, k, v, mask, f16=True)
    assert 0 < np.abs(half - exact).max() < 1e-2
    r16 = [a.astype(np.float16).astype(np.float64) for a in (q, k, v)]
    np.testing.assert_array_equal(R.attention(*r16, mask, f16=True), half)  # inputs are rounded first
    # with f16 inputs, what is left is the rounding of the probabilities
    probs_exact = R.attention(*r16, mask)
    assert 0 < np.abs(half - probs_exact).max() < 1e-2


# ---------------------------------------------------------------------------------------------------------
# oracle: invariants on whole models


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_shape_finite_and_not_degenerate(tiny_model, arch):
    _, model = tiny_model(arch)
    logits = R.reference_forward(model, _tokens(16))
    assert logits.shape == (16, model.n_vocab) and logits.dtype == np.float64
    assert np.isfinite(logits).all()
    row_std = logits.std(axis=1)
    assert (row_std > 0.2).all() and (row_std < 5.0).all(), row_std
    assert len(set(logits.argmax(axis=1).tolist())) > 3  # the prediction depends on the context


@pytest.mark.parametrize("arch", ARCHS)
def test_causality_later_tokens_do_not_change_earlier_logits(tiny_model, arch):
    _, model = tiny_model(arch)
    a = _tokens(12, seed=1)
    b = a[:5] + _tokens(7, seed=2)
    la, lb = R.reference_forward(model, a), R.reference_forward(model, b)
    np.testing.assert_allclose(la[:5], lb[:5], rtol=0, atol=1e-12)
    assert np.abs(la[5:] - lb[5:]).max() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_equals_prefix_computations(tiny_model, arch):
    _, model = tiny_model(arch)
    toks = _tokens(9)
    full = R.reference_forward(model, toks)
    for i in range(1, len(toks) + 1):
        prefix = R.reference_forward(model, toks[:i])
        np.testing.assert_allclose(full[i - 1], prefix[-1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_shifting_all_positions_keeps_logits(tiny_model, arch):
    # rope makes q.k depend only on relative position and there is no absolute position embedding
    _, model = tiny_model(arch)
    toks = _tokens(8)
    base = R.reference_forward(model, toks)
    shifted = R.reference_forward(model, toks, positions=list(range(37, 45)))
    np.testing.assert_allclose(base, shifted, rtol=0, atol=1e-9)


def test_qwen2_biases_matter(tiny_model):
    _, model = tiny_model("qwen2")
    toks = _tokens(8)
    base = R.reference_forward(model, toks)
    for which in ("attn_q", "attn_k", "attn_v"):
        zeroed = {f"blk.{i}.{which}.bias": np.zeros_like(model.weights[f"blk.{i}.{which}.bias"]) for i in range(2)}
        other = R.reference_forward(_with_weights(model, **zeroed), toks)
        assert np.abs(other - base).max() > 1e-2, which


def test_llama_has_no_biases(tiny_model):
    _, model = tiny_model("llama")
    assert not [n for n in model.weights if n.endswith(".bias")]


@pytest.mark.parametrize("arch", ARCHS)
def test_gqa_with_repeated_kv_heads_equals_mha(tiny_model, arch):
    # repeating each kv head n_head / n_head_kv times (query head h -> kv head h // group) must give
    # exactly the same model with n_head_kv == n_head
    _, model = tiny_model(arch)
    hp = model.hparams
    group, hd = hp["n_head"] // hp["n_head_kv"], hp["head_dim"]
    updates = {}
    for i in range(hp["n_layer"]):
        for which in ("attn_k", "attn_v"):
            wk = model.weights[f"blk.{i}.{which}.weight"]  # (n_head_kv * hd, n_embd)
            updates[f"blk.{i}.{which}.weight"] = np.repeat(wk.reshape(hp["n_head_kv"], hd, -1), group, axis=0).reshape(
                hp["n_head"] * hd, -1
            )
            bias = model.weights.get(f"blk.{i}.{which}.bias")
            if bias is not None:
                updates[f"blk.{i}.{which}.bias"] = np.repeat(bias.reshape(hp["n_head_kv"], hd), group, axis=0).ravel()
    mha_hp, mha_w = _with_weights(model, **updates)
    mha_hp["n_head_kv"] = hp["n_head"]
    toks = _tokens(10)
    np.testing.assert_allclose(R.reference_forward((mha_hp, mha_w), toks), R.reference_forward(model, toks), atol=1e-12)


def test_gqa_grouping_is_contiguous_not_tiled(tiny_model):
    # tiling kv heads (h -> h % n_head_kv) is a different model: guards the h // group mapping
    _, model = tiny_model("llama")
    hp = model.hparams
    hd = hp["head_dim"]
    updates = {}
    for i in range(hp["n_layer"]):
        for which in ("attn_k", "attn_v"):
            wk = model.weights[f"blk.{i}.{which}.weight"]
            updates[f"blk.{i}.{which}.weight"] = np.tile(wk.reshape(hp["n_head_kv"], hd, -1), (2, 1, 1)).reshape(
                hp["n_head"] * hd, -1
            )
    tiled_hp, tiled_w = _with_weights(model, **updates)
    tiled_hp["n_head_kv"] = hp["n_head"]
    toks = _tokens(10)
    assert np.abs(R.reference_forward((tiled_hp, tiled_w), toks) - R.reference_forward(model, toks)).max() > 1e-3


def _unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of the llama.cpp converter's q/k permute: GGUF rows (2i, 2i+1) of a head came from HF rows
    (i, i + head_dim/2)."""
    rows, n_in = w.shape
    return w.reshape(n_head, rows // n_head // 2, 2, n_in).swapaxes(1, 2).reshape(rows, n_in)


def test_normal_rope_on_converted_weights_equals_neox_on_hf_weights(tiny_model):
    # the llama converter stores permuted q/k so that rope mode "normal" on them equals HF's rotate_half
    # (neox) on the original weights; the oracle must honour the same identity
    _, model = tiny_model("llama")
    hp = model.hparams
    updates = {}
    for i in range(hp["n_layer"]):
        updates[f"blk.{i}.attn_q.weight"] = _unpermute_qk(model.weights[f"blk.{i}.attn_q.weight"], hp["n_head"])
        updates[f"blk.{i}.attn_k.weight"] = _unpermute_qk(model.weights[f"blk.{i}.attn_k.weight"], hp["n_head_kv"])
    hf_hp, hf_w = _with_weights(model, **updates)
    hf_hp["rope_mode"] = "neox"
    toks = _tokens(10)
    want = R.reference_forward(model, toks)
    np.testing.assert_allclose(R.reference_forward((hf_hp, hf_w), toks), want, atol=1e-12)
    # and the rope mode matters: neox on the stored (permuted) weights is a different model
    mismatched = dict(hp, rope_mode="neox")
    assert np.abs(R.reference_forward((mismatched, model.weights), toks) - want).max() > 1e-3


@pytest.mark.parametrize("arch", ARCHS)
def test_two_sequences_in_one_batch_equal_separate_runs(tiny_model, arch):
    _, model = tiny_model(arch)
    shared, tail0, tail1 = _tokens(3, seed=3), _tokens(3, seed=4), _tokens(2, seed=5)
    tokens = shared + tail0 + tail1
    positions = [0, 1, 2, 3, 4, 5, 3, 4]
    seq_ids = [(0, 1)] * 3 + [0] * 3 + [1] * 2  # the prompt is shared by both sequences
    batch = R.reference_forward(model, tokens, positions, seq_ids=seq_ids)
    alone0 = R.reference_forward(model, shared + tail0)
    alone1 = R.reference_forward(model, shared + tail1)
    np.testing.assert_allclose(batch[:6], alone0, atol=1e-12)
    np.testing.assert_allclose(batch[6:], alone1[3:], atol=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_attn_f16_is_a_small_perturbation(tiny_model, arch):
    _, model = tiny_model(arch)
    toks = _tokens(10)
    exact, half = R.reference_forward(model, toks), R.reference_forward(model, toks, attn_f16=True)
    rel = np.abs(half - exact).max() / (exact.max() - exact.min())
    assert 1e-7 < rel < 1e-2


def test_greedy_is_argmax_of_the_forward(tiny_model):
    _, model = tiny_model("llama")
    prompt = _tokens(4)
    gen = R.reference_greedy(model, prompt, 6)
    assert len(gen) == 6
    logits = R.reference_forward(model, prompt + gen)
    assert logits[len(prompt) - 1 : -1].argmax(axis=1).tolist() == gen


def test_reference_forward_rejects_bad_input(tiny_model):
    _, model = tiny_model("llama")
    with pytest.raises(ValueError, match="token ids must be in"):
        R.reference_forward(model, [model.n_vocab])
    with pytest.raises(ValueError, match="positions has 1 entries, expected 2"):
        R.reference_forward(model, [5, 6], positions=[0])


# ---------------------------------------------------------------------------------------------------------
# synthetic writer


@pytest.mark.parametrize("arch", ARCHS)
def test_metadata_keys_as_llama_cpp_converters_write_them(tiny_model, arch):
    path, model = tiny_model(arch)
    r = gguf.GGUFReader(path)
    hp = model.hparams
    assert _field(r, "general.architecture") == arch
    assert _field(r, "general.name") == hp["name"]
    assert _field(r, f"{arch}.block_count") == 2
    assert _field(r, f"{arch}.context_length") == 256
    assert _field(r, f"{arch}.embedding_length") == 64
    assert _field(r, f"{arch}.feed_forward_length") == 160
    assert _field(r, f"{arch}.attention.head_count") == 4
    assert _field(r, f"{arch}.attention.head_count_kv") == 2
    assert _field(r, f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5, rel=1e-6)
    assert _field(r, f"{arch}.rope.freq_base") == 10000.0
    assert _field(r, "general.file_type") == int(gguf.LlamaFileType.ALL_F32)
    assert "general.alignment" not in r.fields
    if arch == "llama":  # convert_hf_to_gguf LlamaModel writes these two, Qwen2Model does not
        assert _field(r, "llama.rope.dimension_count") == 16
        assert _field(r, "llama.vocab_size") == model.n_vocab
    else:
        assert "qwen2.rope.dimension_count" not in r.fields and "qwen2.vocab_size" not in r.fields
    assert hp["rope_mode"] == ("normal" if arch == "llama" else "neox")
    assert hp["rms_eps"] == float(np.float32(1e-5))


def test_custom_alignment_is_written(tmp_path):
    m = S.write_tiny_model(tmp_path / "a.gguf", alignment=64)
    r = gguf.GGUFReader(m.path)
    assert _field(r, "general.alignment") == 64
    assert all(t.data_offset % 64 == 0 for t in r.tensors)


@pytest.mark.parametrize("weight_type", ALL_TYPES)
def test_tensors_round_trip_exactly(tmp_path, weight_type):
    m = S.write_tiny_model(tmp_path / "m.gguf", "qwen2", weight_type=weight_type, tied_output=False)
    hp = m.hparams
    r = gguf.GGUFReader(m.path)
    want_type = S.WEIGHT_TYPES[weight_type][0]
    assert _field(r, "general.file_type") == int(S.WEIGHT_TYPES[weight_type][1])
    assert {t.name for t in r.tensors} == set(m.weights)
    ne = {
        "token_embd.weight": [hp["n_embd"], hp["n_vocab"]],
        "output.weight": [hp["n_embd"], hp["n_vocab"]],
        "output_norm.weight": [hp["n_embd"]],
        "blk.1.attn_q.weight": [hp["n_embd"], hp["n_embd"]],
        "blk.1.attn_k.weight": [hp["n_embd"], hp["n_embd_kv"]],
        "blk.1.attn_k.bias": [hp["n_embd_kv"]],
        "blk.1.ffn_gate.weight": [hp["n_embd"], hp["n_ff"]],
        "blk.1.ffn_down.weight": [hp["n_ff"], hp["n_embd"]],
    }
    for t in r.tensors:
        if t.name in ne:
            assert [int(d) for d in t.shape] == ne[t.name], t.name
        is_matrix = m.weights[t.name].ndim == 2
        assert t.tensor_type == (want_type if is_matrix else gguf.GGMLQuantizationType.F32), t.name
        stored = gguf.quants.dequantize(t.data, t.tensor_type).reshape(m.weights[t.name].shape)
        np.testing.assert_array_equal(stored, m.weights[t.name], err_msg=t.name)
        assert m.tensor_types[t.name] == (weight_type if is_matrix else "f32")
    q = m.weights["blk.0.attn_q.weight"]
    assert abs(float(q.mean())) < 0.2 * float(q.std())  # roughly centred, also for the random K-quant blocks
    assert 0.5 / math.sqrt(hp["n_embd"]) < float(q.std()) < 2.0 / math.sqrt(hp["n_embd"])
    logits = R.reference_forward(m, _tokens(6))
    assert np.isfinite(logits).all() and 0.2 < logits.std() < 5.0


def test_k_quant_scale_packing_matches_gguf_unpacking():
    rng = np.random.default_rng(0)
    sc = rng.integers(0, 64, size=(5, 8)).astype(np.uint8)
    m = rng.integers(0, 64, size=(5, 8)).astype(np.uint8)
    got_sc, got_m = gguf.quants.Q4_K.get_scale_min(S._pack_k_scales(sc, m))
    np.testing.assert_array_equal(got_sc, sc)
    np.testing.assert_array_equal(got_m, m)


def test_k_quants_need_rows_of_256(tmp_path):
    with pytest.raises(ValueError, match="q4_k needs a row length .* multiple of 256, got 64"):
        S.write_tiny_model(tmp_path / "k.gguf", weight_type="q4_k", n_embd=64)


def test_type_overrides_make_a_mixed_file(tmp_path):
    overrides = {"blk.*.ffn_down.weight": "q6_k", "token_embd.weight": "q8_0"}
    m = S.write_tiny_model(tmp_path / "mix.gguf", "qwen2", weight_type="q4_k", type_overrides=overrides)
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(m.path).tensors}
    assert types["blk.0.ffn_down.weight"] == "Q6_K" and types["blk.1.ffn_down.weight"] == "Q6_K"
    assert types["token_embd.weight"] == "Q8_0"
    assert types["blk.0.attn_q.weight"] == "Q4_K" and types["blk.0.attn_q.bias"] == "F32"


@pytest.mark.parametrize("tied", [True, False])
def test_tied_output_decides_output_tensor(tmp_path, tied):
    m = S.write_tiny_model(tmp_path / "t.gguf", tied_output=tied)
    names = {t.name for t in gguf.GGUFReader(m.path).tensors}
    assert ("output.weight" in names) is (not tied)


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = S.write_tiny_model(tmp_path / "a.gguf", weight_type="q4_0", seed=7)
    b = S.write_tiny_model(tmp_path / "b.gguf", weight_type="q4_0", seed=7)
    c = S.write_tiny_model(tmp_path / "c.gguf", weight_type="q4_0", seed=8)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert not np.array_equal(a.weights["blk.0.attn_q.weight"], c.weights["blk.0.attn_q.weight"])


def test_bpe_vocab_metadata_and_merges(tiny_model):
    path, model = tiny_model("llama")
    r = gguf.GGUFReader(path)
    voc = model.vocab
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "smollm"
    assert _field(r, "tokenizer.ggml.tokens") == voc.tokens
    assert _field(r, "tokenizer.ggml.merges") == voc.merges
    assert _field(r, "tokenizer.ggml.token_type") == voc.token_types
    assert _field(r, "tokenizer.ggml.add_bos_token") is False
    assert _field(r, "tokenizer.ggml.bos_token_id") == _field(r, "tokenizer.ggml.eos_token_id") == 0
    assert voc.tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert voc.token_types[:3] == [int(gguf.TokenType.CONTROL)] * 3
    assert len(voc.tokens) % 32 == 0 and len(voc.merges) >= 40
    index = {t: i for i, t in enumerate(voc.tokens)}
    assert len(index) == len(voc.tokens)  # no duplicates
    for merge in voc.merges:
        left, right = merge.split(" ")
        assert left in index and right in index and left + right in index, merge
    assert voc.tokens[voc.byte_token_id(ord(" "))] == "Ġ" and voc.tokens[voc.byte_token_id(ord("a"))] == "a"


def test_bpe_vocab_is_a_working_byte_level_bpe():
    # independent check with the HF tokenizers library: the vocab + merges form a consistent GPT-2 BPE
    import tokenizers  # a dependency: missing must fail, not skip
    voc = S.make_bpe_vocab()
    bpe = tokenizers.models.BPE(
        vocab={t: i for i, t in enumerate(voc.tokens)}, merges=[tuple(m.split(" ")) for m in voc.merges]
    )
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    text = "the cat and the hat, is it? \u00e9\u4e2d\n"
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text
    assert tok.encode(" the").ids == [voc.tokens.index("Ġthe")]
    assert tok.encode(" cat").ids == [voc.tokens.index("Ġcat")]
    assert len(ids) < len(text.encode("utf-8"))  # merges applied


def test_spm_vocab_metadata(tmp_path):
    m = S.write_tiny_model(tmp_path / "spm.gguf", vocab="spm")
    r = gguf.GGUFReader(m.path)
    voc = m.vocab
    assert _field(r, "tokenizer.ggml.model") == "llama"
    assert "tokenizer.ggml.pre" not in r.fields and "tokenizer.ggml.merges" not in r.fields
    assert _field(r, "tokenizer.ggml.tokens") == voc.tokens
    np.testing.assert_allclose(_field(r, "tokenizer.ggml.scores"), voc.scores)
    assert (_field(r, "tokenizer.ggml.bos_token_id"), _field(r, "tokenizer.ggml.eos_token_id")) == (1, 2)
    assert _field(r, "tokenizer.ggml.unknown_token_id") == 0
    assert _field(r, "tokenizer.ggml.add_bos_token") is True
    assert "tokenizer.chat_template" not in r.fields
    for b in (0, 10, 255):
        assert voc.tokens[voc.byte_token_id(b)] == f"<0x{b:02X}>"
        assert voc.token_types[voc.byte_token_id(b)] == int(gguf.TokenType.BYTE)
    index = set(voc.tokens)
    normal = [t for t, ty in zip(voc.tokens, voc.token_types) if ty == int(gguf.TokenType.NORMAL)]
    for piece in normal:  # every multi-character piece is reachable by merging two pieces
        if len(piece) > 1:
            assert any(piece[:k] in index and piece[k:] in index for k in range(1, len(piece))), piece


def test_chat_template_renders_chatml(tiny_model):
    import jinja2  # a dependency: missing must fail, not skip
    path, model = tiny_model("llama")
    template = _field(gguf.GGUFReader(path), "tokenizer.chat_template")
    assert template == model.vocab.chat_template
    text = jinja2.Template(template).render(messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_tiny_model_fixture_caches_per_arguments(tiny_model):
    a = tiny_model("llama", "q8_0")
    assert tiny_model("llama", "q8_0") is a
    b = tiny_model("llama", "q8_0", seed=3)
    assert b is not a and a[0].exists() and b[0].exists()
    assert not a[1].weights["blk.0.attn_q.weight"].flags.writeable


# ---------------------------------------------------------------------------------------------------------
# oracle on real models: an independent check that its conventions are llama.cpp's (a wrong rope mode,
# GQA mapping or norm would not produce these continuations)


def _hf_bpe_tokenizer(path):
    import tokenizers  # a dependency: missing must fail, not skip
    r = gguf.GGUFReader(path)
    toks, merges = _field(r, "tokenizer.ggml.tokens"), _field(r, "tokenizer.ggml.merges")
    bpe = tokenizers.models.BPE(vocab={t: i for i, t in enumerate(toks)}, merges=[tuple(m.split(" ")) for m in merges])
    tok = tokenizers.Tokenizer(bpe)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    return tok


def _assert_greedy_continuation(model, tok, prompt: str, continuation: str) -> None:
    """Greedy decoding of prompt yields continuation (checked with one teacher-forced forward pass)."""
    ids, want = tok.encode(prompt).ids, tok.encode(continuation).ids
    logits = R.reference_forward(model, ids + want[:-1])  # (len(ids) + len(want) - 1, n_vocab)
    got = logits[len(ids) - 1 :].argmax(axis=1).tolist()
    assert tok.decode(got) == continuation, (got, want)


@pytest.mark.realmodel
def test_oracle_on_smollm2_completes_a_fact(real_model_path):
    path = real_model_path("smollm2-135m")
    tok = _hf_bpe_tokenizer(path)
    model = R.load_gguf(path)
    assert model[0]["rope_theta"] == 100000.0 and model[0]["n_head_kv"] == 3
    _assert_greedy_continuation(model, tok, "The capital of France is", " Paris.")


@pytest.mark.realmodel
@pytest.mark.slow
def test_oracle_on_qwen25_coder_completes_code(real_model_path):
    path = real_model_path("qwen2.5-coder-0.5b")
    tok = _hf_bpe_tokenizer(path)
    model = R.load_gguf(path)
    assert "blk.0.attn_q.bias" in model[1] and R.rope_mode_of(model[0]) == "neox"
    _assert_greedy_continuation(model, tok, "def fibonacci(n):", "\n    if n")
