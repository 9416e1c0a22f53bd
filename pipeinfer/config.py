"""Engine configuration: what to load and how to run it (not how to sample: see sampling.py)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union


def default_threads() -> int:
    """Threads per stage when the user gives none: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class EngineConfig:
    """How the target model is loaded and run.

    Args:
        n_ctx: KV-cache cells (context length); 0 means min(the model's trained context, 4096).
        n_threads: compute threads per stage; None means every CPU available to the process.
        n_batch: maximum tokens evaluated in one prompt-processing step.
        stages: number of pipeline stages (1 = single process, no pipeline).
        layer_split: layers per stage: counts (summing to the model's layer count) or fractions (summing
            to 1; each stage gets floor(f * n_layer), the last the rest). None splits by weight bytes.
        transport: "auto" (MPI under mpiexec, else local threads), "local" or "mpi".
        act_f16: activations travel between stages as f16.
        heartbeat_s: interval of the liveness messages between ranks.
        dead_after_s: a rank silent this long is declared dead (TransportError).
        exact: compute in llama.cpp's exact arithmetic (its weight layout and summation orders), so
            logits equal llama.cpp's bit for bit on the models tested (tests/model/test_llamacpp_reference.py).
            The default (False) is the fast layout: q4_0 / q4_1 / q5_0 / q8_0 / q4_K / q6_K matrices are
            stored row-interleaved (16 rows side by side, csrc/quant/repack.h), which makes decoding,
            prompts and draft verification faster; logits then equal llama.cpp's only up to float rounding. Both modes guarantee that every row of a batch equals
            a one-token step where it matters (verification), so greedy speculative output equals greedy
            plain output token for token in either mode.
        repack_cache: where the fast layout's repacked weights are cached between loads (a second load
            maps them instead of repacking): True = ``pipeinfer.models.repack_cache_dir()``, a path = that
            directory, False = no cache (repack at every load). Ignored with exact=True.
        kv_type: how the KV cache stores keys and values: "f16" (llama.cpp's default; logits
            identical to llama.cpp's) or "q8_0" (about half the bytes again; not llama.cpp-identical).
        context_shift: when a generation fills the context, drop the older half of the tokens after
            the first n_keep and go on (as llama.cpp's context shift) instead of stopping with
            finish_reason "length".
        n_keep: tokens at the start of the context that a context shift keeps (at least the BOS token
            when the model adds one).
    """

    n_ctx: int = 0
    n_threads: Optional[int] = None
    n_batch: int = 512
    stages: int = 1
    layer_split: Optional[Sequence[Union[int, float]]] = field(default=None)
    transport: str = "auto"
    act_f16: bool = False
    heartbeat_s: float = 0.5
    dead_after_s: float = 10.0
    exact: bool = False
    repack_cache: Union[bool, str, "os.PathLike[str]"] = True
    kv_type: str = "f16"
    context_shift: bool = False
    n_keep: int = 0

    def __post_init__(self) -> None:
        _check_int("n_ctx", self.n_ctx, 0, 1 << 24)
        if self.n_threads is None:
            self.n_threads = default_threads()
        _check_int("n_threads", self.n_threads, 1, 1024)
        _check_int("n_batch", self.n_batch, 1, 1 << 16)
        _check_int("stages", self.stages, 1, 4096)
        if self.layer_split is not None:
            split = list(self.layer_split)
            if split and all(isinstance(x, float) for x in split):
                # fractions of the layers per stage (the reference's --mpi-layer-split)
                for i, f in enumerate(split):
                    if not (math.isfinite(f) and 0.0 < f <= 1.0):
                        raise ValueError(f"layer_split[{i}] must be a fraction in (0, 1], got {f!r}")
                if abs(sum(split) - 1.0) > 1e-6:
                    raise ValueError(f"layer_split fractions must sum to 1, got {sum(split):.6g}")
            else:
                for i, n in enumerate(split):
                    _check_int(f"layer_split[{i}]", n, 1, 1 << 20)
            if self.stages == 1 and len(split) > 1:
                self.stages = len(split)
            if len(split) != self.stages:
                raise ValueError(
                    f"layer_split has {len(split)} entries but stages={self.stages}; give one entry per stage"
                )
            self.layer_split = split
        if self.transport not in ("auto", "local", "mpi"):
            raise ValueError(f"transport must be 'auto', 'local' or 'mpi', got {self.transport!r}")
        if not isinstance(self.act_f16, bool):
            raise ValueError(f"act_f16 must be a bool, got {self.act_f16!r}")
        if not isinstance(self.exact, bool):
            raise ValueError(f"exact must be a bool, got {self.exact!r}")
        if not isinstance(self.repack_cache, (bool, str, os.PathLike)) or self.repack_cache == "":
            raise ValueError(f"repack_cache must be True, False or a directory path, got {self.repack_cache!r}")
        if self.kv_type not in ("f16", "q8_0"):
            raise ValueError(f"kv_type must be 'f16' or 'q8_0', got {self.kv_type!r}")
        if not isinstance(self.context_shift, bool):
            raise ValueError(f"context_shift must be a bool, got {self.context_shift!r}")
        _check_int("n_keep", self.n_keep, 0, 1 << 24)
        _check_float("heartbeat_s", self.heartbeat_s, 0.01, 60.0)
        _check_float("dead_after_s", self.dead_after_s, 0.1, 86400.0)
        if self.dead_after_s <= 2 * self.heartbeat_s:
            raise ValueError(
                f"dead_after_s ({self.dead_after_s}) must exceed twice heartbeat_s ({self.heartbeat_s})"
            )

    def repack_cache_dir(self) -> str:
        """The repack cache directory to hand to the core ("" = none)."""
        if self.exact or self.repack_cache is False:
            return ""
        if self.repack_cache is True:
            from pipeinfer.models import repack_cache_dir

            return str(repack_cache_dir())
        return os.fspath(self.repack_cache)


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


def _check_float(name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")


def shifted_context(tokens: Sequence[int], n_keep: int) -> List[int]:
    """The tokens a context shift keeps (llama.cpp's): the first n_keep, then the newer half of the rest.

    Example: 10 tokens, n_keep 2 -> the 8 after them lose their older 4: tokens[:2] + tokens[6:].
    """
    n_keep = min(n_keep, len(tokens) - 1)
    n_discard = (len(tokens) - n_keep) // 2
    return list(tokens[:n_keep]) + list(tokens[n_keep + n_discard:])


def layer_counts(split: Sequence[Union[int, float]], n_layer: int) -> List[int]:
    """Layer counts per stage from counts or fractions (fractions: floor(f * n_layer) each, the last
    stage takes the remainder; every stage gets at least one layer)."""
    if not all(isinstance(x, float) for x in split):
        return [int(x) for x in split]
    if len(split) > n_layer:
        raise ValueError(f"cannot split {n_layer} layers into {len(split)} stages")
    counts = [max(1, int(f * n_layer)) for f in split[:-1]]
    rest = n_layer - sum(counts)
    if rest < 1:
        raise ValueError(f"layer_split {list(split)} leaves no layer for the last stage of {n_layer}")
    return counts + [rest]
