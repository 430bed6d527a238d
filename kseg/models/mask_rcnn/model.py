"""GluonCV's Mask R-CNN at inference, with static shapes: XLA compiles it once per input size, any batch.

The steps are GluonCV's (``FasterRCNN.hybrid_forward`` then ``MaskRCNN``'s
mask branch): RPN on every level, proposals (decode, clip, min size, NMS 0.7
over the top 6000, first 1000), RoIAlign (MXNet's, no half-pixel offset),
box head, softmax, class-wise decoding and NMS 0.5, the top 1000 over all
classes, and the mask of each detection's class. GluonCV runs one image at a
time; here a batch runs at once, each image clipped to its own size.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from kseg.models.inputs import check_images, on_nonempty_batch
from kseg.models.layers import dtype_policy_scope, policy_name
from kseg.models.mask_rcnn import network
from kseg.models.mask_rcnn.config import MaskRCNNConfig
from kseg.ops.anchors import c4_anchors, fpn_anchors
from kseg.ops.boxes import RCNN_STDS, decode_boxes
from kseg.ops.nms import multiclass_nms
from kseg.ops.proposals import rpn_proposals
from kseg.ops.roi_align import multilevel_roi_align, roi_align
from kseg.presets import INSTANCE, ModelMetadata, Preprocessing, ShortSideResize, numbered_classes

FPN_LEVELS = ("p2", "p3", "p4", "p5", "p6")


def _flatten_levels(outputs, batch, per_location):
    return tf.reshape(outputs, [batch, -1, per_location])


def _dim(tensor, axis):
    """The static size of ``axis`` when known (the detection ops size their buffers from it), else dynamic."""
    return tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]


def default_instance_metadata(num_classes):
    """What a Mask R-CNN built outside the presets says of itself: numbered classes, GluonCV's 800/1333."""
    return ModelMetadata(INSTANCE, numbered_classes(num_classes), Preprocessing(resize=ShortSideResize()))


@keras.saving.register_keras_serializable(package="kseg")
class MaskRCNN(keras.Model):
    """GluonCV's Mask R-CNN (``config``: a :class:`MaskRCNNConfig` or its dict).

    ``call(images, image_hw=None)``: ``images`` float ``[B, H, W, 3]`` normalised
    by ImageNet mean/std (RGB / 255); ``image_hw`` int ``[B, 2]``, each image's
    size inside a zero-padded batch (default: the whole ``H, W``). Returns a dict:
    ``class_ids`` int32 ``[B, K]`` (-1 pads), ``scores`` ``[B, K]``, ``boxes``
    ``[B, K, 4]`` (x1, y1, x2, y2 in input pixels), ``masks`` ``[B, K, M, M]``
    (the probabilities of each detection's class, in its box) and
    ``num_detections`` ``[B]``; ``K`` is ``config.max_detections``.

    ``metadata`` (a :class:`kseg.presets.ModelMetadata`) names the classes and
    the test-time resize; None: numbered classes, GluonCV's 800/1333.

    Example:
        >>> import numpy as np
        >>> from kseg.models.mask_rcnn import MaskRCNN, MaskRCNNConfig
        >>> model = MaskRCNN(MaskRCNNConfig(depth=18, fpn=True, roi_size=7, mask_convs=2, max_detections=10))
        >>> outputs = model(np.zeros((1, 128, 128, 3), "float32"))
        >>> outputs["masks"].shape  # 10 detections, 14 x 14 box-relative masks
        TensorShape([1, 10, 14, 14])
    """

    def __init__(self, config: MaskRCNNConfig | dict | None = None, metadata: ModelMetadata | None = None, **kwargs):
        if config is None:
            config = MaskRCNNConfig()
        elif isinstance(config, dict):
            config = MaskRCNNConfig(**config)
        elif not isinstance(config, MaskRCNNConfig):
            raise TypeError(f"config must be a MaskRCNNConfig or its dict, got {type(config).__name__}")
        metadata = metadata or default_instance_metadata(config.num_classes)
        if metadata.num_classes != config.num_classes:
            raise ValueError(f"metadata names {metadata.num_classes} classes, but the config has {config.num_classes}")
        dtype = kwargs.pop("dtype", None)
        kwargs.setdefault("name", "mask_rcnn")
        super().__init__(dtype=dtype, **kwargs)
        self.config = config
        self.metadata = metadata
        with dtype_policy_scope(dtype):
            self.feature_extractor = network.build_features(config)
            self.top_features = None if config.fpn else network.build_top_features(config)
            self.rpn_head = network.build_rpn_head(config)
            self.box_head = network.build_box_head(config)
            self.mask_head = network.build_mask_head(config)
        self.built = True  # every part is a built functional model

    @property
    def num_classes(self):
        return self.config.num_classes

    def variant(self, metadata):
        """The same architecture for other classes (``metadata``'s); fresh weights."""
        config = dataclasses.replace(self.config, num_classes=metadata.num_classes)
        return type(self)(config, metadata=metadata, name=self.name, dtype=policy_name(self))

    def get_config(self):
        return {
            "name": self.name,
            "dtype": policy_name(self),
            "config": dataclasses.asdict(self.config),
            "metadata": self.metadata.to_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("metadata") is not None:
            config["metadata"] = ModelMetadata.from_config(config["metadata"])
        return cls(**config)

    # -- stages ---------------------------------------------------------------------------------------------------
    def feature_maps(self, images):
        """The maps the RPN and RoIAlign read: ``[c4]`` or ``[p2, ..., p6]``."""
        features = self.feature_extractor(images, training=False)
        return [features[name] for name in FPN_LEVELS] if self.config.fpn else [features["c4"]]

    def proposals(self, maps, image_hw):
        """RPN scores and deltas on every map, then ``(scores [B, P], boxes [B, P, 4])``."""
        batch = tf.shape(maps[0])[0]
        scores, deltas, shapes = [], [], []
        for feature in maps:
            outputs = self.rpn_head(feature, training=False)
            # The detection ops run in float32 under mixed precision too (box coordinates need its precision).
            scores.append(tf.reshape(tf.sigmoid(tf.cast(outputs["scores"], tf.float32)), [batch, -1]))
            deltas.append(_flatten_levels(tf.cast(outputs["deltas"], tf.float32), batch, 4))
            shapes.append((tf.shape(feature)[1], tf.shape(feature)[2]))
        if self.config.fpn:
            anchors = tf.concat(fpn_anchors(shapes), axis=0)
        else:
            anchors = c4_anchors(*shapes[0])
        config = self.config
        scores, boxes = rpn_proposals(
            anchors,
            tf.concat(scores, axis=1),
            tf.concat(deltas, axis=1),
            image_hw,
            pre_nms_topk=config.rpn_pre_nms,
            post_nms_topk=config.rpn_post_nms,
            iou_threshold=config.rpn_nms_threshold,
            min_size=config.rpn_min_size,
        )
        post = config.rpn_post_nms
        return tf.ensure_shape(scores, [None, post]), tf.ensure_shape(boxes, [None, post, 4])

    def pool(self, maps, rois):
        """RoIAlign of ``rois [B, N, 4]`` (C4: then layer4): ``[B * N, S, S, C]``."""
        size = (self.config.roi_size, self.config.roi_size)
        maps = [tf.cast(m, tf.float32) for m in maps]  # RoIAlign's weights are float32 (a no-op in float32)
        if self.config.fpn:
            pooled = multilevel_roi_align(maps[:4], rois, size)
        else:
            pooled = roi_align(maps[0], rois, size, 1.0 / 16)
        # Static where known: the region count lets the 3x3 convolutions after this pick Winograd.
        rows = pooled.shape[0] * pooled.shape[1] if None not in pooled.shape[:2] else -1
        pooled = tf.reshape(pooled, [rows, *(_dim(pooled, axis) for axis in (2, 3, 4))])
        if self.top_features is not None:
            pooled = self.top_features(pooled, training=False)
        return pooled

    def detect(self, maps, rois):
        """Box head, class-wise decoding and NMS: ``(class_ids, scores, boxes)``, each ``[B, K, ...]``."""
        batch, num_rois = tf.shape(rois)[0], _dim(rois, 1)
        outputs = self.box_head(self.pool(maps, rois), training=False)
        classes = self.config.num_classes
        probabilities = tf.nn.softmax(tf.reshape(outputs["class_logits"], [batch, num_rois, classes + 1]), axis=-1)
        deltas = tf.reshape(outputs["box_deltas"], [batch, num_rois, classes, 4])
        boxes = decode_boxes(deltas, rois[:, :, None, :], RCNN_STDS, self.config.box_clip)
        class_ids, scores, boxes, _ = multiclass_nms(
            boxes,
            probabilities[:, :, 1:],  # column 0 is the background
            score_threshold=self.config.score_threshold,
            iou_threshold=self.config.nms_threshold,
            max_detections=self.config.max_detections,
        )
        return class_ids, scores, boxes

    def masks(self, maps, boxes, class_ids):
        """The sigmoid mask of each detection's class: ``[B, K, M, M]``."""
        batch, count = tf.shape(boxes)[0], _dim(boxes, 1)
        logits = self.mask_head(self.pool(maps, boxes), training=False)  # [B * K, M, M, classes]
        size = self.config.mask_size
        logits = tf.reshape(logits, [batch, count, size, size, self.config.num_classes])
        channel = tf.maximum(class_ids, 0)  # GluonCV clips the -1 of empty rows to class 0
        chosen = tf.gather(tf.transpose(logits, [0, 1, 4, 2, 3]), channel, axis=2, batch_dims=2)
        return tf.sigmoid(chosen)

    def valid_masks(self, maps, boxes, class_ids, scores=None, min_score=0.0):
        """:meth:`masks` for the detections only (zeros on empty rows, and on rows whose ``scores`` are
        below ``min_score``): a dynamic shape, so not under XLA.

        The mask branch runs per detection (C4: ResNet layer4 each), so skipping GluonCV's empty rows,
        or the detections a caller will drop anyway, saves most of its time.
        """
        if maps[0].shape[0] is None:  # the per-image loop below needs a static batch
            return self.masks(maps, boxes, class_ids)
        batch, count = tf.shape(boxes)[0], _dim(boxes, 1)
        size = self.config.mask_size
        wanted = class_ids >= 0
        if scores is not None:
            wanted &= scores >= min_score
        positions = tf.cast(tf.where(wanted), tf.int32)  # [V, 2] (image, row)
        rows = tf.gather_nd(boxes, positions)
        # Pool image by image: RoIAlign takes [B, N, 4]; one image's rows at a time keeps them with their map.
        flat = []
        for b in range(maps[0].shape[0]):
            mine = tf.boolean_mask(rows, positions[:, 0] == b)
            image_maps = [m[b : b + 1] for m in maps]
            # An image may have no detection left: no rows for the convolutions (see on_nonempty_batch).
            regions = on_nonempty_batch(lambda r, f=image_maps: self.pool(f, r[None]), mine)
            flat.append(on_nonempty_batch(lambda r: self.mask_head(r, training=False), regions))
        logits = tf.concat(flat, axis=0)  # [V, M, M, classes]
        chosen = tf.gather(tf.transpose(logits, [0, 3, 1, 2]), tf.gather_nd(class_ids, positions), batch_dims=1)
        return tf.scatter_nd(positions, tf.sigmoid(chosen), tf.stack([batch, count, size, size]))

    def call(self, images, image_hw=None, valid_masks_only=False, mask_score_threshold=0.0):
        """``valid_masks_only`` (not under XLA): masks only for the detections scoring at least
        ``mask_score_threshold``, zeros elsewhere; by default every row's mask, as GluonCV."""
        images = check_images(images, f"{self.name}'s images")
        return on_nonempty_batch(
            lambda batch: self._detect_and_segment(batch, image_hw, valid_masks_only, mask_score_threshold), images
        )

    def _detect_and_segment(self, images, image_hw, valid_masks_only, mask_score_threshold):
        if image_hw is None:
            image_hw = tf.shape(images)[1:3]
        maps = self.feature_maps(images)
        _, rois = self.proposals(maps, image_hw)
        class_ids, scores, boxes = self.detect(maps, rois)
        if valid_masks_only:
            masks = self.valid_masks(maps, boxes, class_ids, scores, mask_score_threshold)
        else:
            masks = self.masks(maps, boxes, class_ids)
        return {
            "class_ids": class_ids,
            "scores": scores,
            "boxes": boxes,
            "masks": masks,
            "num_detections": tf.reduce_sum(tf.cast(class_ids >= 0, tf.int32), axis=1),
        }
