"""Where kseg keeps its files."""

import os
from pathlib import Path


def kseg_home() -> Path:
    """kseg's cache folder (converted weights, GluonCV files, data-set indexes): ``$KSEG_HOME``, else ``~/.kseg``."""
    return Path(os.environ.get("KSEG_HOME") or Path.home() / ".kseg")
