"""GluonCV Mask R-CNN reference data (run ONLY with .venv-gluoncv; never imports kseg).

    .venv-gluoncv/bin/python tools/gluoncv_rcnn_reference.py --models all --out DIR \
        [--seed 0] [--short 320 --max-size 512] [--interp 2] [--images a.jpg b.jpg]

Builds ``get_model(name, pretrained=False, pretrained_base=False)``, fills it with seeded,
calibrated random weights, writes ``DIR/NAME.params`` (``save_parameters``), ``DIR/NAME.params_names.txt``
(``name (shape)`` in file order) and ``DIR/NAME.npz`` (compressed). Images default to every
``/work/shared/realdata/coco_person/val2017/*.jpg``. Each image runs ``net(x)`` and a step-by-step re-run
through the sub-blocks with GluonCV's exact op sequence; ids/scores/bboxes/masks must be bit-identical.

npz keys (``LV`` = ``c4`` for C4 models, ``p2``..``p6`` for FPN; ``N`` = 1000; ``K`` = 8):
  meta (JSON: init scheme, calibration scales, versions, timings, stats), anchors_base/LV (A, 4) base anchors
  img{i}/path, image (H0,W0,3 uint8 RGB, mx.image.imread), resized (H,W,3 uint8), input (1,3,H,W float32),
  scale (= H/H0, GluonCV's im_scale), orig_size [H0, W0],
  features/LV (1,C,h,w) ``net.features`` outputs; FPN img0 only: features/c2..c5 (backbone stage outputs)
  rpn/LV/anchors (n,4), rpn/LV/scores (n,) sigmoid, rpn/LV/deltas (n,4) raw loc, rpn/LV/proposals (n,5)
    [score, x1, y1, x2, y2] pre-NMS (decoded, clipped, min-size invalid -> all -1); order (y, x, anchor)
  rpn_scores (N,), rpn_boxes (N,4): post-NMS proposals (the RoIs), roi_levels (N,) FPN level of each RoI
  roi_feats (K,C,R,R), box_feat (K,D): first K RoIs; cls_logits (N,81), cls_prob (N,81) softmax,
  box_pred (N,80,4) raw deltas; ids (N,) float (-1 = padding), scores (N,), bboxes (N,4) network-input coords
  det_roi_levels (N,) (FPN), mask_roi_feats (K,C,R,R), mask_logits (K,80,M,M) of the first K detections,
  masks_raw (N,M,M) sigmoid of the detection's class channel, masks_pasted (n<=100,H0,W0 uint8) from
  ``mask.fill(masks_raw, bboxes / scale, (W0, H0))`` (fast_fill; the exact path needs scipy's removed interp2d)

GluonCV 0.10.5 / MXNet 1.9.1 inference facts (read from the code, checked by this re-run):
* Input: ``resize_short_within(img, short, max_size, interp=2)`` (load_test/transform_test: OpenCV
  INTER_AREA; MaskRCNNDefaultValTransform uses interp=1 bilinear), scale = min(short/min(h,w),
  max_size/max(h,w)), sizes round(); to_tensor (/255) then ImageNet mean/std; batch 1.
* features: C4 = stem..layer3 (stride 16, 1024 ch; R18 256 ch); layer4 is ``top_features`` run on RoIs.
  FPN = [P2..P6], 256 ch: lateral 1x1 (bias) on the last ReLU of each stage, top-down nearest x2 +
  slice_like crop + add, 3x3 output conv; P6 = 3x3/2 pad 1 conv on the P5 *lateral* (not on P5 output).
* RPN: 3x3 conv (1024) + ReLU, score (A, sigmoid), loc (4A); flatten NHWC -> (h*w*A). One shared head over
  all FPN levels. Anchors: Detectron legacy (see anchors_base), FPN one size per level (32..512 on P2..P6).
  Proposal: box_decode stds 1, clip dw/dh at 4.42 *before* exp, widths x2-x1 (no +1); clip to [0, W]/[0, H]
  (not W-1); "invalid" (score/box -1) only if x2-x1+1 < 1, which decode+clip never produce, so flat
  zero-width/height boxes clipped at the border survive (a few appear here: stats "flat_rois"). Levels
  are concatenated, then ONE box_nms (thresh 0.7, topk=6000 over all levels together, force_suppress,
  valid_thresh 0) and the first 1000 rows are kept (test).
* RoIAlign: contrib.ROIAlign(pooled 14x14 (FPN R18: 7x7), 1/stride, sample_ratio=2, aligned=False).
  FPN level = clip(floor(4 + log2(sqrt((x2-x1+1)(y2-y1+1))/224 + 1e-6)), 2, 5); P6 never pooled; each level
  pools RoIs masked to batch id -1 and the levels are summed. MXNet 1.9.1's *CPU* kernel mishandles
  batch id -1 (writes ``top_data[n] = 0`` -- the wrong element, leaves the RoI's block uninitialised, and
  zeroes elements of RoI 0 in a thread race); this script patches ROIAlign to the GPU kernel's semantics
  (masked RoIs -> 0), which leaves valid RoIs untouched.
* Box head: C4 = layer4 (stride 2 on 14x14 -> 7x7) + global avg pool; FPN R50/R101 = AvgPool 3/2/1
  (count_include_pad) 14->7, flatten (C,H,W order), FC1024+ReLU x2; FPN R18 = flatten 7x7, FC x2.
  class_predictor 81 (index 0 = background), box_predictor 320 = 80 classes x (dx,dy,dw,dh).
* Decode: softmax; MultiPerClassDecoder drops column 0 (id k = softmax column k+1; box_pred row k),
  score <= 0.01 -> id -1, score 0; boxes
  box_decode stds (0.1,0.1,0.2,0.2), clip 4.42, no +1, NOT clipped to the image. Per-class box_nms on
  (80, N, 6) [id, score, box]: thresh 0.5, topk -1, valid_thresh 1e-4, id_index 0, force_suppress False
  (force_nms False); the nms output rows are (class-major) 80*N; argsort(scores, descending) keeps the
  top rcnn_max_dets = 1000 (not 100); padding rows are all -1 (ids, scores, boxes). Exact score ties kept
  the class-major row order (use a stable descending sort); flat RoIs pool to all-zero features (their
  samples fall outside the map), so their detections tie exactly.
* Masks: the 1000 kept boxes are RoIAligned again (same rule as above), C4 re-runs layer4; mask head
  (C4: deconv 2x2/2 + ReLU; FPN: 4 (R18: 2) x [conv3x3 256 + ReLU], deconv, ReLU) -> 1x1 conv 80; the
  channel clip(id, 0, 80) is picked (padding id -1 -> channel 0) and sigmoided. M = 14 (C4, FPN R18) or 28.

Weights (seed only; images never touch them): He-normal weights (deconv fan-in = in channels), bias/beta
N(0, 0.1), gamma U(0.5, 1), BN stats drawn and then calibrated as in tools/gluoncv_reference.py, in graph
order on the symbolic graph, over a seeded dead-leaves image (C4's layer4 on its pooled RoIs); then every
residual branch's last BN is scaled by 0.3. FPN output convs P2..P6 are scaled to unit (per-channel
centred) std. Output layers are shifted per channel to zero mean and scaled to a std on the calibration
image: RPN score 1.0 (keeps sigmoid scores clear of float32 saturation ties), RPN loc 0.1, class logits
1.5 plus +10 on the background bias (most RoIs background, a spread of confident ones), box deltas 1.0,
mask logits 3.0. The .params file is the source of truth.
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import sys
import time

import gluoncv
import mxnet as mx
import numpy as np
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms import mask as tmask
from gluoncv.data.transforms.presets import rcnn as rcnn_presets
from gluoncv_reference import CALIB_MIN_SAMPLES, RESIDUAL_BRANCH_SCALE, atomic_write, walk

MODELS = ("mask_rcnn_resnet18_v1b_coco", "mask_rcnn_fpn_resnet18_v1b_coco", "mask_rcnn_resnet50_v1b_coco",
          "mask_rcnn_fpn_resnet50_v1b_coco", "mask_rcnn_resnet101_v1d_coco", "mask_rcnn_fpn_resnet101_v1d_coco")
DEFAULT_IMAGES = "/work/shared/realdata/coco_person/val2017/*.jpg"
FEW, PASTE_TOP, CAL_ROIS = 8, 100, 256
TARGET_STD = {"rpn_score": 1.0, "rpn_loc": 0.1, "cls": 1.5, "box": 1.0, "mask": 3.0}
BACKGROUND_LOGIT = 10.0  # added to the class-0 bias so that most RoIs are background
CAL_SHAPE = (1, 3, 320, 448)

_ROIALIGN = mx.nd.contrib.ROIAlign


def roi_align_gpu_semantics(data, rois, *args, **kwargs):
    """contrib.ROIAlign with RoIs of batch id < 0 giving zeros (as the GPU kernel does)."""
    valid = rois.slice_axis(axis=1, begin=0, end=1) >= 0
    out = _ROIALIGN(data, mx.nd.where(valid.broadcast_like(rois), rois, mx.nd.zeros_like(rois)), *args, **kwargs)
    return mx.nd.where(valid.reshape((-1, 1, 1, 1)).broadcast_like(out), out, mx.nd.zeros_like(out))


def nd(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def levels(net):
    return [f"p{i}" for i in range(2, 7)] if net.num_stages > 1 else ["c4"]


def as_symbol(block):
    out = block(mx.sym.var("data"))
    return mx.sym.Group(out) if isinstance(out, (list, tuple)) else out


def resolve_shapes(net, rois=8):
    """Resolve deferred parameter shapes with one forward pass over ``rois`` RoIs instead of the test-time
    1000 (no shape depends on the RoI count and init_params redraws every value), then restore the counts."""
    keep = net._rpn_test_post_nms, net.rpn._test_post_nms, net._rcnn_max_dets
    net._rpn_test_post_nms = net.rpn._test_post_nms = net._rcnn_max_dets = rois
    try:
        net(mx.nd.zeros((1, 3, 256, 256)))
    finally:
        net._rpn_test_post_nms, net.rpn._test_post_nms, net._rcnn_max_dets = keep


def init_params(net, seed):
    params = net._collect_params_with_prefix()
    deconv = {id(b.weight) for _, b in walk(net) if isinstance(b, mx.gluon.nn.Conv2DTranspose)}
    rng = np.random.default_rng([seed, 0])
    for key in sorted(params):
        p, shape = params[key], params[key].shape
        if isinstance(p, mx.gluon.Constant):
            continue  # the anchors
        if key.endswith("weight"):
            fan_in = shape[0] if id(p) in deconv else int(np.prod(shape[1:]))
            v = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif key.endswith(("bias", "beta")):
            v = rng.normal(0.0, 0.1, shape)
        elif key.endswith("gamma"):
            v = rng.uniform(0.5, 1.0, shape)
        elif key.endswith("running_mean"):
            v = 0.1 * rng.standard_normal(shape)
        elif key.endswith("running_var"):
            v = rng.uniform(0.5, 2.0, shape)
        else:
            raise RuntimeError(f"unexpected parameter {key}")
        p.set_data(mx.nd.array(v.astype(np.float32)))


def nd_op(op):
    """The imperative (mx.nd) function of a symbol JSON op name."""
    for space, name in ((mx.nd, op), (mx.nd._internal, op), (mx.nd.contrib, op.replace("_contrib_", "", 1))):
        if hasattr(space, name):
            return getattr(space, name)
    raise RuntimeError(f"no mx.nd function for op {op}")


def bn_stats_update(a, rm, rv):
    """Rewrite running stats ``rm``/``rv`` from the stats of the BN input ``a`` (NCHW)."""
    a = a.asnumpy().astype(np.float64)
    n, c, h, w = a.shape
    if n * h * w >= CALIB_MIN_SAMPLES:
        mean, var = a.mean(axis=(0, 2, 3)), a.var(axis=(0, 2, 3))
    else:
        mean, var = np.full(c, a.mean()), np.full(c, a.var())
    var = np.maximum(var, 0.01 * var.mean() + 1e-12)
    rm.set_data(mx.nd.array((mean + np.sqrt(var) * rm.data().asnumpy()).astype(np.float32)))
    rv.set_data(mx.nd.array((var * rv.data().asnumpy()).astype(np.float32)))


def calibrate_bn(block, x):
    """Rewrite each BN's running stats (in graph order) from the stats of its real input.

    One pass: the symbol's JSON nodes (topologically ordered) are evaluated imperatively with mx.nd; a
    BatchNorm node first gets its stats from its input (as produced by the network whose earlier BNs are
    already calibrated), then runs with them."""
    nodes = json.loads(as_symbol(block).tojson())["nodes"]
    pmap = {p.name: p for p in block.collect_params().values()}
    uses = [0] * len(nodes)
    for node in nodes:
        for i in node["inputs"]:
            uses[i[0]] += 1
    outs = {}
    for k, node in enumerate(nodes):
        if node["op"] == "null":
            outs[k] = [x if node["name"] == "data" else pmap[node["name"]].data()]
            continue
        if node["op"] == "BatchNorm":
            rm, rv = (pmap[nodes[node["inputs"][j][0]]["name"]] for j in (3, 4))
            bn_stats_update(outs[node["inputs"][0][0]][node["inputs"][0][1]], rm, rv)
            outs.update({node["inputs"][j][0]: [p.data()] for j, p in ((3, rm), (4, rv))})
        args = [outs[i[0]][i[1]] for i in node["inputs"]]
        attrs = {a: v for a, v in node.get("attrs", {}).items() if not a.startswith("__")}
        out = nd_op(node["op"])(*args, **attrs)
        outs[k] = list(out) if isinstance(out, (list, tuple)) else [out]
        for i in node["inputs"]:
            uses[i[0]] -= 1
            if not uses[i[0]]:
                del outs[i[0]]


def damp_residual_branches(block):
    """Scale gamma/beta of the BN ending each residual branch (input of an add, not a 'down' BN)."""
    nodes = json.loads(as_symbol(block).tojson())["nodes"]
    pmap = {p.name: p for p in block.collect_params().values()}
    for node in (n for n in nodes if n["op"] in ("elemwise_add", "_plus", "broadcast_add")):
        for src in (nodes[i[0]] for i in node["inputs"]):
            if src["op"] == "BatchNorm" and "down" not in src["name"]:
                for k in (1, 2):
                    p = pmap[nodes[src["inputs"][k][0]]["name"]]
                    p.set_data(p.data() * RESIDUAL_BRANCH_SCALE)


def rescale(weight, bias, outputs, target, center=True):
    """Scale a layer (and shift it per output channel to zero mean) to output std ``target`` on ``outputs``."""
    y = np.concatenate([np.moveaxis(nd(o), 1, -1).reshape(-1, o.shape[1]) for o in outputs]).astype(np.float64)
    mu = y.mean(axis=0) if center else np.zeros(y.shape[1])
    s = target / (y - y.mean(axis=0)).std()
    bias.set_data(mx.nd.array(((bias.data().asnumpy() - mu) * s).astype(np.float32)))
    weight.set_data(weight.data() * s)
    return float(s)


def rescale_layer(layer, outputs, target):
    return rescale(layer.weight, layer.bias, outputs, target)


def rpn_head(net, f):
    """(sigmoid scores (1,n,1), raw deltas (1,n,4)) of one level, as RPN/RPNHead compute them."""
    if net.num_stages > 1:
        return net.rpn.rpn_head(f)[:2]
    h = net.rpn.conv1(f)
    raw = net.rpn.score(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 1))
    return mx.nd.sigmoid(raw), net.rpn.loc(h).transpose(axes=(0, 2, 3, 1)).reshape((0, -1, 4))


def rpn_forward(net, x, feats, rec):
    rpn, img, pres = net.rpn, mx.nd.zeros_like(x), []
    for i, (lv, f) in enumerate(zip(levels(net), feats, strict=True)):
        anchors = (rpn.anchor_generator[i] if net.num_stages > 1 else rpn.anchor_generator)(f)
        score, delta = rpn_head(net, f)
        pres.append(rpn.region_proposer(anchors, score, delta, img))
        rec.update({f"rpn/{lv}/anchors": anchors[0], f"rpn/{lv}/scores": score[0, :, 0],
                    f"rpn/{lv}/deltas": delta[0], f"rpn/{lv}/proposals": pres[-1][0]})
    pre = pres[0] if len(pres) == 1 else mx.nd.concat(*pres, dim=1)
    tmp = mx.nd.contrib.box_nms(pre, overlap_thresh=rpn._nms_thresh, topk=rpn._test_pre_nms, coord_start=1,
                                score_index=0, id_index=-1, force_suppress=True)
    result = mx.nd.slice_axis(tmp, axis=1, begin=0, end=rpn._test_post_nms)
    return mx.nd.slice_axis(result, axis=-1, begin=0, end=1), mx.nd.slice_axis(result, axis=-1, begin=1, end=None)


def roi_pool(net, feats, rois):
    if net.num_stages > 1:
        return net._pyramid_roi_feats(mx.nd, feats, rois, net._roi_size, net._strides, roi_mode=net._roi_mode)
    return mx.nd.contrib.ROIAlign(feats[0], rois, net._roi_size, 1.0 / net._strides, sample_ratio=2)


def roi_levels(net, rois):
    _, x1, y1, x2, y2 = mx.nd.split(rois, axis=-1, num_outputs=5)
    lvl = mx.nd.floor(4 + mx.nd.log2(mx.nd.sqrt((x2 - x1 + 1) * (y2 - y1 + 1)) / 224.0 + 1e-6))
    return mx.nd.clip(lvl, net._min_stage, min(net._max_stage, 5)).reshape((-1,)).astype("int32")


def box_head(net, feats, rois):
    pooled = roi_pool(net, feats, rois)
    top = net.top_features(pooled) if net.top_features is not None else pooled
    box_feat = (mx.nd.contrib.AdaptiveAvgPooling2D(top, output_size=1) if net.box_features is None
                else net.box_features(top))
    return pooled, top, box_feat, net.class_predictor(box_feat), net.box_predictor(box_feat)


def calibration_image(seed):
    """Seeded dead-leaves image (occluding discs, power-law radii: natural-image statistics), normalised
    like a real image (/255, ImageNet mean/std)."""
    rng, (h, w) = np.random.default_rng([seed, 1]), CAL_SHAPE[2:]
    img = np.tile(rng.uniform(0, 1, 3), (h, w, 1))
    yy, xx = np.mgrid[:h, :w]
    for _ in range(400):
        r = min(h, w) * 0.4 * rng.uniform(0.02, 1.0) ** 2
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    x = (img - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    return mx.nd.array(x.transpose(2, 0, 1)[None].astype(np.float32))


def spread_rois(boxes, n):
    """n RoIs (batch id 0) spread evenly over the ranked proposals ``boxes`` (1, N, 4)."""
    idx = mx.nd.array(np.linspace(0, boxes.shape[1] - 1, n).round())
    return mx.nd.concat(mx.nd.zeros((n, 1)), mx.nd.take(boxes[0], idx), dim=-1)


def calibrate(net, seed):
    x = calibration_image(seed)
    fpn = net.num_stages > 1
    calibrate_bn(net.features, x)
    if net.top_features is not None:
        _, boxes = rpn_forward(net, x, [net.features(x)], {})
        calibrate_bn(net.top_features, roi_pool(net, [net.features(x)], spread_rois(boxes, 32)))
        damp_residual_branches(net.top_features)
    damp_residual_branches(net.features)
    scales = {}
    if fpn:  # unit std for every FPN output level (P6 is computed from the P5 lateral, not from P5)
        pmap = {p.name: p for p in net.features.collect_params().values()}
        for k, f in zip(range(2, 7), net.features(x), strict=True):
            scales[f"P{k}_conv1"] = rescale(pmap[f"P{k}_conv1_weight"], pmap[f"P{k}_conv1_bias"], [f], 1.0, False)
    feats = list(net.features(x)) if fpn else [net.features(x)]
    head = net.rpn.rpn_head if fpn else net.rpn
    hidden = [head.conv1(f) for f in feats]
    scales["rpn_score"] = rescale_layer(head.score, [head.score(h) for h in hidden], TARGET_STD["rpn_score"])
    scales["rpn_loc"] = rescale_layer(head.loc, [head.loc(h) for h in hidden], TARGET_STD["rpn_loc"])
    _, boxes = rpn_forward(net, x, feats, {})
    _, top, _, cls, box = box_head(net, feats, spread_rois(boxes, CAL_ROIS))
    scales["cls"] = rescale_layer(net.class_predictor, [cls], TARGET_STD["cls"])
    bias = net.class_predictor.bias.data()
    bias[0] += BACKGROUND_LOGIT
    net.class_predictor.bias.set_data(bias)
    scales["box"] = rescale_layer(net.box_predictor, [box], TARGET_STD["box"])
    mask = net.mask.mask(mx.nd.relu(net.mask.deconv(top)))
    scales["mask"] = rescale_layer(net.mask.mask, [mask], TARGET_STD["mask"])
    return scales


def staged_forward(net, x, rec):
    """MaskRCNN.hybrid_forward (inference) re-run op by op, recording intermediates into ``rec``."""
    feats = list(net.features(x)) if net.num_stages > 1 else [net.features(x)]
    rec.update({f"features/{lv}": f for lv, f in zip(levels(net), feats, strict=True)})
    rpn_scores, rpn_box = rpn_forward(net, x, feats, rec)
    num_roi, c = net._rpn_test_post_nms, net.num_class
    rpn_roi = mx.nd.concat(mx.nd.repeat(mx.nd.arange(0, 1), num_roi).reshape((-1, 1)), rpn_box.reshape((-1, 4)),
                           dim=-1)
    pooled, _, box_feat, cls_pred, box_pred = box_head(net, feats, rpn_roi)
    cls_pred, box_pred = cls_pred.reshape((1, num_roi, c + 1)), box_pred.reshape((1, num_roi, c, 4))
    cls_prob = mx.nd.softmax(cls_pred, axis=-1)
    cls_ids, scores = net.cls_decoder(cls_prob)
    cls_ids = cls_ids.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
    scores = scores.transpose((0, 2, 1)).reshape((0, 0, 0, 1))[0]
    bbox = net.box_decoder(box_pred.transpose((0, 2, 1, 3))[0], rpn_box)
    res = mx.nd.concat(cls_ids, scores, bbox, dim=-1)
    if net.force_nms:
        res = res.reshape((1, -1, 0))
    res = mx.nd.contrib.box_nms(res, overlap_thresh=net.nms_thresh, topk=net.nms_topk, valid_thresh=0.0001,
                                id_index=0, score_index=1, coord_start=2, force_suppress=net.force_nms)
    result = mx.nd.stack(res.reshape((-3, 0)), axis=0)
    ids, scores, boxes = (mx.nd.slice_axis(result, axis=-1, begin=b, end=e) for b, e in ((0, 1), (1, 2), (2, 6)))
    n = net._rcnn_max_dets
    order = mx.nd.argsort(scores.squeeze(axis=-1), axis=1, is_ascend=False)
    topk = mx.nd.slice_axis(order, axis=1, begin=0, end=n)
    batch_id = mx.nd.repeat(mx.nd.arange(0, 1), n)
    indices = mx.nd.stack(batch_id, topk.reshape((-1,)), axis=0)
    ids = mx.nd.gather_nd(ids, indices).reshape((-4, 1, n, 1))
    scores = mx.nd.gather_nd(scores, indices).reshape((-4, 1, n, 1))
    boxes = mx.nd.gather_nd(boxes, indices).reshape((-4, 1, n, 4))
    padded_rois = mx.nd.concat(batch_id.reshape((-1, 1)), boxes.reshape((-3, 0)), dim=-1)
    mask_feat = roi_pool(net, feats, padded_rois)
    rcnn_mask = net.mask(net.top_features(mask_feat) if net.top_features is not None else mask_feat)
    class_ids = mx.nd.clip(ids.reshape((-1,)), 0, c)
    masks = mx.nd.gather_nd(rcnn_mask, mx.nd.stack(batch_id, mx.nd.arange(0, n), class_ids, axis=0))
    masks = mx.nd.sigmoid(masks.reshape((-4, 1, n, 0, 0)))
    rec.update({"rpn_scores": rpn_scores[0, :, 0], "rpn_boxes": rpn_box[0], "roi_feats": pooled[:FEW],
                "box_feat": box_feat.reshape((num_roi, -1))[:FEW], "cls_logits": cls_pred[0],
                "cls_prob": cls_prob[0], "box_pred": box_pred[0], "mask_roi_feats": mask_feat[:FEW],
                "mask_logits": rcnn_mask[0, :FEW]})
    if net.num_stages > 1:
        rec.update({"roi_levels": roi_levels(net, rpn_roi), "det_roi_levels": roi_levels(net, padded_rois)})
    return ids, scores, boxes, masks


def backbone_stages(net, x, feats):
    """FPN only: backbone outputs C2..C5 (the inputs of P2..P5_conv_lat), checked against ``feats``."""
    sym = as_symbol(net.features)
    nodes, internals = json.loads(sym.tojson())["nodes"], sym.get_internals()
    by_name = {n["name"]: n for n in nodes}
    names = [nodes[by_name[f"P{k}_conv_lat"]["inputs"][0][0]]["name"] + "_output" for k in range(2, 6)]
    group = mx.sym.Group([internals[n] for n in names] + list(sym))
    outs = mx.gluon.SymbolBlock(group, mx.sym.var("data"), params=net.features.collect_params())(x)
    assert all(np.array_equal(nd(a), nd(b)) for a, b in zip(outs[4:], feats, strict=True))
    return {f"features/c{k}": o for k, o in zip(range(2, 6), outs[:4], strict=True)}


def load_image(path, short, max_size, interp):
    img = mx.image.imread(path)
    resized = timage.resize_short_within(img, short, max_size, interp=interp)
    x = mx.nd.image.normalize(mx.nd.image.to_tensor(resized), mean=(0.485, 0.456, 0.406),
                              std=(0.229, 0.224, 0.225)).expand_dims(0)
    if interp == 2:  # identical to GluonCV's own test loader
        assert np.array_equal(rcnn_presets.load_test(path, short, max_size)[0].asnumpy(), x.asnumpy())
    return img.asnumpy(), resized.asnumpy(), x


def run_model(name, args):
    t0 = time.perf_counter()
    mx.random.seed(args.seed)
    net = gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    net.initialize(ctx=mx.cpu())
    resolve_shapes(net)
    init_params(net, args.seed)
    scales = calibrate(net, args.seed)
    if args.rois:  # after the calibration, which is the same whatever the test-time counts
        net._rpn_test_post_nms = net.rpn._test_post_nms = net._rcnn_max_dets = args.rois
    params_path = os.path.join(args.out, f"{name}.params")
    atomic_write(params_path, net.save_parameters)
    saved = mx.nd.load(params_path)
    with open(os.path.join(args.out, f"{name}.params_names.txt"), "w") as f:
        f.writelines(f"{k} {tuple(v.shape)}\n" for k, v in saved.items())
    t_init = time.perf_counter() - t0
    arrays, stats = {}, []
    ags = net.rpn.anchor_generator if net.num_stages > 1 else [net.rpn.anchor_generator]
    for lv, ag in zip(levels(net), ags, strict=True):
        arrays[f"anchors_base/{lv}"] = ag.anchors.data()[0, 0, 0, 0].reshape((-1, 4)).asnumpy()
    for i, path in enumerate(args.images):
        image, resized, x = load_image(path, args.short, args.max_size, args.interp)
        t1 = time.perf_counter()
        out = None if args.no_check else [o.asnumpy() for o in net(x)]
        t_net = time.perf_counter() - t1
        rec = {}
        staged = [o.asnumpy() for o in staged_forward(net, x, rec)]
        if out is None:  # --no-check: trust the staged re-run (checked bit-identical when the data were made)
            out = staged
        for key, a, b in zip(("ids", "scores", "bboxes", "masks"), out, staged, strict=True):
            assert a.shape == b.shape and np.array_equal(a, b), f"{name} img{i}: staged {key} != net(x)"
        if i == 0 and net.num_stages > 1:
            rec.update(backbone_stages(net, x, [rec[f"features/{lv}"] for lv in levels(net)]))
        ids, scores, bboxes, masks = (o[0] for o in out)
        ids, scores = ids[:, 0], scores[:, 0]
        scale = resized.shape[0] / image.shape[0]
        n_paste = int(min(PASTE_TOP, (ids >= 0).sum()))
        pasted = tmask.fill(masks[:n_paste], bboxes[:n_paste] / scale, (image.shape[1], image.shape[0]))
        rec.update({"path": np.array(path), "image": image, "resized": resized, "input": x, "scale": np.float32(scale),
                    "orig_size": np.array(image.shape[:2]), "ids": ids, "scores": scores, "bboxes": bboxes,
                    "masks_raw": masks, "masks_pasted": pasted})
        arrays.update({f"img{i}/{k}": nd(v) for k, v in rec.items()})
        valid = scores[ids >= 0]
        rs = nd(rec["rpn_scores"])
        st = {"image": os.path.basename(path), "input_hw": list(x.shape[2:]), "net_s": round(t_net, 2),
              "staged_s": round(time.perf_counter() - t1 - t_net, 2), "valid": int(valid.size),
              "over_0.05": int((valid > 0.05).sum()), "over_0.5": int((valid > 0.5).sum()),
              "score_max": float(valid.max(initial=0)), "score_min": float(valid.min(initial=1)),
              "classes": int(np.unique(ids[ids >= 0]).size), "rpn_score_range": [float(rs.min()), float(rs.max())],
              "mask_fg_frac": float((masks[:n_paste] > 0.5).mean()), "pasted": n_paste,
              "flat_rois": int((np.diff(nd(rec["rpn_boxes"]).reshape(-1, 2, 2), axis=1) <= 0).any(-1).sum()),
              "tied_scores": int(valid.size - np.unique(valid).size)}
        stats.append(st)
        print(f"[{name}] {st}", flush=True)
    rpn = net.rpn
    config = {"rpn_test_pre_nms": rpn._test_pre_nms, "rpn_test_post_nms": rpn._test_post_nms,
              "rpn_nms_thresh": rpn._nms_thresh, "rpn_min_size": rpn.region_proposer._min_size,
              "rpn_clip": rpn.region_proposer._box_decoder._clip, "nms_thresh": net.nms_thresh,
              "nms_topk": net.nms_topk, "post_nms": net.post_nms, "force_nms": net.force_nms,
              "rcnn_max_dets": net._rcnn_max_dets, "roi_size": net._roi_size, "strides": net._strides,
              "box_stds": net.box_decoder._stds, "box_clip": net.box_decoder._clip,
              "cls_thresh": net.cls_decoder._thresh, "mask_size": list(masks.shape[1:])}
    print(f"[{name}] config {config}", flush=True)
    meta = {"model": name, "seed": args.seed, "config": config, "short": args.short, "max_size": args.max_size,
            "interp": args.interp,
            "num_param_arrays": len(saved), "calibration_scales": scales, "target_std": TARGET_STD,
            "cal_shape": CAL_SHAPE, "residual_branch_scale": RESIDUAL_BRANCH_SCALE, "stats": stats,
            "roi_align": "contrib.ROIAlign patched: batch id < 0 -> zeros (GPU kernel semantics)",
            "versions": {"gluoncv": importlib.metadata.version("gluoncv"), "mxnet": mx.__version__,
                         "numpy": np.__version__}, "init_s": round(t_init, 1)}
    arrays["meta"] = np.array(json.dumps(meta))

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(os.path.join(args.out, f"{name}.npz"), write_npz)
    total = time.perf_counter() - t0
    print(f"[{name}] {len(saved)} param arrays, init {t_init:.1f}s, total {total:.1f}s", flush=True)
    return {"model": name, "arrays": len(saved), "init_s": t_init, "total_s": total, "stats": stats}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--models", default="", help="comma-separated names, or 'all'")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", nargs="+", default=sorted(glob.glob(DEFAULT_IMAGES)))
    ap.add_argument("--short", type=int, default=320)
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--interp", type=int, default=2, help="2 = load_test (area), 1 = val transform (bilinear)")
    ap.add_argument("--rois", type=int, default=None,
                    help="test-time proposals and detections kept (GluonCV's own: 1000); the weights do not change")
    ap.add_argument("--out")
    ap.add_argument("--no-check", action="store_true",
                    help="skip net(x) and its bit-identity check against the staged run (half the time)")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    models = args.model + [m for m in args.models.split(",") if m]
    models = list(MODELS) if models == ["all"] else models
    if not models or not args.out or any(m not in MODELS for m in models):
        ap.error(f"need --out and --model/--models from {MODELS}")
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    mx.nd.contrib.ROIAlign = roi_align_gpu_semantics
    results = [run_model(m, args) for m in models]
    print("\nsummary:")
    for r in results:
        s = r["stats"]
        print(f"  {r['model']:34s} arrays={r['arrays']:4d} init={r['init_s']:5.1f}s total={r['total_s']:6.1f}s "
              f"net(x)/img={np.mean([t['net_s'] for t in s]):5.1f}s dets>0.05={[t['over_0.05'] for t in s]} "
              f"score range=[{min(t['score_min'] for t in s):.3f}, {max(t['score_max'] for t in s):.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
