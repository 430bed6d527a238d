"""One strict loader for name-mapped weight files, shared by every GluonCV name map.

A name map says, for each kseg layer that holds weights, the GluonCV prefix
of its arrays; :func:`load_mapped_arrays` checks the whole file against it
before touching the model: every array is used exactly once, and missing,
mis-shaped and unused arrays are all named in one error. Only then are the
weights assigned, so a failed load leaves the model as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import keras
import numpy as np

from kseg.weights.mxnet_params import read_params
from kseg.weights.transfer import weighted_layers

PREVIEW = 6  # offending arrays named per kind; the rest are counted


def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # MXNet (O, I, kh, kw) -> Keras (kh, kw, I, O); transposed: (I, O) -> (O, I)


def mxnet_leaves(layer: keras.layers.Layer) -> list[tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """GluonCV leaf names of ``layer``'s weights, in Keras' order, with converters from MXNet's layout."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [(leaf, np.asarray) for leaf in ("gamma", "beta", "running_mean", "running_var")]
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
        kernel = ("weight", _conv_kernel)
    elif isinstance(layer, keras.layers.Dense):
        kernel = ("weight", np.transpose)  # (out, in) -> (in, out)
    else:
        raise TypeError(f"Cannot load GluonCV weights into {type(layer).__name__} {layer.name!r}")
    return [kernel] + ([("bias", np.asarray)] if layer.use_bias else [])


def to_mxnet_layout(value: np.ndarray) -> np.ndarray:
    """The inverse of :func:`mxnet_leaves`' converters (kernels back to MXNet's layout)."""
    if value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    return np.transpose(value) if value.ndim == 2 else value


def read_arrays(source) -> dict[str, np.ndarray]:
    """``{name: array}`` of a ``.params`` path or bytes, or a dict given as is."""
    return dict(source) if isinstance(source, Mapping) else read_params(source, strip_prefixes=True)


def _preview(items: list[str]) -> str:
    shown = ", ".join(items[:PREVIEW])
    return shown + (f", ... ({len(items) - PREVIEW} more)" if len(items) > PREVIEW else "")


def load_mapped_arrays(
    model: keras.Model,
    arrays: Mapping[str, np.ndarray],
    keys: Mapping[str, str],
    skip_layers: Collection[str] = (),
    ignored: Callable[[str], bool] = lambda key: False,
    hint: str = "",
) -> list[str]:
    """Assign ``arrays`` to ``model`` through ``keys`` (``{kseg layer path: GluonCV key prefix}``).

    A layer's arrays are ``{prefix}{leaf}`` for its :func:`mxnet_leaves`.
    Layers in ``skip_layers`` (paths) keep their weights, and their arrays are
    expected but left unused; arrays for which ``ignored(key)`` holds may be
    left unused. Raises ``ValueError`` naming every missing, mis-shaped and
    unused array, with ``hint`` appended, before any weight is assigned.
    Returns the paths of the layers left as they were.
    """
    layers = dict(weighted_layers(model))
    assignments, missing, mismatched, used, skipped = {}, [], [], set(), set()
    for path, prefix in keys.items():
        layer = layers[path]
        leaves = mxnet_leaves(layer)
        if path in skip_layers:
            skipped.update(f"{prefix}{leaf}" for leaf, _ in leaves)
            continue
        values = []
        for (leaf, convert), variable in zip(leaves, layer.weights, strict=True):
            key = f"{prefix}{leaf}"
            if key not in arrays:
                missing.append(key)
                continue
            if key in used:
                raise ValueError(f"GluonCV array {key} would be used twice (kseg {path})")
            used.add(key)
            value = convert(arrays[key])
            if tuple(value.shape) != tuple(variable.shape):
                mismatched.append(
                    f"{key}: GluonCV shape {arrays[key].shape} -> {value.shape}, kseg {path} expects "
                    f"{tuple(variable.shape)}"
                )
            values.append(value)
        assignments[layer] = values
    unused = [key for key in arrays if key not in used and key not in skipped and not ignored(key)]
    problems = [
        f"{len(items)} {what} array(s): {_preview(items)}"
        for what, items in (("missing", missing), ("mis-shaped", mismatched), ("unused", unused))
        if items
    ]
    if problems:
        raise ValueError(f"GluonCV weights do not match {model.name!r}: " + "; ".join(problems) + hint)
    for layer, values in assignments.items():
        layer.set_weights([v.astype(w.dtype, copy=False) for v, w in zip(values, layer.weights, strict=True)])
    return sorted(skip_layers)


def mapped_arrays(model: keras.Model, keys: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The inverse of :func:`load_mapped_arrays`: ``{GluonCV key: MXNet-layout array}`` of ``model``'s weights."""
    layers = dict(weighted_layers(model))
    arrays = {}
    for path, prefix in keys.items():
        layer = layers[path]
        for (leaf, _), variable in zip(mxnet_leaves(layer), layer.weights, strict=True):
            arrays[f"{prefix}{leaf}"] = to_mxnet_layout(np.asarray(variable.numpy()))
    return arrays
