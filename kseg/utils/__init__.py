"""Small helpers shared across kseg."""

from kseg.utils.io import atomic_path, write_atomic

__all__ = ["atomic_path", "write_atomic"]
