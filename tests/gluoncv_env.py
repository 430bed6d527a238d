"""Locate the GluonCV/MXNet side venv used by the cross-checks."""

import functools
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def gluoncv_python() -> str | None:
    """The side venv's python if it can import mxnet and gluoncv, else None."""
    python = os.environ.get("KSEG_GLUONCV_PYTHON") or str(REPO / ".venv-gluoncv" / "bin" / "python")
    if not Path(python).is_file():
        return None
    probe = subprocess.run([python, "-c", "import mxnet, gluoncv"], capture_output=True)
    return python if probe.returncode == 0 else None
