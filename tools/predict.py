"""Segment images with a zoo model and write colour masks and overlays (``kseg predict``).

    python tools/predict.py --model psp_resnet101_ade --weights pretrained --out predictions street.jpg room.png
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kseg.cli.predict import check_dataset, check_files, main, make_predictor, parse_args  # noqa: E402, F401

if __name__ == "__main__":
    main()
