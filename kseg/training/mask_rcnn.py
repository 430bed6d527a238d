"""GluonCV's Mask R-CNN training forward (``MaskRCNN.hybrid_forward`` in training mode, then
``ForwardBackwardTask``'s five losses), in static shapes.

One batch of padded canvases goes in with its ground truth (-1 padded) and the RPN targets the input
pipeline computed on the canvas anchors. The steps:

1. features (BatchNorm frozen: inference statistics, as GluonCV's ``use_global_stats``), RPN logits and
   deltas on every level: the RPN losses;
2. proposals from the RPN outputs under ``stop_gradient``: decode, clip to each image, NMS 0.7 over the
   top 12000, the first 2000 kept;
3. the RCNN sampler (proposals + ground truth, S slots, the first P for the heads) and its targets;
4. RoIAlign of the S RoIs (C4: then layer4), the box head on all S (class loss) and its class-wise
   deltas of the first P rows at their target class (box loss);
5. the mask head on the same pooled features of the first P rows, its target-class channel against
   soft targets pooled from the full-resolution ground-truth masks (mask loss).

What GluonCV trains (``collect_train_params``): every convolution of stages 2-4, the pyramid, the
RPN and both heads; the stem, stage 1 and every BatchNorm are frozen (:func:`freeze_for_training`).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from kseg.losses.mask_rcnn import mask_loss, rcnn_losses, rpn_losses
from kseg.ops.anchors import image_anchors
from kseg.ops.proposals import rpn_proposals
from kseg.ops.rcnn_targets import mask_targets, rcnn_sample, rcnn_targets

FROZEN_PREFIXES = ("stem", "layer1_")
LOSS_NAMES = ("rpn_objectness", "rpn_box", "rcnn_class", "rcnn_box", "mask")


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """GluonCV's training-time counts (``predefined_models.py``, ``faster_rcnn.py``): the proposals kept
    before and after the NMS, and the RCNN sampler's ``S`` RoIs of which at most ``P`` are positive."""

    num_sample: int = 128
    max_positive: int = 32
    rpn_pre_nms: int = 12000
    rpn_post_nms: int = 2000
    positive_iou: float = 0.5

    @classmethod
    def for_model(cls, config):
        """The zoo's: FPN 512 / 128, C4 ResNet-18 256 / 64, other C4 128 / 32."""
        if config.fpn:
            return cls(512, 128)
        return cls(256, 64) if config.depth == 18 else cls(128, 32)


def _walk(layer):
    yield layer
    for child in getattr(layer, "layers", ()):
        yield from _walk(child)


def freeze_for_training(model):
    """GluonCV's frozen parts: the stem, stage 1 and every BatchNorm stop training; returns ``model``.

    Example:
        >>> model = freeze_for_training(kseg.models.get("mask_rcnn_resnet18_v1b_coco"))
        >>> any("bn" in v.path or v.path.startswith("stem") for v in model.trainable_variables)
        False
    """
    for layer in _walk(model):
        if isinstance(layer, keras.layers.BatchNormalization) or layer.name.startswith(FROZEN_PREFIXES):
            layer.trainable = False
    return model


def _gather_class(values, cls_target):
    """``values [B, P, C, ...]`` at each row's target class (``cls_target - 1``; background rows read class 0)."""
    return tf.gather(values, tf.maximum(cls_target - 1, 0), axis=2, batch_dims=2)


def training_losses(model, batch, priority=None, settings=None, normalization="image", samples=None):
    """The five losses ``{name: [B]}`` of one batch (see the module).

    ``batch``: ``images [B, H, W, 3]`` (normalised, zero-padded canvases), ``image_hw [B, 2]``,
    ``gt_boxes [B, G, 4]`` and ``gt_classes [B, G]`` (-1 padded), ``gt_masks [B, G, H, W]`` uint8,
    ``rpn_cls_target [B, N]``, ``rpn_box_target [B, N, 4]``, ``rpn_box_weight [B, N]`` on the canvas's
    anchors (:func:`kseg.ops.rpn_targets.rpn_targets`). ``priority [B, rpn_post_nms + G]`` in [0, 1):
    the RCNN sampler's draw (uniform for GluonCV's distribution). ``samples``: ``(rois [B, S, 4], labels [B, S],
    matches [B, S])`` to use instead of the proposals and the sampler (tests inject GluonCV's draw this way).

    Example:
        >>> losses = training_losses(model, batch, tf.random.stateless_uniform([1, 2000 + 8], [0, 0]))
        >>> sorted(losses)
        ['mask', 'rcnn_box', 'rcnn_class', 'rpn_box', 'rpn_objectness']
    """
    config = model.config
    settings = settings or TrainingSettings.for_model(config)
    images, image_hw = batch["images"], tf.cast(batch["image_hw"], tf.int32)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        raise ValueError("training needs canvases of a static size (the anchors and targets are laid out on them)")
    maps = model.feature_maps(images)
    size = tf.shape(images)[0]
    logits, deltas = [], []
    for feature in maps:
        outputs = model.rpn_head(feature, training=False)
        logits.append(tf.reshape(tf.cast(outputs["scores"], tf.float32), [size, -1]))
        deltas.append(tf.reshape(tf.cast(outputs["deltas"], tf.float32), [size, -1, 4]))
    logits, deltas = tf.concat(logits, axis=1), tf.concat(deltas, axis=1)
    rpn_objectness, rpn_box = rpn_losses(logits, deltas, batch["rpn_cls_target"], batch["rpn_box_target"],
                                         batch["rpn_box_weight"], normalization)  # fmt: skip

    gt_boxes = tf.cast(batch["gt_boxes"], tf.float32)
    if samples is None:
        anchors = image_anchors(height, width, config.fpn)
        scores, proposals = rpn_proposals(
            anchors, tf.sigmoid(tf.stop_gradient(logits)), tf.stop_gradient(deltas), image_hw,
            pre_nms_topk=settings.rpn_pre_nms, post_nms_topk=settings.rpn_post_nms,
            iou_threshold=config.rpn_nms_threshold, min_size=config.rpn_min_size,
        )  # fmt: skip
        samples = rcnn_sample(proposals, scores, gt_boxes, priority, settings.num_sample, settings.max_positive,
                              settings.positive_iou)  # fmt: skip
    rois, labels, matches = (tf.stop_gradient(tf.convert_to_tensor(t)) for t in samples)
    labels, matches = tf.cast(labels, tf.int32), tf.cast(matches, tf.int32)
    cls_target, box_target, box_weight = rcnn_targets(rois, labels, matches, gt_boxes, batch["gt_classes"],
                                                      settings.max_positive)  # fmt: skip

    pooled = model.pool(maps, rois)  # [B * S, h, w, C]
    heads = model.box_head(pooled, training=False)
    num_sample, head_rows, classes = settings.num_sample, settings.max_positive, config.num_classes
    class_logits = tf.reshape(heads["class_logits"], [size, num_sample, classes + 1])
    box_deltas = tf.reshape(heads["box_deltas"], [size, num_sample, classes, 4])[:, :head_rows]
    head_cls = cls_target[:, :head_rows]
    rcnn_class, rcnn_box = rcnn_losses(class_logits, _gather_class(box_deltas, head_cls), cls_target, box_target,
                                       box_weight, normalization)  # fmt: skip

    pooled = tf.reshape(pooled, [size, num_sample, *pooled.shape[1:]])[:, :head_rows]
    mask_logits = model.mask_head(tf.reshape(pooled, [-1, *pooled.shape[2:]]), training=False)
    masks = config.mask_size
    mask_logits = tf.transpose(tf.reshape(mask_logits, [size, head_rows, masks, masks, classes]), [0, 1, 4, 2, 3])
    targets = mask_targets(batch["gt_masks"], rois[:, :head_rows], matches[:, :head_rows], image_hw, masks)
    mask = mask_loss(_gather_class(tf.cast(mask_logits, tf.float32), head_cls), targets, box_weight, normalization)
    return dict(zip(LOSS_NAMES, (rpn_objectness, rpn_box, rcnn_class, rcnn_box, mask), strict=True))


@keras.saving.register_keras_serializable(package="kseg")
class MaskRCNNTraining(keras.Model):
    """A :class:`~kseg.models.mask_rcnn.MaskRCNN` (``detector``, frozen as GluonCV trains it) as ``fit`` trains it:
    ``call(batch)`` returns the five ``[B]`` losses, and the loss ``fit`` minimises is their sum averaged over the
    global batch (each image normalised by its own counts, as GluonCV's one image per device).

    The RCNN sampler's priorities are drawn from ``seed``, the optimizer's step and each image's place in the
    global batch, so a resumed run samples as an uninterrupted one, and N replicas as one.

    Example:
        >>> trainer = MaskRCNNTraining(kseg.models.get("mask_rcnn_fpn_resnet18_v1b_coco"))
        >>> trainer.compile(optimizer=GluonSGD(0.01))
        >>> trainer.fit(batches)   # dicts from kseg.training.data.instance_training_dataset
    """

    def __init__(self, detector, settings: TrainingSettings | None = None, seed: int = 0, **kwargs):
        kwargs.setdefault("name", "mask_rcnn_training")
        super().__init__(**kwargs)
        self.detector = freeze_for_training(detector)
        self.settings = settings or TrainingSettings.for_model(detector.config)
        self.seed = int(seed)
        self.loss_terms = {name: keras.metrics.Mean(name=name) for name in LOSS_NAMES}
        self.built = True

    def _priority(self, batch):
        """The sampler's draw of each image, from (seed, step, the image's place in the global batch): N replicas
        draw what one replica draws for the same global batch."""
        size = batch["images"].shape[0]
        if size is None:
            raise ValueError("Mask R-CNN training needs a static batch size (batch with drop_remainder)")
        count = self.settings.rpn_post_nms + batch["gt_boxes"].shape[1]
        replica = tf.distribute.get_replica_context()
        first = replica.replica_id_in_sync_group * size if replica is not None else 0
        optimizer = getattr(self, "optimizer", None)  # none before compile()
        step = tf.cast(optimizer.iterations, tf.int64) if optimizer is not None else tf.constant(0, tf.int64)
        seed = tf.cast(self.seed, tf.int64)
        rows = [tf.random.stateless_uniform([count], tf.stack([seed, step * 65536 + tf.cast(first + i, tf.int64)]))
                for i in range(size)]  # fmt: skip
        return tf.stack(rows)

    def call(self, batch, training=False):
        return training_losses(self.detector, batch, self._priority(batch), self.settings)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_image = tf.add_n([y_pred[name] for name in LOSS_NAMES])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        # Gradients are summed over replicas: each replica's mean over its images / replicas is the global mean.
        return tf.reduce_mean(per_image) / replicas

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        for name, tracker in self.loss_terms.items():
            tracker.update_state(tf.reduce_mean(y_pred[name]))
        return {metric.name: metric.result() for metric in self.metrics}

    @property
    def metrics(self):
        return [*super().metrics, *self.loss_terms.values()]
