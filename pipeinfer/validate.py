"""The one place that checks user-given numbers, flags and choices (pure Python, no imports of ours).

Every configuration object (EngineConfig, SamplingParams, SpeculationPolicy, the API's arguments)
validates through these functions, so a bad value always raises the same kind of error with the same
shape of message: ``ValueError("<field> must be <what>, got <value!r>")``. bool is never accepted
as a number, numpy integers and floats are.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Collection, Optional

__all__ = ["is_int", "is_real", "check_int", "check_real", "check_bool", "check_choice"]


def is_int(value: Any) -> bool:
    """True for Python and numpy integers, False for bool and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """True for Python and numpy integers and floats, False for bool and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _range_text(lo: Optional[float], hi: Optional[float], lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return ""


def check_int(name: str, value: Any, lo: Optional[int] = None, hi: Optional[int] = None, note: str = "") -> int:
    """``value`` as an int if it is an integer in [lo, hi] (either bound may be None).

    Raises:
        ValueError: naming ``name``, the allowed range (and ``note``, e.g. what 0 means) and the value.
    """
    if not is_int(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        what = " ".join(x for x in ("an integer", _range_text(lo, hi), note) if x)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_real(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None, *,
               lo_open: bool = False, hi_open: bool = False, note: str = "") -> float:
    """``value`` as a float if it is a finite number in the range (open or closed at each end).

    Raises:
        ValueError: naming ``name``, the allowed range and the value (NaN and infinities included).
    """
    ok = is_real(value) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = not ((lo is not None and (v < lo or (lo_open and v == lo)))
                  or (hi is not None and (v > hi or (hi_open and v == hi))))
    if not ok:
        what = " ".join(x for x in ("a finite number", _range_text(lo, hi, lo_open, hi_open), note) if x)
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (or numpy bool); ValueError naming ``name`` otherwise (1, "yes", None...)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_choice(name: str, value: Any, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``; ValueError listing them otherwise."""
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value
