"""Evaluate a semantic segmentation model as GluonCV's ``scripts/segmentation/test.py`` does.

    python recipes/test.py --dataset ade20k --model-zoo fcn_resnet50_ade --eval

With ``--eval``: the validation split in testval mode (full images) through
GluonCV's multi-scale protocol (scales 0.5-1.75, flip, sliding windows), a
progress bar with running pixAcc/mIoU, and ``metrics.json`` in ``--out-dir``.
Without it: the test split's predictions as PNGs in each benchmark's
submission format in ``--out-dir`` (``outdir`` as GluonCV's).
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kseg.utils.memory import cap_malloc_arenas  # noqa: E402
from kseg.utils.quiet import import_tensorflow_quietly  # noqa: E402

cap_malloc_arenas()  # before TensorFlow's threads make arenas of their own (kseg/utils/memory.py)
import_tensorflow_quietly()  # before anything imports TensorFlow: its start-up lines say nothing to a user

from kseg.cli import flags as kflags  # noqa: E402
from kseg.cli.evaluate_command import define_test_flags, run_test  # noqa: E402

kflags.define_model_flags()
kflags.define_data_flags()
define_test_flags()


flags.DEFINE_boolean("debug", False, "Full tracebacks instead of one-line errors.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from kseg.weights.download import DownloadError

    debug = flags.FLAGS.debug or bool(os.environ.get("KSEG_DEBUG"))
    try:
        run_test(flags.FLAGS)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.exit(130)
    except (ValueError, TypeError, OSError, DownloadError) as error:
        if debug:
            raise
        sys.exit(f"test.py: {error}")


if __name__ == "__main__":
    app.run(main)
