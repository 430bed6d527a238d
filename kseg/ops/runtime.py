"""Where kseg runs, and what it may compile there: the one place that decides accelerator and XLA policy.

- :func:`accelerator` says ``"tpu"``, ``"gpu"`` or ``"cpu"``;
- :func:`resolve_jit` turns ``jit_compile=None`` ("auto") into XLA on GPUs and
  TPUs and none on CPUs, where XLA brings no speed and MirroredStrategy with
  XLA fails on logical devices;
- :func:`stock_tf_ops` is a block within which kseg traces stock TensorFlow
  ops only: no XLA-compiled kernels (RoIAlign's fused gathers, the Winograd
  transforms) and no custom convolution algorithms. SavedModel export traces
  inside it, since TF-Serving's stock builds lack XLA;
  :func:`custom_kernels_allowed` tells the ops whether they are outside one.
"""

import contextlib
import functools
import threading

import tensorflow as tf

_state = threading.local()


@functools.cache
def accelerator() -> str:
    """``"tpu"``, ``"gpu"`` or ``"cpu"``: the kind of device TensorFlow computes on here."""
    if tf.config.list_logical_devices("TPU"):
        return "tpu"
    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


def resolve_jit(jit_compile: bool | None = None) -> bool:
    """``jit_compile`` as given, or (None) XLA on GPUs and TPUs and not on CPUs."""
    if jit_compile is not None:
        return bool(jit_compile)
    return accelerator() != "cpu"


@contextlib.contextmanager
def stock_tf_ops():
    """Within this block (at trace time), kseg's ops are stock TensorFlow: nothing is XLA-compiled or rewritten.

    Example:
        >>> from kseg.ops.runtime import custom_kernels_allowed, stock_tf_ops
        >>> with stock_tf_ops():
        ...     custom_kernels_allowed()
        False
    """
    previous = getattr(_state, "stock", False)
    _state.stock = True
    try:
        yield
    finally:
        _state.stock = previous


def custom_kernels_allowed() -> bool:
    """Whether kseg's own kernels (XLA-fused RoIAlign, Winograd) may be traced: not within :func:`stock_tf_ops`."""
    return not getattr(_state, "stock", False)
