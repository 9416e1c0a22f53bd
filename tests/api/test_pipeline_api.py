"""The public Python API on tiny synthetic models: streaming, completions, chat, stop conditions,
prompt cache, stages, and argument errors."""
from __future__ import annotations

import numpy as np
import pytest

import pipeinfer
from reference_forward import reference_greedy


@pytest.fixture(scope="module")
def tiny(tiny_model):
    path, model = tiny_model("qwen2", "q8_0", n_layer=3)
    return path, model


@pytest.fixture(scope="module")
def pipe(tiny):
    p = pipeinfer.Pipeline(str(tiny[0]), n_ctx=128, n_threads=1)
    yield p
    p.close()


def _eog_free_prefix(tokens, pipe):
    out = []
    for t in tokens:
        if pipe.tokenizer.is_eog(t):
            break
        out.append(t)
    return out


def test_greedy_stream_matches_reference(pipe, tiny):
    _, model = tiny
    prompt = [5, 17, 99, 3, 250]
    want = _eog_free_prefix(reference_greedy(model, prompt, 12, attn_f16=True), pipe)
    s = pipe.stream(prompt, max_tokens=12, temperature=0)
    pieces = list(s)
    assert s.tokens == want
    assert "".join(pieces) == s.text
    assert s.finish_reason == ("length" if len(want) == 12 else "stop")
    assert s.timings.predicted_n == len(s.tokens)
    assert s.timings.prompt_n == len(prompt)


def test_prompt_cache_reuses_common_prefix(pipe):
    prompt = [5, 17, 99, 3, 250, 42]
    a = pipe.generate(prompt, max_tokens=6, temperature=0)
    b = pipe.generate(prompt + [7], max_tokens=6, temperature=0)
    assert b.timings.cached_n == len(prompt)
    assert b.timings.prompt_n == 1
    c = pipe.generate(prompt, max_tokens=6, temperature=0)
    assert c.tokens == a.tokens
    pipe.reset()
    d = pipe.generate(prompt + [7], max_tokens=6, temperature=0)
    assert d.tokens == b.tokens and d.timings.cached_n == 0


def test_eval_logits_batch_equals_generation_steps(pipe):
    prompt = [5, 17, 99, 3]
    full = pipe.eval_logits(prompt)
    s = pipe.generate(prompt, max_tokens=1, temperature=0)
    assert s.tokens[0] == int(np.argmax(full[-1])) or pipe.tokenizer.is_eog(int(np.argmax(full[-1])))


def test_seeded_sampling_is_reproducible(pipe):
    kw = dict(max_tokens=10, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=42)
    a = pipe.generate([5, 6, 7], **kw).tokens
    b = pipe.generate([5, 6, 7], **kw).tokens
    c = pipe.generate([5, 6, 7], **{**kw, "seed": 43}).tokens
    assert a == b
    assert len(a) > 0 and (a != c or len(a) < 3)


def test_completion_and_chat_shapes(pipe):
    out = pipe.create_completion("the cat", max_tokens=5, temperature=0)
    assert out["object"] == "text_completion"
    ch = out["choices"][0]
    assert set(ch) >= {"text", "index", "finish_reason"}
    assert out["usage"]["completion_tokens"] <= 5
    chunks = list(pipe.create_completion("the cat", max_tokens=5, temperature=0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == ch["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == ch["finish_reason"]
    chat = pipe.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=5, temperature=0)
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"]["role"] == "assistant"
    chunks = list(pipe.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=5, temperature=0,
                                              stream=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == chat["choices"][0]["message"]["content"]


def test_stop_string_is_not_emitted(pipe):
    # the end-of-generation ids (0-2 in the synthetic vocabulary) are biased away, so 16 tokens always
    # come out and the stop string can be taken from the middle of the text
    no_eog = {0: -1e6, 1: -1e6, 2: -1e6}
    full = pipe.generate([5, 17, 99], max_tokens=16, temperature=0, logit_bias=no_eog).text
    assert len(full) >= 4, full
    stop = full[2:4]
    s = pipe.generate([5, 17, 99], max_tokens=16, temperature=0, stop=[stop], logit_bias=no_eog)
    assert s.finish_reason == "stop"
    assert stop not in s.text
    assert full.startswith(s.text)


def test_context_end_gives_length(tiny):
    p = pipeinfer.Pipeline(str(tiny[0]), n_ctx=12, n_threads=1)
    try:
        s = p.generate([5, 6, 7, 8, 9, 10, 11, 12], max_tokens=0, temperature=0, logit_bias={0: -1e6, 1: -1e6, 2: -1e6})
        assert len(s.tokens) == 12 - 8
        assert s.finish_reason == "length"
    finally:
        p.close()


def test_stages_match_single_process(tiny):
    prompt = [5, 17, 99, 3, 250]
    one = pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1)
    want = one.generate(prompt, max_tokens=10, temperature=0).tokens
    for stages in (2, 3):
        with pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1, stages=stages) as p:
            assert p.generate(prompt, max_tokens=10, temperature=0).tokens == want
            st = p.stage_stats()
            assert len(st) == stages and sum(s["layer_end"] - s["layer_begin"] for s in st) == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(min_p=2.0), "min_p"),
        (dict(repeat_penalty=0), "repeat_penalty"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_sampling_arguments(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipe.stream("hi", max_tokens=2, **kwargs)


def test_bad_prompts(pipe):
    with pytest.raises(ValueError, match="empty"):
        pipe.stream([], max_tokens=2)
    with pytest.raises(ValueError, match="out of the vocabulary"):
        pipe.stream([1, pipe.n_vocab], max_tokens=2)
    with pytest.raises(ValueError, match="out of the vocabulary"):
        pipe.stream([-1], max_tokens=2)
    with pytest.raises(ValueError, match="n_ctx"):
        pipe.stream(list(range(3, 3 + pipe.n_ctx)), max_tokens=2)
    with pytest.raises(TypeError, match="unknown sampling argument"):
        pipe.stream("hi", max_tokens=2, temprature=0.5)
    with pytest.raises(ValueError, match="max_tokens"):
        pipe.stream("hi", max_tokens=-2)
    with pytest.raises(ValueError, match="not valid Unicode"):
        pipe.stream("abc\ud800", max_tokens=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_ctx=-1), "n_ctx"),
        (dict(n_threads=0), "n_threads"),
        (dict(n_batch=0), "n_batch"),
        (dict(stages=0), "stages"),
        (dict(stages=2, layer_split=[1, 1, 1]), "layer_split"),
        (dict(transport="pigeon"), "transport"),
        (dict(exact="yes"), "exact"),
    ],
)
def test_bad_engine_arguments(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeinfer.Pipeline(str(tiny[0]), **kwargs)


def test_exact_and_default_layouts_match_reference_and_each_other(tiny, pipe):
    """exact=True (llama.cpp's layout and orders) and the default (row-interleaved q8_0 weights, another
    summation order, f32 attention probabilities): greedy tokens of each equal the numpy reference
    forward of its arithmetic, logits are close to each other's, and two local stages (the layout flag
    travels in the HELLO message) give the same tokens as one."""
    _, model = tiny
    prompt = [5, 17, 99, 3, 250]
    want = _eog_free_prefix(reference_greedy(model, prompt, 12, attn_f16=True), pipe)
    want_default = _eog_free_prefix(reference_greedy(model, prompt, 12, attn_f16=True, attn_p_f16=False), pipe)
    fast = pipe.eval_logits(prompt)
    assert pipe.config.exact is False
    for stages in (1, 2):
        with pipeinfer.Pipeline(str(tiny[0]), n_ctx=128, n_threads=1, stages=stages) as p:
            assert p.generate(prompt, max_tokens=12, temperature=0).tokens == want_default
        with pipeinfer.Pipeline(str(tiny[0]), n_ctx=128, n_threads=1, stages=stages, exact=True) as p:
            assert p.generate(prompt, max_tokens=12, temperature=0).tokens == want
            p.reset()
            got = p.eval_logits(prompt)
        # the attention orders differ by about 1e-4 relative; the q8_0 activation rounding of the next
        # matmuls magnifies that in this tiny random model (measured 1.5% of the logit range)
        scale = float(np.max(np.abs(fast)))
        assert np.max(np.abs(got - fast)) <= 0.05 * scale
        assert not np.array_equal(got, fast)  # the other order really ran


def test_unknown_model_name():
    with pytest.raises(ValueError, match="smollm2-135m"):
        pipeinfer.Pipeline("no-such-model-anywhere")


def test_malformed_file_is_gguf_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    with pytest.raises(pipeinfer.GGUFError):
        pipeinfer.Pipeline(str(bad))


def test_layer_split_fractions_and_counts(tiny):
    with pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1, layer_split=[0.34, 0.66]) as p:
        assert [s["layer_end"] - s["layer_begin"] for s in p.stage_stats()] == [1, 2]
    with pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1, layer_split=[2, 1]) as p:
        assert [s["layer_end"] - s["layer_begin"] for s in p.stage_stats()] == [2, 1]
    with pytest.raises(ValueError, match="sum to 1"):
        pipeinfer.Pipeline(str(tiny[0]), layer_split=[0.5, 0.6])


def test_full_ring_and_small_cache_pause_speculation_without_error(tiny):
    """One KV buffer and a cache barely larger than the output: speculation pauses, output unchanged."""
    from pipeinfer.speculation import SpeculationPolicy

    prompt = [5, 17, 99, 3, 250]
    with pipeinfer.Pipeline(str(tiny[0]), n_ctx=40, n_threads=1) as p:
        want = p.generate(prompt, max_tokens=0, temperature=0).tokens
    pol = SpeculationPolicy(n_draft=6, p_accept=0.0, max_in_flight=1, n_buffers=1, adaptive=False)
    with pipeinfer.Pipeline(str(tiny[0]), n_ctx=40, n_threads=1, stages=2, draft="ngram", speculation=pol) as p:
        s = p.generate(prompt, max_tokens=0, temperature=0)
        assert s.tokens == want
        assert s.finish_reason in ("length", "stop")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda p: p.generate(b"Hello", max_tokens=2), TypeError, "prompt must be text.*bytes"),
        (lambda p: p.generate([1.9, True], max_tokens=2), TypeError, r"prompt\[0\] must be an integer"),
        (lambda p: p.generate([5, True], max_tokens=2), TypeError, r"prompt\[1\] must be an integer"),
        (lambda p: p.generate(None, max_tokens=2), TypeError, "prompt must be text.*None"),
        (lambda p: p.generate(3, max_tokens=2), TypeError, "prompt must be text"),
        (lambda p: p.generate("hi", max_tokens=2, stop={"a": 1}), ValueError, "SamplingParams.stop"),
        (lambda p: p.create_completion("hi", max_tokens=2, stream="no"), ValueError, "stream must be True or False"),
        (lambda p: p.create_chat_completion([{"role": "user", "content": "x"}], stream=1), ValueError, "stream"),
        (lambda p: p.generate("hi", max_tokens=2, logit_bias={10**20: 1}), ValueError, "SamplingParams.logit_bias"),
        (lambda p: p.generate("hi", max_tokens=2, stop_token_ids=[2**40]), ValueError, "stop_token_ids"),
        (lambda p: p.generate("hi", max_tokens=1.5), ValueError, "SamplingParams.max_tokens"),
        (lambda p: p.generate("hi", {"temperature": 0}), TypeError, "params must be a pipeinfer.SamplingParams"),
        (lambda p: p.generate("hi", add_special="yes"), ValueError, "add_special"),
        (lambda p: p.create_completion("hi", n=0), ValueError, "n must be an integer in"),
        (lambda p: p.create_completion("hi", logprobs=50), ValueError, "logprobs"),
        (lambda p: p.create_chat_completion([{"role": "user", "content": "x"}], top_logprobs=2), ValueError,
         "top_logprobs needs logprobs=True"),
        (lambda p: p.tokenize(b"\xff\xfe"), ValueError, "not UTF-8"),
        (lambda p: p.tokenize(3), TypeError, "text must be str"),
        (lambda p: p.tokenize("a", add_special=True, add_bos=False), ValueError, "disagree"),
        (lambda p: p.detokenize([1.5]), TypeError, r"tokens\[0\]"),
        (lambda p: p.eval_logits([p.n_vocab]), ValueError, "out of the vocabulary"),
    ],
)  # fmt: skip
def test_bad_api_values_name_the_field(pipe, call, error, match):
    with pytest.raises(error, match=match):
        call(pipe)


def test_methods_after_close_say_it_is_closed(tiny):
    p = pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1)
    p.close()
    p.close()
    for call in (lambda: p.n_ctx, lambda: p.n_vocab, lambda: p.stream("hi"), lambda: p.generate([5]),
                 lambda: p.eval_logits([5]), lambda: p.reset(), lambda: p.stage_stats(),
                 lambda: p.create_completion("hi"), lambda: p.create_chat_completion([{"role": "user", "content": "x"}])):
        with pytest.raises(RuntimeError, match="the pipeline is closed"):
            call()
    assert p.tokenize("hi", add_special=False)  # the tokenizer needs no engine


def test_sampling_params_object_and_overrides(pipe):
    from pipeinfer import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=5)
    a = pipe.generate([5, 17, 99], params)
    assert len(a.tokens) <= 5
    b = pipe.generate([5, 17, 99], params, max_tokens=3)
    assert b.tokens == a.tokens[:3]
    c = pipe.generate([5, 17, 99], params, logit_bias={a.tokens[0]: -100})
    assert c.tokens[:1] != a.tokens[:1]
    assert pipe.generate([5, 17, 99], max_tokens=0, temperature=0).finish_reason in ("stop", "length")


def test_tokenize_bytes_and_llama_cpp_python_names(pipe):
    assert pipe.tokenize(b"the cat") == pipe.tokenize("the cat")
    assert pipe.tokenize(b"the cat", add_bos=False) == pipe.tokenize("the cat", add_special=False)
    assert pipe.tokenize("the cat", False, True) == pipe.tokenize("the cat", add_bos=False, special=True)


def test_detokenize_options(pipe):
    ids = pipe.tokenize("the cat sat", add_special=False)
    assert pipe.detokenize(ids) == "the cat sat"
    assert pipe.detokenize(ids, as_bytes=True) == b"the cat sat"
    assert pipe.detokenize(ids[1:], prev_tokens=ids[:1]) == "the cat sat"[len(pipe.detokenize(ids[:1])):]
    eog = sorted(pipe.tokenizer.eog_ids)[0]
    assert pipe.detokenize(ids + [eog], special=False) == pipe.detokenize(ids + [eog], skip_special=True)
    with pytest.raises(ValueError, match="not both"):
        pipe.detokenize(ids, skip_special=True, special=True)


def test_n_choices_echo_and_completion_logprobs(pipe):
    out = pipe.create_completion("the cat", max_tokens=4, temperature=0.9, seed=3, n=3, logprobs=2, top_k=0)
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert out["usage"]["completion_tokens"] == sum(len(c["logprobs"]["tokens"]) for c in out["choices"])
    again = pipe.create_completion("the cat", max_tokens=4, temperature=0.9, seed=3, n=3, logprobs=2, top_k=0)
    assert [c["text"] for c in again["choices"]] == [c["text"] for c in out["choices"]]
    lp = out["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(v <= 0 for v in lp["token_logprobs"]) and all(len(t) <= 2 for t in lp["top_logprobs"])
    assert lp["text_offset"][0] == 0
    echo = pipe.create_completion("the cat", max_tokens=3, temperature=0, echo=True)
    plain = pipe.create_completion("the cat", max_tokens=3, temperature=0)
    assert echo["choices"][0]["text"] == "the cat" + plain["choices"][0]["text"]
    chunks = list(pipe.create_completion("the cat", max_tokens=3, temperature=0, n=2, stream=True))
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1} and "usage" in chunks[-1]


def test_chat_logprobs_shape(pipe):
    msgs = [{"role": "user", "content": "hi"}]
    out = pipe.create_chat_completion(msgs, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2)
    content = out["choices"][0]["logprobs"]["content"]
    assert len(content) == out["usage"]["completion_tokens"]
    for e in content:
        assert set(e) == {"token", "logprob", "bytes", "top_logprobs"} and len(e["top_logprobs"]) == 2
        assert e["top_logprobs"][0]["logprob"] == e["logprob"]  # greedy: the chosen token is the top one
    chunks = list(pipe.create_chat_completion(msgs, max_tokens=4, temperature=0, logprobs=True, stream=True))
    streamed = [e for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
                for e in c["choices"][0]["logprobs"]["content"]]
    assert [e["token"] for e in streamed] == [e["token"] for e in content]
    assert pipe.create_chat_completion(msgs, max_tokens=2, temperature=0)["choices"][0]["logprobs"] is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(seed="42"), ValueError, "seed"),
        (dict(seed=-1), ValueError, "seed"),
        (dict(mode="fast"), ValueError, "mode must be one of"),
        (dict(trace="yes"), ValueError, "trace"),
    ],
)
def test_bad_constructor_values_name_the_field(tiny, kwargs, error, match):
    with pytest.raises(error, match=match):
        pipeinfer.Pipeline(str(tiny[0]), n_ctx=64, n_threads=1, **kwargs)
    with pytest.raises(TypeError, match="model must be"):
        pipeinfer.Pipeline(None)  # type: ignore[arg-type]
