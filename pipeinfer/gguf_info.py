"""Human-readable summary of a GGUF file (``pipeinfer info FILE``).

Reads the file with the strict C++ reader (``_core.GGUFFile``), so a malformed file raises
``pipeinfer.GGUFError`` instead of being summarised. Formatting only: no model semantics here.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeinfer._core import GGUFFile

__all__ = ["format_info", "format_value"]


def format_value(value: Any, max_array: int = 8, max_str: int = 80) -> str:
    """Formats one metadata value; arrays show at most ``max_array`` elements and their length.

    Args:
        value: a value from ``GGUFFile.metadata()``.
        max_array: number of leading elements of an array to show.
        max_str: strings longer than this are cut, with the full length noted.

    Returns:
        A one-line rendering.
    """
    if isinstance(value, str):
        text = value if len(value) <= max_str else value[:max_str] + f"... ({len(value)} chars)"
        return repr(text)
    if isinstance(value, (list, np.ndarray)):
        n = len(value)
        head = [format_value(v.item() if isinstance(v, np.generic) else v, max_array, 40) for v in value[:max_array]]
        more = ", ..." if n > max_array else ""
        return f"[{', '.join(head)}{more}] (len {n})"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _human_bytes(size: int) -> str:
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def format_info(path: str, max_array: int = 8) -> str:
    """Describes a GGUF file: header, every metadata key with type and value, the tensor table, totals.

    Args:
        path: the GGUF file.
        max_array: number of leading elements shown for array values (their length is always shown).

    Returns:
        The multi-line report (no trailing newline).

    Raises:
        pipeinfer.GGUFError: the file is not a valid GGUF file.
    """
    f = GGUFFile(path)
    meta = f.metadata()
    types = f.metadata_types()
    tensors = f.tensors()

    lines = [
        f"file:        {f.path}",
        f"size:        {f.file_size} bytes ({_human_bytes(f.file_size)})",
        f"version:     {f.version}",
        f"alignment:   {f.alignment}",
        f"data offset: {f.data_offset}",
        f"metadata:    {len(meta)} keys",
        f"tensors:     {len(tensors)}",
        "",
        "metadata:",
    ]
    key_w = max((len(k) for k in meta), default=0)
    type_w = max((len(t) for t in types.values()), default=0)
    for key, val in meta.items():
        lines.append(f"  {key:<{key_w}}  {types[key]:<{type_w}}  {format_value(val, max_array)}")

    lines += ["", "tensors:"]
    name_w = max([len("name")] + [len(t["name"]) for t in tensors])
    lines.append(f"  {'name':<{name_w}}  {'type':<7}  {'shape':<24}  {'offset':>12}  {'bytes':>12}")
    n_params = 0
    by_type: dict[str, list[int]] = {}
    for t in tensors:
        shape = "[" + ", ".join(str(d) for d in t["shape"]) + "]"
        lines.append(f"  {t['name']:<{name_w}}  {t['type']:<7}  {shape:<24}  {t['offset']:>12}  {t['nbytes']:>12}")
        count = math.prod(t["shape"])
        n_params += count
        slot = by_type.setdefault(t["type"], [0, 0, 0])
        slot[0] += 1
        slot[1] += count
        slot[2] += t["nbytes"]

    total_bytes = sum(t["nbytes"] for t in tensors)
    lines += [
        "",
        "totals:",
        f"  parameters:   {n_params}",
        f"  tensor bytes: {total_bytes} ({_human_bytes(total_bytes)})",
    ]
    for name, (n, count, nbytes) in sorted(by_type.items(), key=lambda kv: -kv[1][2]):
        lines.append(f"  {name:<7} {n:>5} tensors  {count:>14} params  {nbytes:>14} bytes ({_human_bytes(nbytes)})")
    return "\n".join(lines)
