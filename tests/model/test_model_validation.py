"""Broken files that used to load silently now fail at load with a typed error naming the key or
tensor and the file (issue 15): a block_count below the blocks present, a vocabulary shorter than the
embedding, token types out of range or of the wrong type, a norm weight stored in a type the model
cannot use, a missing context_length, a vocab_size that disagrees, array lengths that disagree, a
tensor the architecture does not know. Each case changes one thing in a good tiny model (which
loads). Every pipeline stage (and so every MPI rank) runs these checks when it loads the file."""
from __future__ import annotations

import gguf
import numpy as np
import pytest

import pipeinfer
from gguf_rewrite import VT, rewrite
from pipeinfer import _core


@pytest.fixture(scope="module")
def good(tiny_model):
    path, m = tiny_model("llama", "f32", n_layer=2)
    _core.Pipeline(str(path), n_ctx=32).close()  # the unbroken file loads
    return path, m


def _load(path, **kw):
    p = _core.Pipeline(str(path), n_ctx=32, **kw)
    p.close()


def _broken(good, tmp_path, name, **changes):
    return rewrite(good[0], tmp_path / f"{name}.gguf", **changes)


def _expect(path, exc, pattern):
    with pytest.raises(exc, match=pattern) as e:
        _load(path)
    assert str(path) in str(e.value)  # the message names the file
    return e.value


def test_block_count_below_the_blocks_present(good, tmp_path):
    p = _broken(good, tmp_path, "blocks", set_keys={"llama.block_count": (1, VT.UINT32)})
    _expect(p, pipeinfer.ModelError, r"tensor 'blk\.1\.\w+\.weight' is not part of a 'llama' model with 1 layers "
                                     r"\(llama\.block_count\)")


def test_block_count_above_the_blocks_present(good, tmp_path):
    p = _broken(good, tmp_path, "blocks3", set_keys={"llama.block_count": (3, VT.UINT32)})
    _expect(p, pipeinfer.ModelError, r"required tensor 'blk\.2\.attn_norm\.weight' is missing")


def test_unknown_extra_tensor(good, tmp_path):
    p = _broken(good, tmp_path, "extra", add_tensors={"blk.0.attn_sinks.weight": (np.zeros(4, np.float32), None)})
    _expect(p, pipeinfer.ModelError, r"tensor 'blk\.0\.attn_sinks\.weight' is not part of a 'llama' model")


def test_vocabulary_shorter_than_the_embedding(good, tmp_path):
    _, m = good
    tokens = list(m.vocab.tokens)[:-32]
    p = _broken(good, tmp_path, "vocab", set_keys={"tokenizer.ggml.tokens": (tokens, (VT.ARRAY, VT.STRING)),
                                                   "tokenizer.ggml.token_type": (m.vocab.token_types[:-32], (VT.ARRAY, VT.INT32))})
    _expect(p, pipeinfer.ModelError, rf"'tokenizer\.ggml\.tokens' has {len(tokens)} tokens but token_embd\.weight "
                                     rf"has {m.n_vocab} rows")


def test_token_type_arrays_of_another_length(good, tmp_path):
    _, m = good
    p = _broken(good, tmp_path, "types_len",
                set_keys={"tokenizer.ggml.token_type": (m.vocab.token_types[:-1], (VT.ARRAY, VT.INT32))})
    _expect(p, pipeinfer.ModelError, rf"'tokenizer\.ggml\.token_type' has {m.n_vocab - 1} entries, expected {m.n_vocab}")


def test_token_type_out_of_range(good, tmp_path):
    _, m = good
    types = list(m.vocab.token_types)
    types[40] = 9
    p = _broken(good, tmp_path, "types_range", set_keys={"tokenizer.ggml.token_type": (types, (VT.ARRAY, VT.INT32))})
    _expect(p, pipeinfer.ModelError, r"'tokenizer\.ggml\.token_type' entry 40 is 9; token types are 0\.\.6")


def test_token_type_of_the_wrong_type(good, tmp_path):
    _, m = good
    types = [float(t) for t in m.vocab.token_types]
    p = _broken(good, tmp_path, "types_f32", set_keys={"tokenizer.ggml.token_type": (types, (VT.ARRAY, VT.FLOAT32))})
    _expect(p, pipeinfer.ModelError, r"'tokenizer\.ggml\.token_type' has type arr\[f32,\d+\], expected an array of "
                                     r"int32 token types")


def test_output_norm_in_a_type_the_model_cannot_use(good, tmp_path):
    """A norm weight stored as q8_0 (llama.cpp cannot multiply by it element-wise either)."""
    _, m = good
    norm = np.asarray(m.weights["output_norm.weight"], np.float32)
    q = gguf.quants.quantize(norm, gguf.GGMLQuantizationType.Q8_0)
    p = _broken(good, tmp_path, "norm_q8", add_tensors={"output_norm.weight": (q, gguf.GGMLQuantizationType.Q8_0)})
    _expect(p, pipeinfer.ModelError, r"tensor 'output_norm\.weight' has type q8_0; norm weights and biases must be "
                                     r"f32, f16 or bf16")


def test_missing_context_length(good, tmp_path):
    p = _broken(good, tmp_path, "no_ctx", drop_keys={"llama.context_length"})
    _expect(p, pipeinfer.ModelError, r"required key 'llama\.context_length' is missing")


def test_vocab_size_that_disagrees(good, tmp_path):
    _, m = good
    p = _broken(good, tmp_path, "vocab_size", set_keys={"llama.vocab_size": (m.n_vocab + 1, VT.UINT32)})
    _expect(p, pipeinfer.ModelError, rf"'llama\.vocab_size' = {m.n_vocab + 1} but token_embd\.weight has "
                                     rf"{m.n_vocab} rows")


def test_special_token_id_outside_the_vocabulary(good, tmp_path):
    _, m = good
    p = _broken(good, tmp_path, "eos", set_keys={"tokenizer.ggml.eos_token_id": (m.n_vocab, VT.UINT32)})
    _expect(p, pipeinfer.ModelError, rf"'tokenizer\.ggml\.eos_token_id' = {m.n_vocab} is outside the vocabulary")


def test_scores_of_another_length(tiny_model, tmp_path):
    path, m = tiny_model("llama", "f32", vocab="spm")
    p = rewrite(path, tmp_path / "scores.gguf",
                set_keys={"tokenizer.ggml.scores": (list(m.vocab.scores)[:10], (VT.ARRAY, VT.FLOAT32))})
    _expect(p, pipeinfer.ModelError, r"'tokenizer\.ggml\.scores' has 10 entries, expected")
