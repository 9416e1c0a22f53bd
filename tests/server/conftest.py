"""Fixtures of the server tests: a tiny synthetic model and a server over it on 127.0.0.1."""
from __future__ import annotations

import pytest

import pipeinfer
from pipeinfer.server import ServerOptions, create_app
from server_helpers import running_server


@pytest.fixture(scope="session")
def tiny_path(tiny_model):
    path, _ = tiny_model("qwen2", "q8_0", n_layer=3, n_ctx_train=4096)  # some tests ask for 2048 cells
    return str(path)


@pytest.fixture(scope="module")
def pipe(tiny_path):
    p = pipeinfer.Pipeline(tiny_path, n_ctx=256, n_threads=1)
    yield p
    p.close()


@pytest.fixture(scope="module")
def server(pipe):
    """(base URL, app) of a one-slot server over `pipe`."""
    app = create_app(pipe, ServerOptions(model_id="tiny"))
    with running_server(app) as url:
        yield url, app
