"""The drafters of the experiments, built from small JSON-able specifications.

This module owns the mapping from a drafter spec (a dict an experiment can record and send to an MPI
rank) to a pipeinfer Drafter, and ReplayDrafter, which proposes a known greedy continuation (an oracle:
acceptance 1, no drafting cost) so that NoisyDrafter over it sweeps the acceptance rate exactly. It must
not run generations or time anything.

Spec keys: kind ("none" | "ngram" | "model" | "replay" | "synthetic"), path (kind "model": draft GGUF),
truth (kinds "replay" and "synthetic": the reference token ids, prompt included), error_rate and seed
(optional: wrap the drafter in a NoisyDrafter), ratio and model (kind "synthetic": the target/draft cost
ratio and the target GGUF whose weights the drafting work reads).
"""
from __future__ import annotations

from typing import Any, List, Literal, Mapping, Optional, Sequence, TypedDict

from pipeinfer.drafters import Drafter, DraftLimits, DraftTree, NoisyDrafter, check_vocab

__all__ = ["DraftSpec", "ReplayDrafter", "SyntheticDrafter", "build_drafter", "drafter_label"]


class _DraftKind(TypedDict):
    kind: Literal["none", "ngram", "model", "replay", "synthetic"]


class DraftSpec(_DraftKind, total=False):
    """A drafter specification as the experiments write it (the keys: see the module docstring).
    build_drafter takes any mapping with these keys: the ranks read the spec back from JSON."""

    path: str
    name: str  # kind "model": the draft model's name in the results
    truth: List[int]
    error_rate: Optional[float]
    seed: int
    ratio: float
    model: str
    n_ctx: int  # kind "model": the draft model's context (default 1024)
    n_threads: int  # kind "model": its compute threads (default 1)


class ReplayDrafter(Drafter):
    """Proposes truth[len(context) : len(context) + n_draft] as a chain (p = 1) while the context is a
    prefix of truth; nothing otherwise.

    Args:
        truth: the reference sequence, prompt included (greedy output of the target).
        n_vocab: vocabulary size reported to wrappers (NoisyDrafter draws replacements from it).
    """

    def __init__(self, truth: Sequence[int], n_vocab: int) -> None:
        self.truth = [int(t) for t in truth]
        self.n_vocab = int(n_vocab)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        n = len(context)
        if limits.n_draft == 0 or list(context) != self.truth[:n]:
            return DraftTree([])
        return DraftTree.chain(self.truth[n:n + limits.n_draft], 1.0)


class SyntheticDrafter(Drafter):
    """A controlled drafter for experiments: the proposals of `base` (typically a noisy replay of the
    target's text, so the acceptance is set by an error rate) at the cost of a draft model 1/ratio the
    size of the target: every drafted token multiplies a random vector by weight matrices of the target
    model holding 1/ratio of its weight bytes (real work with the memory traffic of a model, on whatever
    rank drafts; not a sleep).

    Args:
        base: the drafter whose proposals are returned.
        model: the target GGUF (its weights are read).
        ratio: target/draft cost ratio (>= 1).
    """

    cheap = False

    def __init__(self, base: Drafter, model: str, ratio: float) -> None:
        import numpy as np

        from pipeinfer import _core

        if not ratio >= 1.0:
            raise ValueError(f"ratio must be >= 1, got {ratio!r}")
        self.base = base
        self.n_vocab = base.n_vocab
        self.ratio = float(ratio)
        f = _core.GGUFFile(str(model))
        tensors = [t for t in f.tensors() if len(t["shape"]) == 2]
        total = sum(t["nbytes"] for t in tensors if t["name"] != "token_embd.weight" or not any(
            u["name"] == "output.weight" for u in tensors))
        budget = total / self.ratio
        self._work = []  # (type, weight rows (n_out, row_bytes) u8, n_in, activation (1, n_in) f32)
        rng = np.random.default_rng(0)
        used = 0
        for t in (t for t in tensors if t["name"].startswith("blk.")):
            if used >= budget:
                break
            n_in, n_out = t["shape"]
            rows = max(1, min(n_out, int((budget - used) // (t["nbytes"] / n_out))))
            w = np.asarray(f.tensor_data(t["name"])).reshape(n_out, -1)[:rows]
            self._work.append((t["type"], w, n_in, rng.standard_normal((1, n_in)).astype(np.float32)))
            used += w.nbytes
        self.bytes_per_token = used
        self._gguf = f  # keeps the mapping alive

    def begin(self, prompt: Sequence[int]) -> None:
        self.base.begin(prompt)

    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        from pipeinfer import _core

        tree = self.base.propose(context, limits)
        for _ in range(len(tree)):
            for typ, w, n_in, x in self._work:
                _core.matmul(typ, w, n_in, x, n_threads=1)
        return tree

    def close(self) -> None:
        self.base.close()


def build_drafter(spec: Optional[Mapping[str, Any]], target_meta: Mapping[str, Any]) -> Optional[Drafter]:
    """The Drafter a spec names (None for kind "none"); NoisyDrafter-wrapped when spec has error_rate."""
    if spec is None or spec.get("kind", "none") == "none":
        return None
    n_vocab = len(target_meta.get("tokenizer.ggml.tokens") or [])
    kind = spec["kind"]
    base: Drafter
    if kind == "ngram":
        from pipeinfer.drafters import NgramDrafter

        base = NgramDrafter(n_vocab=n_vocab or None)
    elif kind == "model":
        from pipeinfer import _core
        from pipeinfer.drafters import ModelDrafter

        check_vocab(target_meta, _core.GGUFFile(str(spec["path"])).metadata())
        base = ModelDrafter(spec["path"], n_ctx=int(spec.get("n_ctx", 1024)), n_threads=int(spec.get("n_threads", 1)))
    elif kind in ("replay", "synthetic"):
        base = ReplayDrafter(spec["truth"], n_vocab)
    else:
        raise ValueError(f"drafter spec kind must be none, ngram, model, replay or synthetic, got {kind!r}")
    if spec.get("error_rate") is not None:
        base = NoisyDrafter(base, float(spec["error_rate"]), int(spec.get("seed", 0)), n_vocab=n_vocab or None)
    if kind == "synthetic":
        return SyntheticDrafter(base, spec["model"], float(spec["ratio"]))
    return base


def drafter_label(spec: Optional[Mapping[str, Any]]) -> str:
    """A short human name: "ngram", "draft:qwen2.5-coder-0.5b", "oracle+noise0.50", ..."""
    if spec is None or spec.get("kind", "none") == "none":
        return "-"
    kind = spec["kind"]
    name = {"ngram": "ngram", "replay": "oracle"}.get(kind)
    if kind == "synthetic":
        name = f"synthetic:{float(spec['ratio']):g}"
    name = name or f"draft:{spec.get('name') or spec.get('path')}"
    if spec.get("error_rate") is not None:
        name += f"+noise{float(spec['error_rate']):.2f}"
    return name


def replay_spec(truth: List[int], error_rate: Optional[float] = None, seed: int = 0) -> DraftSpec:
    return {"kind": "replay", "truth": list(truth), "error_rate": error_rate, "seed": seed}
