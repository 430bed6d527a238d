"""tf.distribute strategy and mixed precision from a name, as the recipes' flags give them."""

import json
import os

import keras
import tensorflow as tf

from kseg.ops.runtime import accelerator
from kseg.training.config import PRECISIONS, STRATEGIES


def split_cpu(count):
    """Present the CPU as ``count`` logical devices (tests of MirroredStrategy). Call before TF starts."""
    if count and count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def make_strategy(name="auto"):
    """A ``tf.distribute.Strategy``.

    ``auto``: TPU when ``TPU_NAME`` is set, multi-worker when ``TF_CONFIG``
    names more than one task, mirrored over several GPUs (or logical CPUs),
    else one device. ``multi_worker`` reads ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "auto":
        if os.environ.get("TPU_NAME"):
            name = "tpu"
        elif _cluster_size() > 1:
            name = "multi_worker"
        elif len(_replica_devices()) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs TF_CONFIG (the cluster and this worker's task)")
        return _MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=_replica_devices())
    return tf.distribute.OneDeviceStrategy(_replica_devices()[0])


class _MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """Fixes two failures of Keras 3.15's ``fit`` with more than one worker (TF 2.21).

    Keras reduces a whole (images, masks) batch in one ``reduce`` call to build
    the model, which the collective reduce refuses; and it reduces scalar
    losses and metrics along axis 0, which they do not have. Nested values are
    reduced leaf by leaf here, scalars over replicas only.
    """

    def reduce(self, reduce_op, value, axis):
        if isinstance(value, (tuple, list, dict)):
            return tf.nest.map_structure(lambda leaf: self.reduce(reduce_op, leaf, axis), value)
        if axis is not None and self.experimental_local_results(value)[0].shape.rank == 0:
            axis = None
        return super().reduce(reduce_op, value, axis)


def _replica_devices():
    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def _cluster_size():
    config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    return sum(len(tasks) for tasks in config.get("cluster", {}).values())


def is_chief(strategy):
    """Whether this process writes checkpoints, logs and exports (worker 0, or the only one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0)


def resolve_precision(precision="auto"):
    """``auto``: bf16 on TPUs and on GPUs of compute capability 8.0 or more, else float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = accelerator()
    if device == "tpu":
        return "mixed_bfloat16"
    if device == "gpu":
        gpu = tf.config.list_physical_devices("GPU")[0]
        major, _ = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        return "mixed_bfloat16" if major >= 8 else "mixed_float16"
    return "float32"


def set_precision(precision):
    keras.mixed_precision.set_dtype_policy(precision)
