"""The converters a preset's ``weights.converter`` names: GluonCV ``.params`` -> a built kseg model.

Each takes ``(model, source, skip_class_layers)``: ``source`` is a ``.params``
path, its bytes or a ``{name: array}`` dict; ``skip_class_layers`` keeps the
model's class-specific layers (fine-tuning on other classes), whose arrays are
then expected in the file but left unused.
"""

from kseg.weights.gluoncv import load_gluoncv_backbone_params, load_gluoncv_params
from kseg.weights.gluoncv_rcnn import load_gluoncv_rcnn_params


def _imagenet(model, source, skip_class_layers=False):
    del skip_class_layers  # the ImageNet fc is never loaded
    return load_gluoncv_backbone_params(model, source)


CONVERTERS = {
    "gluoncv_semantic": lambda model, source, skip_class_layers=False: load_gluoncv_params(
        model, source, skip_classifier=skip_class_layers
    ),
    "gluoncv_rcnn": load_gluoncv_rcnn_params,
    "gluoncv_imagenet": _imagenet,
}


def convert_params(model, source, converter, skip_class_layers=False):
    """Load GluonCV's ``.params`` ``source`` into ``model`` with the converter named ``converter``.

    Returns the paths of the layers left as they were (the class layers, with ``skip_class_layers``).
    """
    if converter not in CONVERTERS:
        raise ValueError(f"Unknown converter {converter!r}; known: {', '.join(CONVERTERS)}")
    return CONVERTERS[converter](model, source, skip_class_layers=skip_class_layers)
