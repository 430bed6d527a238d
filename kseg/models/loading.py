"""Weights into built models: GluonCV ``.params`` through the task's converter, kseg ``.weights.h5`` directly.

A ``.weights.h5`` may have been saved from a variant of the model (training
saves the auxiliary head; a published file has its preset's classes): when
it does not load as it is, each of :func:`weight_variants` is built, loaded
and its matching layers copied over. With ``strict``, a file that leaves any
layer of the model untrained is refused.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import keras

from kseg.models.mask_rcnn import MaskRCNN
from kseg.models.segmentation import SemanticSegmenter
from kseg.presets import PRESETS, Preset
from kseg.weights.converters import convert_params
from kseg.weights.transfer import transfer_weights


def weight_variants(model: keras.Model, source: Preset | None = None) -> list[Callable[[], keras.Model]]:
    """Builders of the models a weights file for ``model`` may have been saved from, most likely first.

    With and without the auxiliary head (semantic models), and with the
    classes of ``source`` (the preset the file was published for) or of the
    model's own preset.
    """
    metadata = model.metadata
    own = PRESETS.get(metadata.preset)
    choices = [metadata]
    for preset in (source, own):
        if preset is not None and preset.classes and preset.classes != metadata.classes:
            choices.append(preset.model_metadata())
    if isinstance(model, SemanticSegmenter):
        auxes = (model.aux,) if model.head == "deeplabv3plus" else (model.aux, not model.aux)
        return [
            functools.partial(model.variant, aux=aux, metadata=choice)
            for aux in auxes
            for choice in choices
            if (aux, choice) != (model.aux, metadata)
        ]
    if isinstance(model, MaskRCNN):
        return [functools.partial(model.variant, metadata=choice) for choice in choices[1:]]
    return []


def quiet_load_weights(model: keras.Model, path) -> None:
    """``model.load_weights(path)``; the warnings Keras gives on its way to a failure are dropped.

    A file from the model with its aux head (or other classes) fails to load
    directly and is then transferred layer by layer; before raising, Keras
    warns that layers "will retain their freshly-initialized weights", which
    is untrue once the transfer has run. Warnings of a load that succeeds are
    passed on.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _gist(error: Exception, limit: int = 200) -> str:
    """The first line of an error, cut short: Keras' load errors carry whole tensors."""
    line = next((text.strip() for text in str(error).splitlines() if text.strip()), type(error).__name__)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def load_keras_weights(
    model: keras.Model, path, variants: Sequence[Callable[[], keras.Model]] = (), strict: bool = False
) -> list[str]:
    """Load a ``.weights.h5`` saved from ``model`` or from one of ``variants``; returns the layers left as they were."""
    try:
        quiet_load_weights(model, path)
        return []
    except Exception as direct_error:  # noqa: BLE001 - the variants are tried next, and both errors reported
        errors = [f"as built: {_gist(direct_error)}"]
    for build in variants:
        candidate = build()
        try:
            quiet_load_weights(candidate, path)
        except Exception as error:  # noqa: BLE001
            errors.append(_gist(error))
            continue
        skipped = transfer_weights(candidate, model)
        if strict and skipped:
            raise ValueError(f"{path} does not hold weights for {model.name}: it lacks {', '.join(skipped)}")
        return skipped
    raise ValueError(f"{path} does not hold weights for {model.name} ({'; '.join(dict.fromkeys(errors))})")


def load_weights(
    model: keras.Model,
    weights,
    converter: str,
    variants: Sequence[Callable[[], keras.Model]] = (),
    skip_class_layers: bool = False,
    strict: bool = False,
) -> list[str]:
    """Load a GluonCV ``.params`` (through ``converter``) or a kseg ``.weights.h5`` into ``model``.

    ``skip_class_layers`` leaves a ``.params`` file's class layers out (a model
    of other classes); ``strict`` refuses any layer left untrained. Returns the
    layers that kept their initialisation.
    """
    path = Path(os.fspath(weights))
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.name.endswith(".weights.h5"):
        return load_keras_weights(model, path, variants, strict)
    if skip_class_layers and strict:
        raise ValueError(f"{path} holds GluonCV's class layers, not {model.name}'s: they would stay untrained")
    return convert_params(model, path, converter, skip_class_layers=skip_class_layers)
