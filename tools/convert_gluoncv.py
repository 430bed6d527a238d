"""Convert a GluonCV ``.params`` file of a zoo model (semantic or Mask R-CNN) to kseg ``.weights.h5``.

    python tools/convert_gluoncv.py --model deeplab_resnet101_voc \
        --params deeplab_resnet101_voc-311ed22c.params --out deeplab_resnet101_voc.weights.h5 --verify

The output holds the full zoo model (with the auxiliary head where GluonCV's
file has one) and is written atomically. ``--verify`` checks the file's SHA-1
against GluonCV's model store first.
"""

import sys
from pathlib import Path

from absl import app, flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kseg.models import convert  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Zoo name, e.g. deeplab_resnet101_voc.")
flags.DEFINE_string("params", None, "GluonCV .params file.")
flags.DEFINE_string("out", None, "Output path ending in .weights.h5.")
flags.DEFINE_bool("verify", False, "Check the .params SHA-1 against GluonCV's model store.")


def main(argv):
    del argv
    for name in ("model", "params", "out"):
        if not getattr(FLAGS, name):
            print(f"error: --{name} is required", file=sys.stderr)
            return 2
    try:
        model = convert(FLAGS.model, FLAGS.params, FLAGS.out, FLAGS.verify)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.out}: {model.name}, {model.count_params():,} parameters")
    return 0


if __name__ == "__main__":
    app.run(main)
