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
from tensorflow.python.ops import control_flow_util  # inside_xla: no public API says this

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


def inside_xla() -> bool:
    """Whether the operations being traced now will be compiled by XLA (a ``jit_compile`` function, or one called
    from it), where some TensorFlow ops are not supported (pooling with explicit padding)."""
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


INFERENCE_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return None


def bfloat16_hardware() -> bool | None:
    """Whether the accelerator computes bfloat16 natively: TPUs, GPUs of compute capability 8.0 and later,
    CPUs with AVX512-BF16 or AMX; None where a CPU's flags cannot be read."""
    kind = accelerator()
    if kind == "tpu":
        return True
    if kind == "gpu":
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        return tuple(details.get("compute_capability", (0, 0))) >= (8, 0)
    flags = _cpu_flags()
    return None if flags is None else bool(flags & {"avx512_bf16", "amx_bf16"})


def check_inference_precision(precision: str) -> str:
    """``precision`` once it is a Keras policy this machine computes fast; a one-line ValueError otherwise.

    ``mixed_bfloat16`` is refused where the hardware lacks bfloat16 arithmetic
    (it would be emulated, slower than float32).

    Example:
        >>> check_inference_precision("float32")
        'float32'
    """
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)}, got {precision!r}")
    if precision == "mixed_bfloat16" and bfloat16_hardware() is False:
        where = "GPU (compute capability below 8.0)" if accelerator() == "gpu" else "CPU (no AVX512-BF16 or AMX)"
        raise ValueError(f"mixed_bfloat16 needs bfloat16 arithmetic, which this {where} lacks: it would be "
                         "emulated, slower than float32; use float32")  # fmt: skip
    return precision
