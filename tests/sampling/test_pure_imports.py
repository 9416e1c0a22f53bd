"""The pure halves of the package import without the native extension: pipeinfer itself, sampling
(SamplingParams, TokenChooser) and the speculation interfaces, policy and decoders."""
from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class NoCore(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "pipeinfer._core":
                raise ImportError("pipeinfer._core is blocked in this test")
            return None

    sys.meta_path.insert(0, NoCore())
    import pipeinfer
    import pipeinfer.sampling
    import pipeinfer.speculation
    from pipeinfer import SamplingParams, SpeculationPolicy
    from pipeinfer.sampling import TokenChooser
    from pipeinfer.validate import check_int
    assert "pipeinfer._core" not in sys.modules
    TokenChooser(SamplingParams(temperature=0.0))
    SpeculationPolicy()
    try:
        pipeinfer.Pipeline
    except ImportError as e:
        assert "blocked" in str(e)
    else:
        raise AssertionError("pipeinfer.Pipeline imported without _core")
    print("pure imports ok")
""")


def test_sampling_and_speculation_import_without_the_extension():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pure imports ok" in out.stdout
