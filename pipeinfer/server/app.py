"""The ASGI application of ``pipeinfer serve`` (FastAPI on uvicorn).

Routes: the OpenAI endpoints (routes.py), ``GET /health``, ``GET /metrics`` (Prometheus text), and
the chat page at ``GET /`` (page.html: plain HTML and JavaScript, no build step). With an API key,
``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY``; the page asks for the key itself.
Request bodies larger than ``max_body_bytes`` are refused with 413 before they are read whole.
"""
from __future__ import annotations

import hmac
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Set

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeinfer.server import errors
from pipeinfer.server.metrics import ServerMetrics
from pipeinfer.server.routes import router
from pipeinfer.server.scheduler import Scheduler

PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServerOptions:
    """What ``pipeinfer serve`` configures beyond the Pipeline.

    Args:
        model_id: the name /v1/models lists and requests may give (default: the model file's name).
        api_key: if set, /v1/* and /metrics need ``Authorization: Bearer <api_key>``.
        max_queue: requests that may wait for a slot; more get 503 with Retry-After.
        max_body_bytes: largest request body accepted (413 beyond).
    """

    model_id: Optional[str] = None
    api_key: Optional[str] = None
    max_queue: int = 64
    max_body_bytes: int = 1 << 20
    aliases: Set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name, lo in (("max_queue", 0), ("max_body_bytes", 1024)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (omit it to serve without a key)")


class ServerState:
    """What the routes share: the pipeline, the scheduler, the metrics and the options."""

    def __init__(self, pipe: Any, opts: ServerOptions) -> None:
        self.pipe = pipe
        self.opts = opts
        self.model_id = opts.model_id or pipe.model_path.name
        self.model_names = {self.model_id, pipe.model_path.name, pipe.model_path.stem} | set(opts.aliases)
        self.created = int(time.time())
        self.parallel = getattr(pipe, "parallel", 1)  # one worker thread per slot of the Pipeline
        self.scheduler = Scheduler(self.parallel, opts.max_queue)
        # with several slots, generations share the stages: read the stages' own counters when scraped
        stages = pipe.stage_stats if self.parallel > 1 else None
        self.metrics = ServerMetrics(lambda: (self.scheduler.queue_depth, self.scheduler.running), stages)


def create_app(pipe: Any, opts: Optional[ServerOptions] = None) -> FastAPI:
    """The server's ASGI app over a head ``pipeinfer.Pipeline`` (which the caller keeps and closes)."""
    opts = opts or ServerOptions()
    state = ServerState(pipe, opts)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.scheduler.close()

    app = FastAPI(title="pipeinfer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pipeinfer = state
    errors.install(app)
    app.include_router(router(state))

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": state.model_id, "slots": state.parallel,
                "slots_busy": state.scheduler.running, "queue_depth": state.scheduler.queue_depth}

    @app.get("/metrics")
    def metrics() -> Response:  # a thread: reading the stages' counters may wait for a batch
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    app.add_middleware(_Guard, opts=opts)
    return app


class _Guard:
    """ASGI middleware: API key check and request body limit, answered with OpenAI error bodies."""

    def __init__(self, app: ASGIApp, opts: ServerOptions) -> None:
        self.app = app
        self._key = opts.api_key.encode() if opts.api_key else None
        self._limit = opts.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v for k, v in scope.get("headers", [])}
        if self._key is not None and (path.startswith("/v1/") or path == "/metrics"):
            given = headers.get("authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self._key):
                await _reply(send, 401, "invalid or missing API key (send 'Authorization: Bearer <key>')",
                             "invalid_api_key")
                return
        length = headers.get("content-length")
        if length is not None and length.isdigit():
            if int(length) > self._limit:
                await _reply(send, 413, f"the request body has {int(length)} bytes; the limit is {self._limit}",
                             "request_too_large")
                return
            await self.app(scope, receive, send)
            return
        # a body of unknown length (chunked): read it here, up to the limit
        body = await _read_body(receive, self._limit)
        if body is None:
            await _reply(send, 413, f"the request body exceeds the limit of {self._limit} bytes", "request_too_large")
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive, limit: int) -> Optional[bytes]:
    parts: List[bytes] = []
    seen = 0
    while True:
        msg = await receive()
        if msg.get("type") != "http.request":
            return b"".join(parts)
        chunk = msg.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            return None
        parts.append(chunk)
        if not msg.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def recv() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return recv


async def _reply(send: Send, status: int, message: str, code: str) -> None:
    resp = JSONResponse(errors.error_body(status, message, None, code), status_code=status)
    await send({"type": "http.response.start", "status": status, "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})

