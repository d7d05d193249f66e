"""Makes the repository's `benchmarks` package importable in these tests.

`benchmarks/` is not an installed distribution; it runs from the repository root
(`python -m benchmarks.run`), and pytest's importlib mode does not put the root on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
