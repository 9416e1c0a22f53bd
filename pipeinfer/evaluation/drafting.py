"""The drafters of the experiments, built from small JSON-able specifications.

This module owns the mapping from a drafter spec (a dict an experiment can record and send to an MPI
rank) to a pipeinfer Drafter, and ReplayDrafter, which proposes a known greedy continuation (an oracle:
acceptance 1, no drafting cost) so that NoisyDrafter over it sweeps the acceptance rate exactly. It must
not run generations or time anything.

Spec keys: kind ("none" | "ngram" | "model" | "replay"), path (kind "model": draft GGUF), truth (kind
"replay": the reference token ids, prompt included), error_rate and seed (optional: wrap the drafter in a
NoisyDrafter).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from pipeinfer.drafters import Drafter, DraftLimits, DraftTree, NoisyDrafter, check_vocab

__all__ = ["ReplayDrafter", "build_drafter", "drafter_label"]


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
    elif kind == "replay":
        base = ReplayDrafter(spec["truth"], n_vocab)
    else:
        raise ValueError(f"drafter spec kind must be none, ngram, model or replay, got {kind!r}")
    if spec.get("error_rate") is not None:
        return NoisyDrafter(base, float(spec["error_rate"]), int(spec.get("seed", 0)), n_vocab=n_vocab or None)
    return base


def drafter_label(spec: Optional[Mapping[str, Any]]) -> str:
    """A short human name: "ngram", "draft:qwen2.5-coder-0.5b", "oracle+noise0.50", ..."""
    if spec is None or spec.get("kind", "none") == "none":
        return "-"
    kind = spec["kind"]
    name = {"ngram": "ngram", "replay": "oracle"}.get(kind) or f"draft:{spec.get('name') or spec.get('path')}"
    if spec.get("error_rate") is not None:
        name += f"+noise{float(spec['error_rate']):.2f}"
    return name


def replay_spec(truth: List[int], error_rate: Optional[float] = None, seed: int = 0) -> Dict[str, Any]:
    return {"kind": "replay", "truth": list(truth), "error_rate": error_rate, "seed": seed}
