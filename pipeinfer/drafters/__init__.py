"""Drafters: objects that propose draft trees continuing a token sequence (PipeInfer spec section 2.4).

Layout (the Drafter interface, DraftLimits, DraftTree and grow_tree live in pipeinfer.speculation and
are re-exported here for drafter authors):
    model.py    ModelDrafter: a GGUF draft model on the native engine, KV reused across calls
    ngram.py    NgramDrafter: prompt lookup over an incremental n-gram index
    vocab.py    check_vocab: draft/target vocabulary compatibility (padding tolerated)
    factory.py  make_drafter, CallableDrafter (llama-cpp-python LlamaDraftModel-style callables)

This package proposes; it never verifies drafts or decides the speculation policy.
"""
from pipeinfer.drafters.factory import CallableDrafter, make_drafter
from pipeinfer.drafters.model import DrafterStats, ModelDrafter, top_candidates
from pipeinfer.drafters.ngram import NgramDrafter
from pipeinfer.drafters.noisy import NoisyDrafter
from pipeinfer.speculation.interfaces import DraftLimits, Drafter
from pipeinfer.speculation.tree import DraftNode, DraftTree, Leaf, grow_tree
from pipeinfer.drafters.vocab import check_vocab, is_padding_token


__all__ = [
    "DraftNode",
    "DraftTree",
    "DraftLimits",
    "Drafter",
    "Leaf",
    "grow_tree",
    "ModelDrafter",
    "DrafterStats",
    "top_candidates",
    "NgramDrafter",
    "NoisyDrafter",
    "CallableDrafter",
    "check_vocab",
    "is_padding_token",
    "make_drafter",
]
