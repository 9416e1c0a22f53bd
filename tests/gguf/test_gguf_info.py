"""format_info (pipeinfer info) on a synthetic file lists header, keys with types, tensors and totals."""
from __future__ import annotations

import pytest

import gguf_bytes as gb
import pipeinfer
from pipeinfer.gguf_info import format_info, format_value


@pytest.fixture
def synthetic(tmp_path):
    b = gb.GGUFBuilder()
    b.kv_str("general.architecture", "llama")
    b.kv("llama.block_count", gb.T_U32, 2)
    b.kv("llama.rope.freq_base", gb.T_F32, 10000.0)
    b.kv("tokenizer.ggml.tokens", gb.T_ARR, [f"tok{i}" for i in range(20)], gb.T_STR)
    b.kv("tokenizer.ggml.token_type", gb.T_ARR, list(range(20)), gb.T_I32)
    b.tensor("token_embd.weight", [32, 20], gb.GGML_Q8_0, bytes(20 * 34))
    b.tensor("output_norm.weight", [32], gb.GGML_F32, bytes(128))
    b.tensor("blk.0.attn_q.weight", [32, 32], gb.GGML_F32, bytes(4096))
    path = tmp_path / "syn.gguf"
    path.write_bytes(b.build())
    return path


def test_format_info_lists_keys_tensors_and_totals(synthetic):
    text = format_info(str(synthetic), max_array=3)
    assert "version:     3" in text
    assert "alignment:   32" in text
    assert "metadata:    5 keys" in text and "tensors:     3" in text
    for key in ("general.architecture", "llama.block_count", "llama.rope.freq_base", "tokenizer.ggml.tokens"):
        assert key in text
    assert "arr[str,20]" in text and "arr[i32,20]" in text
    assert "['tok0', 'tok1', 'tok2', ...] (len 20)" in text
    assert "[0, 1, 2, ...] (len 20)" in text
    assert "'llama'" in text and "10000.0" in text
    for name in ("token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight"):
        assert name in text
    assert "[32, 20]" in text and "q8_0" in text
    assert f"parameters:   {32 * 20 + 32 + 32 * 32}" in text
    assert f"tensor bytes: {20 * 34 + 128 + 4096}" in text
    f32_line = next(line for line in text.splitlines() if line.strip().startswith("f32 "))
    assert "2 tensors" in f32_line and f"{128 + 4096} bytes" in f32_line


def test_format_value_abbreviates():
    assert format_value([1, 2, 3], max_array=8) == "[1, 2, 3] (len 3)"
    assert format_value("x" * 100, max_str=10) == "'xxxxxxxxxx... (100 chars)'"
    assert format_value(True) == "True"


def test_format_info_rejects_malformed(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGML" + bytes(60))
    with pytest.raises(pipeinfer.GGUFError, match="not a GGUF file"):
        format_info(str(bad))
