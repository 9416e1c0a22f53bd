"""The OpenAI endpoints: ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``.

A request is validated (schemas.py), its prompt rendered and tokenized into a ``Stream`` before it
queues, so that every bad request gets a 400 naming its field and never takes a slot. The response
is built by the Pipeline's OpenAI dict builders: one JSON body, or server-sent events (``data:
{chunk}`` lines, then ``data: [DONE]``). A client that disconnects cancels its job: a queued job never
runs, a running one stops at its next token.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any, AsyncIterator, Callable, Dict, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from pipeinfer import pipeline as _pl
from pipeinfer.server.errors import APIError, bad_request, error_body
from pipeinfer.server.scheduler import Job, QueueFull
from pipeinfer.server.schemas import ChatCompletionRequest, CompletionRequest

RETRY_AFTER_S = 1


def router(state: Any) -> APIRouter:
    """The /v1 routes over a ServerState (app.py)."""
    r = APIRouter()

    @r.get("/v1/models")
    async def models() -> Dict[str, Any]:
        state.metrics.requests.labels("models", "200").inc()
        return {"object": "list", "data": [{"id": state.model_id, "object": "model", "created": state.created,
                                            "owned_by": "pipeinfer"}]}

    @r.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        _check_model(state, body.model)

        def make() -> Any:
            return state.pipe.stream(body.prompt, max_tokens=body.max_tokens, **body.sampling())

        s = await _make_stream(state, make, "prompt", body.max_tokens, body.logit_bias)
        return await _respond(state, request, s, "completions", body.stream, "cmpl",
                              _pl._completion_chunks, _pl._completion_response)

    @r.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        _check_model(state, body.model)
        limit = body.limit()

        def make() -> Any:
            prompt = state.pipe.render_chat(body.messages)
            return state.pipe.stream(prompt, max_tokens=limit, add_special=True, parse_special=True,
                                     **body.sampling())

        s = await _make_stream(state, make, "messages", limit, body.logit_bias)
        return await _respond(state, request, s, "chat", body.stream, "chatcmpl", _pl._chat_chunks,
                              _pl._chat_response)

    return r


def _check_model(state: Any, model: Optional[str]) -> None:
    if model is not None and model not in state.model_names:
        raise APIError(400, f"model '{model}' is not served here; this server serves '{state.model_id}' "
                            "(see /v1/models)", "model", "model_not_found")


_SAMPLING_FIELD = re.compile(r"^SamplingParams\.(\w+):")


def _param_of(message: str, prompt_field: str) -> str:
    m = _SAMPLING_FIELD.match(message)
    if m:
        return m.group(1)
    if message.startswith("max_tokens"):
        return "max_tokens"
    return prompt_field


async def _make_stream(state: Any, make: Callable[[], Any], prompt_field: str, max_tokens: Optional[int],
                       logit_bias: Optional[Dict[str, float]]) -> Any:
    """Builds the request's Stream (tokenizing off the event loop); bad input becomes a 400."""
    n_vocab = state.pipe.n_vocab
    for k in logit_bias or {}:
        if int(k) >= n_vocab:
            raise bad_request(f"'logit_bias': token id {k} is out of the vocabulary [0, {n_vocab})", "logit_bias")
    try:
        s = await run_in_threadpool(make)
    except (ValueError, TypeError) as e:
        raise bad_request(str(e), _param_of(str(e), prompt_field)) from None
    n_ctx, n_prompt = state.pipe.n_ctx, len(s.prompt_tokens)
    if max_tokens is not None and n_prompt + max_tokens > n_ctx:
        s.close()
        raise bad_request(f"the context holds {n_ctx} tokens and the prompt has {n_prompt}, so max_tokens can be "
                          f"at most {n_ctx - n_prompt}; got {max_tokens}", "max_tokens", "context_length_exceeded")
    return s


async def _respond(state: Any, request: Request, s: Any, endpoint: str, stream: bool, prefix: str,
                   chunks: Callable[..., Any], response: Callable[..., Any]) -> Any:
    created = int(time.time())
    cid = f"{prefix}-{uuid.uuid4().hex}"

    def work(job: Job) -> None:
        try:
            if stream:
                for chunk in chunks(s, cid, created, state.model_id):
                    job.emit("chunk", chunk)
            else:
                for _ in s:
                    pass
                job.emit("chunk", response(s, cid, created, state.model_id))
        finally:
            s.close()
            state.metrics.observe_stream(s, (job.t_start or job.t_submit) - job.t_submit)

    job = Job(work, asyncio.get_running_loop())
    job.stream = s
    try:
        state.scheduler.submit(job)
    except QueueFull as e:
        s.close()
        state.metrics.requests.labels(endpoint, "503").inc()
        raise APIError(503, f"the server is busy ({e}); retry later", None, "server_busy",
                       {"Retry-After": str(RETRY_AFTER_S)}) from None
    if stream:
        state.metrics.requests.labels(endpoint, "200").inc()
        return StreamingResponse(_sse(job), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await _whole(state, request, job, endpoint)


async def _sse(job: Job) -> AsyncIterator[str]:
    """Server-sent events of a job; leaving early (the client went away) cancels it."""
    try:
        while True:
            kind, payload = await job.next_event()
            if kind == "chunk":
                yield f"data: {json.dumps(payload)}\n\n"
            elif kind == "done":
                yield "data: [DONE]\n\n"
                return
            else:
                yield f"data: {json.dumps(error_body(500, f'generation failed: {payload}'))}\n\n"
                return
    finally:
        job.cancel()


async def _whole(state: Any, request: Request, job: Job, endpoint: str) -> Any:
    """The single JSON body of a non-streamed job; a client that disconnects first cancels it."""
    gone = asyncio.ensure_future(_disconnected(request))
    result: Optional[Dict[str, Any]] = None
    try:
        while True:
            ev = asyncio.ensure_future(job.next_event())
            await asyncio.wait({ev, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not ev.done():
                ev.cancel()
                job.cancel()
                return JSONResponse(error_body(400, "client disconnected"), status_code=499)
            kind, payload = ev.result()
            if kind == "chunk":
                result = payload
            elif kind == "done":
                state.metrics.requests.labels(endpoint, "200").inc()
                return JSONResponse(result)
            else:
                state.metrics.requests.labels(endpoint, "500").inc()
                raise APIError(500, f"generation failed: {payload}")
    finally:
        gone.cancel()


async def _disconnected(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg.get("type") == "http.disconnect":
            return
