"""A client that disconnects mid-stream stops its generation (in-flight runs cancelled, speculative KV
cells freed), the next request is correct, and /metrics counts what happened."""
from __future__ import annotations

import re
import time

import httpx2 as httpx
import pytest

import pipeinfer
from pipeinfer.server import ServerOptions, create_app
from server_helpers import running_server

N_LONG = 1500


@pytest.fixture(scope="module")
def spec_pipe(tiny_path):
    p = pipeinfer.Pipeline(tiny_path, n_ctx=2048, n_threads=1, stages=2, draft="ngram")
    yield p
    p.close()


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def _wait(cond, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_disconnect_mid_stream_cancels_and_frees(spec_pipe):
    pipe = spec_pipe
    want = pipe.generate([9, 8, 7, 6], max_tokens=20, temperature=0).text
    app = create_app(pipe, ServerOptions())
    state = app.state.pipeinfer
    with running_server(app) as url:
        body = {"prompt": [5, 17, 99, 3], "max_tokens": N_LONG, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
        # the connection is closed: the job must end early
        _wait(lambda: state.scheduler.running == 0)
        text = httpx.get(url + "/metrics").text
        assert _metric(text, "pipeinfer_requests_cancelled_total") == 1
        assert _metric(text, "pipeinfer_generated_tokens_total") < N_LONG
        # nothing in flight, no speculative cell left: only the canonical sequence's cells are used
        native = pipe._native
        assert native.n_in_flight == 0
        assert native.spec_free == pipe.policy.n_buffers
        assert native.kv_n_used == native.kv_seq_pos_max(0) + 1
        r = httpx.post(url + "/v1/completions", json={"prompt": [9, 8, 7, 6], "max_tokens": 20, "temperature": 0},
                       timeout=60)
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == want


def test_metrics_after_requests(server):
    url, _ = server
    for i in range(3):
        r = httpx.post(url + "/v1/completions", json={"prompt": [1, 2, 3 + i], "max_tokens": 5, "temperature": 0})
        assert r.status_code == 200
    text = httpx.get(url + "/metrics").text
    assert _metric(text, 'pipeinfer_requests_total{endpoint="completions",status="200"}') >= 3
    assert _metric(text, "pipeinfer_generated_tokens_total") >= 3
    assert _metric(text, "pipeinfer_time_to_first_token_seconds_count") >= 3
    assert _metric(text, "pipeinfer_inter_token_latency_seconds_count") >= 1
    assert _metric(text, "pipeinfer_tokens_per_second") > 0
    assert _metric(text, "pipeinfer_queue_depth") == 0
    assert 'pipeinfer_stage_busy_seconds_total{stage="0"}' in text
    for name in ("pipeinfer_acceptance_rate", "pipeinfer_draft_tokens_total", "pipeinfer_stage_bytes_sent_total",
                 "pipeinfer_stage_layers_cancelled_total", "pipeinfer_stage_idle_seconds_total"):
        assert name in text


def test_speculation_metrics(spec_pipe):
    app = create_app(spec_pipe, ServerOptions())
    with running_server(app) as url:
        r = httpx.post(url + "/v1/completions", json={"prompt": [5, 6, 5, 6, 5, 6, 5, 6], "max_tokens": 40,
                                                      "temperature": 0}, timeout=60)
        assert r.status_code == 200
        timings = r.json()["timings"]
        text = httpx.get(url + "/metrics").text
    assert _metric(text, "pipeinfer_draft_tokens_total") == timings["draft_n"] > 0
    assert _metric(text, "pipeinfer_draft_tokens_accepted_total") == timings["draft_n_accepted"]
    assert _metric(text, 'pipeinfer_stage_bytes_sent_total{stage="0"}') > 0
    assert 'pipeinfer_stage_busy_seconds_total{stage="1"}' in text
