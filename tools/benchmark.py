"""Time kseg models' inference; see ``kseg/benchmark.py`` for what is measured.

python tools/benchmark.py fcn_resnet101_voc --batch-sizes 1,2 --size 480x480 --threads 2 --json bench.json
python tools/benchmark.py deeplab_resnet101_voc --precision mixed_bfloat16 --xla
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kseg.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
