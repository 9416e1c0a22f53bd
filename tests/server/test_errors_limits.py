"""Bad requests get 400 with an OpenAI error body naming the field; keys, body size and a full queue
get 401, 413 and 503 (with Retry-After)."""
from __future__ import annotations

import threading

import httpx2 as httpx
import pytest

from pipeinfer.server import ServerOptions, create_app
from server_helpers import running_server

CHAT = [{"role": "user", "content": "hi"}]


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def test_malformed_json_is_400(server):
    url, _ = server
    r = httpx.post(url + "/v1/completions", content=b'{"prompt": "x", ', headers={"Content-Type": "application/json"})
    assert _error(r, 400)["code"] == "invalid_json"


def test_unknown_model_is_400_naming_model(server):
    url, _ = server
    r = httpx.post(url + "/v1/chat/completions", json={"model": "gpt-9", "messages": CHAT})
    err = _error(r, 400)
    assert err["param"] == "model" and "gpt-9" in err["message"]


@pytest.mark.parametrize("endpoint,body,param", [
    ("/v1/completions", {"prompt": "x", "temperature": -1}, "temperature"),
    ("/v1/completions", {"prompt": "x", "top_p": 1.5}, "top_p"),
    ("/v1/completions", {"prompt": "x", "max_tokens": -3}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "max_tokens": "ten"}, "max_tokens"),
    ("/v1/completions", {"prompt": "x", "presence_penalty": 9}, "presence_penalty"),
    ("/v1/completions", {"prompt": "x", "n": 0}, "n"),
    ("/v1/completions", {"prompt": "x", "n": 500}, "n"),
    ("/v1/completions", {"prompt": "x", "seed": -5}, "seed"),
    ("/v1/completions", {"prompt": "x", "stop": ["a"] * 40}, "stop"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"12": 500}}, "logit_bias"),
    ("/v1/completions", {"prompt": "x", "logit_bias": {"99999999": 1}}, "logit_bias"),
    ("/v1/completions", {"prompt": "x", "logprobs": 50}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "logprobs": 2, "echo": True}, "logprobs"),
    ("/v1/completions", {"prompt": "x", "echo": "yes"}, "echo"),
    ("/v1/completions", {"prompt": "x", "grammar": "root ::= ("}, "grammar"),
    ("/v1/completions", {"prompt": "x", "grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}},
     "grammar"),
    ("/v1/completions", {"prompt": "x", "response_format": {"type": "xml"}}, "response_format"),
    ("/v1/completions", {"prompt": ""}, "prompt"),
    ("/v1/completions", {"prompt": [1, 2, 10**9]}, "prompt"),
    ("/v1/completions", {"max_tokens": 3}, "prompt"),
    ("/v1/completions", {"prompt": "x" * 3000, "max_tokens": 3}, "prompt"),
    ("/v1/completions", {"prompt": "hello", "max_tokens": 100000}, "max_tokens"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ("/v1/chat/completions", {"messages": CHAT, "response_format": {"type": "json_schema"}}, "response_format"),
    ("/v1/chat/completions", {"messages": CHAT, "response_format": "json"}, "response_format"),
    ("/v1/chat/completions", {"messages": CHAT, "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "nonsense"}}}}, "response_format"),
    ("/v1/chat/completions", {"messages": CHAT, "top_logprobs": 2}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": CHAT, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ("/v1/chat/completions", {"messages": CHAT, "logprobs": 1}, "logprobs"),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": True}, "temperature"),
])  # fmt: skip
def test_out_of_range_fields_are_400_naming_the_field(server, endpoint, body, param):
    url, _ = server
    err = _error(httpx.post(url + endpoint, json=body), 400)
    assert err["param"] is not None and err["param"].split(".")[0] == param, err
    assert err["type"] == "invalid_request_error"


def test_server_still_answers_after_bad_requests(server, pipe):
    url, _ = server
    r = httpx.post(url + "/v1/completions", json={"prompt": [5, 17], "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200
    pipe.reset()
    assert r.json()["choices"][0]["text"] == pipe.generate([5, 17], max_tokens=4, temperature=0).text


def test_api_key_and_body_limit(pipe):
    app = create_app(pipe, ServerOptions(api_key="s3cret", max_body_bytes=2048))
    with running_server(app) as url:
        body = {"prompt": [5, 17], "max_tokens": 2}
        assert _error(httpx.post(url + "/v1/completions", json=body), 401)["code"] == "invalid_api_key"
        bad = {"Authorization": "Bearer nope"}
        assert httpx.post(url + "/v1/completions", json=body, headers=bad).status_code == 401
        assert httpx.get(url + "/metrics").status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.post(url + "/v1/completions", json=body, headers=ok).status_code == 200
        assert httpx.get(url + "/metrics", headers=ok).status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # public
        assert httpx.get(url + "/").status_code == 200  # the page asks for the key itself
        big = {"prompt": "x" * 4000}
        assert _error(httpx.post(url + "/v1/completions", json=big, headers=ok), 413)["code"] == "request_too_large"

        def chunked():
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        r = httpx.post(url + "/v1/completions", content=chunked(), headers={**ok, "Content-Type": "application/json"})
        assert _error(r, 413)["code"] == "request_too_large"


def test_full_queue_is_503_with_retry_after(pipe):
    app = create_app(pipe, ServerOptions(max_queue=1))
    with running_server(app) as url:
        # This thread holds the pipeline with an unfinished stream: the server's one slot waits for it.
        held = pipe.stream([5, 17, 99], max_tokens=3, temperature=0)
        next(held)
        results = {}

        def post(i):
            results[i] = httpx.post(url + "/v1/completions", json={"prompt": [1, 2, i], "max_tokens": 2,
                                                                  "temperature": 0}, timeout=60)

        running = threading.Thread(target=post, args=(1,))
        running.start()
        state = app.state.pipeinfer
        _wait(lambda: state.scheduler.running == 1)
        queued = threading.Thread(target=post, args=(2,))
        queued.start()
        _wait(lambda: state.scheduler.queue_depth == 1)
        r = httpx.post(url + "/v1/completions", json={"prompt": [1, 2, 3]})
        err = _error(r, 503)
        assert r.headers["Retry-After"] == "1" and err["code"] == "server_busy"
        health = httpx.get(url + "/health").json()
        assert health["slots_busy"] == 1 and health["queue_depth"] == 1
        held.close()
        running.join(60)
        queued.join(60)
        assert results[1].status_code == 200 and results[2].status_code == 200


def _wait(cond, timeout_s=30.0):
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
