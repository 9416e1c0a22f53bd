"""SamplingParams validation: every field rejects bad values with a ValueError naming the field, the
value and the allowed range, and accepts the documented edge values."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

from pipeinfer.sampling import MAX_STOP_STRINGS, SamplingParams, make_sampler

BAD = [
    # (field, value, text the message must contain)
    ("temperature", -1, "[0, 100]"),
    ("temperature", math.nan, "finite"),
    ("temperature", math.inf, "finite"),
    ("temperature", 1e6, "[0, 100]"),
    ("temperature", "0.8", "finite"),
    ("temperature", True, "finite"),
    ("top_p", 0, "(0, 1]"),
    ("top_p", -1, "(0, 1]"),
    ("top_p", 1.5, "(0, 1]"),
    ("top_p", math.nan, "(0, 1]"),
    ("top_k", -2, "integer >= 0"),
    ("top_k", -1, "integer >= 0"),
    ("top_k", 1.5, "integer >= 0"),
    ("top_k", True, "integer >= 0"),
    ("min_p", 1.5, "[0, 1]"),
    ("min_p", -0.1, "[0, 1]"),
    ("min_p", math.nan, "[0, 1]"),
    ("typical_p", 0.0, "(0, 1]"),
    ("typical_p", 2.0, "(0, 1]"),
    ("repeat_penalty", 0, "[1e-06, 1e+06]"),
    ("repeat_penalty", -1.1, "[1e-06, 1e+06]"),
    ("repeat_penalty", 1e-7, "[1e-06, 1e+06]"),
    ("repeat_penalty", 2e6, "[1e-06, 1e+06]"),
    ("repeat_penalty", math.inf, "[1e-06, 1e+06]"),
    ("repeat_penalty", math.nan, "[1e-06, 1e+06]"),
    ("repeat_last_n", -2, ">= -1"),
    ("repeat_last_n", 1.0, ">= -1"),
    ("presence_penalty", 2.5, "[-2, 2]"),
    ("presence_penalty", math.nan, "[-2, 2]"),
    ("frequency_penalty", -3, "[-2, 2]"),
    ("frequency_penalty", math.inf, "[-2, 2]"),
    ("logit_bias", [1, 2], "mapping"),
    ("logit_bias", {-1: 1.0}, "integers >= 0"),
    ("logit_bias", {"abc": 1.0}, "integers >= 0"),
    ("logit_bias", {1.5: 1.0}, "integers >= 0"),
    ("logit_bias", {3: math.nan}, "[-1e+06, 1e+06] or -inf"),
    ("logit_bias", {3: math.inf}, "[-1e+06, 1e+06] or -inf"),
    ("logit_bias", {3: 2e6}, "[-1e+06, 1e+06] or -inf"),
    ("logit_bias", {3: "big"}, "[-1e+06, 1e+06] or -inf"),
    ("seed", -1, "[0, 2**64)"),
    ("seed", 2**64, "[0, 2**64)"),
    ("seed", 1.5, "[0, 2**64)"),
    ("seed", "42", "[0, 2**64)"),
    ("max_tokens", -2, ">= -1"),
    ("max_tokens", 2.0, ">= -1"),
    ("max_tokens", True, ">= -1"),
    ("stop", {"a": 1}, "sequence of strings"),
    ("stop", b"ab", "sequence of strings"),
    ("logit_bias", {10**20: 1.0}, "below 2**31"),
    ("stop_token_ids", [2**40], "below 2**31"),
    ("min_tokens", -1, ">= 0"),
    ("min_tokens", 1.5, ">= 0"),
    ("ignore_eos", 1, "True or False"),
    ("ignore_eos", "no", "True or False"),
    ("logprobs", -1, "[0, 20]"),
    ("logprobs", 21, "[0, 20]"),
    ("logprobs", True, "[0, 20]"),
    ("stop", [""], "non-empty"),
    ("stop", ["ok", 3], "non-empty"),
    ("stop", ["x" * 1025], "1024"),
    ("stop", ["s"] * (MAX_STOP_STRINGS + 1), f"at most {MAX_STOP_STRINGS}"),
    ("stop", 5, "sequence of strings"),
    ("stop_token_ids", [1, -1], "integer token ids >= 0"),
    ("stop_token_ids", "12", "integer token ids"),
    ("stop_token_ids", [1.0], "integer token ids >= 0"),
]


@pytest.mark.parametrize("field,value,allowed", BAD, ids=[f"{f}={v!r}"[:40] for f, v, _ in BAD])
def test_bad_value_names_field_value_and_range(field, value, allowed):
    with pytest.raises(ValueError) as info:
        SamplingParams(**{field: value})
    msg = str(info.value)
    assert f"SamplingParams.{field}" in msg
    assert allowed in msg
    shown = repr(value) if not isinstance(value, list) or len(value) < 10 else f"<{len(value)} strings>"
    assert shown[:20] in msg


GOOD = [
    ("temperature", 0, 0.0),
    ("temperature", 100, 100.0),
    ("top_p", 1, 1.0),
    ("top_p", 1e-9, 1e-9),
    ("top_k", 0, 0),
    ("top_k", np.int64(7), 7),
    ("min_p", 0, 0.0),
    ("min_p", 1, 1.0),
    ("typical_p", 1, 1.0),
    ("repeat_penalty", 1e-6, 1e-6),
    ("repeat_penalty", 1e6, 1e6),
    ("repeat_last_n", -1, -1),
    ("repeat_last_n", 0, 0),
    ("presence_penalty", -2, -2.0),
    ("frequency_penalty", 2, 2.0),
    ("seed", 0, 0),
    ("seed", 2**64 - 1, 2**64 - 1),
    ("seed", None, None),
    ("max_tokens", None, None),
    ("max_tokens", 1, 1),
    ("max_tokens", 0, None),
    ("max_tokens", -1, None),
    ("min_tokens", np.int64(3), 3),
    ("ignore_eos", True, True),
    ("logprobs", 0, 0),
    ("logprobs", 20, 20),
    ("stop", None, ()),
    ("stop", "\n", ("\n",)),
    ("stop", ["a", "bc"], ("a", "bc")),
    ("stop_token_ids", [2, np.int32(5)], (2, 5)),
]


@pytest.mark.parametrize("field,value,normalized", GOOD, ids=[f"{f}={v!r}" for f, v, _ in GOOD])
def test_edge_values_are_accepted_and_normalized(field, value, normalized):
    p = SamplingParams(**{field: value})
    got = getattr(p, field)
    assert got == normalized
    assert type(got) is type(normalized)


def test_defaults_mirror_llama_cpp_python():
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p, p.typical_p) == (0.8, 40, 0.95, 0.05, 1.0)
    assert (p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty) == (1.0, 64, 0.0, 0.0)
    assert (p.logit_bias, p.seed, p.max_tokens, p.stop, p.stop_token_ids) == (None, None, 16, (), ())
    assert not p.is_greedy


def test_logit_bias_normalized_read_only_and_string_keys_accepted():
    p = SamplingParams(logit_bias={"7": -100, 3: -math.inf, np.int64(2): 1})
    assert dict(p.logit_bias) == {7: -100.0, 3: -math.inf, 2: 1.0}
    with pytest.raises(TypeError):
        p.logit_bias[7] = 0.0  # type: ignore[index]


def test_pickle_round_trip():
    p = SamplingParams(seed=3, logit_bias={1: 2.0, 5: -math.inf}, stop=["x"], stop_token_ids=[2])
    q = pickle.loads(pickle.dumps(p))
    assert q == p and dict(q.logit_bias) == {1: 2.0, 5: -math.inf}
    with pytest.raises(TypeError, match="read-only"):
        q.logit_bias.update({1: 0.0})  # type: ignore[union-attr]


def test_frozen_and_hashable():
    p = SamplingParams(seed=3, logit_bias={1: 2.0}, stop=["x"])
    with pytest.raises(AttributeError):
        p.temperature = 1.0  # type: ignore[misc]
    assert hash(p) == hash(SamplingParams(seed=3, logit_bias={1: 2.0}, stop=["x"]))
    assert p == SamplingParams(seed=3, logit_bias={1: 2.0}, stop=("x",))


def test_is_greedy():
    assert SamplingParams(temperature=0).is_greedy
    assert SamplingParams(top_k=1).is_greedy
    assert not SamplingParams(temperature=0.1, top_k=2).is_greedy


def test_from_dict_and_make_sampler_overrides():
    p = SamplingParams.from_dict({"temperature": 0.0, "stop": ["\n"]})
    assert p.temperature == 0.0 and p.stop == ("\n",)
    with pytest.raises(ValueError, match="unknown field.*'tempurature'"):
        SamplingParams.from_dict({"tempurature": 0.5})
    s = make_sampler(p, top_k=5)
    assert s.params.top_k == 5 and s.params.stop == ("\n",)
    with pytest.raises(ValueError, match="SamplingParams.top_k"):
        make_sampler(p, top_k=-3)
    with pytest.raises(ValueError, match="unknown field"):
        make_sampler(p, topk=3)
    with pytest.raises(TypeError):
        from pipeinfer.sampling import Sampler

        Sampler({"temperature": 0})  # type: ignore[arg-type]
