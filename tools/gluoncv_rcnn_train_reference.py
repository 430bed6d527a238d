"""GluonCV Mask R-CNN *training* pieces on given inputs (run ONLY with .venv-gluoncv; never imports kseg).

    .venv-gluoncv/bin/python tools/gluoncv_rcnn_train_reference.py COMMAND --out OUT.npz [options]

Every command writes one ``np.savez`` file (written to a temp file, then renamed) and exits 0; a failure prints
one ``error: ...`` line and exits 1 (2 for bad arguments). Floats are float32 unless said. Every npz also has
``meta`` (a JSON string: command, arguments, versions, model config, seconds). ``i`` = image position, ``g`` =
object, ``k`` = polygon. B images per device, S sampled RoIs, P = max_pos, C = 80 classes, M = mask size.

reader --annotations FILE.json --images DIR [--keep-empty]
    ``gluoncv.data.COCOInstance`` (subclassed: CLASSES = the JSON's category names in ``getCatIds()`` order;
    ``skip_empty = not --keep-empty``; default ``min_object_area``) on a temp root holding
    ``annotations/<split>.json`` (a symlink to FILE) and one symlink to DIR per ``coco_url`` directory name.
    A JSON without ``coco_url`` gets it synthesised as ``synthesised/images/<file_name>`` in a temp copy.
    Keys: image_ids int64 (N,) in GluonCV's order; labels_{i} (G,5) (x1,y1,x2,y2,class) ((0,5) for an empty
    image kept by --keep-empty); num_polygons_{i} int32 (G,); polygon_{i}_{g}_{k} (K,2); category_ids int64
    and contiguous_ids int64 (json_id_to_contiguous as two aligned arrays); file_names str (N,);
    aspect_ratios float64 (N,) (width / height from the JSON, what the batch sampler sorts by).

transform --annotations FILE.json --images DIR --short S --max-size M --flip 0|1 [--keep-empty]
    ``MaskRCNNDefaultTrainTransform(S, M, net=None)`` on every reader item ``(mx.image.imread(path, 1), label,
    polygons)``, flip forced by running GluonCV's own ``random_flip`` with probability ``px = flip`` (so both
    of its ``np.random.choice`` draws are certain; asserted used once per image). Keys: image_ids int64, flip
    int32; per image: normalized_{i} (3,H,W), boxes_{i} (G,4), classes_{i} (G,), masks_{i} uint8 (G,H,W),
    resized_{i} uint8 (H,W,3) (what random_flip returned, i.e. resized + flipped, before to_tensor),
    orig_hw_{i} int32 (2,). An image GluonCV's transform raises on gets error_{i} (str) instead (an empty image
    kept by --keep-empty: label None; an object whose polygons were all dropped: pycocotools' frPyObjects([])
    raises IndexError), so the crafted-JSON tests can see it.

feature-sizes --model NAME --sizes 320x512,321x479,...
    ``infer_shape`` of the train transform's own ``net.features`` symbol(s) on (1,3,H,W). Keys: sizes int32
    (S,2) (H,W); feature_sizes int32 (S,L,2) (L = 1 for C4, 5 for FPN P2..P6).

rpn-targets --model NAME --in IN.npz      (IN: gt_boxes (G,4), image_hw int (2,) = resized H, W)
    Runs ``MaskRCNNDefaultTrainTransform(min(H, W), max(H, W), net, ashape=net.ashape, multi_stage=fpn)`` on a
    zero image of exactly (H, W) (its resize is then the identity, its box scale 1.0) with one rectangle polygon
    per gt, so the anchors, ``infer_shape`` crops and level concatenation are GluonCV's own. ``numpy.random.choice``
    is replaced during the call by a recorder returning the LARGEST ``size`` candidates (lowest indices
    survive). Keys: anchors (N,4) (as passed to RPNTargetGenerator), feature_sizes int32 (L,2), cls_target (N,)
    (1/0/-1), box_target (N,4), box_mask (N,4) (float64 in GluonCV, cast), positive_candidates and
    negative_candidates int64 (labelling without subsampling: the same sampler with unlimited quotas on the
    recorded IoUs; checked against the recorded choice calls), match int64 (N,) (argmax gt, every anchor),
    ious (N,G) (as the sampler saw them: invalid anchors -1), num_choice_calls int32, choice_{j}_candidates
    int64 and choice_{j}_size int64 (each recorded call).

rcnn-sampler --model NAME --in IN.npz --seed K   (IN: rois (B,R,4), scores (B,R), gt_boxes (B,G,4) -1 padded)
    ``net.sampler`` (the zoo's RCNNTargetSampler, built with per_device_batch_size = B) after
    ``mx.random.seed(K)``; scores go in as (B,R,1) like the RPN's. Keys: rois (B,S,4), samples (B,S),
    matches (B,S): its outputs unchanged.

rcnn-targets --model NAME --in IN.npz
    (IN: rois (B,S,4), samples (B,S), matches (B,S), gt_labels (B,G), gt_boxes (B,G,4), gt_masks (B,G,H,W))
    ``net.target_generator(rois, samples, matches, gt_labels[..., None], gt_boxes)`` as FasterRCNN.hybrid_forward
    calls it, then ``net.mask_target`` on the rows at ``indices`` as ForwardBackwardTask.forward_backward does.
    Keys: cls_target (B,S), box_target (B,P,C,4), box_mask (B,P,C,4), indices int64 (B,P), mask_target and
    mask_mask (B,P,C,M,M) (dropped when the two are over 64 MiB together, e.g. FPN R50/R101 with B = 2;
    full_masks_stored says so), always
    mask_target_selected / mask_mask_selected (B,P,M,M) (channel clip(cls - 1, 0, C - 1) of each row: its class;
    filler rows read channel 0, whose weight is 0), mask_rois (B,P,4), mask_matches (B,P), mask_cls_target (B,P).

losses --model NAME --in IN.npz [--rpn-smoothl1-rho 1/9] [--rcnn-smoothl1-rho 1]
    (IN: rpn_score (B,N,1) logits, rpn_box (B,N,4), rpn_cls_target (B,N), rpn_box_target, rpn_box_mask (B,N,4),
    cls_pred (B,S,C+1), cls_target (B,S), box_pred, box_target, box_mask (B,P,C,4), mask_pred (B,P,C,M,M)
    logits, mask_target, mask_mask (B,P,C,M,M))
    The five terms re-expressed with the script's Gluon losses and checked bit-for-bit against GluonCV's own
    ``ForwardBackwardTask.forward_backward`` (run with a stand-in net that returns these tensors; it also
    gives the gradients). Keys: rpn_loss1, rpn_loss2, rcnn_loss1, rcnn_loss2, mask_loss (B,); total ()
    (= rpn_loss.sum() + rcnn_loss.sum() + mask_loss.sum(), the script's order); metric_RPN_Conf,
    metric_RPN_SmoothL1, metric_RCNN_CrossEntropy, metric_RCNN_SmoothL1, metric_RCNN_Mask () (the logged
    values); grad_rpn_score, grad_rpn_box, grad_cls_pred, grad_box_pred, grad_mask_pred (d total / d input,
    before the trainer's 1/batch_size).

schedule --batch-size B --iters-per-epoch I --epochs E [--lr-decay-epoch 17,23] [--lr LR] [--lr-warmup W]
         [--lr-warmup-factor F] [--lr-decay D] [--start-epoch S0]
    train_mask_rcnn.py's lr logic replayed in Python. Keys: lr float64 ((E - S0) * I,) (the lr applied at
    every global iteration), iterations int64 (global ids), epoch int32, base_lr float64, lr_warmup float64.

reset-class --model NAME --seed K --classes A,B,... --reuse JSON --params-out FILE.params
    Seeded weights (the sibling tool's init_params) saved to FILE, then ``net.reset_class(classes,
    reuse_weights=JSON)`` (a list of names, or an object {new: old} of names or indices; a decimal key is a new
    index). Keys: the six class-layer arrays after it, by structural name (class_predictor.weight,
    class_predictor.bias, box_predictor.*, mask.mask.*), MXNet layout.

trainable --model NAME
    After get_model + initialize (+ one small inference forward to resolve deferred shapes), the script's
    train() settings: grad_req null everywhere, 'write' on collect_train_params(), wd_mult 0 on '.*bias'; a
    gluon.Trainer over collect_train_params(). For EVERY parameter: structural_names
    (``_collect_params_with_prefix`` keys), global_names, grad_req, wd_mult, shapes (str), trained bool (in the
    trainer), is_constant bool; plus train_patterns (str).

train-step --model NAME --seed K --in IN.npz [--params-out FILE.params] [--steps 2] [--lr 0.0033333333]
           [--wd 1e-4] [--momentum 0.9] [--rpn-smoothl1-rho 1/9] [--rcnn-smoothl1-rho 1]
    (IN, B = 1: image (1,3,H,W) normalised, gt_boxes (1,G,4), gt_labels (1,G), gt_masks (1,G,H,W) 0/1,
    rpn_cls_target (1,N), rpn_box_target, rpn_box_mask (1,N,4) (N = all anchors, P2 first, (y, x, anchor)),
    rois (1,S,4), samples (1,S) (+1/-1/0), matches (1,S): the RCNN samples, S = num_sample, positives first)
    get_model(per_device_batch_size=1) with the sibling tool's seeded calibrated init (init_params + calibrate,
    seed K, after mx.random.seed(K) + np.random.seed(K)), saved by ``save_parameters`` to --params-out before
    any step; the script's train() settings and ``gluon.Trainer(collect_train_params(), 'sgd', {lr, wd,
    momentum}, kvstore='device')`` (one CPU context: no kvstore, the local MXNet SGD updater; asserted);
    ``net.sampler`` replaced by a copy that returns the given (rois, samples, matches) (asserted called once
    per step); not hybridized; then --steps times GluonCV's ``ForwardBackwardTask.forward_backward((image,
    concat(gt_boxes, gt_labels[..., None]), gt_masks, rpn targets...))`` + ``trainer.step(1)``. Keys:
    loss_{t}_{term} (1,) for rpn_loss1, rpn_loss2, rcnn_loss1, rcnn_loss2, mask_loss (what forward_backward
    logs; with B = 1 equal to the loss vectors); total_{t} () (= (rpn1 + rpn2) + (rcnn1 + rcnn2) + mask in
    float32, the script's order); grad_{t}/NAME after backward, before the step, for every parameter with
    grad_req 'write'; param_init/NAME and param_{t}/NAME (after step t) for EVERY parameter (Constants and BN
    running stats included); trained_names str (the 'write' parameters); lr float64 (steps,); step-0
    training-mode net outputs rpn_score (1,N) logits, rpn_box (1,N,4), cls_pred (1,S,C+1), box_pred
    (1,P,C,4), mask_pred (1,P,C,M,M), indices int64 (1,P), cls_targets (1,S), anchors (N,4); and what the
    RPN's training-mode proposal branch handed the sampler at step 0 (12000 -> NMS 0.7 -> 2000, -1 rows where
    fewer survive): train_proposals (1,R,4), train_proposal_scores (1,R). NAME = the
    ``_collect_params_with_prefix`` (``save_parameters``) key.

GluonCV 0.10.5 facts behind this tool (asserted where cheap), and where the spec (shared/reference/
maskrcnn-training.md) and GluonCV's source disagree (the source wins):

* ``ForwardBackwardTask`` is not in train_mask_rcnn.py: the script imports it from the wheel
  (``gluoncv/model_zoo/rcnn/mask_rcnn/data_parallel.py``, identical to dmlc/gluon-cv HEAD 5677756), so the
  losses command calls it; train_mask_rcnn.py (HEAD) supplies the loss objects, lr loop and wd_mult.
* ``RPNTargetGenerator`` stores ``allowed_border`` but never uses it: the border rule is hard-coded
  ``x1 < 0 or y1 < 0 or x2 >= W or y2 >= H`` (spec 2.2 step 2 gives the same rule as "allowed border 0").
* Spec 1.1 leaves open what happens to an object whose polygons were all dropped: the train transform
  crashes on it (pycocotools ``frPyObjects([])`` raises IndexError), the whole image is unusable for GluonCV.
* RCNNTargetGenerator gets ``max_pos = int(num_sample * pos_ratio)`` while the sampler uses
  ``int(round(...))`` (equal for every zoo model: 64 / 32 / 128).
* collect_train_params() also holds the anchor Constants (``.*rpn`` matches them), so the Trainer's parameter
  list includes them with grad_req 'null' (spec 7.1: "frozen parameters are not in the Trainer at all").
* Schedule: while ``it <= lr_warmup`` the warmup formula is applied from base_lr, so an lr decay epoch
  inside the warmup is overwritten, and after the warmup the lr keeps its last warmup value; when lr_warmup is
  not an integer (``8000 / batch`` for batch 3, 6, 7, ...) that value is below base_lr (spec 7.2: "exactly lr
  at it 1000", true for batch <= 8 dividing 8000 and for batch >= 8).
* RPN targets come from the numpy encoder (``cython_bbox`` is None): cls and box targets float32, the box mask
  float64, all float32 once batchified; here cast by this tool.
* RoIAlign: the sibling tool's GPU-semantics patch (batch id < 0 -> zeros) is installed for every command;
  the mask target generator only uses batch ids ``relu(match) >= 0``, so it changes nothing there.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import inspect
import io
import json
import os
import sys
import tempfile
import time
import warnings

import gluoncv
import mxnet as mx
import numpy as np
from gluoncv.data import COCOInstance
from gluoncv.data.transforms import image as timage
from gluoncv.data.transforms.presets.rcnn import MaskRCNNDefaultTrainTransform
from gluoncv.model_zoo.rcnn.mask_rcnn.data_parallel import ForwardBackwardTask
from gluoncv.model_zoo.rcnn.rpn import rpn_target
from gluoncv_rcnn_reference import MODELS, calibrate, init_params, resolve_shapes, roi_align_gpu_semantics

MASK_FULL_LIMIT = 64 * 2**20  # bytes of the two full (B,P,C,M,M) mask arrays; above it only the selected ones stay
IMAGE_DIR = "images"  # directory name used when a JSON lacks coco_url


# ----------------------------------------------------------------------------------------------- environment


def require(cond, msg):
    if not cond:
        raise RuntimeError(msg)


def check_versions():
    gcv, mxv = importlib.metadata.version("gluoncv"), mx.__version__
    require(gcv.startswith("0.10.5") and mxv == "1.9.1", f"needs gluoncv 0.10.5 / mxnet 1.9.1, found {gcv} / {mxv}")


def versions():
    return {"gluoncv": importlib.metadata.version("gluoncv"), "mxnet": mx.__version__, "numpy": np.__version__}


def install_roi_align_patch():
    """MXNet 1.9.1's CPU ROIAlign mishandles batch id -1 (see tools/gluoncv_rcnn_reference.py)."""
    mx.nd.contrib.ROIAlign = roi_align_gpu_semantics
    require(mx.nd.contrib.ROIAlign is roi_align_gpu_semantics, "ROIAlign patch not active")


def build_net(name, batch=1):
    require(name in MODELS, f"unknown model {name}; one of {', '.join(MODELS)}")
    net = gluoncv.model_zoo.get_model(name, pretrained=False, pretrained_base=False, per_device_batch_size=batch)
    net.initialize(ctx=mx.cpu())
    return net


def is_fpn(net):
    return net.num_stages > 1


def net_config(net):
    s = net.sampler
    return {"fpn": is_fpn(net), "num_sample": s._num_sample, "max_pos": s._max_pos,
            "pos_iou_thresh": s._pos_iou_thresh, "max_num_gt": s._max_num_gt, "num_proposal": s._num_proposal,
            "batch": net._batch_size, "num_class": net.num_class, "mask_size": list(net._target_roi_size),
            "ashape": net.ashape}


def nd(x):
    return x.asnumpy() if isinstance(x, mx.nd.NDArray) else np.asarray(x)


def f32(x):
    return nd(x).astype(np.float32)


def load_inputs(path, keys):
    with np.load(path) as z:
        missing = [k for k in keys if k not in z.files]
        require(not missing, f"{path} lacks {missing}")
        return {k: z[k] for k in z.files}


def write_npz(path, arrays):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------- reader


def coco_root(annotations, images, root):
    """Lay out ``root`` the way COCOInstance resolves files; returns (split, categories, synthesised)."""
    with open(annotations) as f:
        data = json.load(f)
    split = os.path.splitext(os.path.basename(annotations))[0]
    os.makedirs(os.path.join(root, "annotations"))
    ann_path = os.path.join(root, "annotations", split + ".json")
    synthesised = any("coco_url" not in im for im in data["images"])
    if synthesised:  # COCOInstance reads only coco_url's last two components: point them at DIR
        for im in data["images"]:
            require("/" not in im["file_name"], f"cannot synthesise coco_url for {im['file_name']}")
            im.setdefault("coco_url", f"synthesised/{IMAGE_DIR}/{im['file_name']}")
        with open(ann_path, "w") as f:
            json.dump(data, f)
    else:
        os.symlink(os.path.abspath(annotations), ann_path)
    dirs = {im["coco_url"].split("/")[-2] for im in data["images"]}
    require(all(d and d != "annotations" for d in dirs), f"unusable coco_url directories {sorted(dirs)}")
    for d in dirs:
        os.symlink(os.path.abspath(images), os.path.join(root, d))
    return split, data["categories"], synthesised


def instance_dataset(root, split, categories, keep_empty):
    """COCOInstance whose CLASSES are the JSON's names; records the image ids it visits."""

    class JsonCOCOInstance(COCOInstance):
        # getCatIds() without filters lists the ids in the JSON's category order, loadCats keeps it
        CLASSES = [c["name"] for c in categories]

        def __init__(self, *args, **kwargs):
            self.visited = []  # (image id, empty) in _load_jsons' order, filled during super().__init__
            super().__init__(*args, **kwargs)

        def _check_load_bbox(self, coco, entry):
            label, segm = super()._check_load_bbox(coco, entry)
            self.visited.append((entry["id"], label is None))
            return label, segm

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress chatter
        ds = JsonCOCOInstance(root=root, splits=(split,), skip_empty=not keep_empty)
    ids = [i for i, empty in ds.visited if keep_empty or not empty]
    require(len(ids) == len(ds), "image id bookkeeping does not match COCOInstance")
    return ds, np.array(ids, dtype=np.int64)


@contextlib.contextmanager
def opened_dataset(args):
    with tempfile.TemporaryDirectory(prefix="gcv_coco_") as root:
        split, cats, synthesised = coco_root(args.annotations, args.images, root)
        ds, ids = instance_dataset(root, split, cats, args.keep_empty)
        yield ds, ids, {"split": split, "synthesised_coco_url": synthesised, "num_images": len(ds)}


def cmd_reader(args):
    out = {}
    with opened_dataset(args) as (ds, ids, info):
        for i in range(len(ds)):
            label, segm = ds._labels[i], ds._segms[i]
            out[f"labels_{i}"] = np.zeros((0, 5), np.float32) if label is None else label.astype(np.float32)
            segm = segm or []
            out[f"num_polygons_{i}"] = np.array([len(p) for p in segm], dtype=np.int32)
            for g, polys in enumerate(segm):
                for k, poly in enumerate(polys):
                    out[f"polygon_{i}_{g}_{k}"] = poly.astype(np.float32)
        pairs = sorted(ds.json_id_to_contiguous.items(), key=lambda kv: kv[1])
        out.update({"image_ids": ids, "category_ids": np.array([k for k, _ in pairs], dtype=np.int64),
                    "contiguous_ids": np.array([v for _, v in pairs], dtype=np.int64),
                    "file_names": np.array([os.path.basename(p) for p in ds._items]),
                    "aspect_ratios": np.array(ds.get_im_aspect_ratio(), dtype=np.float64)})
    return out, info


# ------------------------------------------------------------------------------------------------- transform


@contextlib.contextmanager
def forced_flip(flip, seen):
    """Run GluonCV's own random_flip with a certain outcome (px = flip) and record the image it returns."""
    original = timage.random_flip

    def fixed(src, px=0, py=0, copy=False):
        require((px, py) == (0.5, 0), f"unexpected random_flip call px={px} py={py}")
        img, flips = original(src, px=float(flip), py=py, copy=copy)
        require(bool(flips[0]) == bool(flip) and not flips[1], "flip not forced")
        seen.append(img)
        return img, flips

    timage.random_flip = fixed
    try:
        yield
    finally:
        timage.random_flip = original


def transform_one(tf, img, label, segm, flip):
    seen = []
    with forced_flip(flip, seen):
        x, bbox, masks = tf(img, label, segm)
    require(len(seen) == 1, "the flip patch was not used exactly once")
    resized = seen[0].asnumpy()
    require(resized.dtype == np.uint8, f"resized image is {resized.dtype}")
    ref = mx.nd.image.normalize(mx.nd.image.to_tensor(seen[0]), mean=tf._mean, std=tf._std)
    require(np.array_equal(ref.asnumpy(), x.asnumpy()), "normalised image is not to_tensor+normalize(resized)")
    m = masks.asnumpy()
    require(np.isin(m, (0, 1)).all(), "masks are not 0/1")
    return {"normalized": f32(x), "boxes": f32(bbox[:, :4]), "classes": f32(bbox[:, 4]),
            "masks": m.astype(np.uint8), "resized": resized}


def cmd_transform(args):
    out = {}
    tf = MaskRCNNDefaultTrainTransform(args.short, args.max_size, net=None)
    with opened_dataset(args) as (ds, ids, info):
        for i in range(len(ds)):
            img, label, segm = ds[i]  # COCOInstance.__getitem__: mx.image.imread(path, 1), label, polygons
            out[f"orig_hw_{i}"] = np.array(img.shape[:2], dtype=np.int32)
            try:
                rec = transform_one(tf, img, label, segm, args.flip)
            except (IndexError, TypeError, AttributeError, ValueError) as e:  # GluonCV's own failure: record it
                out[f"error_{i}"] = np.array(f"{type(e).__name__}: {e}")
                continue
            out.update({f"{k}_{i}": v for k, v in rec.items()})
    out.update({"image_ids": ids, "flip": np.int32(args.flip)})
    info["errors"] = sorted(k for k in out if k.startswith("error_"))
    return out, info


# --------------------------------------------------------------------------------------------- feature sizes


def train_transform(net, short=800, max_size=1333):
    return MaskRCNNDefaultTrainTransform(short, max_size, net=net, ashape=net.ashape, multi_stage=is_fpn(net))


def feature_symbols(tf, net):
    return list(tf._feat_sym) if is_fpn(net) else [tf._feat_sym]


def feature_sizes(syms, h, w):
    """(L,2) feature sizes exactly as the train transform infers them."""
    return np.array([s.infer_shape(data=(1, 3, h, w))[1][0][2:4] for s in syms], dtype=np.int32)


def parse_sizes(spec):
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in spec.split(",") if s.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"bad --sizes {spec!r}") from e
    if not sizes or any(len(s) != 2 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"bad --sizes {spec!r}, want HxW,HxW,...")
    return sizes


def cmd_feature_sizes(args):
    net = build_net(args.model)
    syms = feature_symbols(train_transform(net), net)
    feats = np.stack([feature_sizes(syms, h, w) for h, w in args.sizes])
    return {"sizes": np.array(args.sizes, dtype=np.int32), "feature_sizes": feats}, net_config(net)


# ----------------------------------------------------------------------------------------------- rpn targets


class Recorder:
    """Wraps a callable, keeping its arguments and results."""

    def __init__(self, fn):
        self.fn, self.calls = fn, []

    def __call__(self, *args):
        res = self.fn(*args)
        self.calls.append((args, res))
        return res


@contextlib.contextmanager
def pinned_choice(calls):
    """numpy.random.choice -> the LARGEST ``size`` candidates (the lowest-index ones survive), recorded."""
    original = np.random.choice

    def largest(a, size=None, replace=True, p=None):
        require(not replace and p is None and np.ndim(a) == 1, "unexpected numpy.random.choice call")
        a = np.asarray(a)
        calls.append((a.copy(), int(size)))
        return np.sort(a)[len(a) - int(size):]

    np.random.choice = largest
    try:
        yield
    finally:
        np.random.choice = original


def pinned_generator(gen, choices, calls):
    """The RPN target generator with numpy.random.choice pinned during (only) its call."""

    def call(*args):
        with pinned_choice(choices):
            res = gen(*args)
        calls.append((args, res))
        return res

    return call


def labels_without_subsampling(sampler, ious):
    """The sampler's labelling with unlimited quotas, i.e. before any np.random.choice."""
    free = copy.copy(sampler)
    free._num_sample = free._max_pos = ious.shape[0] + 1
    calls = []
    with pinned_choice(calls):
        samples, _ = free(ious)
    require(not calls, "unlimited sampler still subsampled")
    return np.flatnonzero(samples > 0), np.flatnonzero(samples < 0)


def check_choice_calls(calls, pos, neg):
    """The recorded draws must be exactly the pre-subsampling positive, then negative, candidate sets."""
    expected = [s for s in (pos, neg) if any(np.array_equal(c, s) for c, _ in calls)]
    require(len(expected) == len(calls) and all(np.array_equal(c, e) for (c, _), e in zip(calls, expected,
                                                                                         strict=True)),
            "recorded choice calls do not match the labelling")


def cmd_rpn_targets(args):
    require(rpn_target.cython_rpn_target is None, "rpn_target uses the cython sampler, not numpy")
    require(gluoncv.nn.coder.cython_bbox is None, "the numpy box encoder is replaced by cython_bbox")
    z = load_inputs(args.inp, ("gt_boxes", "image_hw"))
    gt = np.asarray(z["gt_boxes"], np.float32).reshape(-1, 4)
    h, w = (int(v) for v in np.asarray(z["image_hw"]).reshape(2))
    require(len(gt) >= 1, "GluonCV's train transform needs at least one gt box")
    net = build_net(args.model)
    tf = train_transform(net, short=min(h, w), max_size=max(h, w))  # resize_short_within is then the identity
    gen = tf._target_generator
    gen._sampler = sampler = Recorder(gen._sampler)
    calls, choices = [], []
    tf._internal_target_generator = pinned_generator(gen, choices, calls)
    label = np.concatenate([gt, np.zeros((len(gt), 1), np.float32)], axis=1)
    segm = [[np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32)] for b in gt]
    with forced_flip(0, []):
        img, bbox, cls_l, box_l, mask_l, _ = tf(mx.nd.zeros((h, w, 3), dtype="uint8"), label, segm)
    require(img.shape[1:] == (h, w) and np.array_equal(bbox[:, :4], gt), "transform changed the image or boxes")
    require(len(calls) == 1 and len(sampler.calls) == 1, "target generator not called once")
    (g_boxes, anchors, width, height), (cls_t, box_t, box_m) = calls[0]
    require((width, height) == (w, h) and np.array_equal(nd(g_boxes), gt), "unexpected generator inputs")
    (ious,), (_, match) = sampler.calls[0]
    pos, neg = labels_without_subsampling(gen._sampler.fn, ious)
    check_choice_calls(choices, pos, neg)
    cls_t, box_t, box_m = f32(cls_t), f32(box_t), f32(box_m)
    for flat, lv in ((cls_t[:, None], cls_l), (box_t, box_l), (box_m, mask_l)):  # levels re-flattened agree
        require(np.array_equal(np.concatenate([f32(t).reshape(-1, flat.shape[1]) for t in lv]), flat),
                "per-level targets disagree with the flat ones")
    syms = feature_symbols(tf, net)
    fs = feature_sizes(syms, h, w)
    num_anchors = [t.shape[0] * t.shape[1] * t.shape[2] for t in cls_l]
    require(sum(num_anchors) == len(cls_t) == anchors.shape[0], "anchor count mismatch")
    require([tuple(t.shape[:2]) for t in cls_l] == [tuple(s) for s in fs], "anchor grid cropped short")
    n_pos, n_neg = int((cls_t > 0).sum()), int((cls_t == 0).sum())
    require(n_pos + n_neg <= gen._num_sample and n_pos <= gen._sampler.fn._max_pos, "too many sampled anchors")
    out = {"anchors": f32(anchors), "feature_sizes": fs, "cls_target": cls_t, "box_target": box_t,
           "box_mask": box_m, "positive_candidates": pos.astype(np.int64), "negative_candidates":
           neg.astype(np.int64), "match": np.asarray(match, np.int64), "ious": f32(ious),
           "num_choice_calls": np.int32(len(choices))}
    for j, (cand, size) in enumerate(choices):
        out[f"choice_{j}_candidates"], out[f"choice_{j}_size"] = cand.astype(np.int64), np.int64(size)
    info = dict(net_config(net), num_anchors_per_level=num_anchors, sampled_pos=n_pos, sampled_neg=n_neg,
                candidates_pos=len(pos), candidates_neg=len(neg))
    return out, info


# ---------------------------------------------------------------------------------------------- rcnn sampler


def cmd_rcnn_sampler(args):
    z = load_inputs(args.inp, ("rois", "scores", "gt_boxes"))
    rois, scores, gt = (np.asarray(z[k], np.float32) for k in ("rois", "scores", "gt_boxes"))
    b, r = scores.shape[:2]
    require(rois.shape == (b, r, 4) and gt.ndim == 3 and gt.shape[0] == b, "bad rois/scores/gt_boxes shapes")
    net = build_net(args.model, batch=b)  # the sampler loops over per_device_batch_size images
    s = net.sampler
    require(r + gt.shape[1] <= s._num_proposal + s._max_num_gt, "more candidates than the sampler's random vector")
    mx.random.seed(args.seed)
    out_rois, samples, matches = s(mx.nd.array(rois), mx.nd.array(scores.reshape(b, r, 1)), mx.nd.array(gt))
    return {"rois": f32(out_rois), "samples": f32(samples), "matches": f32(matches)}, net_config(net)


# ---------------------------------------------------------------------------------------------- rcnn targets


def take_rows(x, indices):
    """ForwardBackwardTask.forward_backward's per-image ``take`` of the rows at ``indices``, re-batched."""
    b = indices.shape[0]
    return mx.nd.concat(*[mx.nd.take(x[i], indices[i]) for i in range(b)], dim=0).reshape((b, -1) + x.shape[2:])


def selected_channel(full, cls):
    """(B,P,C,M,M) -> (B,P,M,M): the channel of each row's class (cls - 1), channel 0 for filler rows."""
    ch = np.clip(cls.astype(np.int64) - 1, 0, full.shape[2] - 1)
    return np.take_along_axis(full, ch[:, :, None, None, None], axis=2)[:, :, 0]


def cmd_rcnn_targets(args):
    require("box_encode" in mx.nd.contrib.__dict__, "contrib.box_encode missing (pre-1.6 MXNet path)")
    keys = ("rois", "samples", "matches", "gt_labels", "gt_boxes", "gt_masks")
    z = {k: mx.nd.array(np.asarray(v, np.float32)) for k, v in load_inputs(args.inp, keys).items() if k in keys}
    b = z["samples"].shape[0]
    net = build_net(args.model, batch=b)
    # FasterRCNN.hybrid_forward: target_generator(rpn_box, samples, matches, gt_label, gt_box), with
    # gt_label = label[:, :, 4:5] in forward_backward
    cls_t, box_t, box_m, indices = net.target_generator(z["rois"], z["samples"], z["matches"],
                                                        z["gt_labels"].reshape((b, -1, 1)), z["gt_boxes"])
    m_rois, m_cls, m_matches = (take_rows(x, indices) for x in (z["rois"], cls_t, z["matches"]))
    mask_t, mask_m = net.mask_target(m_rois, z["gt_masks"], m_matches, m_cls)
    mask_t, mask_m, m_cls_np = f32(mask_t), f32(mask_m), f32(m_cls)
    out = {"cls_target": f32(cls_t), "box_target": f32(box_t), "box_mask": f32(box_m),
           "indices": nd(indices).astype(np.int64), "mask_rois": f32(m_rois), "mask_matches": f32(m_matches),
           "mask_cls_target": m_cls_np, "mask_target_selected": selected_channel(mask_t, m_cls_np),
           "mask_mask_selected": selected_channel(mask_m, m_cls_np)}
    full = mask_t.nbytes + mask_m.nbytes <= MASK_FULL_LIMIT
    if full:
        out.update({"mask_target": mask_t, "mask_mask": mask_m})
    out["full_masks_stored"] = np.bool_(full)
    sel_w = out["mask_mask_selected"].sum(axis=(2, 3)) > 0
    require(np.array_equal(mask_m.sum(axis=(2, 3, 4)) > 0, sel_w), "mask weight outside the selected channel")
    return out, dict(net_config(net), mask_bytes=int(mask_t.nbytes))


# ---------------------------------------------------------------------------------------------------- losses

LOSS_INPUTS = ("rpn_score", "rpn_box", "rpn_cls_target", "rpn_box_target", "rpn_box_mask", "cls_pred", "cls_target",
               "box_pred", "box_target", "box_mask", "mask_pred", "mask_target", "mask_mask")
PRED_INPUTS = ("rpn_score", "rpn_box", "cls_pred", "box_pred", "mask_pred")
METRICS = ("RPN_Conf", "RPN_SmoothL1", "RCNN_CrossEntropy", "RCNN_SmoothL1", "RCNN_Mask")


def script_losses(args):
    """The loss objects of train_mask_rcnn.py's train() (rho from --rpn/--rcnn-smoothl1-rho, defaults 1/9, 1)."""
    loss = mx.gluon.loss
    return (loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False), loss.HuberLoss(rho=args.rpn_smoothl1_rho),
            loss.SoftmaxCrossEntropyLoss(), loss.HuberLoss(rho=args.rcnn_smoothl1_rho),
            loss.SigmoidBinaryCrossEntropyLoss(from_sigmoid=False))


def five_terms(t, losses):
    """The (B,) loss vectors of ForwardBackwardTask.forward_backward (data_parallel.py), in our own words.

    Each Gluon loss averages over the non-batch axes; the ``.size / count`` factor turns that back into a
    sum normalised by the device's sampled-anchor count, sampled-RoI count, or mask weight sum."""
    rpn_cls, rpn_box, rcnn_cls, rcnn_box, mask = losses
    score = t["rpn_score"].squeeze(axis=-1)
    rpn_t, cls_t = t["rpn_cls_target"], t["cls_target"]
    n_rpn, n_rcnn = (rpn_t >= 0).sum(), (cls_t >= 0).sum()  # positives + negatives (what the script calls pos)
    return (rpn_cls(score, rpn_t, rpn_t >= 0) * rpn_t.size / n_rpn,
            rpn_box(t["rpn_box"], t["rpn_box_target"], t["rpn_box_mask"]) * t["rpn_box"].size / n_rpn,
            rcnn_cls(t["cls_pred"], cls_t, cls_t.expand_dims(-1) >= 0) * cls_t.size / n_rcnn,
            rcnn_box(t["box_pred"], t["box_target"], t["box_mask"]) * t["box_pred"].size / n_rcnn,
            mask(t["mask_pred"], t["mask_target"], t["mask_mask"]) * t["mask_target"].size / t["mask_mask"].sum())


class StandInNet:
    """Plays MaskRCNN in training mode for ForwardBackwardTask: returns the given predictions and targets.

    RoIs/matches/indices only feed the mask-target gather, whose result ``mask_target`` replaces anyway."""

    def __init__(self, t):
        b, s = t["cls_target"].shape
        p = t["box_pred"].shape[1]
        self.outputs = (t["cls_pred"], t["box_pred"], t["mask_pred"], mx.nd.zeros((b, s, 4)), None,
                        mx.nd.zeros((b, s)), t["rpn_score"], t["rpn_box"], None, t["cls_target"], t["box_target"],
                        t["box_mask"], mx.nd.tile(mx.nd.arange(p).reshape((1, p)), (b, 1)))
        self.targets = (t["mask_target"], t["mask_mask"])

    def __call__(self, data, gt_box, gt_label):
        return self.outputs

    def mask_target(self, roi, gt_mask, matches, cls_targets):
        return self.targets


def gluoncv_forward_backward(t, losses):
    """GluonCV's own forward_backward (records, sums and backpropagates); returns its 5 metrics and grads."""
    for k in PRED_INPUTS:
        t[k].attach_grad()
    b = t["cls_target"].shape[0]
    task = ForwardBackwardTask(StandInNet(t), None, *losses, amp_enabled=False)
    batch = (mx.nd.zeros((b, 3, 1, 1)), mx.nd.zeros((b, 1, 5)), None, t["rpn_cls_target"], t["rpn_box_target"],
             t["rpn_box_mask"])
    res = task.forward_backward(batch)
    return [float(nd(m).reshape(())) for m in res[:5]], {f"grad_{k}": f32(t[k].grad) for k in PRED_INPUTS}


def cmd_losses(args):
    params = list(inspect.signature(mx.gluon.loss.SigmoidBinaryCrossEntropyLoss.hybrid_forward).parameters)
    require(params[4] == "sample_weight", f"SigmoidBCE third argument is {params[4]}, not sample_weight")
    require(args.model in MODELS, f"unknown model {args.model}")
    z = load_inputs(args.inp, LOSS_INPUTS)
    t = {k: mx.nd.array(np.asarray(z[k], np.float32)) for k in LOSS_INPUTS}
    if t["rpn_score"].ndim == 2:
        t["rpn_score"] = t["rpn_score"].expand_dims(-1)
    losses = script_losses(args)
    terms = five_terms(t, losses)
    rpn_loss, rcnn_loss = terms[0] + terms[1], terms[2] + terms[3]
    total = rpn_loss.sum() + rcnn_loss.sum() + terms[4].sum()  # forward_backward's total_loss, same order
    ours = [terms[0].mean(), terms[1].mean(), terms[2].sum(), terms[3].sum(), terms[4].sum()]  # what it logs
    ours = [float(nd(m).reshape(())) for m in ours]
    theirs, grads = gluoncv_forward_backward(t, losses)
    require(np.array_equal(np.float32(ours), np.float32(theirs)), f"metrics differ: ours {ours} GluonCV {theirs}")
    names = ("rpn_loss1", "rpn_loss2", "rcnn_loss1", "rcnn_loss2", "mask_loss")
    out = {n: f32(v) for n, v in zip(names, terms, strict=True)}
    out["total"] = np.float32(nd(total).reshape(()))
    out.update({f"metric_{m}": np.float32(v) for m, v in zip(METRICS, theirs, strict=True)})
    out.update(grads)
    return out, {"model": args.model, "rpn_smoothl1_rho": args.rpn_smoothl1_rho,
                 "rcnn_smoothl1_rho": args.rcnn_smoothl1_rho, "metrics": dict(zip(METRICS, theirs, strict=True))}


# -------------------------------------------------------------------------------------------------- schedule


def script_lr_defaults(args):
    """parse_args() of train_mask_rcnn.py: lr = 0.00125 * batch, warmup = max(8000 / batch, 1000)."""
    lr = args.lr if args.lr is not None else 0.00125 * args.batch_size
    warmup = float(args.lr_warmup if args.lr_warmup is not None else max(8000 / args.batch_size, 1000))
    return lr, warmup


def replay_schedule(base_lr, warmup, factor, decay, decay_epochs, iters, start_epoch, epochs):
    """train()'s lr loop: decay at epoch starts, then per-iteration warmup override while it <= warmup."""
    lr, steps, out = base_lr, sorted(float(e) for e in decay_epochs), []
    for epoch in range(start_epoch, epochs):
        while steps and epoch >= steps[0]:
            lr *= decay
            steps.pop(0)
        for i in range(iters):
            it = i + epoch * iters
            if it <= warmup:
                alpha = it / warmup
                lr = base_lr * (factor * (1 - alpha) + alpha)  # get_lr_at_iter
            out.append(lr)
    return np.array(out, dtype=np.float64)


def cmd_schedule(args):
    require(args.batch_size > 0 and args.iters_per_epoch > 0 and args.epochs > args.start_epoch >= 0,
            "need batch size, iterations per epoch > 0 and epochs > start epoch")
    base_lr, warmup = script_lr_defaults(args)
    decay_epochs = [e for e in args.lr_decay_epoch.split(",") if e.strip()]
    lr = replay_schedule(base_lr, warmup, args.lr_warmup_factor, args.lr_decay, decay_epochs, args.iters_per_epoch,
                         args.start_epoch, args.epochs)
    its = np.arange(args.start_epoch * args.iters_per_epoch, args.epochs * args.iters_per_epoch, dtype=np.int64)
    return {"lr": lr, "iterations": its, "epoch": (its // args.iters_per_epoch).astype(np.int32),
            "base_lr": np.float64(base_lr), "lr_warmup": np.float64(warmup)}, {"base_lr": base_lr, "warmup": warmup}


# ------------------------------------------------------------------------------------------------- trainable


def script_train_settings(net):
    """train() of train_mask_rcnn.py: freeze all, unfreeze collect_train_params(), no weight decay on biases."""
    net.collect_params().setattr("grad_req", "null")
    net.collect_train_params().setattr("grad_req", "write")
    for _, p in net.collect_params(".*bias").items():
        p.wd_mult = 0.0
    return mx.gluon.Trainer(net.collect_train_params(), "sgd", {"learning_rate": 0.01, "wd": 1e-4,
                                                                 "momentum": 0.9})


def cmd_trainable(args):
    mx.random.seed(args.seed)
    net = build_net(args.model)
    resolve_shapes(net)  # deferred shapes need one forward; no target generator is created (as at trainer time)
    with warnings.catch_warnings():  # setting grad_req on the anchor Constants only warns
        warnings.simplefilter("ignore")
        trainer = script_train_settings(net)
    trained = {p.name for p in trainer._params}
    items = sorted(net._collect_params_with_prefix().items())
    every = {id(p) for p in net.collect_params().values()}
    require({id(p) for _, p in items} == every and len(items) == len(every), "structural and global params differ")
    out = {"structural_names": np.array([k for k, _ in items]), "global_names": np.array([p.name for _, p in items]),
           "grad_req": np.array([p.grad_req for _, p in items]),
           "wd_mult": np.array([p.wd_mult for _, p in items], dtype=np.float32),
           "shapes": np.array([str(tuple(p.shape)) for _, p in items]),
           "trained": np.array([p.name in trained for _, p in items]),
           "is_constant": np.array([isinstance(p, mx.gluon.Constant) for _, p in items]),
           "train_patterns": np.array(net.train_patterns)}
    return out, dict(net_config(net), num_params=len(items), num_trained=len(trained),
                     num_write=int((out["grad_req"] == "write").sum()))


# ------------------------------------------------------------------------------------------------ train step

STEP_INPUTS = ("image", "gt_boxes", "gt_labels", "gt_masks", "rpn_cls_target", "rpn_box_target", "rpn_box_mask",
               "rois", "samples", "matches")
LOSS_TERMS = ("rpn_loss1", "rpn_loss2", "rcnn_loss1", "rcnn_loss2", "mask_loss")


def inject_sampler(net, rois, samples, matches):
    """net.sampler -> a copy of it (so Block's attribute type check passes) returning the given samples."""
    base = type(net.sampler)

    class InjectedSampler(base):
        def forward(self, rpn_box, rpn_score, gt_box):  # FasterRCNN.hybrid_forward: sampler(rpn_box, score, gt)
            self.calls += 1
            self.proposals.append((rpn_box.asnumpy().copy(), rpn_score.asnumpy().copy()))
            return rois, samples, matches

    inj = copy.copy(net.sampler)
    inj.__class__ = InjectedSampler
    inj.calls = 0
    inj.proposals = []  # (rpn_box (B,R,4), rpn_score (B,R,1)) of each call: the training-mode proposals
    net.sampler = inj
    require(net.sampler is inj and net._children["sampler"] is inj, "sampler not replaced")
    return inj


def step_inputs(path, net):
    z = load_inputs(path, STEP_INPUTS)
    t = {k: np.asarray(z[k], np.float32) for k in STEP_INPUTS}
    s, p = net.sampler._num_sample, net.sampler._max_pos
    g, n = t["gt_boxes"].shape[1], t["rpn_cls_target"].shape[1]
    h, w = t["image"].shape[2:]
    shapes = {"image": (1, 3, h, w), "gt_boxes": (1, g, 4), "gt_labels": (1, g), "gt_masks": (1, g, h, w),
              "rpn_cls_target": (1, n), "rpn_box_target": (1, n, 4), "rpn_box_mask": (1, n, 4), "rois": (1, s, 4),
              "samples": (1, s), "matches": (1, s)}
    bad = [f"{k} {t[k].shape} != {v}" for k, v in shapes.items() if t[k].shape != v]
    require(not bad, f"bad input shapes (B = 1, S = num_sample {s}): {'; '.join(bad)}")
    pos = np.flatnonzero(t["samples"][0] > 0)
    require(len(pos) <= p and (not len(pos) or pos[-1] < p), f"positives must be at most {p}, all in the first {p}")
    return {k: mx.nd.array(v) for k, v in t.items()}


def param_arrays(items, prefix):
    return {f"{prefix}/{k}": p.data().asnumpy().copy() for k, p in items}


def all_anchors(anchors):
    """The RPN's anchors (N,4), levels concatenated P2 first (FPN hands one array per level)."""
    levels = anchors if isinstance(anchors, (list, tuple)) else [anchors]
    return np.concatenate([f32(a).reshape(-1, 4) for a in levels])


def cmd_train_step(args):
    require(args.steps >= 1, "--steps must be >= 1")
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    net = build_net(args.model)
    resolve_shapes(net)
    init_params(net, args.seed)  # the sibling tool's seeded, calibrated weights
    scales = calibrate(net, args.seed)
    if args.params_out:
        tmp = f"{args.params_out}.tmp{os.getpid()}"
        net.save_parameters(tmp)
        os.replace(tmp, args.params_out)
    t = step_inputs(args.inp, net)
    with warnings.catch_warnings():  # setting grad_req on the anchor Constants only warns
        warnings.simplefilter("ignore")
        net.collect_params().setattr("grad_req", "null")
        net.collect_train_params().setattr("grad_req", "write")
        for _, p in net.collect_params(".*bias").items():
            p.wd_mult = 0.0
        trainer = mx.gluon.Trainer(net.collect_train_params(), "sgd", {"learning_rate": args.lr, "wd": args.wd,
                                                                      "momentum": args.momentum}, kvstore="device")
    require(not net._active, "net is hybridized")
    items = sorted(net._collect_params_with_prefix().items())
    require(len({id(p) for _, p in items}) == len(net.collect_params().keys()), "structural and global params differ")
    written = [(k, p) for k, p in items if p.grad_req == "write"]
    trained = {id(p) for p in trainer._params}
    require(all(id(p) in trained for _, p in written), "a 'write' parameter is not in the trainer")
    inj = inject_sampler(net, t["rois"], t["samples"], t["matches"])
    captured = []
    net.register_forward_hook(lambda block, inputs, outputs: captured.append(outputs))
    task = ForwardBackwardTask(net, trainer, *script_losses(args), amp_enabled=False)
    label = mx.nd.concat(t["gt_boxes"], t["gt_labels"].expand_dims(-1), dim=-1)  # (1,G,5): box, class
    batch = (t["image"], label, t["gt_masks"], t["rpn_cls_target"], t["rpn_box_target"], t["rpn_box_mask"])
    out = param_arrays(items, "param_init")
    out["trained_names"] = np.array([k for k, _ in written])
    lrs, times = [], []
    for step in range(args.steps):
        t0 = time.perf_counter()  # step_seconds: forward_backward and trainer.step only, not the recording
        with mx.autograd.train_mode():  # as the script's training loop runs forward_backward
            res = task.forward_backward(batch)
        mx.nd.waitall()
        busy = time.perf_counter() - t0
        require(inj.calls == step + 1 and len(captured) == step + 1, "injected sampler / net not called once")
        metrics = [f32(m).reshape(1) for m in res[:5]]
        out.update({f"loss_{step}_{n}": m for n, m in zip(LOSS_TERMS, metrics, strict=True)})
        r1, r2, c1, c2, m = (v[0] for v in metrics)
        out[f"total_{step}"] = np.float32(np.float32(r1 + r2) + np.float32(c1 + c2)) + m
        out.update({f"grad_{step}/{k}": p.grad().asnumpy().copy() for k, p in written})
        lrs.append(trainer.learning_rate)
        t0 = time.perf_counter()
        trainer.step(1)
        mx.nd.waitall()
        times.append(round(busy + time.perf_counter() - t0, 3))
        out.update(param_arrays(items, f"param_{step}"))
    require(trainer._kvstore is None and not trainer._update_on_kvstore, "trainer uses a kvstore")
    require(type(trainer._optimizer) is mx.optimizer.SGD, "optimizer is not MXNet's SGD")
    o = captured[0]  # cls_pred, box_pred, mask_pred, roi, samples, matches, rpn_score, rpn_box, anchors,
    #                  cls_targets, box_targets, box_masks, indices (MaskRCNN.hybrid_forward, training)
    out.update({"rpn_score": f32(o[6]).squeeze(-1), "rpn_box": f32(o[7]), "cls_pred": f32(o[0]),
                "box_pred": f32(o[1]), "mask_pred": f32(o[2]), "indices": nd(o[12]).astype(np.int64),
                "cls_targets": f32(o[9]), "lr": np.array(lrs, dtype=np.float64), "anchors": all_anchors(o[8]),
                "train_proposals": f32(inj.proposals[0][0]), "train_proposal_scores": f32(inj.proposals[0][1])[..., 0]})
    require(np.array_equal(f32(o[3]), t["rois"].asnumpy()), "the net did not use the injected rois")
    finite = [k for k, v in out.items() if v.dtype.kind == "f" and not np.isfinite(v).all()]
    require(not finite, f"non-finite values in {finite[:5]}")
    return out, dict(net_config(net), calibration_scales=scales, num_params=len(items), num_trained=len(written),
                     step_seconds=times, params_out=args.params_out,
                     metrics={k: float(v[0]) for k, v in out.items() if k.startswith("loss_")})


# ----------------------------------------------------------------------------------------------- reset class

CLASS_PARAMS = ("class_predictor.", "box_predictor.", "mask.mask.")


def cmd_reset_class(args):
    net = build_net(args.model)
    resolve_shapes(net)
    init_params(net, args.seed)
    tmp = f"{args.params_out}.tmp{os.getpid()}"
    net.save_parameters(tmp)
    os.replace(tmp, args.params_out)
    old_classes = list(net.classes)
    classes = args.classes.split(",")
    reuse = json.loads(args.reuse)
    if isinstance(reuse, dict):  # JSON keys are strings: a decimal one is a new class index
        reuse = {int(k) if k.isdecimal() else k: v for k, v in reuse.items()}
    with warnings.catch_warnings(record=True) as caught:  # names in neither list only warn
        warnings.simplefilter("always")
        net.reset_class(classes, reuse_weights=copy.deepcopy(reuse))
    items = net._collect_params_with_prefix().items()
    out = {k: p.data().asnumpy().copy() for k, p in items if k.startswith(CLASS_PARAMS)}
    require(len(out) == 6, f"expected 6 class-layer arrays, found {sorted(out)}")
    return out, dict(net_config(net), old_classes=old_classes, classes=classes, reuse=reuse,
                     warnings=[str(w.message) for w in caught], params_out=args.params_out)


# ------------------------------------------------------------------------------------------------------ main


def add_dataset_args(p):
    p.add_argument("--annotations", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--keep-empty", action="store_true")


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    cmds = {}

    def command(name, fn, model=False, inp=False):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        if model:
            p.add_argument("--model", required=True, choices=MODELS)
        if inp:
            p.add_argument("--in", dest="inp", required=True)
        cmds[name] = fn
        return p

    add_dataset_args(command("reader", cmd_reader))
    p = command("transform", cmd_transform)
    add_dataset_args(p)
    p.add_argument("--short", type=int, required=True)
    p.add_argument("--max-size", type=int, required=True)
    p.add_argument("--flip", type=int, choices=(0, 1), required=True)
    command("feature-sizes", cmd_feature_sizes, model=True).add_argument("--sizes", type=parse_sizes, required=True)
    command("rpn-targets", cmd_rpn_targets, model=True, inp=True)
    command("rcnn-sampler", cmd_rcnn_sampler, model=True, inp=True).add_argument("--seed", type=int, required=True)
    command("rcnn-targets", cmd_rcnn_targets, model=True, inp=True)
    p = command("losses", cmd_losses, model=True, inp=True)
    p.add_argument("--rpn-smoothl1-rho", type=float, default=1.0 / 9.0)
    p.add_argument("--rcnn-smoothl1-rho", type=float, default=1.0)
    p = command("schedule", cmd_schedule)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--iters-per-epoch", type=int, required=True)
    p.add_argument("--epochs", type=int, default=26)
    p.add_argument("--start-epoch", type=int, default=0)
    p.add_argument("--lr-decay-epoch", default="17,23")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--lr-decay", type=float, default=0.1)
    p.add_argument("--lr-warmup", type=float, default=None)
    p.add_argument("--lr-warmup-factor", type=float, default=1.0 / 3.0)
    command("trainable", cmd_trainable, model=True).add_argument("--seed", type=int, default=0)
    p = command("train-step", cmd_train_step, model=True, inp=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--params-out", default=None)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.0033333333)
    p.add_argument("--wd", type=float, default=1e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--rpn-smoothl1-rho", type=float, default=1.0 / 9.0)
    p.add_argument("--rcnn-smoothl1-rho", type=float, default=1.0)
    p = command("reset-class", cmd_reset_class, model=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", required=True, help="comma-separated new class names")
    p.add_argument("--reuse", required=True, help="reuse_weights as JSON: a list of names or a {new: old} object")
    p.add_argument("--params-out", required=True, help="where the weights before reset_class are saved")
    return ap, cmds


def main(argv=None):
    ap, cmds = parser()
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    # Gluon warns when net.features is called on a bare symbol (the train transform's infer_shape set-up)
    warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
    try:
        check_versions()
        install_roi_align_patch()
        arrays, info = cmds[args.command](args)
        meta = {"command": args.command, "args": {k: v for k, v in vars(args).items() if k != "command"},
                "versions": versions(), "info": info, "seconds": round(time.perf_counter() - t0, 2)}
        arrays["meta"] = np.array(json.dumps(meta, default=str))
        write_npz(args.out, arrays)
    except Exception as e:  # one line for the caller; the traceback is noise in a test log
        print(f"error: {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"{args.command}: wrote {args.out} ({len(arrays)} arrays, {time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
