"""Mask R-CNN's five losses with GluonCV's normalisation (``ForwardBackwardTask.forward_backward``).

Each term is a sum over one image's (or one device's) sampled elements divided by a count:

| term | summed over | divided by |
|---|---|---|
| RPN objectness: sigmoid cross-entropy | sampled anchors | sampled anchors |
| RPN box: smooth L1, ``rho = 1/9`` | positive anchors' 4 coordinates | **sampled** anchors |
| RCNN class: softmax cross-entropy | sampled RoIs (not ignored) | sampled RoIs |
| RCNN box: smooth L1, ``rho = 1`` | positive RoIs' 4 coordinates of their class | **sampled** RoIs |
| mask: sigmoid cross-entropy | positive RoIs' ``M x M`` pixels of their class | those pixels |

Every function returns a ``[B]`` vector. ``normalization="image"`` divides each image by its own
counts (GluonCV's published runs: one image per device); ``"device"`` pools the counts over the ``B``
images and scales by ``B``, as GluonCV computes a device's vector when it holds several images. Either
way GluonCV's device loss is the vector's sum, and its update divides the sum over devices by the
global batch. Losses are computed in float32.
"""

import tensorflow as tf

NORMALIZATIONS = ("image", "device")


def sigmoid_cross_entropy(logits, targets):
    """MXNet's ``SigmoidBinaryCrossEntropyLoss(from_sigmoid=False)``, per element: ``relu(x) - x z + log1p(e^-|x|)``."""
    logits = tf.cast(logits, tf.float32)
    return tf.nn.relu(logits) - logits * targets + tf.math.softplus(-tf.abs(logits))


def smooth_l1(predictions, targets, rho):
    """MXNet's ``HuberLoss(rho)`` per element: ``|d| - rho / 2`` beyond ``rho``, else ``d^2 / (2 rho)``."""
    distance = tf.abs(tf.cast(targets, tf.float32) - tf.cast(predictions, tf.float32))
    return tf.where(distance > rho, distance - 0.5 * rho, (0.5 / rho) * tf.square(distance))


def _per_image_sum(values):
    return tf.reduce_sum(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def normalize(sums, counts, normalization="image"):
    """``sums [B] / counts [B]`` per image, or GluonCV's pooled device form ``B * sums / sum(counts)``."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    counts = tf.cast(counts, tf.float32)
    if normalization == "image":
        return sums / tf.maximum(counts, 1.0)
    batch = tf.cast(tf.shape(sums)[0], tf.float32)
    return batch * sums / tf.maximum(tf.reduce_sum(counts), 1.0)


def rpn_losses(objectness, deltas, cls_target, box_target, box_weight, normalization="image"):
    """``(objectness loss [B], box loss [B])`` of ``objectness [B, N]`` logits and ``deltas [B, N, 4]``.

    ``cls_target [B, N]``: 1 / 0 / -1 (ignored); ``box_weight [B, N]``: 1 on positives.

    Example:
        >>> logits, deltas = tf.zeros([1, 3]), tf.zeros([1, 3, 4])
        >>> cls_loss, box_loss = rpn_losses(logits, deltas, tf.constant([[1.0, 0.0, -1.0]]), tf.zeros([1, 3, 4]),
        ...                                 tf.constant([[1.0, 0.0, 0.0]]))
        >>> round(float(cls_loss[0]), 4), float(box_loss[0])  # log 2 for each of the 2 sampled anchors, / 2
        (0.6931, 0.0)
    """
    cls_target = tf.cast(cls_target, tf.float32)
    sampled = tf.cast(cls_target >= 0.0, tf.float32)
    count = _per_image_sum(sampled)
    cls_sum = _per_image_sum(sigmoid_cross_entropy(objectness, tf.maximum(cls_target, 0.0)) * sampled)
    box_sum = _per_image_sum(smooth_l1(deltas, box_target, 1.0 / 9.0) * tf.cast(box_weight, tf.float32)[..., None])
    return normalize(cls_sum, count, normalization), normalize(box_sum, count, normalization)


def rcnn_losses(class_logits, box_deltas, cls_target, box_target, box_weight, normalization="image"):
    """``(class loss [B], box loss [B])``.

    ``class_logits [B, S, C + 1]`` and ``cls_target [B, S]`` (-1 ignored) on all sampled RoIs;
    ``box_deltas [B, P, 4]``: the deltas of each head row's target class (the box head's ``C x 4``
    outputs gathered at ``cls_target - 1``), ``box_target [B, P, 4]`` and ``box_weight [B, P]``.

    Example:
        >>> cls_loss, box_loss = rcnn_losses(tf.zeros([1, 2, 3]), tf.zeros([1, 1, 4]), tf.constant([[2, 0]]),
        ...                                  tf.ones([1, 1, 4]), tf.ones([1, 1]))
        >>> round(float(cls_loss[0]), 4), float(box_loss[0])  # log 3; 4 x (1 - 1/2) over 2 sampled RoIs
        (1.0986, 1.0)
    """
    cls_target = tf.cast(cls_target, tf.int32)
    sampled = tf.cast(cls_target >= 0, tf.float32)
    count = _per_image_sum(sampled)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.maximum(cls_target, 0), tf.cast(class_logits, tf.float32)
    )
    cls_sum = _per_image_sum(cross_entropy * sampled)
    box_sum = _per_image_sum(smooth_l1(box_deltas, box_target, 1.0) * tf.cast(box_weight, tf.float32)[..., None])
    return normalize(cls_sum, count, normalization), normalize(box_sum, count, normalization)


def mask_loss(mask_logits, mask_target, weight, normalization="image"):
    """The mask loss ``[B]`` of ``mask_logits [B, P, M, M]`` (each row's target class channel) against the soft
    ``mask_target [B, P, M, M]``, over the rows with ``weight [B, P]`` 1 (positives).

    Example:
        >>> loss = mask_loss(tf.zeros([1, 2, 14, 14]), tf.ones([1, 2, 14, 14]), tf.constant([[1.0, 0.0]]))
        >>> round(float(loss[0]), 4)
        0.6931
    """
    weight = tf.cast(weight, tf.float32)
    pixels = tf.cast(tf.shape(mask_logits)[2] * tf.shape(mask_logits)[3], tf.float32)
    total = _per_image_sum(sigmoid_cross_entropy(mask_logits, mask_target) * weight[..., None, None])
    return normalize(total, _per_image_sum(weight) * pixels, normalization)
