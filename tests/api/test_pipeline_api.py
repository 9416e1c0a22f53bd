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
    summation order): greedy tokens of both equal the numpy reference forward, logits equal each
    other's up to float rounding, and two local stages (the layout flag travels in the HELLO message)
    give the same tokens as one."""
    _, model = tiny
    prompt = [5, 17, 99, 3, 250]
    want = _eog_free_prefix(reference_greedy(model, prompt, 12, attn_f16=True), pipe)
    fast = pipe.eval_logits(prompt)
    assert pipe.config.exact is False
    for stages in (1, 2):
        with pipeinfer.Pipeline(str(tiny[0]), n_ctx=128, n_threads=1, stages=stages, exact=True) as p:
            assert p.generate(prompt, max_tokens=12, temperature=0).tokens == want
            p.reset()
            got = p.eval_logits(prompt)
        scale = float(np.max(np.abs(fast)))
        assert np.max(np.abs(got - fast)) <= 1e-4 * scale
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
