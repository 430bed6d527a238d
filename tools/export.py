"""Export a zoo model as a SavedModel for TF-Serving (``kseg export``).

    python tools/export.py --model psp_resnet101_ade --weights pretrained --out serving/psp_resnet101_ade
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, logging  # noqa: E402

from kseg.cli.export import FLAGS, define_flags, export, main, usage  # noqa: E402, F401

if __name__ == "__main__":
    define_flags()
    logging.set_verbosity(logging.WARNING)
    app.run(main)
