"""How much arithmetic a model does, and how fast this machine can do it: the limits a benchmark is held to.

- :func:`count_macs` counts the multiply-accumulates of one forward pass from
  the traced graph (convolutions, transposed convolutions, matrix products,
  einsums), and those of the 3x3 stride-1 convolutions apart, which kseg's
  Winograd path computes with 16 multiplications per 2x2 outputs instead of 36;
- :func:`matmul_peak` times a large matrix product in this process: the
  machine's practical peak in GFLOP/s for float32 or bfloat16;
- :func:`arithmetic_limits` turns both into the least time a forward can take,
  done directly and with Winograd F(2x2, 3x3).

Example:
    >>> macs = count_macs(kseg.models.get("fcn_resnet101_voc"), (480, 480))
    >>> round(macs.total / 1e9), round(macs.winograd_eligible / 1e9)
    (196, 118)
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

WINOGRAD_SHARE = 16 / 36  # F(2x2, 3x3): 16 multiplications for the 36 of 2x2 outputs done directly
_CONVOLUTIONS = ("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput")


@dataclasses.dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass: all of them, and those of 3x3 stride-1 convolutions."""

    total: int
    winograd_eligible: int

    @property
    def with_winograd(self) -> float:
        """The multiplications left when the eligible convolutions take Winograd F(2x2, 3x3)."""
        return self.total - self.winograd_eligible * (1 - WINOGRAD_SHARE)


def _shape(tensor):
    dims = tensor.shape.as_list() if tensor.shape.rank is not None else None
    if dims is None or None in dims:
        raise ValueError(f"{tensor.name} has no static shape ({tensor.shape}); count at a fixed input size")
    return dims


def _einsum_macs(op):
    equation = op.get_attr("equation").decode()
    inputs, _, _ = equation.partition("->")
    if "." in inputs:
        raise ValueError(f"einsum {equation!r} with an ellipsis is not counted")
    sizes = {}
    for labels, tensor in zip(inputs.split(","), op.inputs, strict=True):
        sizes.update(zip(labels, _shape(tensor), strict=True))
    return int(np.prod(list(sizes.values()), dtype=np.int64)) if len(op.inputs) == 2 else 0


def op_macs(op) -> tuple[int, bool]:
    """``(multiply-accumulates, Winograd-eligible)`` of one graph operation (0 for those that do none)."""
    kind = op.type
    if kind in _CONVOLUTIONS:
        filters = _shape(op.inputs[1])
        if kind == "Conv2DBackpropInput":  # out_backprop [B, h, w, in] against a filter [kh, kw, out, in]
            return int(np.prod(_shape(op.inputs[2]), dtype=np.int64)) * filters[0] * filters[1] * filters[2], False
        per_output = filters[0] * filters[1] * (1 if kind == "DepthwiseConv2dNative" else filters[2])
        macs = int(np.prod(_shape(op.outputs[0]), dtype=np.int64)) * per_output
        eligible = kind != "DepthwiseConv2dNative" and filters[:2] == [3, 3] and list(op.get_attr("strides")) == [1] * 4
        return macs, eligible
    if kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
        a = _shape(op.inputs[0])
        adjoint = op.get_attr("transpose_a" if kind == "MatMul" else "adj_x")
        inner = a[-2] if adjoint else a[-1]
        return int(np.prod(_shape(op.outputs[0]), dtype=np.int64)) * inner, False
    if kind == "Einsum":
        return _einsum_macs(op), False
    return 0, False


def count_macs(model, size, batch: int = 1) -> MacCount:
    """The multiply-accumulates of ``model`` on a ``[batch, *size, 3]`` input, from its traced graph.

    Traced with stock TensorFlow ops (:func:`kseg.ops.runtime.stock_tf_ops`), so
    that every convolution appears as one, whatever kernel kseg runs it with.
    Operations inside control flow (a ``tf.cond`` or loop body) are not
    counted; kseg's models run their convolutions outside any.

    Example:
        >>> count_macs(kseg.models.build("fcn", "resnet18_v1b", 19), (96, 96)).total > 0
        True
    """
    import tensorflow as tf

    from kseg.ops.runtime import stock_tf_ops

    with stock_tf_ops():
        spec = tf.TensorSpec([batch, *size, 3], tf.float32)
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    total = eligible = 0
    for op in graph.get_operations():
        macs, winograd = op_macs(op)
        total += macs
        eligible += macs if winograd else 0
    return MacCount(total, eligible)


def matmul_peak(dtype: str = "float32", n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` ``n x n x n`` matrix products in ``dtype`` here (after a warm-up).

    Example:
        >>> matmul_peak("float32") > 1
        True
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), dtype)
    product = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
    product(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def arithmetic_limits(macs: MacCount, gflops: float) -> dict[str, float]:
    """The least seconds a forward of ``macs`` takes at ``gflops``: ``direct_s`` and ``winograd_s``.

    Example:
        >>> round(arithmetic_limits(MacCount(196_000_000_000, 118_500_000_000), 204.0)["winograd_s"], 2)
        1.28
    """
    return {"direct_s": 2 * macs.total / (gflops * 1e9), "winograd_s": 2 * macs.with_winograd / (gflops * 1e9)}
