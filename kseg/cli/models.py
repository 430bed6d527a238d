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


def build_for_inference(choice, weights, num_classes, output_stride=8):
    """The model to evaluate, predict with or export: its class layers are never started afresh.

    ``kseg.models.get(..., num_classes=K)`` keeps every weight but the class
    layers when ``K`` is not the zoo entry's (fine-tuning). For inference that
    would silently score untrained class layers, so here a class count other
    than the entry's needs a fine-tuned ``K``-class ``.weights.h5`` (or
    ``weights=None`` for random weights); GluonCV's published files and any
    ``.params`` hold the entry's own classes and are refused.
    """
    entry = choice.entry
    if entry is None or weights is None or int(num_classes) == entry.num_classes:
        return build_model(choice, weights, num_classes, output_stride=output_stride)
    if weights == "pretrained" or not str(weights).endswith(".weights.h5"):
        source = "GluonCV's published weights" if weights == "pretrained" else str(weights)
        raise ValueError(
            f"{choice.name} predicts its {entry.num_classes} {entry.dataset} classes, but {num_classes} are asked "
            f"for: {source} would leave the class layers untrained. Use the model's own data set "
            f"({entry.dataset}), or pass a fine-tuned {num_classes}-class .weights.h5"
        )
    from kseg.models.registry import load_weights

    model = build_model(choice, None, num_classes, output_stride=output_stride)
    build_full = None
    if entry.aux:  # a file saved by train.py with the auxiliary head
        build_full = lambda: build_model(choice, None, num_classes, aux=True, output_stride=output_stride)  # noqa: E731
    load_weights(model, weights, build_full=build_full, strict=True)
    return model
