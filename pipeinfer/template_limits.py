"""Rendering an untrusted Jinja template (a model file's chat template) within bounds of time and size.

A chat template is a program that comes with the model file. Jinja's sandbox stops it from reaching
Python internals, but not from running for ever (nested ``range(100000)`` loops) or from asking for
gigabytes in one operation (``{{ 'x' * 4000000000 }}``). This module owns those bounds; it does not
choose templates or build prompts (chat.py does).

The choice, and why:
  - In process, not in a subprocess: a helper process per render costs an interpreter start (about
    0.1 s) or a long-lived child to manage and reap; rendering happens on every chat request.
  - Size: every operation that can create a big value in one step is checked *before* it runs, in
    the environment's hooks: ``*`` and ``+`` on strings, lists and ints, ``**``, ``%`` formatting and
    ``str.format`` widths, the width arguments of ``center``/``ljust``/``rjust``/``zfill``/
    ``expandtabs``, ``replace``, and the ``center``, ``indent``, ``format``, ``replace`` and
    ``tojson`` filters. The output is consumed as a stream and stopped once it passes the limit.
  - Time and memory: a watchdog thread measures the rendering thread's CPU time (immune to a loaded
    machine), the wall time, and the growth of the process's anonymous resident memory, and past a
    limit raises an exception inside the rendering thread (``PyThreadState_SetAsyncExc``), which
    Python delivers between two bytecodes of the template's compiled code. A single long C call
    cannot be interrupted this way, which is why the size checks above come first: no single step
    they allow is long or big.
What remains: memory that a template accumulates in many small steps without printing (text captured
by ``{% set x %}...{% endset %}`` in a loop) is stopped only by the watchdog, which samples every 20 ms
(measured: up to about 0.5 GB per CPU second); and memory that other threads allocate while a template
renders counts against its limit.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import re
import string
import threading
import time
from typing import Any, Callable, Dict, Iterable

import jinja2
import jinja2.compiler
import jinja2.nodes
import jinja2.sandbox

__all__ = ["TemplateLimits", "TemplateLimitError", "BoundedSandbox", "render_bounded"]


@dataclasses.dataclass(frozen=True)
class TemplateLimits:
    """Bounds of one render.

    Attributes:
        max_chars: longest output, and longest string or list any single operation may create.
        max_int_bits: largest integer (in bits) a multiplication or power may create.
        max_cpu_s: CPU seconds of the rendering thread.
        max_wall_s: wall-clock seconds (a backstop for a thread that is not running).
        max_memory_growth: bytes by which the process's anonymous resident memory may grow.
    """

    max_chars: int = 4 << 20
    max_int_bits: int = 1 << 16
    max_cpu_s: float = 2.0
    max_wall_s: float = 30.0
    max_memory_growth: int = 1 << 30


class TemplateLimitError(ValueError):
    """A template exceeded a bound of TemplateLimits (the message names which, and the limit)."""


class _Stop(BaseException):
    """Raised inside the rendering thread by the watchdog. A BaseException, so that no `except
    Exception` on the way can swallow it."""


# ---------------------------------------------------------------------------------------------- size


def _too_big(what: str, n: int, limit: int) -> TemplateLimitError:
    return TemplateLimitError(f"{what} would be {n} long, over the limit of {limit}")


def _weight(x: Any, depth: int = 0) -> int:
    """Characters `x` stands for: a string's length, the sum over a list or tuple's items (a list of
    many references to one long string is as big as its text)."""
    if isinstance(x, str):
        return len(x)
    if isinstance(x, (list, tuple)) and depth < 8:
        return len(x) + sum(_weight(v, depth + 1) for v in x)
    return 1


def _check_repeat(seq: Any, times: Any, limits: TemplateLimits) -> None:
    if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and not isinstance(times, bool):
        n = _weight(seq) * max(times, 0)
        if n > limits.max_chars:
            raise _too_big(f"{type(seq).__name__} * {times}", n, limits.max_chars)


def check_size(what: str, x: Any, limits: TemplateLimits) -> None:
    n = _weight(x)
    if n > limits.max_chars:
        raise _too_big(what, n, limits.max_chars)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


_SPEC_NUMBER = re.compile(r"\d+")


def _check_spec(spec: str, limits: TemplateLimits, what: str) -> None:
    """Rejects a format spec (printf or str.format) whose width or precision is over the limit, or
    that takes one from the arguments ('*' or a nested field), which this check cannot see."""
    if "*" in spec or "{" in spec:
        raise TemplateLimitError(f"{what}: a width or precision taken from the arguments is not allowed")
    for m in _SPEC_NUMBER.finditer(spec):
        if int(m.group()) > limits.max_chars:
            raise _too_big(f"{what}: width {m.group()}", int(m.group()), limits.max_chars)


_PRINTF_SPEC = re.compile(r"%[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?")


def _check_printf(fmt: Any, limits: TemplateLimits) -> None:
    if isinstance(fmt, str):
        for m in _PRINTF_SPEC.finditer(fmt):
            _check_spec(m.group(), limits, "'%' formatting")


def _check_str_format(fmt: str, limits: TemplateLimits) -> None:
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format itself will reject it
    for _, _, spec, _ in fields:
        if spec:
            _check_spec(spec, limits, "str.format")


def check_binop(op: str, left: Any, right: Any, limits: TemplateLimits) -> None:
    """Raises TemplateLimitError if `left op right` would create a value over the limits."""
    if op == "*":
        _check_repeat(left, right, limits)
        _check_repeat(right, left, limits)
        if _is_int(left) and _is_int(right):
            bits = left.bit_length() + right.bit_length()
            if bits > limits.max_int_bits:
                raise _too_big("integer product (bits)", bits, limits.max_int_bits)
    elif op == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            n = _weight(left) + _weight(right)
            if n > limits.max_chars:
                raise _too_big("concatenation", n, limits.max_chars)
    elif op == "**":
        if _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0:
            bits = (abs(left).bit_length() - 1) * right
            if bits > limits.max_int_bits:
                raise _too_big("integer power (bits)", bits, limits.max_int_bits)
    elif op == "%":
        _check_printf(left, limits)


def _int_arg(args: tuple, kwargs: Dict[str, Any], i: int, name: str) -> Any:
    return args[i] if len(args) > i else kwargs.get(name)


def _check_replace(s: Any, old: Any, new: Any, count: Any, limits: TemplateLimits) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        hits = s.count(old) if old else len(s) + 1
        if _is_int(count) and count >= 0:
            hits = min(hits, count)
        n = len(s) + hits * max(len(new) - len(old), 0)
        if n > limits.max_chars:
            raise _too_big("replace() result", n, limits.max_chars)


def check_call(obj: Any, args: tuple, kwargs: Dict[str, Any], limits: TemplateLimits) -> None:
    """Raises TemplateLimitError for a str method call whose result would be over the limits."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(obj, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _int_arg(args, kwargs, 0, "width")
        if _is_int(width) and width > limits.max_chars:
            raise _too_big(f"str.{name}() result", width, limits.max_chars)
    elif name == "expandtabs":
        size = _int_arg(args, kwargs, 0, "tabsize")
        if _is_int(size) and owner.count("\t") * size + len(owner) > limits.max_chars:
            raise _too_big("str.expandtabs() result", owner.count("\t") * size + len(owner), limits.max_chars)
    elif name == "replace":
        count = _int_arg(args, kwargs, 2, "count")
        _check_replace(owner, _int_arg(args, kwargs, 0, "old"), _int_arg(args, kwargs, 1, "new"), count, limits)
    elif name == "join" and args and isinstance(args[0], (list, tuple)):
        check_size("str.join() result", args[0], limits)


def _bounded_filters(filters: Dict[str, Callable[..., Any]], limits: TemplateLimits) -> None:
    """Wraps the filters that take a size argument with a check of it (in place)."""

    def wrap(name: str, check: Callable[..., None]) -> None:
        inner = filters.get(name)
        if inner is None:
            return

        def bounded(*args: Any, **kwargs: Any) -> Any:
            check(*args, **kwargs)
            return inner(*args, **kwargs)

        bounded.__name__ = getattr(inner, "__name__", name)
        bounded.__dict__.update(getattr(inner, "__dict__", {}))  # keeps jinja's pass_context & co marks
        filters[name] = bounded

    def center(value: Any, width: Any = 80, *a: Any, **k: Any) -> None:
        if _is_int(width) and width > limits.max_chars:
            raise _too_big("center filter width", width, limits.max_chars)

    def indent(value: Any, width: Any = 4, *a: Any, **k: Any) -> None:
        w = len(width) if isinstance(width, str) else width
        if _is_int(w) and isinstance(value, str) and (value.count("\n") + 1) * w + len(value) > limits.max_chars:
            raise _too_big("indent filter result", (value.count("\n") + 1) * w + len(value), limits.max_chars)

    def fmt(value: Any, *a: Any, **k: Any) -> None:
        _check_printf(value, limits)

    def replace(*a: Any, **k: Any) -> None:
        # do_replace(eval_ctx, s, old, new, count=None): skip the context argument.
        rest = a[1:] if a and not isinstance(a[0], str) else a
        if len(rest) >= 3:
            _check_replace(rest[0], rest[1], rest[2], rest[3] if len(rest) > 3 else k.get("count"), limits)

    def tojson(*a: Any, **k: Any) -> None:
        for v in (*a[1:], *k.values()):
            if _is_int(v) and v > 64:
                raise TemplateLimitError(f"tojson: indent {v} is over the limit of 64")

    def join(*a: Any, **k: Any) -> None:
        # do_join(eval_ctx, value, d="", attribute=None): a list or tuple is checked, not consumed.
        for v in a:
            if isinstance(v, (list, tuple)):
                check_size("join filter result", v, limits)

    for name, check in (("center", center), ("indent", indent), ("format", fmt), ("replace", replace),
                        ("tojson", tojson), ("join", join)):
        wrap(name, check)


class _BoundedCodeGenerator(jinja2.compiler.CodeGenerator):
    """Compiles `a ~ b` (string concatenation, which the sandbox does not intercept) into a call of
    BoundedSandbox.concat, which checks the result's size first."""

    def visit_Concat(self, node: jinja2.nodes.Concat, frame: jinja2.compiler.Frame) -> None:
        if frame.eval_ctx.volatile or frame.eval_ctx.autoescape:
            super().visit_Concat(node, frame)
            return
        self.write("environment.concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox plus the size checks of this module (see the module docstring).

    Call `bound_filters()` after adding custom filters, so that they are wrapped too.
    """

    intercepted_binops = frozenset(["*", "+", "**", "%"])
    code_generator_class = _BoundedCodeGenerator

    def __init__(self, *args: Any, limits: TemplateLimits = TemplateLimits(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.bound_filters()

    def bound_filters(self) -> None:
        _bounded_filters(self.filters, self.limits)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        check_binop(operator, left, right, self.limits)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        check_call(__obj, args, kwargs, __self.limits)
        return super().call(__context, __obj, *args, **kwargs)

    def concat(self, values: Iterable[Any]) -> str:  # jinja2 passes any values, once (it may be a generator)
        items = tuple(values)
        for x in items:
            check_size("a value joined by '~'", x, self.limits)
        parts = [str(x) for x in items]
        check_size("'~' concatenation", parts, self.limits)
        return "".join(parts)

    def wrap_str_format(self, value: Any) -> Any:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_str_format(owner, self.limits)
        return super().wrap_str_format(value)


# ---------------------------------------------------------------------------------------------- time


_PAGE = os.sysconf("SC_PAGE_SIZE")


def _anon_resident() -> int:
    """Bytes of anonymous resident memory of this process (resident minus file-backed, /proc/self/statm)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        return (int(fields[1]) - int(fields[2])) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class _Watchdog:
    """Raises _Stop in the thread that created it once that thread has used max_cpu_s of CPU,
    max_wall_s have passed or the anonymous resident memory grew by max_memory_growth, unless
    disarmed first."""

    def __init__(self, limits: TemplateLimits) -> None:
        self._limits = limits
        self._tid = threading.get_ident()
        self._clock = time.pthread_getcpuclockid(self._tid)
        self._cpu0 = time.clock_gettime(self._clock)
        self._wall0 = time.monotonic()
        self._mem0 = _anon_resident()
        self._lock = threading.Lock()
        self._armed = True
        self.fired = ""  # which limit was hit
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pipeinfer-template-watchdog", daemon=True)
        self._thread.start()

    def _over(self) -> str:
        lim = self._limits
        cpu = time.clock_gettime(self._clock) - self._cpu0
        if cpu > lim.max_cpu_s:
            return f"{cpu:.1f} s of CPU time (limit {lim.max_cpu_s} s)"
        wall = time.monotonic() - self._wall0
        if wall > lim.max_wall_s:
            return f"{wall:.1f} s (limit {lim.max_wall_s} s)"
        grown = _anon_resident() - self._mem0
        if grown > lim.max_memory_growth:
            return f"using {grown >> 20} MiB more memory (limit {lim.max_memory_growth >> 20} MiB)"
        return ""

    def _run(self) -> None:
        while not self._done.wait(0.02):
            why = self._over()
            if why:
                with self._lock:
                    if self._armed:
                        self.fired = why
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), ctypes.py_object(_Stop))
                        self._armed = False
                return

    def disarm(self) -> None:
        """Stops the watchdog; a _Stop it injected but Python has not raised yet is withdrawn."""
        with self._lock:
            self._armed = False
            if self.fired:
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._tid), None)
        self._done.set()
        self._thread.join()


def render_bounded(template: jinja2.Template, limits: TemplateLimits, variables: Dict[str, Any]) -> str:
    """Renders `template` with `variables` within `limits`.

    Raises:
        TemplateLimitError: the output, one operation, or the rendering time went over a limit.
        Whatever the template itself raises.
    """
    parts = []
    n = 0
    watchdog = _Watchdog(limits)
    stream: Iterable[str] = ()
    try:
        try:
            stream = template.generate(**variables)
            for part in stream:
                n += len(part)
                if n > limits.max_chars:
                    raise _too_big("the rendered output", n, limits.max_chars)
                parts.append(part)
        finally:
            watchdog.disarm()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
    except _Stop:
        raise TemplateLimitError(f"rendering was stopped after {watchdog.fired}") from None
    return "".join(parts)
