"""Structured output through llguidance: response_format json_schema / json_object, grammars and
regexes. On a real model, 20 prompts x (greedy, T=0.8) in each decoding mode: every output parses and
matches its schema; at T=0 the constrained speculative outputs equal the constrained plain output."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest

import pipeinfer

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
ITEM = {
    "type": "object",
    "properties": {
        "item": {"type": "string", "maxLength": 20},
        "price": {"type": "number", "minimum": 0, "maximum": 10000},
        "in_stock": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
    },
    "required": ["item", "price", "in_stock", "tags"],
    "additionalProperties": False,
}
SUBJECTS = ["a teacher", "a painter", "a sailor", "a baker", "a doctor", "a farmer", "a pilot", "a poet", "a chef",
            "a nurse"]
PROMPTS = ([(f"Describe {s} as JSON with name, age and city.", PERSON) for s in SUBJECTS]
           + [(f"Give a shop item sold by {s} as JSON.", ITEM) for s in SUBJECTS])  # fmt: skip
MODES = [("iterative", None), ("speculative", "ngram"), ("pipeinfer", "ngram")]


def _format(schema):
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def model_path(real_model_path):
    return str(real_model_path("smollm2-135m"))


@pytest.mark.realmodel
@pytest.mark.slow
@pytest.mark.parametrize("mode, draft", MODES)
def test_json_schema_outputs_parse_and_match_in_every_mode(model_path, mode, draft):
    # a fixed policy: the speculative modes draft (and verify) whenever the n-gram drafter has a match
    policy = pipeinfer.SpeculationPolicy(n_draft=4, p_accept=0.0, adaptive=False) if draft else None
    with pipeinfer.Pipeline(model_path, n_ctx=512, n_threads=2, mode=mode, draft=draft, speculation=policy) as p:
        outputs, drafted = {}, 0
        for temperature in (0.0, 0.8):
            for i, (prompt, schema) in enumerate(PROMPTS):
                out = p.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=96,
                                               temperature=temperature, seed=i, response_format=_format(schema))
                text = out["choices"][0]["message"]["content"]
                assert out["choices"][0]["finish_reason"] == "stop", (prompt, temperature, text)
                jsonschema.validate(json.loads(text), schema)
                outputs[temperature, i] = text
                drafted += out["timings"]["draft_n"]
    assert (drafted > 0) == (draft is not None), drafted
    # the constrained greedy output of every mode is the constrained plain output
    key = f"greedy-{len(PROMPTS)}"
    _GREEDY.setdefault(key, {})[mode] = [outputs[0.0, i] for i in range(len(PROMPTS))]
    if len(_GREEDY[key]) == len(MODES):
        plain = _GREEDY[key]["iterative"]
        for m in ("speculative", "pipeinfer"):
            assert _GREEDY[key][m] == plain, m


_GREEDY: dict = {}


@pytest.mark.realmodel
def test_json_object_grammar_and_regex(model_path):
    with pipeinfer.Pipeline(model_path, n_ctx=512, n_threads=2) as p:
        msg = [{"role": "user", "content": 'What is 2+2? Reply with a JSON object like {"answer": 5}.'}]
        out = p.create_chat_completion(msg, max_tokens=200, temperature=0, response_format={"type": "json_object"})
        assert isinstance(json.loads(out["choices"][0]["message"]["content"]), dict)
        # llama-cpp-python's json_object "schema" narrows the object
        out = p.create_chat_completion(msg, max_tokens=60, temperature=0.8, seed=3,
                                       response_format={"type": "json_object", "schema": PERSON})
        jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), PERSON)
        s = p.generate("The answer is", max_tokens=40, temperature=0.8, seed=1, regex=r"(yes|no), because [a-z ]{1,30}\.")
        assert re.fullmatch(r"(yes|no), because [a-z ]{1,30}\.", s.text), s.text
        gbnf = 'root ::= "Colors: " color (", " color){2}\ncolor ::= "red" | "green" | "blue"'
        s = p.generate("List three colors.", max_tokens=20, temperature=0.8, seed=2, grammar=gbnf)
        assert re.fullmatch(r"Colors: (red|green|blue)(, (red|green|blue)){2}", s.text), s.text


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=2)
    return str(path)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(response_format={"type": "xml"}), ValueError, "'text', 'json_object' or 'json_schema'"),
        (dict(response_format="json"), TypeError, "response_format must be a dict"),
        (dict(response_format={"type": "json_schema"}), ValueError, "needs 'json_schema'"),
        (dict(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}), ValueError,
         "structured output|schema"),
        (dict(grammar="root ::= ("), ValueError, "grammar|structured output"),
        (dict(regex="(unclosed"), ValueError, "structured output"),
        (dict(regex="a", grammar='root ::= "a"'), ValueError, "at most one"),
        (dict(grammar=5), TypeError, "grammar must be a non-empty str"),
    ],
)  # fmt: skip
def test_bad_structured_output_arguments(tiny, kwargs, error, match):
    with pipeinfer.Pipeline(tiny, n_ctx=64, n_threads=1) as p:
        with pytest.raises(error, match=match):
            p.stream("hi", max_tokens=2, **kwargs)


def test_regex_constrains_a_tiny_model_in_every_mode(tiny):
    """A random-weight model follows a regex in every mode, greedy outputs equal across modes."""
    pattern = r"[0-9]{2,4}-[a-c]+"
    got = {}
    for mode, draft in MODES:
        with pipeinfer.Pipeline(tiny, n_ctx=128, n_threads=1, mode=mode, draft=draft) as p:
            for t in (0.0, 0.8):
                s = p.generate([5, 17, 99, 3, 5, 17, 99, 3], max_tokens=24, temperature=t, seed=4, regex=pattern)
                if s.finish_reason == "stop":
                    assert re.fullmatch(pattern, s.text), (mode, s.text)
                else:
                    assert re.fullmatch(r"[0-9]{2,4}-[a-c]*", s.text), (mode, s.text)
                got[mode, t] = s.tokens
    assert got["speculative", 0.0] == got["iterative", 0.0] == got["pipeinfer", 0.0]


@pytest.mark.parametrize("mode", ["speculative", "pipeinfer"])
def test_drafts_that_break_the_grammar_are_cut_before_verification(tiny, mode):
    """A drafter proposing a token the regex never allows gets nothing verified under the constraint
    (and does without it); one proposing the constrained greedy output gets its drafts accepted. The
    output is the constrained plain output either way."""
    pattern = r"[0-9]{2,4}-[a-c]+"
    prompt = [5, 17, 99, 3, 5, 17, 99, 3]
    policy = pipeinfer.SpeculationPolicy(n_draft=3, p_accept=0.0, adaptive=False)
    with pipeinfer.Pipeline(tiny, n_ctx=128, n_threads=1) as p:
        want = p.generate(prompt, max_tokens=12, temperature=0, regex=pattern).tokens
        bad = p.tokenize("#", add_special=False)[0]
    assert want

    def oracle(ctx):
        return want[len(ctx) - len(prompt):][:3]

    for drafter, constrained_drafts in ((lambda ctx: [bad] * 3, False), (oracle, True)):
        with pipeinfer.Pipeline(tiny, n_ctx=128, n_threads=1, mode=mode, draft=drafter, speculation=policy) as p:
            s = p.generate(prompt, max_tokens=12, temperature=0, regex=pattern)
            assert s.tokens == want
            assert (s.stats.draft_n > 0) == constrained_drafts, (mode, s.stats.as_dict())
            if constrained_drafts:
                assert s.stats.draft_n_accepted > 0
            else:  # the same drafts are verified (and rejected) when nothing constrains the output
                assert p.generate(prompt, max_tokens=12, temperature=0).stats.draft_n > 0
