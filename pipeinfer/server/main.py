"""``pipeinfer serve``: the command line of the server (arguments, then uvicorn).

Under ``mpiexec`` every rank runs the same command: rank 0 loads the head stage and serves HTTP, the
other ranks serve their pipeline stage until the head shuts down.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

DEFAULT_PORT = 8080


def add_parser(sub: Any, default_model: str) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible HTTP API and a chat page",
                       description="OpenAI-compatible server: /v1/models, /v1/completions, /v1/chat/completions, "
                                   "/health, /metrics, and a chat page at /.")
    p.add_argument("-m", "--model", default=default_model, help=f"GGUF path or known model name (default: {default_model})")
    p.add_argument("--alias", default=None, help="model name listed by /v1/models (default: the file name)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--parallel", type=int, default=1, help="requests generating at once (slots)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting for a slot; beyond: 503")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--api-key", default=os.environ.get("PIPEINFER_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on /v1/* and /metrics (default: $PIPEINFER_API_KEY)")
    p.add_argument("-c", "--ctx", type=int, default=0,
                   help="context length of all slots together (0: min(trained, 4096)); each slot gets ctx / parallel")
    p.add_argument("-t", "--threads", type=int, default=None, help="threads per stage")
    p.add_argument("--batch", type=int, default=512, help="prompt-processing batch size")
    p.add_argument("--stages", type=int, default=1, help="pipeline stages (threads; under mpiexec: the ranks)")
    p.add_argument("--exact", action="store_true",
                   help="llama.cpp's exact arithmetic instead of the faster default layout (see `pipeinfer run --help`)")
    p.add_argument("--draft", default=None,
                   help="drafter: a draft GGUF / known model name (same vocabulary), or 'ngram' (prompt lookup)")
    p.add_argument("--mode", choices=["iterative", "speculative", "pipeinfer"], default=None,
                   help="decoding mode (default: pipeinfer with --draft, else iterative)")
    p.add_argument("--n-draft", type=int, default=4, help="max draft tokens per speculative micro-batch")
    p.add_argument("--max-in-flight", type=int, default=4, help="max speculative micro-batches in flight")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def run(a: argparse.Namespace) -> int:
    try:
        import uvicorn

        from pipeinfer.server.app import ServerOptions, create_app
    except ImportError as e:
        print(f"pipeinfer serve: needs the server extra ({e.name} is missing): pip install \"pipeinfer[server]\"",
              file=sys.stderr)
        return 1
    from pipeinfer.pipeline import Pipeline
    from pipeinfer.speculation import SpeculationPolicy

    if not 0 < a.port < 65536:
        raise ValueError(f"--port must be in [1, 65535], got {a.port}")
    opts = ServerOptions(model_id=a.alias, api_key=a.api_key, max_queue=a.max_queue, max_body_bytes=a.max_body)
    policy = SpeculationPolicy(n_draft=a.n_draft, max_in_flight=a.max_in_flight)
    pipe = Pipeline(a.model, n_ctx=a.ctx, n_threads=a.threads, n_batch=a.batch, stages=a.stages, draft=a.draft,
                    mode=a.mode, speculation=policy, exact=a.exact, parallel=a.parallel)
    if not pipe.is_head:
        return 0  # an MPI worker rank: it served its stage until the head closed the pipeline
    try:
        app = create_app(pipe, opts)
        print(f"pipeinfer serve: {app.state.pipeinfer.model_id} on http://{a.host}:{a.port}/ "
              f"({a.parallel} slot{'s' if a.parallel > 1 else ''} of {pipe.n_ctx} tokens)", file=sys.stderr)
        uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, timeout_graceful_shutdown=5)
    finally:
        pipe.close()
    return 0
