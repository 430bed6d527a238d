"""align_corners bilinear resize and adaptive pooling against MXNet's own ops."""

import json
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from kseg.ops import adaptive_average_pool2d, resize_bilinear_align_corners

RESIZES = [
    ((5, 7), (11, 3)),
    ((60, 60), (480, 480)),
    ((13, 17), (97, 131)),
    ((1, 1), (9, 4)),
    ((8, 9), (1, 1)),
    ((97, 131), (13, 17)),
]
POOLS = [((13, 17), 6), ((60, 60), 3), ((5, 4), 6), ((7, 7), 1), ((2, 3), 2)]

MXNET_SCRIPT = """
import json, sys, numpy as np, mxnet as mx
cases = json.loads(sys.argv[1]); out = {}
for i, (kind, shape, arg) in enumerate(cases):
    x = np.random.default_rng(i).standard_normal(shape).astype('float32')
    nd = mx.nd.array(x.transpose(0, 3, 1, 2))
    if kind == 'resize':
        y = mx.nd.contrib.BilinearResize2D(nd, height=arg[0], width=arg[1])
    else:
        y = mx.nd.contrib.AdaptiveAvgPooling2D(nd, output_size=arg)
    out[f'x{i}'] = x; out[f'y{i}'] = y.asnumpy().transpose(0, 2, 3, 1)
np.savez(sys.argv[2], **out)
"""


def numpy_resize(x, out_h, out_w):
    """MXNet's formula, written out independently: src = dst * (in - 1) / (out - 1)."""

    def axis(n_in, n_out):
        scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        src = np.arange(n_out) * scale
        lo = np.minimum(np.floor(src).astype(int), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    t, b, wy = axis(x.shape[1], out_h)
    left, right, wx = axis(x.shape[2], out_w)
    rows = x[:, t] * (1 - wy)[None, :, None, None] + x[:, b] * wy[None, :, None, None]
    return rows[:, :, left] * (1 - wx)[None, None, :, None] + rows[:, :, right] * wx[None, None, :, None]


def numpy_pool(x, bins):
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], bins, bins, x.shape[3]))
    for i in range(bins):
        for j in range(bins):
            r0, r1 = (i * h) // bins, -(-(i + 1) * h // bins)
            c0, c1 = (j * w) // bins, -(-(j + 1) * w // bins)
            out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("in_size,out_size", RESIZES)
def test_resize_matches_formula(in_size, out_size):
    x = np.random.default_rng(0).standard_normal((2, *in_size, 3)).astype("float32")
    y = resize_bilinear_align_corners(x, out_size)
    # Coordinates are float32 (as in MXNet): up to ~60 * 6e-8 off the float64 formula.
    np.testing.assert_allclose(y, numpy_resize(x.astype("float64"), *out_size), rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("in_size,bins", POOLS)
def test_pool_matches_formula(in_size, bins):
    x = np.random.default_rng(1).standard_normal((2, *in_size, 4)).astype("float32")
    np.testing.assert_allclose(adaptive_average_pool2d(x, (bins, bins)), numpy_pool(x, bins), rtol=1e-5, atol=1e-6)


def test_ops_compile_with_xla_on_dynamic_shapes():
    resize = tf.function(lambda x: resize_bilinear_align_corners(x, (23, 31)), jit_compile=True)
    pool = tf.function(lambda x: adaptive_average_pool2d(x, (6, 6)), jit_compile=True)
    x = np.random.default_rng(2).standard_normal((1, 13, 17, 2)).astype("float32")
    np.testing.assert_allclose(resize(x), resize_bilinear_align_corners(x, (23, 31)), atol=1e-6)
    np.testing.assert_allclose(pool(x), adaptive_average_pool2d(x, (6, 6)), atol=1e-6)


def test_resize_gradient_under_bfloat16_xla():
    x = tf.Variable(tf.random.normal((1, 7, 9, 2), dtype=tf.bfloat16))

    @tf.function(jit_compile=True)
    def grad():
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(resize_bilinear_align_corners(x, (15, 17)))
        return tape.gradient(y, x)

    g = grad()
    assert g.dtype == tf.bfloat16 and np.all(np.isfinite(g.numpy().astype("float32")))


@pytest.mark.gluoncv
def test_against_mxnet_ops(side_python, tmp_path):
    cases = [("resize", (2, *a, 3), list(b)) for a, b in RESIZES] + [("pool", (2, *a, 4), b) for a, b in POOLS]
    out = tmp_path / "mx.npz"
    subprocess.run([side_python, "-c", MXNET_SCRIPT, json.dumps(cases), str(out)], check=True, capture_output=True)
    ref = np.load(out)
    for i, (kind, _, arg) in enumerate(cases):
        x = ref[f"x{i}"]
        ours = resize_bilinear_align_corners(x, arg) if kind == "resize" else adaptive_average_pool2d(x, (arg, arg))
        np.testing.assert_allclose(ours, ref[f"y{i}"], rtol=1e-5, atol=1e-5, err_msg=f"{kind} {arg}")


def test_resize_like_compiled_equals_the_gathers_and_keeps_dynamic_shapes_on_them():
    from kseg.ops import resize_like

    rng = np.random.default_rng(4)
    images = tf.constant(rng.standard_normal((2, 7, 9, 5)), tf.float32)
    reference = tf.zeros([2, 23, 31, 3])
    expected = resize_bilinear_align_corners(images, (23, 31))
    compiled = resize_like(images, reference, compiled=True)
    assert compiled.shape == (2, 23, 31, 5)
    np.testing.assert_allclose(compiled, expected, rtol=1e-6, atol=1e-6)
    static = tf.function(lambda x, r: resize_like(x, r, compiled=True)).get_concrete_function(images, reference)
    assert "GatherV2" not in {op.type for op in static.graph.get_operations()}  # inside the compiled call
    # Unknown sizes would compile once per image size: they take the gathers.
    dynamic = tf.function(
        lambda x, r: resize_like(x, r, compiled=True),
        input_signature=[tf.TensorSpec([None, None, None, 5]), tf.TensorSpec([None, None, None, 3])],
    )
    ops = {op.type for op in dynamic.get_concrete_function().graph.get_operations()}
    assert "GatherV2" in ops and not any("PartitionedCall" in op for op in ops)
    np.testing.assert_allclose(dynamic(images, reference), expected, rtol=0, atol=0)
