"""``python -m pipeinfer``: the command line (see cli.py)."""
import sys

from pipeinfer.cli import main

sys.exit(main())
