"""Counters of one generation's decoding (names follow llama.cpp where one exists)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List

import numpy as np

__all__ = ["DecodeStats"]


@dataclass
class DecodeStats:
    """Counters of one generation (names follow llama.cpp where one exists)."""

    draft_n: int = 0  # draft tokens sent to the target
    draft_n_accepted: int = 0  # draft tokens the target confirmed
    runs_launched: int = 0  # target runs (non-speculative and speculative)
    spec_runs_launched: int = 0
    runs_cancelled: int = 0  # speculative runs invalidated while in flight
    verifications: int = 0  # speculative runs whose result was verified
    accepted_lengths: List[int] = field(default_factory=list)  # tokens accepted per verified speculative run

    def as_dict(self) -> Dict[str, Any]:
        n_acc = self.accepted_lengths
        return {
            "draft_n": self.draft_n,
            "draft_n_accepted": self.draft_n_accepted,
            "acceptance_rate": self.draft_n_accepted / self.draft_n if self.draft_n else 0.0,
            "mean_accepted_length": float(np.mean(n_acc)) if n_acc else 0.0,
            "runs_launched": self.runs_launched,
            "spec_runs_launched": self.spec_runs_launched,
            "runs_cancelled": self.runs_cancelled,
            "verifications": self.verifications,
        }
