"""``kseg.models.get`` and ``kseg.models.list_models``."""

import difflib
import os
from pathlib import Path

from kseg.models.backbones import ResNetV1Backbone, WideResNet38Backbone, resnet_v1
from kseg.models.segmentation import SemanticSegmenter
from kseg.models.zoo import METHOD_HEADS, SEMANTIC_ZOO

# GluonCV's segmentation scripts name backbones without the variant; they mean v1s.
_SHORT_BACKBONES = {"wideresnet": "wideresnet38"}
_DATASET_SUFFIX = {"ade20k": "ade", "pascal_voc": "voc", "pascal_aug": "voc", "coco": "coco", "citys": "citys"}


def list_models(task=None):
    """Zoo names in the zoo tables' order: ``task`` "semantic" (15), "instance" (the 6 Mask R-CNN) or None (all)."""
    from kseg.models.mask_rcnn.config import MASK_RCNN_ZOO

    if task not in (None, "semantic", "instance"):
        raise ValueError(f"task must be 'semantic', 'instance' or None, got {task!r}")
    names = [] if task == "instance" else list(SEMANTIC_ZOO)
    return names + ([] if task == "semantic" else list(MASK_RCNN_ZOO))


def get_entry(name):
    """The :class:`ZooEntry` for ``name``; an unknown name lists the closest ones."""
    if name in SEMANTIC_ZOO:
        return SEMANTIC_ZOO[name]
    close = difflib.get_close_matches(str(name), list_models(), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown model {name!r}.{hint} See kseg.models.list_models() for all of them.")


def build_backbone(backbone, output_stride=8, sync_bn=False):
    """A dilated backbone by GluonCV name (``resnet101_v1s``, ``wideresnet38``)."""
    if backbone == "wideresnet38":
        if output_stride != 8:
            raise ValueError("wideresnet38 supports output_stride=8 only")
        return WideResNet38Backbone(dilated=True, sync_bn=sync_bn, name="backbone")
    return resnet_v1(backbone, output_stride=output_stride, sync_bn=sync_bn, name="backbone")


def canonical_backbone(backbone):
    """GluonCV's script names (``resnet101``, ``wideresnet``) -> kseg's (``resnet101_v1s``, ``wideresnet38``)."""
    backbone = _SHORT_BACKBONES.get(backbone, backbone)
    if backbone.startswith("resnet") and "_v1" not in backbone:
        backbone += "_v1s"
    return backbone


def zoo_name(method, backbone, dataset):
    """The zoo name GluonCV's test.py forms from ``--model/--backbone/--dataset``."""
    if dataset not in _DATASET_SUFFIX:
        raise ValueError(f"Unknown dataset {dataset!r}; expected one of {', '.join(_DATASET_SUFFIX)}")
    return f"{method}_{backbone}_{_DATASET_SUFFIX[dataset]}"


def build(method, backbone, num_classes, aux=False, output_stride=8, sync_bn=False, name=None):
    """A semantic model outside the zoo table, e.g. ``build("psp", "resnet18_v1b", 19)``.

    ``method`` is GluonCV's (fcn, psp, deeplab, deeplab_v3b_plus) and ``backbone``
    a kseg or GluonCV backbone name. Weights start random.
    """
    if method not in METHOD_HEADS:
        close = difflib.get_close_matches(str(method), METHOD_HEADS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown method {method!r}.{hint} Methods: {', '.join(METHOD_HEADS)}")
    backbone = canonical_backbone(backbone)
    return SemanticSegmenter(
        build_backbone(backbone, output_stride, sync_bn),
        head=METHOD_HEADS[method],
        num_classes=int(num_classes),
        aux=aux,
        sync_bn=sync_bn,
        name=name or f"{method}_{backbone}",
    )


def get(name, weights=None, num_classes=None, aux=False, output_stride=8, sync_bn=False):
    """Build a zoo model by its GluonCV name.

    Args:
        name: a name from :func:`list_models`, e.g. ``"deeplab_resnet101_voc"``.
        weights: None (random initialisation), ``"pretrained"`` (GluonCV's
            published file: from ``$KSEG_HOME``, else downloaded, SHA-1
            checked and converted once; see ``kseg.weights.download``), or a
            path to a GluonCV ``.params`` file or a kseg ``.weights.h5`` file.
        num_classes: None for the entry's classes; another number keeps every
            weight but the class layers, which start afresh (fine-tuning).
        aux: add the auxiliary head (training).
        output_stride: 8 as published; 16 trades accuracy for speed.
        sync_bn: synchronized BatchNormalization (multi-replica training).
    """
    from kseg.models.mask_rcnn.config import MASK_RCNN_ZOO

    if name in MASK_RCNN_ZOO:
        if num_classes is not None or aux:
            raise ValueError(f"{name}: num_classes and aux apply to the semantic models only")
        return _get_mask_rcnn(MASK_RCNN_ZOO[name], weights)
    entry = get_entry(name)
    classes = entry.num_classes if num_classes is None else int(num_classes)
    if aux and not entry.aux:
        raise ValueError(f"{name} has no auxiliary head (aux must be False)")

    def build_entry(num, with_aux):
        return build(entry.method, entry.backbone, num, with_aux, output_stride, sync_bn, name=name)

    model = build_entry(classes, aux)
    if weights is None:
        return model
    if weights == "pretrained":
        weights = _cached_weights(entry)
    load_weights(
        model,
        weights,
        build_full=lambda: build_entry(entry.num_classes, entry.aux),
        skip_classifier=classes != entry.num_classes,
    )
    return model


def _get_mask_rcnn(config, weights):
    """A Mask R-CNN zoo model with ``weights`` (None, "pretrained", a GluonCV ``.params`` or a ``.weights.h5``)."""
    from kseg.models.mask_rcnn import MaskRCNN
    from kseg.weights.gluoncv_rcnn import load_gluoncv_rcnn_params

    model = MaskRCNN(config)
    if weights is None:
        return model
    if weights == "pretrained":
        from kseg.weights.download import fetch_pretrained

        def convert(entry, params_path, out_path):
            converted = MaskRCNN(entry)
            load_gluoncv_rcnn_params(converted, params_path)
            converted.save_weights(out_path)

        weights = fetch_pretrained(config, convert=convert)
    path = Path(os.fspath(weights))
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.name.endswith(".weights.h5"):
        model.load_weights(path)
    else:
        load_gluoncv_rcnn_params(model, path)
    return model


def load_weights(model, weights, build_full=None, skip_classifier=False, strict=False):
    """Load a GluonCV ``.params`` or kseg ``.weights.h5`` file into ``model``.

    ``build_full`` builds the model the file was saved from when that may
    differ (aux head, other classes); its matching weights are transferred,
    and with ``strict`` every weight of ``model`` must be among them.
    ``skip_classifier`` leaves the class layers of a ``.params`` file out.
    """
    path = Path(os.fspath(weights))
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.name.endswith(".weights.h5"):
        _load_keras_weights(model, path, build_full, strict)
    else:
        from kseg.weights.gluoncv import load_gluoncv_params

        load_gluoncv_params(model, path, skip_classifier=skip_classifier)


def _load_keras_weights(model, path, build_full, strict=False):
    """Load a ``.weights.h5`` saved from this model or from the full zoo model."""
    from kseg.weights.transfer import transfer_weights

    try:
        quiet_load_weights(model, path)
        return
    except Exception as direct_error:  # noqa: BLE001 - retried below, reported if both fail
        if build_full is None:
            raise ValueError(f"{path} does not hold weights for {model.name}: {direct_error}") from direct_error
        full = build_full()
        try:
            full.load_weights(path)
        except Exception as full_error:  # noqa: BLE001
            raise ValueError(
                f"{path} does not hold weights for {model.name} "
                f"(as built: {direct_error}; as the full zoo model: {full_error})"
            ) from full_error
    skipped = transfer_weights(full, model)
    if strict and skipped:
        raise ValueError(f"{path} does not hold weights for {model.name}: it lacks {', '.join(skipped)}")


def quiet_load_weights(model, path):
    """``model.load_weights(path)``; the warnings Keras gives on its way to a failure are dropped.

    A file from the model with its aux head (or other classes) fails to load
    directly and is then transferred layer by layer; before raising, Keras
    warns that layers "will retain their freshly-initialized weights", which
    is untrue once the transfer has run. Warnings of a load that succeeds are
    passed on.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    for warning in caught:
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def kseg_home():
    return Path(os.environ.get("KSEG_HOME", Path.home() / ".kseg"))


def _cached_weights(entry):
    """The converted file of ``entry`` in ``$KSEG_HOME``, downloaded and converted on first use.

    See :func:`kseg.weights.download.fetch_pretrained` for the order of look-ups.
    """
    from kseg.weights.download import fetch_pretrained

    return fetch_pretrained(entry)


__all__ = ["ResNetV1Backbone", "SemanticSegmenter", "build", "get", "get_entry", "list_models", "zoo_name"]
