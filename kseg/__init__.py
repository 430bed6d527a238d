"""kseg: GluonCV's segmentation model zoo in Keras 3 / TensorFlow.

Subpackages load on first use (``kseg.models``, ``kseg.presets``, ...), so that
``import kseg`` and the preset tables answer without importing TensorFlow.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = (
    "data",
    "evaluation",
    "export",
    "losses",
    "metrics",
    "models",
    "ops",
    "presets",
    "training",
    "utils",
    "visualize",
    "weights",
)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kseg.{name}")
    raise AttributeError(f"module 'kseg' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])


__all__ = ["__version__", *_SUBPACKAGES]
