"""Fine-tuning on other classes while keeping what a model knew of the classes it shares with them.

GluonCV's ``reset_class(classes, reuse_weights=...)`` for Mask R-CNN: the new
class layers start afresh, except the rows of the classes named in
``reuse_weights``, copied from the old layers (and the background score with
them). kseg does the same for every task's class layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np

from kseg.models.loading import load_weights, weight_variants
from kseg.presets import Preset
from kseg.weights.transfer import transfer_weights, weighted_layers

# What ``reuse_classes`` takes: True (shared names), names, or {new: old} names or indices.
ReuseClasses = bool | Sequence[str] | Mapping[str | int, str | int]

# Each class layer's output axis (the last of its kernel and bias): ``shared`` leading rows that belong to no
# class (Mask R-CNN's background score), then ``per_class`` rows for each class in class order.
CLASS_ROWS = {
    "class_predictor": (1, 1),
    "box_predictor": (0, 4),
    "mask_logits": (0, 1),
    "head_classifier": (0, 1),
    "aux_classifier": (0, 1),
    "decoder_classifier": (0, 1),
}


def _index(name, classes, which):
    if isinstance(name, bool) or not isinstance(name, (str, int, np.integer)):
        raise TypeError(f"reuse_classes names classes by name or index, got {name!r}")
    if isinstance(name, str):
        if name not in classes:
            raise ValueError(f"reuse_classes: {name!r} is not one of the {which} classes")
        return list(classes).index(name)
    if not 0 <= name < len(classes):
        raise ValueError(f"reuse_classes: index {name} is outside the {len(classes)} {which} classes")
    return int(name)


def reuse_map(old_classes: Sequence[str], new_classes: Sequence[str], reuse: ReuseClasses) -> dict[int, int]:
    """``{new class index: old class index}`` of the rows to reuse.

    ``reuse`` is True (every new class whose name is an old one), a list of
    names found in both, or a mapping ``{new: old}`` of names or indices.
    A name or index found in neither is refused (GluonCV only warns).

    Example:
        >>> reuse_map(["person", "car", "dog"], ["dog", "unicorn"], True)
        {0: 2}
        >>> reuse_map(["person", "car", "dog"], ["dog", "unicorn"], {"unicorn": "car"})
        {1: 1}
    """
    if reuse is True:
        return {new: list(old_classes).index(name) for new, name in enumerate(new_classes) if name in old_classes}
    if isinstance(reuse, Mapping):
        pairs = reuse.items()
    elif isinstance(reuse, Sequence) and not isinstance(reuse, str):
        pairs = [(name, name) for name in reuse]
    else:
        raise TypeError(f"reuse_classes takes True, a list of class names or a {{new: old}} mapping, got {reuse!r}")
    mapping = {}
    for new, old in pairs:
        mapping[_index(new, new_classes, "new")] = _index(old, old_classes, "old")
    return mapping


def class_layers(model: keras.Model) -> dict[str, keras.layers.Layer]:
    """``{path: layer}`` of the model's class layers (those :data:`CLASS_ROWS` knows)."""
    return {path: layer for path, layer in weighted_layers(model) if path.rsplit("/", 1)[-1] in CLASS_ROWS}


def copy_class_rows(source: keras.Model, target: keras.Model, mapping: Mapping[int, int]) -> None:
    """Into ``target``'s class layers, the rows of ``source``'s classes that ``mapping`` names (new -> old), and
    the shared rows (background) when any is reused; the other rows keep ``target``'s values."""
    if not mapping:
        return
    donors = class_layers(source)
    for path, layer in class_layers(target).items():
        shared, per_class = CLASS_ROWS[path.rsplit("/", 1)[-1]]
        old = donors[path].get_weights()
        new = [np.array(w) for w in layer.get_weights()]
        for old_w, new_w in zip(old, new, strict=True):
            new_w[..., :shared] = old_w[..., :shared]
            for new_class, old_class in mapping.items():
                to, of = (shared + new_class) * per_class, (shared + old_class) * per_class
                new_w[..., to : to + per_class] = old_w[..., of : of + per_class]
        layer.set_weights(new)


def load_reusing_classes(
    model: keras.Model, weights, converter: str, source: Preset, reuse: ReuseClasses
) -> dict[int, int]:
    """Load ``weights`` (made for ``source``'s classes) into ``model`` (other classes), reusing class rows.

    Every layer but the class layers is loaded as it is; the class layers keep
    ``model``'s initialisation except the rows :func:`reuse_map` picks (and
    the background). Returns that map, ``{new class index: source class index}``.
    """
    mapping = reuse_map(source.classes, model.metadata.classes, reuse)
    donor = model.variant(metadata=source.model_metadata())
    load_weights(donor, weights, converter, variants=weight_variants(donor, source))
    fresh = {path: layer.get_weights() for path, layer in class_layers(model).items()}
    transfer_weights(donor, model)  # class layers of an equal class count would be copied whole: put back
    for path, layer in class_layers(model).items():
        layer.set_weights(fresh[path])
    copy_class_rows(donor, model, mapping)
    return mapping
