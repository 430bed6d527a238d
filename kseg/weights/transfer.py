"""Copy weights between two kseg models layer by layer, matched by layer path."""

import keras


def weighted_layers(model, prefix=""):
    """Yield ``(path, layer)`` for every layer that owns weights, nested models walked."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from weighted_layers(layer, f"{prefix}{layer.name}/")
        elif layer.weights:
            yield f"{prefix}{layer.name}", layer


def transfer_weights(source, target):
    """Copy every weight of ``target`` found in ``source`` with the same path and shapes.

    Layers only ``target`` has, or whose shapes differ (class layers for new
    classes), keep their initialisation. Returns the list of paths not copied.
    """
    source_layers = dict(weighted_layers(source))
    skipped = []
    for path, layer in weighted_layers(target):
        donor = source_layers.get(path)
        shapes = [tuple(w.shape) for w in layer.weights]
        if donor is None or [tuple(w.shape) for w in donor.weights] != shapes:
            skipped.append(path)
            continue
        layer.set_weights(donor.get_weights())
    return skipped
