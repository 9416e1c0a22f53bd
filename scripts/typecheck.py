#!/usr/bin/env python3
"""Type-checks the package, the README's Python examples and the public names' types with mypy (CI).

The README's ```python blocks are joined in order into one module (later blocks use names the first
ones define, as a reader would run them) under a temporary folder, and mypy checks it together with
the package, with the settings of pyproject.toml. Exit status: mypy's.

    python scripts/typecheck.py
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The public names must reach type checkers as what they are, not as Any (pipeinfer loads them lazily).
API_CHECKS = """
from typing import Any, Dict, Iterator, List
from typing_extensions import assert_type
import pipeinfer
import pipeinfer.pipeline, pipeinfer.sampling, pipeinfer.speculation, pipeinfer.stream

assert_type(pipeinfer.Pipeline, type[pipeinfer.pipeline.Pipeline])
assert_type(pipeinfer.Stream, type[pipeinfer.stream.Stream])
assert_type(pipeinfer.SamplingParams, type[pipeinfer.sampling.SamplingParams])
assert_type(pipeinfer.SpeculationPolicy, type[pipeinfer.speculation.SpeculationPolicy])


def _shapes(p: pipeinfer.Pipeline) -> None:
    assert_type(p.generate("x"), pipeinfer.stream.Stream)
    assert_type(p.tokenize("x"), List[int])
    assert_type(p.create_completion("x"), Dict[str, Any])
    assert_type(p.create_completion("x", stream=True), Iterator[Dict[str, Any]])
    assert_type(p.create_chat_completion([]), Dict[str, Any])
"""


def readme_examples(text: str) -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    if not blocks:
        raise SystemExit("README.md has no ```python blocks to check")
    return "\n".join(f"# --- README block {i + 1}\n{b}" for i, b in enumerate(blocks))


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        examples = Path(tmp) / "readme_examples.py"
        examples.write_text(readme_examples((ROOT / "README.md").read_text(encoding="utf-8")), encoding="utf-8")
        api = Path(tmp) / "api_types.py"
        api.write_text(API_CHECKS, encoding="utf-8")
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "pipeinfer", str(examples),
               str(api)]
        return subprocess.run(cmd, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
