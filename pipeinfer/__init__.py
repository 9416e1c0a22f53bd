"""pipeinfer: GGUF inference with asynchronous pipelined speculative decoding (PipeInfer).

Public API::

    pipe = pipeinfer.Pipeline("smollm2-135m")        # or a path to a .gguf file
    for piece in pipe.stream("Once upon a time", max_tokens=32):
        print(piece, end="")
"""
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
from pipeinfer import log as _log  # noqa: F401  (the core's messages go to logging.getLogger("pipeinfer"))

_LAZY = {
    "Pipeline": "pipeinfer.pipeline",
    "Stream": "pipeinfer.pipeline",
    "Timings": "pipeinfer.pipeline",
    "PipelineBusyError": "pipeinfer.guard",
    "SamplingParams": "pipeinfer.sampling",
    "SpeculationPolicy": "pipeinfer.speculation",
    "Tokenizer": "pipeinfer.tokenizer",
}


def __getattr__(name: str):
    # The engine classes are imported on first use so that `import pipeinfer` stays light.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeinfer' has no attribute {name!r}")


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
