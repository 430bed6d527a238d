"""Training and validation pipelines that can restart at any step.

Training reads one endless stream of samples: epoch ``e`` is a seeded
permutation of the data set, and sample ``k`` of the stream gets its
augmentation draws from (seed, epoch, index) alone. A run resumed at step
``s`` starts the stream at sample ``s * batch`` and sees exactly the batches an
uninterrupted run would have seen. Epochs roll over (GluonCV's
``last_batch='rollover'``): the samples left after the last full batch open
the next epoch's first batch.
"""

import numpy as np
import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.data.transforms import SegmentationTransform


def sample_order(num_samples, epochs, seed):
    """``(epoch, index)`` of every sample of the stream, ``[epochs * num_samples]`` each."""
    rng = np.random.default_rng(seed)
    indices = np.concatenate([rng.permutation(num_samples) for _ in range(epochs)])
    epoch_of = np.repeat(np.arange(epochs), num_samples)
    return epoch_of.astype(np.int64), indices.astype(np.int64)


def steps_per_epoch(num_samples, global_batch):
    steps = num_samples // global_batch
    if steps < 1:
        raise ValueError(f"The training split has {num_samples} images, fewer than one batch of {global_batch}")
    return steps


def training_dataset(dataset, global_batch, epochs, base_size, crop_size, seed, start_step=0):
    """Batches of (normalised float32 ``[B, crop, crop, 3]``, int32 ``[B, crop, crop]``) from ``start_step`` on.

    The stream holds one extra epoch so that rolled-over batches never run dry.
    """
    transform = SegmentationTransform("train", base_size, crop_size, dataset.mask_fill, seed=seed, normalize=False)
    epoch_of, index_of = sample_order(len(dataset), epochs + 1, seed)
    start = start_step * global_batch
    if start >= len(index_of):
        raise ValueError(f"Step {start_step} is past the end of training")

    def load(epoch, index):
        image, mask = dataset.load(int(index))
        return transform.transform(image, mask, index=int(index), epoch=int(epoch))

    def decode(epoch, index):
        image, mask = tf.numpy_function(load, [epoch, index], [tf.uint8, tf.int32], stateful=False)
        image = tf.ensure_shape(image, [crop_size, crop_size, 3])
        return normalize_image(image), tf.ensure_shape(mask, [crop_size, crop_size])

    stream = tf.data.Dataset.from_tensor_slices((epoch_of[start:], index_of[start:]))
    stream = stream.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.batch(global_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def validation_dataset(dataset, global_batch, crop_size, max_images=None):
    """GluonCV's training-time validation: short side to the crop, centre crop (``val`` mode), in order.

    The last batch is kept whole-or-partial; every image counts once.
    """
    val = SegmentationTransform("val", crop_size=crop_size, mask_fill=dataset.mask_fill, seed=0)
    pairs = dataset.as_tf_dataset()
    if max_images is not None:
        pairs = pairs.take(max_images)
    return val(pairs).batch(global_batch).prefetch(tf.data.AUTOTUNE)


def instance_training_dataset(dataset, global_batch, epochs, transform, canvas_hw, fpn, max_objects, seed,
                              start_step=0):  # fmt: skip
    """Mask R-CNN batches (dicts for :func:`kseg.training.mask_rcnn.training_losses`) from ``start_step`` on.

    ``dataset``: a :class:`kseg.data.datasets.coco_instances.COCOInstances`; ``transform`` an
    :class:`~kseg.data.instance_transforms.InstanceTrainTransform`. Each image is transformed (its flip
    drawn from the seed, epoch and index), normalised and zero-padded to the static ``canvas_hw``, its
    ground truth padded to ``max_objects``; the RPN targets are computed in the pipeline on the canvas's
    anchors, their sampler's priorities drawn from the same (seed, epoch, index).
    """
    from kseg.data.instance_batches import pad_to_canvas
    from kseg.data.preprocessing import load_image
    from kseg.ops.anchors import image_anchors
    from kseg.ops.rpn_targets import rpn_targets

    canvas_h, canvas_w = canvas_hw
    anchors = image_anchors(canvas_h, canvas_w, fpn)
    epoch_of, index_of = sample_order(len(dataset), epochs + 1, seed)
    start = start_step * global_batch
    if start >= len(index_of):
        raise ValueError(f"Step {start_step} is past the end of training")

    def load(epoch, index):
        record = dataset[int(index)]
        sample = transform(load_image(record.path), record.boxes, record.classes, record.polygons, index=int(index),
                           epoch=int(epoch))  # fmt: skip
        return pad_to_canvas(sample, canvas_hw, max_objects)

    def assemble(epoch, index):
        types = [tf.float32, tf.int32, tf.float32, tf.int32, tf.uint8]
        image, hw, boxes, classes, masks = tf.numpy_function(load, [epoch, index], types, stateful=False)
        boxes = tf.ensure_shape(boxes, [max_objects, 4])
        hw = tf.ensure_shape(hw, [2])
        stream_seed = tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch, index])
        priority = tf.random.stateless_uniform([anchors.shape[0]], stream_seed)
        cls_target, box_target, box_weight = rpn_targets(anchors, boxes, hw, priority)
        return {
            "images": tf.ensure_shape(image, [canvas_h, canvas_w, 3]),
            "image_hw": hw,
            "gt_boxes": boxes,
            "gt_classes": tf.ensure_shape(classes, [max_objects]),
            "gt_masks": tf.ensure_shape(masks, [max_objects, canvas_h, canvas_w]),
            "rpn_cls_target": cls_target,
            "rpn_box_target": box_target,
            "rpn_box_weight": box_weight,
        }

    stream = tf.data.Dataset.from_tensor_slices((epoch_of[start:], index_of[start:]))
    stream = stream.map(assemble, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.batch(global_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
