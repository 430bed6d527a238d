"""absl flags of ``recipes/test.py`` (``recipes/train.py``'s come from ``kseg.training.TrainConfig``).

Flag names are GluonCV's (``--model-zoo``, ``--base-size``, ...) so that its
commands work as written; read them with :func:`value`.
"""

import os

from absl import flags

from kseg.presets.datasets import DATASET_KEYS


def value(name):
    """The value of flag ``name`` (hyphenated names cannot be attributes)."""
    return flags.FLAGS[name].value


def define_model_flags():
    flags.DEFINE_string("model-zoo", None, "A zoo name, e.g. fcn_resnet50_ade (`kseg list`).")
    flags.DEFINE_string("model", None, "Method when --model-zoo is not given: fcn, psp, deeplab, deeplab_v3b_plus.")
    flags.DEFINE_string("backbone", "resnet101", "Backbone with --model: resnet50 (GluonCV's v1s), resnet18_v1b, ...")
    flags.DEFINE_string(
        "weights",
        None,
        "A GluonCV .params or kseg .weights.h5 file; 'pretrained' for the zoo's published weights "
        "(the default with --model-zoo); 'none' for random weights.",
    )
    flags.DEFINE_string("resume", None, "GluonCV's name for --weights.")
    flags.DEFINE_integer("output-stride", 8, "Backbone output stride (8 as published, 16 is faster).")
    flags.DEFINE_enum(
        "jit-compile", "auto", ["auto", "true", "false"], "XLA: auto compiles on GPUs and TPUs (no gain on CPUs)."
    )


def define_data_flags():
    flags.DEFINE_enum("dataset", None, DATASET_KEYS, "Data set (default: the zoo entry's).")
    flags.DEFINE_string(
        "dataset-dir", None, "The data set's folder or a folder holding it (default: $KSEG_DATA)."
    )
    flags.DEFINE_integer("base-size", None, "Base image size (default: the model's, GluonCV's 520).", lower_bound=1)
    flags.DEFINE_integer("crop-size", None, "Crop size (default: the model's, GluonCV's 480).", lower_bound=1)
    flags.DEFINE_integer("batch-size", 1, "Images per model call (val mode and single-scale testval).", lower_bound=1)


def jit_compile():
    """``--jit-compile`` as True, False or None (auto)."""
    return {"auto": None, "true": True, "false": False}[value("jit-compile")]


def dataset_root():
    return value("dataset-dir") or os.environ.get("KSEG_DATA")
