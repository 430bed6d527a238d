"""The model a GluonCV-style script names: ``--model-zoo NAME``, or ``--model/--backbone/--dataset``.

GluonCV's ``scripts/segmentation/{train,test}.py`` form a zoo name from
``{model}_{backbone}_{dataset suffix}``; a name outside the zoo is built with
random weights (``kseg.models.build``). :class:`ModelChoice` is what such a
script resolved to, and builds it for training or inference.
"""

from __future__ import annotations

import dataclasses
import os

import keras

from kseg.models.builders import canonical_backbone, check_method
from kseg.models.registry import build, get, get_preset, load_model_weights, zoo_name
from kseg.presets import CLASSES_BY_DATASET, PRESETS, SEMANTIC, CropResize, ModelMetadata, Preprocessing, Preset


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """A zoo preset (``preset``), or a method and backbone outside the zoo (``preset`` None), on ``dataset``.

    Example:
        >>> choice = kseg.models.choose_model(model_zoo="psp_resnet101_ade")
        >>> choice.method, choice.backbone, choice.dataset
        ('psp', 'resnet101_v1s', 'ade20k')
        >>> model = choice.build(weights="pretrained", aux=True)  # for fine-tuning on ADE20K
    """

    name: str
    preset: Preset | None
    method: str
    backbone: str
    dataset: str

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes of the data set the model is for."""
        return CLASSES_BY_DATASET[self.dataset]

    def metadata(self, base_size: int | None = None, crop_size: int | None = None) -> ModelMetadata:
        """The metadata a model of this choice carries on its data set, with these sizes (default: the preset's)."""
        default = self.preset.metadata.preprocessing.resize if self.preset else CropResize()
        resize = CropResize(base_size or default.base_size, crop_size or default.crop_size)
        return ModelMetadata(
            SEMANTIC,
            self.classes,
            Preprocessing(resize=resize),
            dataset=self.dataset,
            preset=self.preset.name if self.preset else None,
        )

    def build(
        self,
        weights: str | os.PathLike | None = None,
        aux: bool = False,
        output_stride: int = 8,
        sync_bn: bool = False,
        strict: bool = False,
        metadata: ModelMetadata | None = None,
    ) -> keras.Model:
        """The model for this choice's data set; ``weights`` as :func:`kseg.models.get` takes them.

        ``strict`` (inference) refuses weights that would leave class layers
        untrained: GluonCV's file for a data set of other classes, say.
        """
        metadata = metadata or self.metadata()
        if self.preset is not None:
            model = get(
                self.name,
                weights=weights,
                classes=metadata.classes,
                aux=aux,
                output_stride=output_stride,
                sync_bn=sync_bn,
                strict=strict,
            )
            model.metadata = metadata
            return model
        if weights == "pretrained":
            raise ValueError(f"{self.name} is not in the zoo, so it has no pretrained weights; name a weights file")
        model = build(
            self.method, self.backbone, len(metadata.classes), aux=aux, output_stride=output_stride,
            sync_bn=sync_bn, name=self.name, metadata=metadata,
        )  # fmt: skip
        if weights is not None:
            load_model_weights(model, weights, strict=strict)
        return model


def choose_model(
    model_zoo: str | None = None, method: str | None = None, backbone: str = "resnet101", dataset: str | None = None
) -> ModelChoice:
    """Resolve a script's model flags as GluonCV's scripts do (``{model}_{backbone}_{dataset suffix}``).

    Example:
        >>> choose_model(method="psp", backbone="resnet101", dataset="ade20k").preset.name
        'psp_resnet101_ade'
        >>> choose_model(method="fcn", backbone="resnet18_v1b", dataset="citys").preset is None
        True
    """
    if model_zoo:
        preset = get_preset(model_zoo)
        if preset.task != SEMANTIC:
            raise ValueError(f"{model_zoo} is not a semantic segmentation model")
        architecture = preset.architecture
        return ModelChoice(preset.name, preset, architecture["method"], architecture["backbone"],
                           dataset or preset.dataset)
    if not method:
        raise ValueError("Name a model: --model-zoo NAME (see `kseg list`) or --model METHOD")
    if not dataset:
        raise ValueError("--model needs --dataset (ade20k, pascal_voc, pascal_aug, coco or citys)")
    method = check_method(method)
    backbone = canonical_backbone(backbone)
    name = zoo_name(method, backbone.removesuffix("_v1s"), dataset)
    return ModelChoice(name, PRESETS.get(name), method, backbone, dataset)
