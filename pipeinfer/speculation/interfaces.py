"""The interfaces between the speculation control loop and the rest of the engine (pure Python).

This module owns the contracts, not their implementations:
- `Drafter` and `DraftLimits`: what the control loop asks a drafter for (pipeinfer.drafters holds the
  drafters: n-gram, draft model, draft rank, synthetic).
- `Target`: what a decoder needs from the target model's pipeline: launch runs, receive their results
  in launch order, cancel them, and edit the KV cache of its sequences. `pipeinfer._core.Pipeline`
  implements it natively; `pipeinfer.evaluation.simulate.SimTarget` implements it in virtual time, so the
  simulator runs the very decoders of this package; a server slot view may implement it for one request.
- `Clock`: where a decoder reads the time (wall time for real targets, virtual time in the simulator).

It must not import `pipeinfer._core`, run models or hold state.
"""
from __future__ import annotations

import abc
import math
import numbers
from dataclasses import dataclass
from typing import Any, List, Optional, Protocol, Sequence, Tuple, runtime_checkable

import numpy as np

from pipeinfer.speculation.tree import DraftTree

__all__ = ["DraftLimits", "Drafter", "Target", "RunResult", "check_limits", "check_context"]


def _check_int(name: str, value: object, lo: int) -> int:
    """The value as an int; ValueError naming the field unless it is an integer >= lo."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _check_prob(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{name} must be a real number (values <= 0 or >= 1 saturate), got {value!r}")


@dataclass(frozen=True)
class DraftLimits:
    """Limits of one `Drafter.propose` call (spec section 2.4; values already include any p_adjust).

    Attributes:
        n_draft: maximum number of tokens in the tree, all branches together (0: propose nothing).
        n_parallel: maximum number of branches (1 = a chain).
        p_accept: a branch stops drafting when its top-1 probability is < p_accept.
        p_split: a candidate other than the top-1 with probability > p_split forks a new branch while
            there are fewer than n_parallel branches.
    """

    n_draft: int = 4
    n_parallel: int = 1
    p_accept: float = 0.0
    p_split: float = 1.0

    def __post_init__(self) -> None:
        _check_int("n_draft", self.n_draft, 0)
        _check_int("n_parallel", self.n_parallel, 1)
        _check_prob("p_accept", self.p_accept)
        _check_prob("p_split", self.p_split)


class Drafter(abc.ABC):
    """Proposes draft trees continuing a token sequence.

    Attributes:
        n_vocab: size of the vocabulary the drafter proposes in (None for drafters that only copy tokens
            from the context and so work with any vocabulary).
        cheap: asking for a draft costs the head next to nothing (lookups, or drafts made on another
            rank), so the policy may ask for drafts it will not run, to keep measuring acceptance while
            speculation is off. False for drafters that compute on the head (a draft model).
    """

    n_vocab: Optional[int] = None
    cheap: bool = True
    # Asynchronous drafters draft elsewhere (a draft rank) while the head works: `propose` returns at once
    # with the drafts that have arrived (possibly none yet), `wait` blocks until more may be there.
    asynchronous: bool = False
    # Asynchronous drafters: the measured seconds between two drafted tokens (None: not known yet).
    interval_s: Optional[float] = None

    def begin(self, prompt: Sequence[int]) -> None:
        """A new generation starts with these prompt tokens (drafters may precompute; default: nothing)."""

    @abc.abstractmethod
    def propose(self, context: Sequence[int], limits: DraftLimits) -> DraftTree:
        """Drafts a tree continuing `context`.

        Args:
            context: the whole token sequence the tree continues (prompt + accepted tokens + speculative
                tokens already in flight, up to the tip).
            limits: size, width and confidence limits of this call.

        Returns:
            A DraftTree; empty when nothing is confident enough.
        """

    def accepted(self, tokens: Sequence[int]) -> None:
        """The target accepted `tokens` (prompt and generated so far): they are final. Drafters that
        draft ahead restart from here when it contradicts their drafts (default: nothing)."""

    def wait(self, timeout_s: float) -> bool:
        """Asynchronous drafters: blocks up to timeout_s until new drafts arrived (True) or the target
        has a result ready (False). Synchronous drafters return False at once."""
        return False

    def pending(self, context: Sequence[int], n: int) -> bool:
        """Asynchronous drafters: True while fewer than n drafts continuing `context` have arrived and
        more are still coming. Synchronous drafters: False."""
        return False

    def close(self) -> None:
        """Releases resources (default: nothing). Idempotent."""

    def __enter__(self) -> "Drafter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_limits(limits: object) -> DraftLimits:
    if not isinstance(limits, DraftLimits):
        raise TypeError(f"limits must be a DraftLimits, got {type(limits).__name__}")
    return limits


def check_context(context: Sequence[int], n_vocab: Optional[int]) -> List[int]:
    """The context as a list of ints; ValueError naming `context` for ids outside [0, n_vocab)."""
    ids = [int(t) for t in context]
    if ids:
        lo, hi = min(ids), max(ids)
        if lo < 0 or (n_vocab is not None and hi >= n_vocab):
            bad = lo if lo < 0 else hi
            bound = f"[0, {n_vocab})" if n_vocab is not None else "[0, ...)"
            raise ValueError(f"context holds token id {bad}, outside the drafter's vocabulary {bound}")
    return ids


# (run id, skipped, rows): rows is a float32 logits array (n_rows, n_vocab), or int32 token ids (n_rows,)
# for a run submitted with argmax_only (the last stage chose each row's argmax).
RunResult = Tuple[int, bool, np.ndarray]


@runtime_checkable
class Target(Protocol):
    """The target model's pipeline as one generation uses it (the native ``_core.Pipeline`` surface).

    Runs are launched with `submit` and their results come back strictly in launch order (`wait`);
    KV commands apply to every stage in issue order, after the runs launched before them. Sequence 0 is
    canonical and visible to every sequence; speculative buffers (`spec_*`) own one sequence per
    draft-tree branch.
    """

    n_ctx: int
    n_vocab: int
    n_stages: int

    def submit(self, tokens: np.ndarray, pos: np.ndarray, seq_ids: Any, logits: np.ndarray, exact_rows: bool = ...,
               argmax_only: bool = ...) -> int:
        """Launches a run of a batch (per-token positions, sequence ids and want-logits flags); returns its
        id (increasing). Never waits for the run's result."""

    def poll(self) -> bool:
        """True if the oldest outstanding run's result has arrived (never blocks)."""

    def wait(self) -> RunResult:
        """The oldest outstanding run's result (blocks until it arrives)."""

    def cancel(self, run_ids: Sequence[int]) -> None:
        """Marks runs cancelled on every stage; their results still come back, as skipped or not."""

    @property
    def n_in_flight(self) -> int:
        """Runs launched whose result has not been taken by `wait`."""

    @property
    def kv_n_free(self) -> int:
        """Free KV cells."""

    def kv_seq_rm(self, seq: int, p0: int, p1: int) -> None: ...

    def kv_seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...

    def kv_seq_pos_max(self, seq: int) -> int: ...

    def spec_acquire(self) -> int:
        """A free speculative buffer, or -1 if every buffer is in use."""

    def spec_release(self, buffer: int) -> None:
        """Clears the buffer's sequences and returns it to the ring."""

    def spec_seq(self, buffer: int, branch: int = 0) -> int:
        """The sequence of branch `branch` of a buffer."""

    def spec_commit(self, seq: int, p0: int, p1: int) -> None:
        """Makes the cells of `seq` at positions [p0, p1) canonical (adds sequence 0)."""
