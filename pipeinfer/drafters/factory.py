"""make_drafter: turns a user's draft specification into a Drafter, and CallableDrafter for user callables.

This module owns the mapping from the forms users pass (None, "ngram[:N]", a GGUF path or model name, a
Drafter, or a llama-cpp-python LlamaDraftModel-style callable) to drafter objects, including the
vocabulary check of a draft model against the target. It must not hold drafting logic itself.
"""
from __future__ import annotations

import numbers
import os
from typing import Any, Callable, List, Mapping, Optional, Sequence, Union

import numpy as np

from pipeinfer.drafters.ngram import NgramDrafter
from pipeinfer.speculation.interfaces import Drafter, DraftLimits, check_context, check_limits
from pipeinfer.speculation.tree import DraftTree
from pipeinfer.drafters.vocab import check_vocab
from pipeinfer.validate import is_int, is_real

__all__ = ["CallableDrafter", "make_drafter"]

DraftSpec = Union[None, str, os.PathLike, Drafter, Callable[[np.ndarray], Sequence[int]]]


class CallableDrafter(Drafter):
    """Wraps `fn(tokens: np.ndarray[intc]) -> Sequence[int]` (llama-cpp-python's LlamaDraftModel shape).

    The returned ids form a chain, truncated to limits.n_draft, each with probability `p`; the chain is
    empty when p < limits.p_accept.

    Args:
        fn: called with the whole context as a 1-D numpy intc array.
        n_vocab: when given, returned ids outside [0, n_vocab) raise ValueError.
        p: the probability attached to every proposed token (in [0, 1]).
    """

    def __init__(self, fn: Callable[[np.ndarray], Sequence[int]], *, n_vocab: Optional[int] = None,
                 p: float = 1.0) -> None:
        if not callable(fn):
            raise ValueError(f"fn must be callable, got {type(fn).__name__}")
        if n_vocab is not None and (not is_int(n_vocab) or n_vocab < 1):
            raise ValueError(f"n_vocab must be an integer >= 1 or None, got {n_vocab!r}")
        if not is_real(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a real number in [0, 1], got {p!r}")
        self.fn = fn
        self.n_vocab = None if n_vocab is None else int(n_vocab)
        self.p = float(p)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        limits = check_limits(limits)
        ctx = check_context(context, self.n_vocab)
        if limits.n_draft == 0 or self.p < limits.p_accept:
            return DraftTree([])
        raw = self.fn(np.asarray(ctx, dtype=np.intc))
        ids: List[int] = []
        for t in list(np.asarray(raw).reshape(-1))[: limits.n_draft]:
            if isinstance(t, (bool, np.bool_)) or not isinstance(t, (numbers.Integral, np.integer)):
                raise ValueError(f"the draft callable returned a non-integer token {t!r}")
            t = int(t)
            if t < 0 or (self.n_vocab is not None and t >= self.n_vocab):
                raise ValueError(f"the draft callable returned token id {t}, outside [0, {self.n_vocab})")
            ids.append(t)
        return DraftTree.chain(ids, self.p)


def _target_n_vocab(target_meta: Optional[Mapping[str, Any]]) -> Optional[int]:
    toks = None if target_meta is None else target_meta.get("tokenizer.ggml.tokens")
    return None if toks is None else len(toks)


def make_drafter(spec: DraftSpec, target_meta: Optional[Mapping[str, Any]] = None, *,
                 model_options: Optional[Mapping[str, Any]] = None, **kw: Any) -> Optional[Drafter]:
    """Builds the drafter a specification names.

    Args:
        spec: None -> None (no speculation); "ngram" or "ngram:N" -> NgramDrafter (N = max_ngram); a GGUF
            path or known model name -> ModelDrafter; a Drafter -> itself; a callable(tokens: np.ndarray)
            -> Sequence[int] -> CallableDrafter.
        target_meta: the target model's GGUF metadata. When given, a draft model's vocabulary is checked
            against it (check_vocab), and n-gram/callable drafters get n_vocab = its token count unless kw
            sets n_vocab.
        **kw: constructor arguments of the chosen class (ModelDrafter: n_ctx, n_threads, max_branches, ...;
            NgramDrafter: min_ngram, max_occurrences, smoothing, n_vocab; CallableDrafter: n_vocab, p).
        model_options: further ModelDrafter arguments applied only when spec names a draft model (so a
            caller can set e.g. exact without knowing which kind of drafter the spec gives).

    Raises:
        ValueError: a malformed "ngram:N", an unknown model name, a vocabulary mismatch, keyword arguments
            given with a ready Drafter.
        TypeError: a spec of another type.
    """
    if spec is None:
        return None
    if isinstance(spec, Drafter):
        if kw:
            raise ValueError(f"keyword arguments {sorted(kw)} cannot apply to an existing Drafter")
        return spec
    if isinstance(spec, (str, os.PathLike)):
        s = os.fspath(spec)
        if isinstance(s, str) and (s == "ngram" or s.startswith("ngram:")):
            if s != "ngram":
                n = s[len("ngram:"):]
                if not n.isdigit() or int(n) < 1:
                    raise ValueError(f"spec {s!r}: the n-gram size after 'ngram:' must be an integer >= 1")
                if "max_ngram" in kw:
                    raise ValueError(f"spec {s!r} sets max_ngram; do not pass max_ngram too")
                kw["max_ngram"] = int(n)
            if target_meta is not None:
                kw.setdefault("n_vocab", _target_n_vocab(target_meta))
            return NgramDrafter(**kw)
        from pipeinfer import _core
        from pipeinfer.drafters.model import ModelDrafter
        from pipeinfer.models import resolve

        path = resolve(s)
        meta = _core.GGUFFile(str(path)).metadata()
        if target_meta is not None:
            check_vocab(target_meta, meta)
        drafter = ModelDrafter(path, **{**dict(model_options or {}), **kw})
        drafter._meta = meta
        return drafter
    if callable(spec):
        if target_meta is not None:
            kw.setdefault("n_vocab", _target_n_vocab(target_meta))
        return CallableDrafter(spec, **kw)
    raise TypeError(
        f"draft spec must be None, 'ngram[:N]', a GGUF path or model name, a Drafter or a callable, "
        f"got {type(spec).__name__}"
    )
