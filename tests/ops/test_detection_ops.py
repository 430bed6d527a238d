"""Detection ops against MXNet/GluonCV (one side-venv run per module) and under XLA."""

import subprocess

import numpy as np
import pytest
import tensorflow as tf

from kseg import ops

# ---------------------------------------------------------------------------------------------
# Inputs (built here, sent to the side venv in one .npz) and the side script.

C4_FEAT = (23, 37)
FPN_FEATS = ((40, 60), (20, 30), (10, 15), (5, 8), (3, 4))
ROI_FEAT = (13, 17)
ROI_STRIDE = 16
FPN_ROI_FEATS = ((32, 48), (16, 24), (8, 12), (4, 6))


def _rois(rng, n, width, height):
    """Random image-space rois: inside, partly outside, tiny, malformed and far outside the image."""
    cx = rng.uniform(-0.2 * width, 1.2 * width, n)
    cy = rng.uniform(-0.2 * height, 1.2 * height, n)
    w = np.exp(rng.uniform(np.log(0.5), np.log(1.5 * width), n))
    h = w * np.exp(rng.uniform(-1.2, 1.2, n))
    rois = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    k0, k1 = n // 10, n // 5
    rois[:k0, 2:] = rois[:k0, :2] - rng.uniform(0, 3, (k0, 2))  # malformed: x2 < x1
    rois[k0:k1, 2:] = rois[k0:k1, :2] + rng.uniform(0, 3, (k1 - k0, 2))  # tiny
    rois[-3:] = [[width + 40, 5, width + 80, 30], [-90, -90, -40, -50], [-20, -30, width + 30, height + 20]]
    return rois.astype(np.float32)


def _clustered_boxes(rng, shape, n_clusters, width, height):
    """Boxes around a few centres, so that NMS has work to do."""
    centres = rng.uniform([0, 0, 8, 8], [width, height, 80, 80], (n_clusters, 4))
    pick = centres[rng.integers(0, n_clusters, shape)]
    jitter = rng.normal(0, 1, (*shape, 4)) * pick[..., 2:3] * 0.15
    cx, cy, w, h = np.moveaxis(pick, -1, 0)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) + jitter
    boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2] + 0.5)
    return boxes.astype(np.float32)


def _smooth_masks(rng, n, m):
    """Mask probabilities with blob-like 0.5 level sets."""
    yy, xx = np.mgrid[0:m, 0:m] / (m - 1)
    cy, cx = rng.uniform(0.2, 0.8, (2, n, 1, 1))
    r = rng.uniform(0.1, 0.45, (n, 1, 1))
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / r
    noise = rng.normal(0, 0.05, (n, m, m))
    return (1 / (1 + np.exp(4 * (d - 1))) + noise).clip(0, 1).astype(np.float32)


def make_inputs():
    rng = np.random.default_rng(0)
    x = {"c4_feat": np.array(C4_FEAT), "fpn_feats": np.array(FPN_FEATS), "roi_stride": np.array(ROI_STRIDE)}
    # Box coder: the RCNN case broadcasts (C, N, 4) deltas against (1, N, 4) rois.
    x["dec_anchor"] = _clustered_boxes(rng, (1, 300), 20, 600, 400)
    x["dec_delta"] = (rng.normal(0, 3, (4, 300, 4))).astype(np.float32)
    x["enc_box"] = _clustered_boxes(rng, (2, 300), 20, 600, 400)
    x["enc_anchor"] = _clustered_boxes(rng, (2, 300), 20, 600, 400)
    x["clip_box"] = rng.uniform(-100, 700, (2, 300, 4)).astype(np.float32)
    # RPN: anchors of a small C4 map, quantised scores (ties), some min-size rejects.
    anchors = ops.c4_anchors(12, 18).numpy()
    n = anchors.shape[0]
    x["rpn_anchor"] = anchors[None]
    x["rpn_score"] = (np.round(rng.uniform(0, 1, (2, n, 1)) * 40) / 40).astype(np.float32)
    x["rpn_delta"] = rng.normal(0, 0.5, (2, n, 4)).astype(np.float32)
    # Class-agnostic box_nms with ties and invalid (-1 / 0) scores.
    boxes = _clustered_boxes(rng, (2, 2500), 60, 500, 400)
    scores = np.round(rng.uniform(-0.2, 1, (2, 2500)) * 50) / 50
    x["nms_data"] = np.concatenate([scores[..., None], boxes], -1).astype(np.float32)
    # Per-class detections: softmax probabilities over 1 + C classes, per-class boxes.
    logits = rng.normal(0, 2.5, (2, 400, 7))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    x["det_prob"] = probs.astype(np.float32)
    x["det_box"] = _clustered_boxes(rng, (2, 6, 400), 30, 400, 300)  # (B, C, N, 4)
    # ROIAlign: one map, and FPN levels P2..P5 for a 128 x 192 input.
    x["roi_feat"] = rng.normal(0, 1, (2, 3, *ROI_FEAT)).astype(np.float32)
    x["roi_rois"] = _rois(rng, 2 * 150, ROI_FEAT[1] * ROI_STRIDE, ROI_FEAT[0] * ROI_STRIDE).reshape(2, 150, 4)
    for i, hw in enumerate(FPN_ROI_FEATS):
        x[f"fpn_feat{i}"] = rng.normal(0, 1, (2, 3, *hw)).astype(np.float32)
    fpn = _rois(rng, 2 * 200, 192, 128)
    fpn[: 2 * 200 : 4] *= 3.5  # more large rois, for levels 4 and 5
    x["fpn_rois"] = fpn.reshape(2, 200, 4)
    # Masks: 14 x 14 (C4) and 28 x 28 (FPN) predictions, boxes partly outside, tiny ones.
    for m in (14, 28):
        x[f"mask{m}"] = _smooth_masks(rng, 40, m)
        b = _rois(rng, 43, 160, 120)[:40]  # GluonCV's fast fill fails on boxes wholly outside the image
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.3)
        b[:, :2] = np.minimum(b[:, :2], [150, 110])
        b[:, 2:] = np.maximum(b[:, 2:], 10)
        x[f"mask{m}_box"] = b
    return x


SIDE_SCRIPT = r"""
import sys
import numpy as np
import mxnet as mx
from mxnet import nd
from gluoncv.model_zoo.rcnn.rpn.anchor import RPNAnchorGenerator
from gluoncv.model_zoo.rcnn.rpn.proposal import RPNProposal
from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN
from gluoncv.nn.coder import NormalizedBoxCenterDecoder, NormalizedBoxCenterEncoder, MultiPerClassDecoder
from gluoncv.nn.bbox import BBoxClipToImage
from gluoncv.data.transforms.mask import fill

x = dict(np.load(sys.argv[1]))
C4_FEAT, FPN_FEATS, ROI_STRIDE = tuple(x["c4_feat"]), [tuple(s) for s in x["fpn_feats"]], float(x["roi_stride"])
out = {}
ratios = (0.5, 1, 2)

# Anchors: C4, and FPN built as RPN(multi_level=True) does.
ag = RPNAnchorGenerator(16, 16, ratios, (2, 4, 8, 16, 32), (128, 128))
ag.initialize()
out["anchor_c4"] = ag(nd.zeros((1, 1) + C4_FEAT)).asnumpy()[0]
asz = (384, 384)
for i, (st, s) in enumerate(zip((4, 8, 16, 32, 64), (2, 4, 8, 16, 32))):
    ag = RPNAnchorGenerator(st, 16, ratios, s, asz)
    ag.initialize()
    out[f"anchor_fpn{i}"] = ag(nd.zeros((1, 1) + FPN_FEATS[i])).asnumpy()[0]
    asz = max(asz[0] // 2, 16)
    asz = (asz, asz)

# Box coder: both GluonCV paths (python ops for pretrained zoo models, contrib.box_decode otherwise).
for tag, stds in (("rcnn", (0.1, 0.1, 0.2, 0.2)), ("rpn", (1.0, 1.0, 1.0, 1.0))):
    for minimal in (True, False):
        dec = NormalizedBoxCenterDecoder(stds=stds, clip=4.42, convert_anchor=True, minimal_opset=minimal)
        anchor = nd.array(x["dec_anchor"])  # (1, N, 4), as contrib.box_decode requires
        out[f"dec_{tag}_{int(minimal)}"] = dec(nd.array(x["dec_delta"]), anchor).asnumpy()
enc = NormalizedBoxCenterEncoder(stds=(0.1, 0.1, 0.2, 0.2))
n = x["enc_box"].shape[1]
t, _ = enc(nd.ones((2, n)), nd.array(np.tile(np.arange(n), (2, 1))), nd.array(x["enc_anchor"]), nd.array(x["enc_box"]))
out["enc"] = t.asnumpy()
out["clip"] = BBoxClipToImage()(nd.array(x["clip_box"]), nd.zeros((2, 3, 410, 530))).asnumpy()

# RPN proposals: RPNProposal + the RPN's box_nms + slice, for min_size 1 (zoo) and 16.
for min_size in (1, 16):
    for minimal in (True, False):
        prop = RPNProposal(clip=4.42, min_size=min_size, stds=(1.0, 1.0, 1.0, 1.0), minimal_opset=minimal)
        pre = prop(nd.array(x["rpn_anchor"]), nd.array(x["rpn_score"]), nd.array(x["rpn_delta"]),
                   nd.zeros((2, 3, 190, 290)))
        res = nd.contrib.box_nms(pre, overlap_thresh=0.7, topk=1500, coord_start=1, score_index=0, id_index=-1,
                                 force_suppress=True)
        out[f"rpn_{min_size}_{int(minimal)}"] = res[:, :600].asnumpy()
out["nms"] = nd.contrib.box_nms(nd.array(x["nms_data"]), overlap_thresh=0.5, topk=1800, coord_start=1,
                                score_index=0, id_index=-1, force_suppress=True).asnumpy()

# RCNN detections, as FasterRCNN.hybrid_forward + MaskRCNN's top rcnn_max_dets, one image at a time.
decoder = MultiPerClassDecoder(num_class=7)
for b in range(2):
    ids, scores = decoder(nd.array(x["det_prob"][b : b + 1]))
    ids = ids.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
    scores = scores.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
    res = nd.concat(ids, scores, nd.array(x["det_box"][b]), dim=-1)
    res = nd.contrib.box_nms(res, overlap_thresh=0.5, topk=-1, valid_thresh=0.0001, id_index=0, score_index=1,
                             coord_start=2, force_suppress=False).reshape((-3, 0))
    order = nd.argsort(res[:, 1], is_ascend=False)[:1000]  # rcnn_max_dets
    out[f"det{b}"] = nd.take(res, order).asnumpy()

# ROIAlign, and GluonCV's own FPN level assignment + masked per-level ROIAlign sum.
def batched(rois):
    b, n = rois.shape[:2]
    return nd.array(np.concatenate([np.repeat(np.arange(b), n)[:, None], rois.reshape(-1, 4)], 1))
for size in (7, 14):
    r = nd.contrib.ROIAlign(nd.array(x["roi_feat"]), batched(x["roi_rois"]), (size, size), 1.0 / ROI_STRIDE,
                            sample_ratio=2)
    out[f"roi{size}"] = r.asnumpy()
class Stages:
    _min_stage, _max_stage = 2, 6
class NoBoxEncode:
    # With MXNet >= 1.6 GluonCV pools each level with the other levels' rois set to -1 (batch index -1 too);
    # MXNet's CPU ROIAlign skips such rois without writing their output (uninitialised memory; the GPU
    # kernel writes 0). Hiding contrib.box_encode selects GluonCV's other branch: pool all rois on every
    # level and zero the other levels' results with F.where, i.e. the intended (GPU) result.
    def __getattr__(self, name):
        return getattr(nd, name)
    contrib = type("contrib", (), {"ROIAlign": staticmethod(nd.contrib.ROIAlign)})
feats = [nd.array(x[f"fpn_feat{i}"]) for i in range(4)]
out["fpn14"] = FasterRCNN._pyramid_roi_feats(Stages(), NoBoxEncode(), feats, batched(x["fpn_rois"]), (14, 14),
                                             (4, 8, 16, 32, 64), roi_mode="align").asnumpy()

# Mask pasting (fast path; the exact path needs scipy.interp2d, removed in SciPy 1.14).
for m in (14, 28):
    out[f"fill{m}"] = fill(x[f"mask{m}"], x[f"mask{m}_box"], (160, 120), fast_fill=True)
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def inputs():
    return make_inputs()


@pytest.fixture(scope="module")
def mx_ref(side_python, inputs, tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection_ops")
    np.savez(folder / "in.npz", **inputs)
    result = subprocess.run(
        [side_python, "-c", SIDE_SCRIPT, str(folder / "in.npz"), str(folder / "out.npz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(folder / "out.npz"))


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------
# Parity with MXNet / GluonCV.


@pytest.mark.gluoncv
def test_anchors_match_gluoncv(mx_ref):
    np.testing.assert_array_equal(ops.c4_anchors(*C4_FEAT).numpy(), mx_ref["anchor_c4"])
    for i, ours in enumerate(ops.fpn_anchors(FPN_FEATS)):
        np.testing.assert_array_equal(ours.numpy(), mx_ref[f"anchor_fpn{i}"], err_msg=f"P{i + 2}")


@pytest.mark.gluoncv
def test_box_coder_matches_gluoncv(inputs, mx_ref):
    for tag, stds in (("rcnn", ops.RCNN_STDS), ("rpn", ops.RPN_STDS)):
        ours = ops.decode_boxes(inputs["dec_delta"], inputs["dec_anchor"], stds, clip=4.42).numpy()
        for minimal in (1, 0):
            np.testing.assert_allclose(ours, mx_ref[f"dec_{tag}_{minimal}"], rtol=1e-5, atol=1e-3, err_msg=tag)
    enc = ops.encode_boxes(inputs["enc_box"], inputs["enc_anchor"]).numpy()
    np.testing.assert_allclose(enc, mx_ref["enc"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ops.clip_boxes(inputs["clip_box"], (410, 530)).numpy(), mx_ref["clip"])
    per_image = ops.clip_boxes(inputs["clip_box"], tf.constant([[410, 530], [410, 530]])).numpy()
    np.testing.assert_array_equal(per_image, mx_ref["clip"])


@pytest.mark.gluoncv
def test_rpn_proposals_match_gluoncv(inputs, mx_ref):
    for min_size in (1, 16):
        scores, boxes = ops.rpn_proposals(
            inputs["rpn_anchor"][0],
            inputs["rpn_score"][..., 0],
            inputs["rpn_delta"],
            (190, 290),
            pre_nms_topk=1500,
            post_nms_topk=600,
            min_size=min_size,
        )
        for minimal in (1, 0):
            ref = mx_ref[f"rpn_{min_size}_{minimal}"]
            kept = ref[..., 0] >= 0
            assert kept.sum() > 500
            np.testing.assert_array_equal(scores.numpy(), ref[..., 0])
            np.testing.assert_allclose(boxes.numpy(), ref[..., 1:], rtol=1e-5, atol=1e-3)


@pytest.mark.gluoncv
def test_box_nms_matches_mxnet(inputs, mx_ref):
    data = inputs["nms_data"]
    ref = mx_ref["nms"]
    indices, valid = ops.box_nms(data[..., 1:], data[..., 0], 0.5, data.shape[1], topk=1800)
    indices, valid = indices.numpy(), valid.numpy()
    for b in range(data.shape[0]):
        n_ref = int((ref[b, :, 0] >= 0).sum())
        assert 200 < n_ref < 1800 and valid[b].sum() == n_ref
        np.testing.assert_array_equal(data[b, indices[b, :n_ref]], ref[b, :n_ref])  # same boxes, same order


@pytest.mark.gluoncv
def test_multiclass_nms_matches_gluoncv(inputs, mx_ref):
    probs = inputs["det_prob"]
    boxes = np.transpose(inputs["det_box"], (0, 2, 1, 3))  # (B, N, C, 4)
    ids, scores, out_boxes, rois = ops.multiclass_nms(boxes, probs[..., 1:], max_detections=1000)
    for b in range(probs.shape[0]):
        ref = mx_ref[f"det{b}"]
        ref = ref[ref[:, 0] >= 0]
        keep = ids[b].numpy() >= 0
        ours = [ids[b].numpy()[keep, None], scores[b].numpy()[keep, None], out_boxes[b].numpy()[keep]]
        ours = np.concatenate(ours, 1)
        assert 300 < len(ref) < 1000 and len(ours) == len(ref)
        np.testing.assert_array_equal(ours, ref)  # no tied scores here, so the order is defined
        np.testing.assert_array_equal(boxes[b, rois[b].numpy()[keep], ids[b].numpy()[keep]], ref[:, 2:])


@pytest.mark.gluoncv
@pytest.mark.parametrize("size", [7, 14])
def test_roi_align_matches_mxnet(inputs, mx_ref, size):
    feats = nchw_to_nhwc(inputs["roi_feat"])
    ours = ops.roi_align(feats, inputs["roi_rois"], (size, size), 1.0 / ROI_STRIDE).numpy()
    ref = mx_ref[f"roi{size}"].reshape(2, -1, 3, size, size).transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.gluoncv
def test_multilevel_roi_align_matches_gluoncv(inputs, mx_ref):
    feats = [nchw_to_nhwc(inputs[f"fpn_feat{i}"]) for i in range(4)]
    rois = inputs["fpn_rois"]
    levels = ops.fpn_roi_levels(rois).numpy()
    assert set(np.unique(levels)) == {2, 3, 4, 5}
    ours = ops.multilevel_roi_align(feats, rois, (14, 14)).numpy()
    ref = mx_ref["fpn14"].reshape(2, -1, 3, 14, 14).transpose(0, 1, 3, 4, 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.gluoncv
@pytest.mark.parametrize("m", [14, 28])
def test_mask_fill_matches_gluoncv(inputs, mx_ref, m):
    ours = ops.paste_masks(inputs[f"mask{m}"], inputs[f"mask{m}_box"], (160, 120), fast_fill=True)
    ref = mx_ref[f"fill{m}"]
    assert ref.sum() > 1000
    np.testing.assert_array_equal(ours, ref)


# ---------------------------------------------------------------------------------------------
# XLA: each op compiled once for its static shapes, equal to eager.


def _xla(fn, *args):
    return tf.function(fn, jit_compile=True)(*args)


def test_ops_under_xla_equal_eager(inputs):
    checks = {
        "anchors": (lambda: ops.fpn_anchors(FPN_FEATS)[1], ()),
        "decode": (lambda d, a: ops.decode_boxes(d, a, clip=4.42), (inputs["dec_delta"], inputs["dec_anchor"])),
        "clip": (lambda b: ops.clip_boxes(b, (410, 530)), (inputs["clip_box"],)),
        "iou": (lambda a, b: ops.box_iou(a, b), (inputs["enc_box"], inputs["enc_anchor"])),
        "box_nms": (
            lambda b, s: ops.box_nms(b, s, 0.5, 1000, topk=1800),
            (inputs["nms_data"][..., 1:], inputs["nms_data"][..., 0]),
        ),
        "rpn": (
            lambda a, s, d: ops.rpn_proposals(a, s, d, (190, 290), 1500, 600, min_size=16),
            (inputs["rpn_anchor"][0], inputs["rpn_score"][..., 0], inputs["rpn_delta"]),
        ),
        "multiclass": (
            lambda b, s: ops.multiclass_nms(b, s, max_detections=300),
            (np.transpose(inputs["det_box"], (0, 2, 1, 3)), inputs["det_prob"][..., 1:]),
        ),
        "roi_align": (
            lambda f, r: ops.roi_align(f, r, (14, 14), 1.0 / ROI_STRIDE),
            (nchw_to_nhwc(inputs["roi_feat"]), inputs["roi_rois"]),
        ),
        "fpn_roi_align": (
            lambda *a: ops.multilevel_roi_align(list(a[:4]), a[4], (7, 7)),
            tuple(nchw_to_nhwc(inputs[f"fpn_feat{i}"]) for i in range(4)) + (inputs["fpn_rois"],),
        ),
    }
    for name, (fn, args) in checks.items():
        eager = tf.nest.flatten(fn(*args))
        compiled = tf.nest.flatten(_xla(fn, *args))
        for e, c in zip(eager, compiled, strict=True):
            if e.dtype.is_floating:
                np.testing.assert_allclose(c.numpy(), e.numpy(), rtol=1e-5, atol=1e-5, err_msg=name)
            else:
                np.testing.assert_array_equal(c.numpy(), e.numpy(), err_msg=name)


def test_roi_align_plain_path_equals_xla_path():
    """SavedModel export traces RoIAlign without XLA (stock_tf_ops); both forms give one result."""
    from kseg.ops.runtime import stock_tf_ops

    rng = np.random.default_rng(5)
    features = rng.standard_normal((2, 11, 13, 8)).astype("float32")
    corners = rng.uniform(-20, 230, (2, 40, 2, 2)).astype("float32")
    rois = np.concatenate([corners.min(2), corners.max(2)], -1)
    fused = ops.roi_align(features, rois, (7, 7), 1 / 16).numpy()
    with stock_tf_ops():
        plain = ops.roi_align(features, rois, (7, 7), 1 / 16).numpy()
    np.testing.assert_allclose(fused, plain, rtol=1e-6, atol=1e-6)
    assert np.abs(plain).max() > 0.1


@pytest.mark.parametrize("compiled", [True, False])
def test_roi_align_gradient_is_its_transpose(compiled):
    """RoIAlign is linear in the features: its gradient must be the transpose of the map it applies. The map is
    read off the forward pass itself (features that are one-hot in each cell), independently of the backward
    kseg writes (one accumulator, tap by tap); rois reach past the borders and are smaller than a cell."""
    from kseg.ops.runtime import stock_tf_ops

    batch, height, width, channels = 2, 9, 13, 3
    rng = np.random.default_rng(4)
    rois = tf.constant(np.stack([[[0, 0, 40, 30], [-6, 3, 60, 70], [10, 12, 11, 12.5], [30, 20, 90, 55]]] * batch),
                       tf.float32)  # fmt: skip
    upstream = tf.constant(rng.normal(size=(batch, 4, 7, 7, channels)).astype(np.float32))
    features = tf.constant(rng.normal(size=(batch, height, width, channels)).astype(np.float32))
    scope = stock_tf_ops() if not compiled else __import__("contextlib").nullcontext()
    with scope:
        with tf.GradientTape() as tape:
            tape.watch(features)
            pooled = ops.roi_align(features, rois, (7, 7), 0.25)
        gradient = tape.gradient(pooled, features, output_gradients=upstream).numpy()
        one_hot = tf.reshape(tf.eye(height * width), [1, height, width, height * width])
        basis = ops.roi_align(tf.tile(one_hot, [batch, 1, 1, 1]), rois, (7, 7), 0.25).numpy()  # [B, N, 7, 7, HW]
    expected = np.einsum("bnpqc,bnpqk->bkc", upstream.numpy(), basis).reshape(batch, height, width, channels)
    np.testing.assert_allclose(gradient, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected).sum() > 0
