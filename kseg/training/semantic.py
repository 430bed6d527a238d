"""The semantic task's parts of training, as GluonCV's ``scripts/segmentation/train.py``.

The model (a zoo preset or ``method`` on ``backbone``, for the data set's
classes), its initialisation (``--pretrained-backbone``, ``--init-from``), the
data (GluonCV's transforms on a resumable stream), the losses (masked softmax
cross-entropy, the auxiliary head's weighted), pixAcc/mIoU, and the final
evaluation (training's validation: centre crops, single scale).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from kseg.data import get_dataset
from kseg.data.synthetic import ensure_dataset
from kseg.evaluation.semantic import EvalSettings, evaluate_semantic
from kseg.losses import SegmentationCrossEntropy
from kseg.metrics import MeanIoU, PixelAccuracy
from kseg.models import choose_model
from kseg.presets import get_preset
from kseg.training.data import training_dataset, validation_dataset
from kseg.training.optimizer import head_lr_multipliers
from kseg.training.task import TrainingTask
from kseg.weights.download import fetch_params
from kseg.weights.gluoncv import load_gluoncv_backbone_params


class SemanticTraining(TrainingTask):
    """FCN, PSPNet, DeepLabV3 and VPLR training: every part GluonCV's train.py has."""

    def __init__(self, config, log=print):
        super().__init__(config, log)
        self.choice = choose_model(config.model_zoo, config.model, config.backbone, config.dataset)
        self.name = self.choice.name
        self.dataset_name = self.choice.dataset
        self.metadata = self.choice.metadata(config.base_size, config.crop_size)
        resize = self.metadata.preprocessing.resize
        self.base_size, self.crop_size = resize.base_size, resize.crop_size

    @property
    def published_metrics(self):
        return self.choice.preset.metrics if self.choice.preset else None

    def describe(self):
        return f"crop {self.crop_size} base {self.base_size}"

    # -- data -------------------------------------------------------------------------------------------------------
    def datasets(self):
        config = self.config
        root = self.dataset_root()
        if config.synthetic_data:
            if root is None:
                raise ValueError("--synthetic-data needs --dataset-dir (where to write the procedural data set)")
            ensure_dataset(self.dataset_name, root, config.synthetic_size, config.synthetic_train, log=self.log)
        train = get_dataset(self.dataset_name, split=config.train_split, root=root)
        val = get_dataset(self.dataset_name, split="val", root=root)
        return train, val

    def training_data(self, train, global_batch, epochs, start_step):
        data = training_dataset(
            train, global_batch, epochs, self.base_size, self.crop_size, self.config.seed, start_step=start_step
        )
        return data.map(self._targets)

    def validation_data(self, val, batch):
        return validation_dataset(val, batch, self.crop_size, self.config.max_val_images).map(self._targets)

    def _targets(self, images, masks):
        if not self.config.aux:
            return images, masks
        return images, {"logits": masks, "aux_logits": masks}

    # -- model ------------------------------------------------------------------------------------------------------
    def build_model(self, aux=None):
        config = self.config
        return self.choice.build(
            aux=config.aux if aux is None else aux,
            output_stride=config.output_stride,
            sync_bn=config.syncbn,
            metadata=self.metadata,
        )

    def inference_model(self, model):
        """The trained model without the auxiliary head, in float32 (what test.py and export load)."""
        from kseg.weights.transfer import transfer_weights

        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            inference = self.build_model(aux=False)
            transfer_weights(model, inference)
        finally:
            keras.config.set_dtype_policy(policy)
        return inference

    def initialize(self, model):
        """``--pretrained-backbone`` then ``--init-from`` (a zoo name's published weights, or a file)."""
        config = self.config
        if config.pretrained_backbone:
            source = config.pretrained_backbone
            path = Path(source) if Path(source).is_file() else fetch_params(get_preset(source).weights)
            load_gluoncv_backbone_params(model.backbone, path)
            self.log(f"Backbone initialised from {path}")
        if config.init_from:
            source = config.init_from
            if source == "pretrained":
                if self.choice.preset is None:
                    raise ValueError(f"--init-from pretrained: {self.name} is not a zoo model; name a weights file")
                source = self.choice.preset.name
            self.load_init_from(model, source)
        elif not config.pretrained_backbone and self.choice.preset is not None:
            self.log(
                "Note: the backbone starts from random weights; GluonCV's recipes start from ImageNet "
                "(--pretrained-backbone resnet101_v1s)."
            )

    def lr_multipliers(self, model):
        return head_lr_multipliers(model, self.config.head_lr_mult)

    def compile_arguments(self, model):
        config = self.config
        metrics = [MeanIoU(model.num_classes), PixelAccuracy(model.num_classes)]
        if model.aux:
            return {
                "loss": {"logits": SegmentationCrossEntropy(), "aux_logits": SegmentationCrossEntropy()},
                "loss_weights": {
                    "logits": config.gradient_scale,
                    "aux_logits": config.gradient_scale * config.aux_weight,
                },
                "metrics": {"logits": metrics},
            }
        return {"loss": SegmentationCrossEntropy(), "loss_weights": config.gradient_scale, "metrics": metrics}

    # -- the end of the run -----------------------------------------------------------------------------------------
    def evaluate(self, inference, val):
        """GluonCV's training-time validation (centre crops, single scale), with a word on what mIoU means here."""
        config = self.config
        settings = EvalSettings(mode="val", multi_scale=False, batch_size=config.val_batch_size or 1,
                                max_images=config.max_val_images)
        result = evaluate_semantic(inference, val, settings, verbose=1)
        present = present_classes_miou(result)
        self.log(
            f"Validation ({result['images']} images, val mode): pixAcc {100 * result['pixAcc']:.2f}  "
            f"mIoU {100 * result['mIoU']:.2f} over {len(result['IoU'])} classes "
            f"({100 * present['mIoU_present']:.2f} over the {present['classes_present']} present; "
            f"a constant guess of the commonest class scores mIoU {100 * present['mIoU_constant_guess']:.2f})."
        )
        return {"dataset": val.name, "split": "val", "mode": "val", "crop_size": self.crop_size, **result, **present}


def present_classes_miou(result):
    """mIoU over the classes present in the labels, and the mIoU of always guessing the commonest class."""
    label_pixels = np.asarray(result["label_pixels"], np.float64)
    present = label_pixels > 0
    iou = np.asarray(list(result["IoU"].values()))
    guess_iou = label_pixels.max() / max(label_pixels.sum(), 1.0)
    return {
        "classes_present": int(present.sum()),
        "mIoU_present": float(iou[present].mean()) if present.any() else 0.0,
        "mIoU_constant_guess": float(guess_iou / len(iou)),
    }
