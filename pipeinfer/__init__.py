"""pipeinfer: GGUF inference with asynchronous pipelined speculative decoding (PipeInfer)."""
from pipeinfer._core import (  # noqa: F401
    GGUFError,
    KVCacheFullError,
    ModelError,
    PipeinferError,
    ShapeError,
    TransportError,
    UnsupportedError,
)

__version__ = "0.1.0"
