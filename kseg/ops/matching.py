"""IoU for training-time matching, with MXNet ``contrib.box_iou``'s semantics.

The inference ops (:func:`kseg.ops.boxes.box_iou`) follow ``box_nms``, where a
zero-area pair gives 0 / 0 = NaN. GluonCV's target generators call
``box_iou`` instead, which returns 0 whenever the intersection is not
positive and gives a box with a negative side no area. Matching needs that:
a NaN would lose every ``argmax``.
"""

import tensorflow as tf

# np.spacing(np.float32(1)): GluonCV's tolerance for "this anchor ties a ground truth's best IoU".
FLOAT32_EPS = 1.1920929e-07


def _area(x1, y1, x2, y2):
    width, height = x2 - x1, y2 - y1
    return tf.where((width < 0.0) | (height < 0.0), 0.0, width * height)


def matching_iou(boxes_a, boxes_b):
    """Pairwise IoU ``[..., N, M]`` of corner boxes ``[..., N, 4]`` and ``[..., M, 4]``; 0 where they do not overlap.

    Example:
        >>> matching_iou([[0.0, 0.0, 2.0, 2.0]], [[1.0, 1.0, 3.0, 3.0], [5.0, 5.0, 5.0, 5.0]]).numpy()
        array([[0.14285715, 0.        ]], dtype=float32)
    """
    a = tf.expand_dims(tf.convert_to_tensor(boxes_a, tf.float32), -2)
    b = tf.expand_dims(tf.convert_to_tensor(boxes_b, tf.float32), -3)
    ax1, ay1, ax2, ay2 = tf.unstack(a, 4, axis=-1)
    bx1, by1, bx2, by2 = tf.unstack(b, 4, axis=-1)
    inter = tf.maximum(tf.minimum(ax2, bx2) - tf.maximum(ax1, bx1), 0.0) * tf.maximum(
        tf.minimum(ay2, by2) - tf.maximum(ay1, by1), 0.0
    )
    union = _area(ax1, ay1, ax2, ay2) + _area(bx1, by1, bx2, by2) - inter
    return tf.where(inter > 0.0, inter / tf.where(inter > 0.0, union, 1.0), 0.0)


def valid_boxes(boxes):
    """Which rows of a ``-1``-padded ground-truth tensor ``[..., G, 4]`` are real (any coordinate >= 0)."""
    return tf.reduce_max(boxes, axis=-1) >= 0.0


def first_argmax(values, axis=-1):
    """The first index of the maximum along ``axis`` (``tf.argmax`` leaves ties unspecified; numpy takes the first)."""
    values = tf.convert_to_tensor(values)
    size = tf.shape(values)[axis]
    best = tf.reduce_max(values, axis=axis, keepdims=True)
    shape = [1] * values.shape.rank
    shape[axis] = -1
    index = tf.reshape(tf.range(size), shape)
    return tf.reduce_min(tf.where(values == best, index, size), axis=axis)


def top_k_mask(scores, k):
    """``[..., N]`` bool: the ``k`` highest ``scores`` of each row (``k`` may be a tensor ``[...]``); -inf never wins.

    Ties break towards the lower index, as a stable sort would.
    """
    scores = tf.convert_to_tensor(scores, tf.float32)
    order = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=-1, stable=True)  # the position of each element in the order
    k = tf.cast(k, rank.dtype)
    return (rank < k[..., None]) & (scores > -float("inf"))
