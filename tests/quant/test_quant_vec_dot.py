"""vec_dot of every weight type against its vec_dot_type, at every kernel level this CPU has:
results within DOT_RTOL (relative to sum|w*a|) of the exact float64 dot of the dequantized weight
row and the dequantized quantized activations, and every activation row's result bit-identical to
the result of a call with that row alone (batch invariance, which speculative verification needs:
a token verified in a batch must score as it would alone)."""
from __future__ import annotations

import numpy as np
import pytest
import quant_oracle
from quant_cases import BY_NAME, DOT_ATOL, DOT_N, DOT_RTOL, DOT_TYPES, ISA_LEVELS

from pipeinfer import _core


def _weights(name: str, seed: int) -> np.ndarray:
    t = BY_NAME[name]
    n_blocks = DOT_N // t["block_size"]
    return quant_oracle.random_blocks(
        name, t["type_size"], t["block_size"], n_blocks, np.random.default_rng(seed), full_range=False
    )


def _activations(act_name: str, n_act: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n_act, DOT_N)) * np.exp2(rng.uniform(-4, 4, (n_act, 1)))).astype(np.float32)
    return np.stack([_core.quantize(act_name, row) for row in x])


@pytest.mark.parametrize("isa", ISA_LEVELS)
@pytest.mark.parametrize("n_act", [1, 3, 8, 16])
@pytest.mark.parametrize("name", DOT_TYPES)
def test_vec_dot_matches_exact_dot(name, n_act, isa, use_isa):
    use_isa(isa)
    t = BY_NAME[name]
    act_name = t["vec_dot_type"]
    if act_name == "q8_1":
        assert name in quant_oracle.MIN_FIELD_FOR_Q8_1, f"describe {name}'s min field in quant_oracle"
    w = _weights(name, 11 + n_act)
    act = _activations(act_name, n_act, 23 + n_act)
    got = _core.vec_dot(name, w, act, DOT_N)
    assert got.dtype == np.float32 and got.shape == (n_act,)
    want, mag = quant_oracle.reference_dot(name, act_name, w, act, t["type_size"])
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= DOT_RTOL * mag + DOT_ATOL), (
        f"{name} x {act_name} [{isa}]: got {got}, want {want}, rel err {err / mag}"
    )
    for j in range(n_act):
        alone = _core.vec_dot(name, w, act[j : j + 1], DOT_N)
        assert alone.view(np.uint32)[0] == got.view(np.uint32)[j], (
            f"{name} [{isa}]: row {j} of {n_act} gives {got[j]!r} in the batch, {alone[0]!r} alone"
        )


@pytest.mark.parametrize("name", DOT_TYPES)
def test_vec_dot_of_zero_activations_is_zero(name):
    t = BY_NAME[name]
    w = _weights(name, 1)
    act = _activations(t["vec_dot_type"], 2, 2) * 0  # all-zero bytes: zero scales and quants
    np.testing.assert_array_equal(_core.vec_dot(name, w, act, DOT_N), np.zeros(2, np.float32))


def test_vec_dot_no_activation_rows():
    w = _weights("q8_0", 1)
    out = _core.vec_dot("q8_0", w, np.zeros((0, DOT_N // 32 * 34), np.uint8), DOT_N)
    assert out.shape == (0,)
