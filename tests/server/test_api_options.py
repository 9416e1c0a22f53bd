"""The OpenAI options of both endpoints through the real `openai` client: ``logprobs`` (completions:
alternatives per token; chat: ``logprobs`` / ``top_logprobs``), ``n`` choices, ``echo``, and structured
output (``response_format`` json_schema / json_object, llama.cpp's ``grammar``); each equals what the
Pipeline's own create_completion / create_chat_completion give for the same request."""
from __future__ import annotations

import json

import httpx2 as httpx
import jsonschema
import openai
import pytest

PROMPT = "Once upon a time"
MESSAGES = [{"role": "user", "content": "Pick a color."}]
COLOR = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"],
         "additionalProperties": False}


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _direct(pipe, call, *args, **kw):
    """The Pipeline's own result, with the server's defaults for what OpenAI's API does not filter (the
    Pipeline's are llama.cpp's top_k 40, top_p 0.95, min_p 0.05)."""
    pipe.reset()
    return call(*args, **{"top_k": 0, "top_p": 1.0, "min_p": 0.0, **kw})


def test_completion_logprobs_equal_the_pipelines(server, pipe):
    url, _ = server
    want = _direct(pipe, pipe.create_completion, PROMPT, 8, temperature=0, logprobs=2)["choices"][0]["logprobs"]
    got = _client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0, logprobs=2)
    lp = got.choices[0].logprobs
    assert lp.tokens == want["tokens"] and len(lp.tokens) > 0
    assert lp.token_logprobs == pytest.approx(want["token_logprobs"], abs=1e-9)
    assert lp.text_offset == want["text_offset"]
    assert lp.top_logprobs == want["top_logprobs"]  # OpenAI's shape: {text: logprob} (same-text tokens merge)
    assert all(1 <= len(t) <= 2 for t in lp.top_logprobs)
    assert all(v <= 0.0 for v in lp.token_logprobs)
    # streamed: the chunks' logprobs put together are the same
    chunks = list(_client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0,
                                                  logprobs=2, stream=True))
    streamed = [v for c in chunks if c.choices and c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs]
    assert streamed == pytest.approx(want["token_logprobs"], abs=1e-9)


def test_chat_logprobs_and_top_logprobs(server, pipe):
    url, _ = server
    want = _direct(pipe, pipe.create_chat_completion, MESSAGES, 6, temperature=0, logprobs=True, top_logprobs=3)
    got = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0,
                                               logprobs=True, top_logprobs=3)
    content = got.choices[0].logprobs.content
    wc = want["choices"][0]["logprobs"]["content"]
    assert [c.token for c in content] == [c["token"] for c in wc] and content
    assert [c.logprob for c in content] == pytest.approx([c["logprob"] for c in wc], abs=1e-9)
    assert all(len(c.top_logprobs) == 3 and c.top_logprobs[0].logprob >= c.logprob for c in content)
    assert [c.bytes for c in content] == [c["bytes"] for c in wc]
    plain = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices_are_the_seeded_choices_of_create_completion(server, pipe, stream):
    url, _ = server
    want = _direct(pipe, pipe.create_completion, PROMPT, 8, temperature=0.9, seed=5, n=3)
    r = _client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=8, temperature=0.9, seed=5, n=3,
                                        stream=stream)
    if stream:
        texts = ["", "", ""]
        chunks = list(r)
        for c in chunks:
            for ch in c.choices:
                texts[ch.index] += ch.text
        usage = chunks[-1].usage
    else:
        assert [c.index for c in r.choices] == [0, 1, 2]
        texts, usage = [c.text for c in r.choices], r.usage
    assert texts == [c["text"] for c in want["choices"]]
    assert len(set(texts)) > 1, "seeded choices use seed + i, so they differ"
    assert usage.completion_tokens == want["usage"]["completion_tokens"]
    assert usage.prompt_tokens == want["usage"]["prompt_tokens"]


def test_chat_n_choices(server, pipe):
    url, _ = server
    want = _direct(pipe, pipe.create_chat_completion, MESSAGES, 6, temperature=0.9, seed=9, n=2)
    r = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, temperature=0.9, seed=9,
                                             n=2)
    assert [c.message.content for c in r.choices] == [c["message"]["content"] for c in want["choices"]]


def test_echo_puts_the_prompt_first(server, pipe):
    url, _ = server
    want = _direct(pipe, pipe.create_completion, PROMPT, 5, temperature=0)["choices"][0]["text"]
    r = _client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=5, temperature=0, echo=True)
    assert r.choices[0].text == PROMPT + want
    chunks = list(_client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=5, temperature=0,
                                                  echo=True, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == PROMPT + want


def test_response_format_json_schema_in_chat(server, pipe):
    url, _ = server
    fmt = {"type": "json_schema", "json_schema": {"name": "color", "schema": COLOR, "strict": True}}
    for temperature, seed in ((0.0, None), (0.8, 3)):
        want = _direct(pipe, pipe.create_chat_completion, MESSAGES, 80, temperature=temperature, seed=seed,
                       response_format=fmt)["choices"][0]
        r = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=80,
                                                 temperature=temperature, seed=seed, response_format=fmt)
        text = r.choices[0].message.content
        assert text == want["message"]["content"]
        assert r.choices[0].finish_reason == "stop", text
        jsonschema.validate(json.loads(text), COLOR)


def test_json_object_and_grammar_on_completions(server, pipe):
    url, _ = server
    r = httpx.post(url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 80, "temperature": 0,
                                                  "response_format": {"type": "json_object", "schema": COLOR}},
                   timeout=120)
    assert r.status_code == 200, r.text
    jsonschema.validate(json.loads(r.json()["choices"][0]["text"]), COLOR)
    gbnf = 'root ::= "answer: " ("yes" | "no")'
    r = httpx.post(url + "/v1/completions", json={"prompt": PROMPT, "max_tokens": 10, "temperature": 0.8, "seed": 1,
                                                  "grammar": gbnf}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] in ("answer: yes", "answer: no")


def test_disconnect_during_the_first_of_n_choices_runs_no_other_choice(tiny_path):
    """A client that leaves while choice 0 streams cancels it, and choices 1.. are never made."""
    import time

    import pipeinfer
    from pipeinfer.server import ServerOptions, create_app
    from server_helpers import running_server

    with pipeinfer.Pipeline(tiny_path, n_ctx=2048, n_threads=1) as p:
        app = create_app(p, ServerOptions())
        state = app.state.pipeinfer
        with running_server(app) as url:
            body = {"prompt": [5, 17, 99, 3], "max_tokens": 1500, "temperature": 0.9, "n": 3, "stream": True,
                    "logprobs": 1}
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                assert r.status_code == 200
                first = json.loads(next(r.iter_lines())[len("data: "):])
                assert first["choices"][0]["index"] == 0
            deadline = time.monotonic() + 60
            while state.scheduler.running:
                assert time.monotonic() < deadline, "the job did not end"
                time.sleep(0.01)
            metrics = httpx.get(url + "/metrics").text
            assert "pipeinfer_requests_cancelled_total 1.0" in metrics
            generated = float(metrics.split("\npipeinfer_generated_tokens_total ")[1].split()[0])
            assert generated < 1500  # choice 0 stopped early, no other choice ran
            r = httpx.post(url + "/v1/completions", json={"prompt": [9, 8], "max_tokens": 3, "n": 2}, timeout=60)
            assert r.status_code == 200 and [c["index"] for c in r.json()["choices"]] == [0, 1]
