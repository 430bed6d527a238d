"""Train a semantic segmentation model as GluonCV's ``scripts/segmentation/train.py`` did.

    python recipes/train.py --flagfile=recipes/psp_ade.flags --dataset-dir /data
    python recipes/train.py --flagfile=recipes/quickstart.flags      # offline, CPU, a few minutes

Every flag is a field of ``kseg.training.TrainConfig``; ``kseg.training.train``
does the run. Rerun the same command after an interruption (Ctrl-C stops at
the end of a step, with a checkpoint): it resumes from the run folder's last
checkpoint. Expected failures are one line on stderr (``--debug``: the
traceback). ``--helpfull`` lists every flag.
"""

import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kseg.utils.memory import cap_malloc_arenas  # noqa: E402
from kseg.utils.quiet import import_tensorflow_quietly  # noqa: E402

cap_malloc_arenas()  # before TensorFlow's threads make arenas of their own (kseg/utils/memory.py)
import_tensorflow_quietly()  # before anything imports TensorFlow: its start-up lines say nothing to a user

from kseg.cli.train_command import config_from_flags, define_train_flags  # noqa: E402

define_train_flags()
flags.DEFINE_boolean("debug", False, "Full tracebacks instead of one-line errors.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from kseg.training import train
    from kseg.weights.download import DownloadError

    debug = flags.FLAGS.debug or bool(os.environ.get("KSEG_DEBUG"))
    if debug:  # full tracebacks, Keras' frames included
        import keras

        keras.config.disable_traceback_filtering()
    try:
        report = train(config_from_flags())
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write("train.py: interrupted; run the same command again to resume from the last checkpoint\n")
        sys.exit(130)
    except (ValueError, TypeError, OSError, FloatingPointError, DownloadError) as error:
        if debug:
            raise
        sys.exit(f"train.py: {error}")
    if report.interrupted:
        sys.exit(130)


if __name__ == "__main__":
    app.run(main)
