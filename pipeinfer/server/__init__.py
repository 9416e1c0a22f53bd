"""The OpenAI-compatible HTTP server of ``pipeinfer serve`` (install extra: ``pipeinfer[server]``).

    from pipeinfer.server import ServerOptions, create_app
    app = create_app(pipeinfer.Pipeline("smollm2-135m", parallel=4), ServerOptions())
    uvicorn.run(app, host="127.0.0.1", port=8080)

Files: app.py (routes for health, metrics, page; API key and body-size middleware), routes.py (the
OpenAI endpoints), schemas.py (request validation), scheduler.py (bounded queue, worker threads,
cancellation), metrics.py (Prometheus), errors.py (OpenAI error bodies), page.html (the chat page),
main.py (the command line).
"""
from typing import Any

__all__ = ["ServerOptions", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the command line imports pipeinfer.server.main for `serve`'s arguments,
    # and `pipeinfer run` must work without the server extra (fastapi) installed.
    if name in __all__:
        from pipeinfer.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'pipeinfer.server' has no attribute {name!r}")
