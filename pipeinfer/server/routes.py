"""The OpenAI endpoints: ``/v1/models``, ``/v1/completions`` and ``/v1/chat/completions``.

A request is validated (schemas.py), its prompt rendered and tokenized into a ``Stream`` before it
queues, so that every bad request gets a 400 naming its field and never takes a slot. The response
is built by pipeinfer.completions' OpenAI dict builders, one choice per stream (``n`` choices run one
after the other on the request's worker thread): one JSON body, or server-sent events (``data:
{chunk}`` lines, then ``data: [DONE]``). A client that disconnects cancels its job: a queued job never
runs, a running one stops at its next token.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from pipeinfer import completions
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
    async def create_completion(body: CompletionRequest, request: Request) -> Any:
        _check_model(state, body.model)

        def make(i: int) -> Any:
            return state.pipe.stream(body.prompt, max_tokens=body.max_tokens, **body.stream_kwargs(i))

        s = await _make_stream(state, lambda: make(0), "prompt", body)
        prefix = completions.echo_text(state.pipe, body.prompt, s) if body.echo else ""
        n, model = body.n, state.model_id
        return await _respond(state, request, Choices(s, make, n), "completions", body.stream, "cmpl",
                              lambda first, rest, cid, t: completions.completion_chunks(first, rest, n, cid, t, model,
                                                                                        prefix),
                              lambda done, cid, t: completions.completion_response(done, cid, t, model, prefix))

    @r.post("/v1/chat/completions")
    async def create_chat_completion(body: ChatCompletionRequest, request: Request) -> Any:
        _check_model(state, body.model)
        limit = body.limit()
        prompt: List[str] = []

        def make(i: int) -> Any:
            if not prompt:
                prompt.append(state.pipe.render_chat(body.messages))
            return state.pipe.stream(prompt[0], max_tokens=limit, add_special=True, parse_special=True,
                                     **body.stream_kwargs(i))

        s = await _make_stream(state, lambda: make(0), "messages", body, limit)
        n, model = body.n, state.model_id
        return await _respond(state, request, Choices(s, make, n), "chat", body.stream, "chatcmpl",
                              lambda first, rest, cid, t: completions.chat_chunks(first, rest, n, cid, t, model),
                              lambda done, cid, t: completions.chat_response(done, cid, t, model))

    return r


class Choices:
    """The streams of a request's ``n`` choices: the first made (and validated) by the route, each next
    one made on the worker thread when the previous one is done, so choices run one after the other."""

    def __init__(self, first: Any, make: Callable[[int], Any], n: int) -> None:
        self.first, self.make, self.n = first, make, n
        self.made: List[Any] = [first]

    def rest(self, job: Job) -> Iterator[Any]:
        """Choices 1..n-1 (none once the job is cancelled); the job cancels the one running."""
        for i in range(1, self.n):
            if job.cancelled:
                return
            s = self.make(i)
            self.made.append(s)
            job.stream = s
            if job.cancelled:  # cancelled while it was made: it stops at its first token
                s.cancel()
            yield s


def _check_model(state: Any, model: Optional[str]) -> None:
    if model is not None and model not in state.model_names:
        raise APIError(400, f"model '{model}' is not served here; this server serves '{state.model_id}' "
                            "(see /v1/models)", "model", "model_not_found")


_SAMPLING_FIELD = re.compile(r"^SamplingParams\.(\w+):")
_STRUCTURED = ("response_format", "grammar", "structured output", "give at most one of")


def _param_of(message: str, prompt_field: str, structured_field: Optional[str]) -> str:
    m = _SAMPLING_FIELD.match(message)
    if m:
        return m.group(1)
    if message.startswith("max_tokens"):
        return "max_tokens"
    if message.startswith(_STRUCTURED) and structured_field is not None:
        return structured_field
    return prompt_field


async def _make_stream(state: Any, make: Callable[[], Any], prompt_field: str, body: Any,
                       max_tokens: Optional[int] = None) -> Any:
    """Builds the request's first Stream (tokenizing off the event loop); bad input becomes a 400."""
    max_tokens = body.max_tokens if max_tokens is None else max_tokens
    n_vocab = state.pipe.n_vocab
    for k in body.logit_bias or {}:
        if int(k) >= n_vocab:
            raise bad_request(f"'logit_bias': token id {k} is out of the vocabulary [0, {n_vocab})", "logit_bias")
    try:
        s = await run_in_threadpool(make)
    except (ValueError, TypeError) as e:
        raise bad_request(str(e), _param_of(str(e), prompt_field, body.structured_field)) from None
    n_ctx, n_prompt = state.pipe.n_ctx, len(s.prompt_tokens)
    if max_tokens is not None and n_prompt + max_tokens > n_ctx:
        s.close()
        raise bad_request(f"the context holds {n_ctx} tokens and the prompt has {n_prompt}, so max_tokens can be "
                          f"at most {n_ctx - n_prompt}; got {max_tokens}", "max_tokens", "context_length_exceeded")
    return s


async def _respond(state: Any, request: Request, choices: Choices, endpoint: str, stream: bool, prefix: str,
                   chunks: Callable[[Any, Iterator[Any], str, int], Iterator[Dict[str, Any]]],
                   response: Callable[[List[Any], str, int], Dict[str, Any]]) -> Any:
    created = int(time.time())
    cid = f"{prefix}-{uuid.uuid4().hex}"

    def work(job: Job) -> None:
        try:
            if stream:
                for chunk in chunks(choices.first, choices.rest(job), cid, created):
                    job.emit("chunk", chunk)
            else:
                done = []
                for s in itertools.chain([choices.first], choices.rest(job)):
                    for _ in s:
                        pass
                    done.append(s)
                job.emit("chunk", response(done, cid, created))
        finally:
            for s in choices.made:
                s.close()
                state.metrics.observe_stream(s, (job.t_start or job.t_submit) - job.t_submit)

    job = Job(work, asyncio.get_running_loop())
    job.stream = choices.first
    try:
        state.scheduler.submit(job)
    except QueueFull as e:
        choices.first.close()
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
