"""Stop-string matching over streamed text, with OpenAI semantics.

This module owns one rule: text is emitted as soon as it cannot be part of a stop string; text that
might be the beginning of a stop string is held back until the next piece decides; the stop string
itself and everything after it are never emitted. It knows nothing about tokens or detokenization
(the caller feeds decoded text pieces) and keeps no state beyond the held-back tail.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

__all__ = ["StopMatcher"]


class StopMatcher:
    """Incremental stop-string matcher.

    Usage:
        m = StopMatcher(["\\n\\n", "User:"])
        for piece in pieces:
            emit, stopped = m.feed(piece)
            out.write(emit)
            if stopped:
                break
        else:
            out.write(m.flush())

    The held-back tail is always shorter than the longest stop string, so memory is bounded.
    """

    def __init__(self, stop: Sequence[str] = ()) -> None:
        """Args:
            stop: stop strings; a single string is one stop string. Each must be a non-empty str.

        Raises:
            ValueError: a stop entry is not a non-empty string.
        """
        items = (stop,) if isinstance(stop, str) else tuple(stop or ())
        for s in items:
            if not isinstance(s, str) or not s:
                raise ValueError(f"StopMatcher: stop strings must be non-empty str, got {s!r}")
        self._stops: Tuple[str, ...] = items
        self._max_len = max((len(s) for s in items), default=0)
        self._held = ""
        self._matched: Optional[str] = None

    @property
    def stopped(self) -> bool:
        """True once a stop string has been seen."""
        return self._matched is not None

    @property
    def matched(self) -> Optional[str]:
        """The stop string that ended the text, or None."""
        return self._matched

    @property
    def held(self) -> str:
        """Text currently held back because it may start a stop string."""
        return self._held

    def feed(self, piece: str) -> Tuple[str, bool]:
        """Adds a decoded text piece.

        Returns:
            (emit, stopped): `emit` is the text now safe to show; `stopped` is True when a stop string
            was found, in which case `emit` ends right before it and later calls return ("", True).
        """
        if not isinstance(piece, str):
            raise TypeError(f"StopMatcher.feed: piece must be str, got {type(piece).__name__}")
        if self._matched is not None:
            return "", True
        if not self._stops:
            return piece, False
        buf = self._held + piece
        # The held tail contains no complete stop string, so any match ends inside `piece`; take the
        # earliest start, and the longest stop string among those starting there.
        best_pos, best = -1, None
        for s in self._stops:
            pos = buf.find(s)
            if pos >= 0 and (best is None or pos < best_pos or (pos == best_pos and len(s) > len(best))):
                best_pos, best = pos, s
        if best is not None:
            self._matched = best
            self._held = ""
            return buf[:best_pos], True
        keep = self._partial_suffix_len(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        """Ends the stream without a stop: returns the held-back text (empty after a stop)."""
        out, self._held = self._held, ""
        return out

    def _partial_suffix_len(self, buf: str) -> int:
        """Length of the longest suffix of buf that is a proper prefix of some stop string."""
        for k in range(min(len(buf), self._max_len - 1), 0, -1):
            tail = buf[len(buf) - k:]
            if any(s.startswith(tail) for s in self._stops):
                return k
        return 0
