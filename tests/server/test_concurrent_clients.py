"""32 concurrent clients on a server with parallel slots: each gets exactly its single-request greedy
output; a client that disconnects mid-stream frees its slot and its KV cells."""
from __future__ import annotations

import asyncio
import time

import httpx2 as httpx
import openai
import pytest

import pipeinfer
from pipeinfer.server import ServerOptions, create_app
from server_helpers import running_server

N_CLIENTS = 32


def _prompt(i: int):
    return [(7 * i + 3 * j) % 300 + 1 for j in range(3 + i % 9)]


@pytest.fixture(scope="module", params=[dict(stages=1), dict(stages=2, draft="ngram")], ids=["1stage", "2stages-ngram"])
def slot_server(tiny_path, request):
    pipe = pipeinfer.Pipeline(tiny_path, n_ctx=8 * 96, n_threads=1, parallel=8, **request.param)
    app = create_app(pipe, ServerOptions(model_id="tiny", max_queue=64))
    with running_server(app) as url:
        yield url, app, pipe
    pipe.close()


@pytest.mark.slow
def test_32_concurrent_clients_each_equal_their_single_request_output(slot_server):
    url, app, _ = slot_server
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
    alone = [client.completions.create(model="tiny", prompt=_prompt(i), max_tokens=16, temperature=0).choices[0].text
             for i in range(N_CLIENTS)]

    async def main():
        aclient = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
        async with aclient:
            async def one(i):
                if i % 2:
                    s = await aclient.completions.create(model="tiny", prompt=_prompt(i), max_tokens=16,
                                                         temperature=0, stream=True)
                    return "".join([c.choices[0].text async for c in s])
                r = await aclient.completions.create(model="tiny", prompt=_prompt(i), max_tokens=16, temperature=0)
                return r.choices[0].text

            return await asyncio.gather(*(one(i) for i in range(N_CLIENTS)))

    together = asyncio.run(main())
    assert together == alone
    batcher = app.state.pipeinfer.pipe._batcher
    assert batcher.rows > batcher.batches  # requests shared batches


def test_disconnect_frees_the_slot_and_its_cells(slot_server):
    url, app, pipe = slot_server
    state = app.state.pipeinfer
    want = httpx.post(url + "/v1/completions", json={"prompt": _prompt(1), "max_tokens": 12, "temperature": 0},
                      timeout=60).json()["choices"][0]["text"]
    body = {"prompt": _prompt(2), "max_tokens": 90, "temperature": 0, "stream": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()).startswith("data: ")
    deadline = time.monotonic() + 60
    while state.scheduler.running:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    used = pipe._batcher.call(-1, lambda n: n.kv_n_used)
    assert used == sum(len(s.cached) for s in pipe._slots)  # only prompt caches remain
    assert all(s.target.n_in_flight == 0 for s in pipe._slots)
    r = httpx.post(url + "/v1/completions", json={"prompt": _prompt(1), "max_tokens": 12, "temperature": 0}, timeout=60)
    assert r.json()["choices"][0]["text"] == want
