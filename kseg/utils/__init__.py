"""Small helpers shared across kseg (no TensorFlow)."""

from kseg.utils.io import atomic_path, write_atomic
from kseg.utils.paths import kseg_home

__all__ = ["atomic_path", "kseg_home", "write_atomic"]
