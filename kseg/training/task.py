"""What a task plugs into the shared training loop (:func:`kseg.training.train`).

The loop owns everything tasks share: seeds and determinism, the strategy,
precision and XLA, GluonCV's SGD and its schedule, checkpoints and resume,
the NaN stop, logs, the final weights, ``metrics.json``, the export and the
predictions. A task supplies its parts: the model, its initialisation, the
data pipelines, losses and metrics, the inference copy and its evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras


class TrainingTask:
    """The parts of one task; subclasses implement the methods that raise ``NotImplementedError``.

    Attributes set by subclasses: ``name`` (the run's model name), ``metadata``
    (what the trained model will carry).
    """

    name: str

    def __init__(self, config, log=print):
        self.config = config
        self.log = log

    @property
    def published_metrics(self) -> dict | None:
        """GluonCV's published scores of the preset trained, for metrics.json."""
        return None

    def describe(self) -> str:
        """A few words on the task's settings for the run's opening line."""
        return ""

    def dataset_root(self) -> str | None:
        return self.config.dataset_dir or os.environ.get("KSEG_DATA")

    def check_paths(self) -> None:
        """Refuse missing inputs before any model is built or step taken."""
        from kseg.presets import BACKBONE, PRESETS

        init = self.config.init_from
        if init and init != "pretrained" and init not in PRESETS and not Path(init).is_file():
            raise FileNotFoundError(f"--init-from: no zoo model or file named {init}")
        if self.config.reuse_classes and init not in PRESETS and init != "pretrained":
            raise ValueError(f"--reuse-classes needs --init-from a zoo entry (its classes are known), not {init}")
        source = self.config.pretrained_backbone
        if source and not Path(source).is_file() and (source not in PRESETS or PRESETS[source].task != BACKBONE):
            backbones = ", ".join(name for name, p in PRESETS.items() if p.task == BACKBONE)
            raise FileNotFoundError(
                f"--pretrained-backbone: no file {source}, nor a GluonCV ImageNet backbone ({backbones})"
            )
        missing = [path for path in self.config.predict if not Path(path).is_file()]
        if missing:
            raise FileNotFoundError(f"--predict: no image at {', '.join(missing)}")

    def datasets(self):
        """``(train, val)`` readers."""
        raise NotImplementedError

    def training_data(self, train, global_batch: int, epochs: int, start_step: int):
        """The batches from ``start_step`` on, as ``(inputs, targets)``: a ``tf.data.Dataset``."""
        raise NotImplementedError

    def validation_data(self, val, batch: int):
        raise NotImplementedError

    def build_model(self) -> keras.Model:
        raise NotImplementedError

    def initialize(self, model: keras.Model) -> None:
        """Pretrained weights into the freshly built model (before any checkpoint is restored)."""

    def load_init_from(self, model: keras.Model, source: str) -> None:
        """``--init-from`` (a zoo name's published weights, or a file) into ``model``; says what starts afresh."""
        from kseg.models import load_model_weights
        from kseg.presets import PRESETS

        skipped = load_model_weights(model, source, reuse_classes=self.config.reuse_classes)
        if self.config.reuse_classes:
            kept = [name for name in model.metadata.classes if name in PRESETS[source].classes]
            note = f" (class rows of {len(kept)} of {len(model.metadata.classes)} classes reused: {', '.join(kept)})"
        else:
            note = f" ({len(skipped)} layer(s) afresh: {', '.join(skipped)})" if skipped else ""
        self.log(f"Initialised from {source}{note}")

    def lr_multipliers(self, model: keras.Model) -> dict:
        """``{variable path: learning-rate multiplier}`` (GluonCV's heads at 10x)."""
        return {}

    def l2_multipliers(self, model: keras.Model) -> dict:
        """``{variable path: weight-decay multiplier}`` (GluonCV's detection recipes: 0 on biases)."""
        return {}

    def schedule(self, steps_per_epoch: int, total_steps: int):
        """The learning-rate schedule (default GluonCV's segmentation one: poly, optional warm-up)."""
        from kseg.training.schedules import PolyLearningRate

        config = self.config
        warmup = int(round(config.warmup_epochs * steps_per_epoch))
        return PolyLearningRate(config.lr, total_steps, power=config.power, warmup_steps=warmup)

    def optimizer_options(self) -> dict:
        """Further keyword arguments of the optimizer (e.g. ``clipvalue``)."""
        return {"clipvalue": self.config.clip_gradient} if self.config.clip_gradient else {}

    def callbacks(self, model: keras.Model, run_dir) -> list:
        """Callbacks of the task's own (e.g. COCO evaluation every N epochs)."""
        return []

    def compile_arguments(self, model: keras.Model) -> dict:
        """``loss``, ``loss_weights`` and ``metrics`` for ``model.compile``."""
        raise NotImplementedError

    def inference_model(self, model: keras.Model) -> keras.Model:
        """The trained model as inference wants it (no training-only heads, float32)."""
        return model

    def evaluate(self, inference: keras.Model, val) -> dict:
        """The final evaluation: a dict for metrics.json."""
        raise NotImplementedError
