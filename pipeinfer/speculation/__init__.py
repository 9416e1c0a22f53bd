"""Speculative decoding: interfaces, policy, verification, the session, and the three decoders.

Layout (a newcomer finds each piece by name):
    interfaces.py    Drafter and DraftLimits (what the loop asks a drafter), Target (what a decoder needs
                     from the target pipeline: native, simulated, or a server slot)
    tree.py          DraftNode / DraftTree and grow_tree (PipeInfer's stop / split / size rules)
    policy.py        SpeculationPolicy: how much to speculate
    verification.py  the acceptance rule (exact at every temperature) and the walk of a draft tree
    session.py       Session: one generation's tokens, runs in flight and every KV operation
    stats.py         DecodeStats
    iterative.py     plain decoding, one token in flight
    synchronous.py   draft, verify in one run, accept, repeat
    pipeinfer.py     asynchronous continuous speculation (PipeInfer)

Everything here is pure Python/numpy: it must not import pipeinfer._core.
"""
from typing import Callable, Dict, Generator

from pipeinfer.speculation.interfaces import Drafter, DraftLimits, RunResult, Target
from pipeinfer.speculation.iterative import iterative
from pipeinfer.speculation.pipeinfer import PipeInferDecoder, pipeinfer
from pipeinfer.speculation.policy import SpeculationPolicy
from pipeinfer.speculation.session import Session
from pipeinfer.speculation.stats import DecodeStats
from pipeinfer.speculation.synchronous import synchronous
from pipeinfer.speculation.tree import DraftNode, DraftTree, Leaf, grow_tree
from pipeinfer.speculation.verification import TreeBatch, verify_position, verify_tree

# mode -> decoder, called as iterative(session) or decoder(session, drafter, policy); each is a generator of
# the accepted tokens, which its consumer closes to end the generation early
DECODERS: Dict[str, Callable[..., Generator[int, None, None]]] = {
    "iterative": iterative, "speculative": synchronous, "pipeinfer": pipeinfer}

__all__ = [
    "Drafter", "DraftLimits", "RunResult", "Target", "DraftNode", "DraftTree", "Leaf", "grow_tree",
    "SpeculationPolicy", "Session", "DecodeStats", "TreeBatch", "verify_position", "verify_tree",
    "iterative", "synchronous", "pipeinfer", "PipeInferDecoder", "DECODERS",
]  # fmt: skip
