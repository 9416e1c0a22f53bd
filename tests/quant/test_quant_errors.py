"""Bad arguments to the quant bindings raise typed exceptions whose messages name the type, what was
expected and what was found."""
from __future__ import annotations

import numpy as np
import pytest

import pipeinfer
from pipeinfer import _core


def test_unknown_type_name():
    with pytest.raises(pipeinfer.UnsupportedError, match=r"unknown quant type 'q9_9' \(known: f32, f16, q4_0"):
        _core.dequantize("q9_9", b"", 0)
    with pytest.raises(ValueError, match="unknown quant type 'nope'"):
        _core.quantize("nope", np.zeros(32, np.float32))
    with pytest.raises(pipeinfer.UnsupportedError, match="unknown quant type"):
        _core.vec_dot("", b"", np.zeros((1, 0), np.uint8), 0)


def test_dequantize_wrong_byte_length():
    with pytest.raises(pipeinfer.ShapeError, match=r"64 values of type q4_0 need 36 bytes \(2 blocks of 18\), got 35"):
        _core.dequantize("q4_0", np.zeros(35, np.uint8), 64)


def test_dequantize_n_not_multiple_of_block():
    with pytest.raises(pipeinfer.ShapeError, match="type q4_k needs a row length multiple of 256, got 300"):
        _core.dequantize("q4_k", np.zeros(144, np.uint8), 300)


def test_dequantize_negative_n():
    with pytest.raises(pipeinfer.ShapeError, match="n must be >= 0, got -32"):
        _core.dequantize("q8_0", b"", -32)


def test_dequantize_not_a_buffer():
    with pytest.raises(pipeinfer.ShapeError, match="expected bytes or a numpy uint8 array, got list"):
        _core.dequantize("q8_0", [0] * 34, 32)


def test_dequantize_type_without_kernel():
    with pytest.raises(pipeinfer.UnsupportedError, match="type iq2_xxs cannot be dequantized"):
        _core.dequantize("iq2_xxs", np.zeros(66, np.uint8), 256)


def test_quantize_length_not_multiple_of_block():
    with pytest.raises(pipeinfer.ShapeError, match="type q8_0 needs a row length multiple of 32, got 33"):
        _core.quantize("q8_0", np.zeros(33, np.float32))


def test_quantize_needs_1d():
    with pytest.raises(pipeinfer.ShapeError, match="x must be 1-D float32, got 2 dimensions"):
        _core.quantize("q8_0", np.zeros((2, 32), np.float32))


def test_quantize_type_without_quantizer():
    with pytest.raises(pipeinfer.UnsupportedError, match="type q4_k has no quantizer"):
        _core.quantize("q4_k", np.zeros(256, np.float32))


def test_vec_dot_wrong_activation_width():
    w = np.zeros(18 * 2, np.uint8)
    with pytest.raises(pipeinfer.ShapeError, match="act rows of 64 values of type q8_0 need 68 bytes, got 67"):
        _core.vec_dot("q4_0", w, np.zeros((3, 67), np.uint8), 64)


def test_vec_dot_activations_must_be_2d_bytes():
    w = np.zeros(18 * 2, np.uint8)
    with pytest.raises(pipeinfer.ShapeError, match=r"act must be a 2-D uint8 array \(n_act, 68\) of q8_0 rows"):
        _core.vec_dot("q4_0", w, np.zeros(68, np.uint8), 64)
    with pytest.raises(pipeinfer.ShapeError, match="got 2-D with 4-byte items"):
        _core.vec_dot("q4_0", w, np.zeros((1, 17), np.float32), 64)


def test_vec_dot_wrong_weight_length():
    with pytest.raises(pipeinfer.ShapeError, match=r"w_row: 64 values of type q4_0 need 36 bytes"):
        _core.vec_dot("q4_0", np.zeros(30, np.uint8), np.zeros((1, 68), np.uint8), 64)


def test_vec_dot_on_activation_only_type():
    with pytest.raises(pipeinfer.UnsupportedError, match="type q8_k cannot be a matmul weight"):
        _core.vec_dot("q8_k", np.zeros(292, np.uint8), np.zeros((1, 292), np.uint8), 256)


def test_set_kernel_isa_unknown_level():
    before = _core.kernel_isa()
    with pytest.raises(ValueError, match="unknown kernel ISA 'neon'"):
        _core.set_kernel_isa("neon")
    assert _core.kernel_isa() == before


def test_set_kernel_isa_returns_level_in_force():
    before = _core.kernel_isa()
    try:
        assert _core.set_kernel_isa("scalar") == "scalar"
        assert _core.kernel_isa() == "scalar"
        best = _core.set_kernel_isa("avx512")
        assert best in ("scalar", "avx2", "avx512")
        assert _core.kernel_isa() == best
    finally:
        _core.set_kernel_isa(before)
