"""The model a recipe asks for: ``--model-zoo NAME`` or ``--model/--backbone/--dataset``."""

import dataclasses

import kseg
from kseg.models.zoo import SEMANTIC_ZOO


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """What the flags name: a zoo entry (``entry``) or a method/backbone pair outside the zoo."""

    name: str
    entry: object  # ZooEntry or None
    method: str
    backbone: str
    dataset: str


def choose_model(model_zoo=None, method=None, backbone="resnet101", dataset=None):
    """Resolve the flags as GluonCV's scripts do (``{model}_{backbone}_{dataset suffix}``)."""
    if model_zoo:
        entry = kseg.models.get_entry(model_zoo)
        return ModelChoice(entry.name, entry, entry.method, entry.backbone, dataset or entry.dataset)
    if not method:
        raise ValueError("Name a model: --model-zoo NAME (see kseg.models.list_models()) or --model METHOD")
    if not dataset:
        raise ValueError("--model needs --dataset (ade20k, pascal_voc, pascal_aug, coco or citys)")
    backbone = kseg.models.canonical_backbone(backbone)
    name = kseg.models.zoo_name(method, backbone.removesuffix("_v1s"), dataset)
    entry = SEMANTIC_ZOO.get(name)
    return ModelChoice(name, entry, method, backbone, dataset)


def build_model(choice, weights, num_classes, aux=False, output_stride=8, sync_bn=False):
    """The Keras model for ``choice``; ``weights`` as ``kseg.models.get`` (None, "pretrained" or a path)."""
    if choice.entry is not None:
        return kseg.models.get(
            choice.name,
            weights=weights,
            num_classes=num_classes,
            aux=aux,
            output_stride=output_stride,
            sync_bn=sync_bn,
        )
    if weights == "pretrained":
        raise ValueError(f"{choice.name} is not in the zoo, so it has no pretrained weights; pass --weights PATH")
    model = kseg.models.build(
        choice.method, choice.backbone, num_classes, aux=aux, output_stride=output_stride, sync_bn=sync_bn,
        name=choice.name,
    )
    if weights is not None:
        from kseg.models.registry import load_weights

        load_weights(model, weights)
    return model
