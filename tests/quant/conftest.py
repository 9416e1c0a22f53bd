"""Fixtures of the quant tests: the oracle module is importable by name, and `use_isa` switches the
kernel level for one test and restores the level that was in force afterwards."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def use_isa():
    """Returns use(level): selects kernel level `level`, skipping the test if this CPU lacks it."""
    from pipeinfer import _core

    before = _core.kernel_isa()

    def use(level: str) -> str:
        got = _core.set_kernel_isa(level)
        if got != level:
            pytest.skip(f"CPU or build has no {level} kernels (best level: {got})")
        return got

    yield use
    _core.set_kernel_isa(before)
