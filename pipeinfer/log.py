"""The engine's messages (progress of a slow load, a cache that could not be used) go to the
``logging`` logger ``"pipeinfer"``; library code never prints. Installed on ``import pipeinfer``.

Example: ``logging.basicConfig(level=logging.INFO)`` shows the progress of the first, repacking,
load of a model (``pipeinfer run`` shows it on stderr).
"""
from __future__ import annotations

import atexit
import logging

from pipeinfer import _core

logger = logging.getLogger("pipeinfer")


def _forward(level: int, text: str) -> None:
    logger.log(level, text)


def install() -> None:
    """Routes the core's messages to ``logger`` (idempotent)."""
    _core.set_log_callback(_forward)


install()
atexit.register(_core.set_log_callback, None)  # no callback into a finalizing interpreter
