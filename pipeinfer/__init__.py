"""pipeinfer: GGUF inference with asynchronous pipelined speculative decoding (PipeInfer).

Public API::

    pipe = pipeinfer.Pipeline("smollm2-135m")        # or a path to a .gguf file
    for piece in pipe.stream("Once upon a time", max_tokens=32):
        print(piece, end="")

The names below are imported on first use, so that `import pipeinfer` stays light and the pure parts
(pipeinfer.sampling, pipeinfer.speculation) import without the native extension; type checkers see
the real classes through the TYPE_CHECKING imports.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeinfer._core import (
        GGUFError,
        InsufficientMemoryError,
        KVCacheFullError,
        ModelError,
        PipeinferError,
        ShapeError,
        TransportError,
        UnsupportedError,
    )
    from pipeinfer.guard import PipelineBusyError
    from pipeinfer.pipeline import Pipeline
    from pipeinfer.sampling import SamplingParams
    from pipeinfer.speculation import SpeculationPolicy
    from pipeinfer.stream import Stream, Timings
    from pipeinfer.tokenizer import Tokenizer

try:  # the core's messages go to logging.getLogger("pipeinfer") (log.py)
    from pipeinfer import log as _log  # noqa: F401
except ImportError:  # the native extension is absent: the pure parts (sampling, speculation) still import
    pass

_LAZY = {
    "Pipeline": "pipeinfer.pipeline",
    "Stream": "pipeinfer.stream",
    "Timings": "pipeinfer.stream",
    "PipelineBusyError": "pipeinfer.guard",
    "SamplingParams": "pipeinfer.sampling",
    "SpeculationPolicy": "pipeinfer.speculation",
    "Tokenizer": "pipeinfer.tokenizer",
    "PipeinferError": "pipeinfer._core",
    "GGUFError": "pipeinfer._core",
    "ShapeError": "pipeinfer._core",
    "UnsupportedError": "pipeinfer._core",
    "ModelError": "pipeinfer._core",
    "KVCacheFullError": "pipeinfer._core",
    "InsufficientMemoryError": "pipeinfer._core",
    "TransportError": "pipeinfer._core",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'pipeinfer' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Pipeline",
    "Stream",
    "Timings",
    "PipelineBusyError",
    "SamplingParams",
    "SpeculationPolicy",
    "Tokenizer",
    "PipeinferError",
    "GGUFError",
    "ShapeError",
    "UnsupportedError",
    "ModelError",
    "KVCacheFullError",
    "InsufficientMemoryError",
    "TransportError",
    "__version__",
]
