"""``recipes/train.py``'s flags: one absl flag per :class:`kseg.training.TrainConfig` field, and the run.

A field ``aux_weight`` is the flag ``--aux-weight``, with the field's help;
the flags are made from the fields, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import re

from absl import flags

from kseg.presets.datasets import DATASET_KEYS
from kseg.training.config import PRECISIONS, STRATEGIES, TrainConfig

FLAGS = flags.FLAGS
_JIT = {"auto": None, "true": True, "false": False}
_ENUMS = {"strategy": STRATEGIES, "precision": PRECISIONS, "dataset": DATASET_KEYS}


def flag_name(field_name: str) -> str:
    return field_name.replace("_", "-")


def define_train_flags(flag_values=FLAGS) -> None:
    """Define the flags of every :class:`TrainConfig` field in ``flag_values``."""
    for field in dataclasses.fields(TrainConfig):
        name, help_text, default = flag_name(field.name), field.metadata["help"], field.default
        kind = str(field.type).split("|")[0].strip()
        if field.name == "jit_compile":
            flags.DEFINE_enum(name, "auto", list(_JIT), help_text, flag_values=flag_values)
        elif field.name in _ENUMS:
            flags.DEFINE_enum(name, default, _ENUMS[field.name], help_text, flag_values=flag_values)
        elif kind == "bool":
            flags.DEFINE_boolean(name, default, help_text, flag_values=flag_values)
        elif kind == "int":
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif kind == "float":
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        elif kind.startswith("tuple"):
            flags.DEFINE_list(name, list(field.default_factory()) if default is dataclasses.MISSING else list(default),
                              help_text, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)


def config_from_flags(flag_values=FLAGS) -> TrainConfig:
    """The :class:`TrainConfig` the parsed flags describe."""
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = flag_values[flag_name(field.name)].value
        if field.name == "jit_compile":
            value = _JIT[value]
        elif isinstance(value, list):
            value = tuple(value)
        values[field.name] = value
    try:
        return TrainConfig(**values)
    except (TypeError, ValueError) as error:  # the library names its fields; the command line, its flags
        message = str(error)
        for field in dataclasses.fields(TrainConfig):
            message = re.sub(rf"(?<![\w-]){field.name}(?![\w-])", "--" + flag_name(field.name), message)
        raise type(error)(message) from None
