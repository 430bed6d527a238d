"""``kseg.models.get``, ``list_models`` and ``build``: every preset of both tasks through one door."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras

from kseg.models.builders import BUILDERS, CONVERTER_OF_TASK, METHOD_HEADS, build_backbone, canonical_backbone
from kseg.models.class_rows import ReuseClasses, class_layers, load_reusing_classes, reuse_map
from kseg.models.layers import dtype_policy_scope
from kseg.models.loading import load_weights, weight_variants
from kseg.models.segmentation import SemanticSegmenter, default_semantic_metadata
from kseg.ops.runtime import check_inference_precision
from kseg.presets import PRESETS, ZOO_SUFFIX, ModelMetadata, Preset, get_preset, list_presets, numbered_classes
from kseg.weights.download import fetch_pretrained

_CLASS_OPTIONS = ("num_classes", "classes")


def list_models(task: str | None = None) -> list[str]:
    """Every preset name, or one task's: ``"semantic"`` (15), ``"instance"`` (6 Mask R-CNN), ``"backbone"`` (10).

    Example:
        >>> import kseg
        >>> kseg.models.list_models("semantic")[:2]
        ['fcn_resnet50_ade', 'fcn_resnet101_ade']
    """
    return list_presets(task)


def get_entry(name: str) -> Preset:
    """The :class:`kseg.presets.Preset` called ``name`` (also ``kseg.presets.get_preset``).

    Example:
        >>> entry = kseg.models.get_entry("deeplab_resnet101_voc")
        >>> entry.task, entry.num_classes, entry.weights.gluoncv_file
        ('semantic_segmentation', 21, 'deeplab_resnet101_voc-311ed22c.params')
    """
    return get_preset(name)


def _check_classes(preset: Preset, num_classes, classes) -> tuple[str, ...] | None:
    """The class names asked for, or None for the preset's own."""
    if classes is not None:
        if isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
            raise TypeError(f"classes must be a non-empty list of class names, got {classes!r}")
        names = tuple(classes)
        if not all(isinstance(c, str) and c for c in names) or len(set(names)) != len(names):
            raise ValueError(f"classes must be distinct non-empty strings, got {list(names)}")
        if num_classes is not None and num_classes != len(names):
            raise ValueError(f"num_classes={num_classes!r} but {len(names)} class names are given")
        return None if names == preset.classes else names
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return None if num_classes == preset.num_classes else numbered_classes(num_classes)


def _check_options(preset: Preset, options: dict) -> None:
    builder = BUILDERS[preset.builder]
    accepted = set(builder.options) | (set(_CLASS_OPTIONS) if preset.classes is not None else set())
    refused = [key for key in options if key not in accepted]
    if refused:
        takes = ", ".join(sorted(accepted)) or "none of them"
        raise ValueError(
            f"{', '.join(refused)} {'does' if len(refused) == 1 else 'do'} not apply to {preset.name} "
            f"(task: {preset.task.replace('_', ' ')}); its options: {takes}"
        )


def get(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    aux: bool | None = None,
    output_stride: int | None = None,
    sync_bn: bool | None = None,
    strict: bool = False,
    precision: str | None = None,
    reuse_classes: ReuseClasses | None = None,
) -> keras.Model:
    """Build a published model by its GluonCV name, for any task.

    Args:
        name: a name from :func:`list_models`, e.g. ``"deeplab_resnet101_voc"``,
            ``"mask_rcnn_fpn_resnet50_v1b_coco"`` or ``"resnet101_v1s"``.
        weights: None or ``"none"`` (random initialisation), ``"pretrained"`` (GluonCV's
            published file: from ``$KSEG_HOME``, else downloaded, SHA-1
            checked and converted once; see :mod:`kseg.weights.download`), or a
            path to a GluonCV ``.params`` file or a kseg ``.weights.h5`` file.
        num_classes, classes: other classes than the preset's (fine-tuning):
            their number, or their names. Every weight but the class layers is
            loaded; the class layers start afresh.
        reuse_classes: with other ``classes``, start the class layers' rows of
            classes the preset knows from its weights (GluonCV's
            ``reset_class(reuse_weights=...)``; the background score too):
            True (every class whose name the preset has), a list of such
            names, or ``{new: preset}`` names or indices.
        aux: semantic models: add the auxiliary FCN head (training). Default off.
        output_stride: semantic models and backbones: 8 as published (32 for
            the ImageNet backbones); 16 trades accuracy for speed.
        sync_bn: semantic models and backbones: synchronized BatchNormalization.
        strict: refuse weights that leave any layer untrained (inference).
        precision: the Keras dtype policy to build under (``float32``,
            ``mixed_bfloat16``, ``mixed_float16``); default the global one.
            ``mixed_bfloat16`` computes in bfloat16 with float32 weights and
            logits (about 1.4x float32's speed on CPUs with AVX512-BF16), and
            is refused where the hardware lacks bfloat16 arithmetic.

    An option that does not apply to the model is refused, never ignored.
    The model carries its :class:`kseg.presets.ModelMetadata` as ``model.metadata``.

    Example:
        >>> import kseg
        >>> model = kseg.models.get("fcn_resnet50_ade")            # random weights
        >>> model.metadata.classes[:2]
        ('wall', 'building, edifice')
        >>> tuned = kseg.models.get("psp_resnet101_ade", weights="pretrained", classes=["road", "car"], aux=True)
        >>> pets = kseg.models.get("mask_rcnn_resnet50_v1b_coco", weights="pretrained",
        ...                        classes=["cat", "dog", "hamster"], reuse_classes=True)  # cat, dog from COCO
    """
    preset = get_preset(name)
    options = {"aux": aux, "output_stride": output_stride, "sync_bn": sync_bn}
    options = {key: value for key, value in options.items() if value is not None}
    asked = {"num_classes": num_classes, "classes": classes}
    _check_options(preset, {**options, **{key: value for key, value in asked.items() if value is not None}})
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    other_classes = _check_classes(preset, num_classes, classes) if preset.classes is not None else None
    metadata = preset.model_metadata()
    if other_classes is not None:
        metadata = metadata.with_classes(other_classes)

    if weights is not None and isinstance(weights, str) and weights.lower() == "none":
        weights = None
    if reuse_classes is not None and reuse_classes is not False:
        if other_classes is None or weights is None:
            raise ValueError("reuse_classes is for loading weights into other classes: give weights= and classes=")
        reuse_map(preset.classes, other_classes, reuse_classes)  # bad names fail before anything is built
    else:
        reuse_classes = None
    if strict and other_classes is not None and weights is not None and not str(weights).endswith(".weights.h5"):
        source = "GluonCV's published weights" if weights == "pretrained" else str(weights)
        raise ValueError(
            f"{name} predicts its {preset.num_classes} {preset.dataset} classes, but {len(other_classes)} are asked "
            f"for: {source} would leave the class layers untrained. Use the model's own data set "
            f"({preset.dataset}), or a fine-tuned {len(other_classes)}-class .weights.h5"
        )
    if precision is not None:
        check_inference_precision(precision)
    builder = BUILDERS[preset.builder]
    with dtype_policy_scope(precision):
        model = builder.build(preset.architecture, metadata, preset.name, **options)
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "pretrained":
        weights = pretrained_weights(preset.name)
    if reuse_classes is not None:
        load_reusing_classes(model, weights, preset.weights.converter, preset, reuse_classes)
        return model
    load_weights(
        model,
        weights,
        preset.weights.converter,
        variants=weight_variants(model),
        skip_class_layers=other_classes is not None,
        strict=strict,
    )
    return model


def build_published(preset: Preset) -> keras.Model:
    """The model exactly as published (the preset's architecture: its classes, auxiliary head where GluonCV has one).

    Example:
        >>> preset = kseg.models.get_entry("fcn_resnet50_ade")
        >>> kseg.models.build_published(preset).count_params() == preset.metadata.num_params  # aux head included
        True
    """
    return BUILDERS[preset.builder].build(preset.architecture, preset.model_metadata(), preset.name, published=True)


def _convert(preset: Preset, params, out) -> None:
    model = build_published(preset)
    load_weights(model, params, preset.weights.converter)
    model.save_weights(out)


def convert(name: str, params: str | os.PathLike, out: str | os.PathLike, verify: bool = False) -> keras.Model:
    """GluonCV's ``.params`` of preset ``name`` -> a kseg ``.weights.h5`` (written atomically); returns the model.

    The output holds the model as published (with its auxiliary head where
    GluonCV's file has one). ``verify`` checks the file's SHA-1 against the preset.

    Example:
        >>> model = kseg.models.convert("deeplab_resnet101_voc", "deeplab_resnet101_voc-311ed22c.params",
        ...                             "deeplab_resnet101_voc.weights.h5", verify=True)
    """
    from kseg.utils.io import atomic_path
    from kseg.weights.download import sha1_of

    preset = get_preset(name)
    params, out = Path(params), Path(out)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"the output must end in .weights.h5 (Keras' weights format), got {out}")
    if not params.is_file():
        raise FileNotFoundError(f"GluonCV file not found: {params}")
    if verify:
        actual = sha1_of(params)
        if actual != preset.weights.sha1:
            raise ValueError(
                f"SHA-1 mismatch for {params}: {actual}, but GluonCV's {preset.weights.gluoncv_file} "
                f"has {preset.weights.sha1}"
            )
    model = build_published(preset)
    load_weights(model, params, preset.weights.converter)
    with atomic_path(out, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return model


def zoo_name(method: str, backbone: str, dataset: str) -> str:
    """The zoo name GluonCV's ``scripts/segmentation/test.py`` forms from ``--model/--backbone/--dataset``.

    Example:
        >>> kseg.models.zoo_name("psp", "resnet101", "ade20k")
        'psp_resnet101_ade'
    """
    if dataset not in ZOO_SUFFIX:
        raise ValueError(f"Unknown dataset {dataset!r}; expected one of {', '.join(ZOO_SUFFIX)}")
    return f"{method}_{backbone}_{ZOO_SUFFIX[dataset]}"


def build(
    method: str,
    backbone: str,
    num_classes: int,
    aux: bool = False,
    output_stride: int = 8,
    sync_bn: bool = False,
    name: str | None = None,
    metadata: ModelMetadata | None = None,
) -> SemanticSegmenter:
    """A semantic model outside the presets, e.g. ``build("psp", "resnet18_v1b", 19)``; weights start random.

    ``method`` is GluonCV's (fcn, psp, deeplab, deeplab_v3b_plus) and ``backbone``
    a kseg or GluonCV backbone name.

    Example:
        >>> model = kseg.models.build("fcn", "resnet18_v1b", num_classes=19)
        >>> model.metadata.preprocessing.resize.crop_size
        480
    """
    from kseg.models.builders import check_method

    method = check_method(method)
    backbone = canonical_backbone(backbone)
    return SemanticSegmenter(
        build_backbone(backbone, output_stride, sync_bn),
        head=METHOD_HEADS[method],
        num_classes=num_classes,
        aux=aux,
        sync_bn=sync_bn,
        metadata=metadata,
        name=name or f"{method}_{backbone}",
    )


def metadata_of(model: keras.Model) -> ModelMetadata:
    """``model.metadata``; for a plain Keras semantic model (no kseg metadata), numbered classes and 520/480.

    Example:
        >>> kseg.models.metadata_of(kseg.models.get("fcn_resnet50_ade")).num_classes
        150
    """
    metadata = getattr(model, "metadata", None)
    if isinstance(metadata, ModelMetadata):
        return metadata
    shape = model.output_shape
    return default_semantic_metadata(int((shape["logits"] if isinstance(shape, dict) else shape)[-1]))


def pretrained_weights(name: str) -> Path:
    """The converted ``.weights.h5`` of preset ``name`` in ``$KSEG_HOME``: fetched, checked and converted once."""
    preset = get_preset(name)
    return fetch_pretrained(preset.weights, convert=lambda source, params, out: _convert(preset, params, out))


def load_model_weights(
    model: keras.Model, weights: str | os.PathLike, strict: bool = False, reuse_classes: ReuseClasses | None = None
) -> list[str]:
    """Load weights into a built kseg model (fine-tuning, resuming, models outside the presets).

    ``weights`` is a preset name (its published weights, e.g. the COCO model a
    VOC recipe starts from), a GluonCV ``.params`` (by the model's task's
    converter) or a ``.weights.h5`` saved from the model or a variant of it
    (with or without the auxiliary head, the preset's classes). Layers the
    source lacks (other classes) keep their initialisation and are returned;
    ``strict`` refuses that. ``reuse_classes`` (with a preset name, whose
    classes are known) starts the rows of shared classes from it, as in
    :func:`get`.

    Example:
        >>> model = kseg.models.build("fcn", "resnet101_v1s", num_classes=21, aux=True)
        >>> kseg.models.load_model_weights(model, "fcn_resnet101_coco")   # GluonCV's COCO weights
        []
    """
    source = None
    if isinstance(weights, str) and weights in PRESETS:
        source, weights = PRESETS[weights], pretrained_weights(weights)
    converter = CONVERTER_OF_TASK[metadata_of(model).task]
    if reuse_classes is not None and reuse_classes is not False:
        if source is None or not source.classes:
            raise ValueError(f"reuse_classes needs a zoo name as the weights (its classes are known), got {weights}")
        load_reusing_classes(model, weights, converter, source, reuse_classes)
        return list(class_layers(model))  # each keeps its initialisation in the rows of classes not reused
    return load_weights(model, weights, converter, variants=weight_variants(model, source), strict=strict)
