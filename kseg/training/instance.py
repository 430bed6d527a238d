"""The Mask R-CNN task's parts of training, as GluonCV's ``scripts/instance/mask_rcnn/train_mask_rcnn.py``.

The model (a zoo entry, for the training file's own categories when they are not the preset's), its
initialisation (``--init-from``), the data (any COCO-format JSON and image folder: GluonCV's reader and
train transform on a resumable stream, static canvases, RPN targets in the pipeline), the five losses
inside the model (:class:`~kseg.training.mask_rcnn.MaskRCNNTraining`), SGD without weight decay on
biases, the step schedule with warm-up, COCO evaluation (pycocotools, bbox and segm) during and at the
end of training.

The data set folder holds COCO's layout: ``annotations/instances_{train,val}2017.json`` and
``{train,val}2017/`` (``--synthetic-data`` writes kseg's procedural shapes there).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import keras

from kseg.evaluation.coco import evaluate_coco, locate
from kseg.presets import PRESETS, Preprocessing, ShortSideResize
from kseg.training.task import TrainingTask
from kseg.utils.io import write_atomic

CANVAS_MULTIPLE = 32  # every feature map of the padded canvas has whole cells (stride 32, P6's 64 is ceil'd)


def resized_extent(height, width, short, max_size):
    """GluonCV's ``resize_short_within`` size in plain Python (numpy's rounding, half to even)."""
    scale = short / min(height, width)
    if round(scale * max(height, width)) > max_size:
        scale = max_size / max(height, width)
    return int(round(height * scale)), int(round(width * scale))


class InstanceTraining(TrainingTask):
    """Mask R-CNN training on COCO or any COCO-format data set."""

    dataset_name = "coco-format"

    def __init__(self, config, log=print):
        super().__init__(config, log)
        self.preset = PRESETS[config.model_zoo]
        self.name = self.preset.name
        resize = self.preset.model_metadata().preprocessing.resize
        self.short = config.short or resize.short
        self.max_size = config.max_size or resize.max_size
        metadata = self.preset.model_metadata()
        if (self.short, self.max_size) != (resize.short, resize.max_size):  # the model predicts at its training size
            metadata = dataclasses.replace(metadata, preprocessing=Preprocessing(resize=ShortSideResize(
                self.short, self.max_size)))  # fmt: skip
        self.metadata = metadata
        self.canvas = None
        self.max_objects = None
        self.root = None
        self.sampler = None
        self._last_validation = None  # (detector, epoch, report) of the latest validation in this process

    @property
    def published_metrics(self):
        return self.preset.metrics

    def describe(self):
        canvas = f", canvas {self.canvas[0]}x{self.canvas[1]}" if self.canvas else ""
        sampler = ""
        if self.sampler is not None and (self.config.rcnn_samples or self.config.rcnn_positives):
            sampler = f", RCNN sampler {self.sampler.num_sample} RoIs (at most {self.sampler.max_positive} positive)"
        return f"short {self.short} max {self.max_size}{canvas}{sampler}"

    # -- data -------------------------------------------------------------------------------------------------------
    def datasets(self):
        from kseg.data.datasets.coco_instances import COCOInstances
        from kseg.data.synthetic import SHAPES_FOLDER, write_instance_dataset

        config = self.config
        root = self.dataset_root()
        if root is None:
            raise ValueError("Mask R-CNN training needs --dataset-dir (a COCO-format folder)")
        root = Path(root)
        if config.synthetic_data:
            if not (root / SHAPES_FOLDER / "annotations").is_dir():
                self.log(f"Writing a procedural COCO-format instance set to {root / SHAPES_FOLDER}")
                size = (config.synthetic_size, int(config.synthetic_size * 5 / 4))
                write_instance_dataset(root, config.synthetic_train, max(4, config.synthetic_train // 4), size)
            root = root / SHAPES_FOLDER
        self.root = root
        train = COCOInstances(*locate(root, f"{config.train_split}2017"))
        val = COCOInstances(*locate(root, "val2017"), skip_empty=False)
        if not len(train):
            raise ValueError(f"No training image under {root} has an object GluonCV's reader keeps")
        if list(train.class_names) != list(self.metadata.classes):
            self.metadata = self.metadata.with_classes(tuple(train.class_names))
            self.log(f"Training on the data set's {len(train.class_names)} categories: {', '.join(train.class_names)}")
        # Static shapes: one canvas that holds every resized image, and the most objects of any image.
        extents = [resized_extent(r.height, r.width, self.short, self.max_size) for r in train]
        self.canvas = tuple(CANVAS_MULTIPLE * math.ceil(max(e[i] for e in extents) / CANVAS_MULTIPLE) for i in (0, 1))
        self.max_objects = max(len(r.boxes) for r in train)
        return train, val

    def training_data(self, train, global_batch, epochs, start_step):
        from kseg.data.instance_transforms import InstanceTrainTransform
        from kseg.training.data import instance_training_dataset

        transform = InstanceTrainTransform(self.short, self.max_size, seed=self.config.seed)
        return instance_training_dataset(train, global_batch, epochs, transform, self.canvas,
                                         self.preset.architecture["fpn"], self.max_objects, self.config.seed,
                                         start_step)  # fmt: skip

    def validation_data(self, val, batch):
        return None  # COCO evaluation runs in a callback (:meth:`callbacks`), not in Keras' validation loop

    # -- model ------------------------------------------------------------------------------------------------------
    def build_model(self):
        import kseg
        from kseg.training.mask_rcnn import MaskRCNNTraining

        classes = None if list(self.metadata.classes) == list(self.preset.classes or ()) else self.metadata.classes
        detector = kseg.models.get(self.name, classes=classes)
        detector.metadata = self.metadata  # the data set's classes and the training size
        self.sampler = self.sampler_settings(detector.config)
        return MaskRCNNTraining(detector, self.sampler, seed=self.config.seed)

    def sampler_settings(self, model_config):
        """The model's GluonCV counts, with ``--rcnn-samples`` / ``--rcnn-positives`` where given."""
        from kseg.training.mask_rcnn import TrainingSettings

        config, settings = self.config, TrainingSettings.for_model(model_config)
        samples = config.rcnn_samples or settings.num_sample
        default_positives = max(1, samples // 4) if config.rcnn_samples else settings.max_positive
        positives = config.rcnn_positives or default_positives
        if positives > samples:
            raise ValueError(f"rcnn_positives ({positives}) must not exceed the {samples} RoIs the sampler draws "
                             f"per image")
        return dataclasses.replace(settings, num_sample=samples, max_positive=positives)

    def initialize(self, model):
        """``--pretrained-backbone`` (GluonCV's ImageNet file) then ``--init-from`` (a zoo entry or a file)."""
        from kseg.weights.download import fetch_params
        from kseg.weights.gluoncv import load_gluoncv_detector_backbone_params

        config = self.config
        if config.pretrained_backbone:
            source = config.pretrained_backbone
            path = Path(source) if Path(source).is_file() else fetch_params(PRESETS[source].weights)
            load_gluoncv_detector_backbone_params(model.detector, path)
            self.log(f"Backbone initialised from {path}")
        source = config.init_from
        if not source:
            if not config.pretrained_backbone:
                self.log("Note: training from random weights; GluonCV's recipes start from ImageNet backbones.")
            return
        if source == "pretrained":
            source = self.name
        self.load_init_from(model.detector, source)

    def schedule(self, steps_per_epoch, total_steps):
        from kseg.training.schedules import StepWarmupSchedule

        config = self.config
        decay_epochs = [float(e) for e in config.lr_decay_epochs] or [17.0, 23.0]
        warmup = config.warmup_steps if config.warmup_steps is not None else max(8000 / config.batch_size, 1000)
        return StepWarmupSchedule(config.lr, steps_per_epoch, decay_epochs, config.lr_decay, warmup)

    def l2_multipliers(self, model):
        from kseg.training.optimizer import bias_l2_multipliers

        return bias_l2_multipliers(model.trainable_variables)

    def compile_arguments(self, model):
        return {}

    def callbacks(self, model, run_dir):
        if self.config.val_every <= 0:
            return []
        return [_COCOValidation(self, model.detector, run_dir, self.config.val_every)]

    # -- the end of the run -----------------------------------------------------------------------------------------
    def inference_model(self, model):
        """The trained detector in float32 (what test.py, predict and export load)."""
        detector = model.detector
        if detector.dtype_policy.name == "float32":
            return detector
        inference = type(detector)(detector.config, metadata=detector.metadata, dtype="float32")
        inference.set_weights(detector.get_weights())
        return inference

    def evaluate(self, inference, val):
        # The last epoch's validation already scored these very weights (a float32 run evaluates its own
        # detector): reuse it rather than run COCOeval twice on the same detections.
        if self._last_validation is not None:
            detector, epoch, report = self._last_validation
            if detector is inference and epoch == self.config.epochs:
                self._log_scores(report, f" (epoch {epoch}'s validation: the same weights)")
                return report
        return self._coco(inference, verbose=1)

    def _coco(self, detector, verbose=0):
        report = evaluate_coco(detector, self.root, "val2017", max_images=self.config.max_val_images,
                               verbose=verbose)  # at the model's own size: its training size  # fmt: skip
        self._log_scores(report)
        return report

    def _log_scores(self, report, source=""):
        self.log(f"COCO val ({report['images']} images): box AP {100 * report['bbox']['AP']:.1f}, "
                 f"mask AP {100 * report['segm']['AP']:.1f}{source}")  # fmt: skip


class _COCOValidation(keras.callbacks.Callback):
    """GluonCV's validation every ``every`` epochs: COCOeval on the val split, appended to ``validation.json``."""

    def __init__(self, task, detector, run_dir, every):
        super().__init__()
        self.task, self.detector, self.path, self.every = task, detector, Path(run_dir) / "validation.json", every

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        report = self.task._coco(self.detector)
        self.task._last_validation = (self.detector, epoch + 1, report)
        history = json.loads(self.path.read_text()) if self.path.is_file() else []
        history.append({"epoch": epoch + 1, "bbox": report["bbox"], "segm": report["segm"]})
        write_atomic(self.path, json.dumps(history, indent=1))
