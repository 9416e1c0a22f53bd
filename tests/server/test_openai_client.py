"""The server through the real `openai` client: sync, async and streaming, completions and chat; the
text equals what the Pipeline generates directly."""
from __future__ import annotations

import asyncio

import openai
import pytest

PROMPT = "Once upon a time"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)


def _direct_completion(pipe, prompt, n):
    pipe.reset()
    return pipe.generate(prompt, max_tokens=n, temperature=0).text


def _direct_chat(pipe, messages, n):
    pipe.reset()
    return pipe.create_chat_completion(messages, max_tokens=n, temperature=0)["choices"][0]["message"]["content"]


def test_models_lists_the_served_model(server):
    url, _ = server
    ids = [m.id for m in _client(url).models.list().data]
    assert ids == ["tiny"]


def test_completion_equals_direct_generation(server, pipe):
    url, _ = server
    want = _direct_completion(pipe, PROMPT, 12)
    r = _client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0)
    assert r.choices[0].text == want
    assert r.choices[0].finish_reason in ("length", "stop")
    assert r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_completion_equals_direct_generation(server, pipe):
    url, _ = server
    want = _direct_completion(pipe, PROMPT, 12)
    chunks = list(_client(url).completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0,
                                                  stream=True))
    assert "".join(c.choices[0].text for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 12


def test_chat_equals_direct_chat(server, pipe):
    url, _ = server
    want = _direct_chat(pipe, MESSAGES, 10)
    r = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == want
    stream = _client(url).chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=10, temperature=0,
                                                  stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_async_client_concurrent_requests(server, pipe):
    url, _ = server
    prompts = [PROMPT, "The sky", "1 2 3", "def f("]
    want = [_direct_completion(pipe, p, 8) for p in prompts]

    async def main():
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        async with client:
            async def one(p):
                return await client.completions.create(model="tiny", prompt=p, max_tokens=8, temperature=0)

            async def streamed(p):
                s = await client.completions.create(model="tiny", prompt=p, max_tokens=8, temperature=0, stream=True)
                return "".join([c.choices[0].text async for c in s])

            plain = await asyncio.gather(*(one(p) for p in prompts))
            chunked = await asyncio.gather(*(streamed(p) for p in prompts))
            return [r.choices[0].text for r in plain], chunked

    plain, chunked = asyncio.run(main())
    assert plain == want
    assert chunked == want


def test_per_request_seed_stop_and_logit_bias(server, pipe):
    url, _ = server
    c = _client(url)
    a = c.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=1.0, seed=7)
    b = c.completions.create(model="tiny", prompt=PROMPT, max_tokens=10, temperature=1.0, seed=7)
    assert a.choices[0].text == b.choices[0].text
    greedy = _direct_completion(pipe, PROMPT, 12)
    pipe.reset()
    first = pipe.generate(PROMPT, max_tokens=1, temperature=0).tokens[0]
    banned = c.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, temperature=0,
                                  logit_bias={str(first): -100})
    pipe.reset()
    want = pipe.generate(PROMPT, max_tokens=1, temperature=0, logit_bias={first: float("-inf")}).text
    assert banned.choices[0].text == want
    if len(greedy) > 3:
        stop = greedy[2:4]
        r = c.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
        assert r.choices[0].finish_reason == "stop"
        assert r.choices[0].text == greedy[: greedy.index(stop)]


@pytest.mark.parametrize("bad", [dict(temperature=3.0), dict(max_tokens=0), dict(top_p=0.0)])
def test_openai_client_sees_bad_request(server, bad):
    url, _ = server
    with pytest.raises(openai.BadRequestError) as e:
        _client(url).completions.create(model="tiny", prompt=PROMPT, **bad)
    assert e.value.body["param"] == next(iter(bad))
