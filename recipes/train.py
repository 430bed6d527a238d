"""Train a semantic segmentation model as GluonCV's ``scripts/segmentation/train.py`` did.

    python recipes/train.py --flagfile=recipes/psp_ade.flags --dataset-dir /data
    python recipes/train.py --flagfile=recipes/quickstart.flags      # offline, CPU, a few minutes

Every flag is a field of ``kseg.training.TrainConfig``; ``kseg.training.train``
does the run. Rerun the same command after an interruption: it resumes from
the run folder's last checkpoint. ``--helpfull`` lists every flag.
"""

import os
import sys

from absl import app, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kseg.cli.train_command import config_from_flags, define_train_flags  # noqa: E402

define_train_flags()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    from kseg.training import train
    from kseg.weights.download import DownloadError

    if os.environ.get("KSEG_DEBUG"):  # full tracebacks, Keras' frames included
        import keras

        keras.config.disable_traceback_filtering()

    try:
        train(config_from_flags())
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, DownloadError) as error:
        if os.environ.get("KSEG_DEBUG"):
            raise
        sys.exit(f"train.py: {error}")


if __name__ == "__main__":
    app.run(main)
