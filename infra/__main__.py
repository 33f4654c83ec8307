"""Pulumi entry point (`main: infra/` in Pulumi.yaml).

Pulumi runs this directory with it as the working directory, so the repository root
(where `components/` lives) is put on sys.path first.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from infra.program import main  # noqa: E402

main()
