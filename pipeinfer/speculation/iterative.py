"""Iterative decoding: one token in flight through all stages (the paper's sequential baseline)."""
from __future__ import annotations

from typing import Generator

import numpy as np

from pipeinfer.speculation.session import Session

__all__ = ["iterative"]


def iterative(s: Session) -> Generator[int, None, None]:
    """Yields accepted tokens: decide from the last logits, run the token, repeat."""
    row = s.first_logits
    while True:
        tok, _ = s.decide(row, ())
        s.accept(tok)
        yield tok
        if s.full:
            return
        s.submit([tok], [len(s.gen) - 1], np.zeros(1, np.int32))
        _, _, out = s.wait()
        row = out[0].copy()
