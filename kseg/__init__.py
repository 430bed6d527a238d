"""kseg: GluonCV's segmentation model zoo in Keras 3 / TensorFlow."""

__version__ = "0.1.0"

from kseg import data, metrics, models, visualize  # noqa: E402

__all__ = ["__version__", "data", "metrics", "models", "visualize"]
