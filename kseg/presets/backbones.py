"""GluonCV's ImageNet ResNets that its recipes start from (``--pretrained-backbone``, ``model_store.py``).

A backbone preset builds the feature extractor alone (``{"c1": ..., "c5": ...}``,
stride 32 unless ``output_stride`` says otherwise); the file's ImageNet ``fc``
layer is left out. Top-1 accuracies (percent, ImageNet val, 224 centre crop)
are GluonCV's (``docs/model_zoo/csv_tables/Classifications/ResNet.csv``); the
v1s models, trained for its segmentation models, have no published row.
"""

from kseg.presets.schema import BACKBONE, Preprocessing, Preset, PresetMetadata, WeightsSource

_EVALUATION = "ImageNet val top-1, 224x224 centre crop (GluonCV's classification zoo table)"


def _backbone(name, sha1, top1, num_params):
    depth, variant = name.removeprefix("resnet").split("_")
    return Preset(
        name=name,
        task=BACKBONE,
        builder="resnet_v1",
        architecture={"depth": int(depth), "variant": variant},
        weights=WeightsSource(name, sha1, converter="gluoncv_imagenet"),
        metadata=PresetMetadata(
            dataset="imagenet",
            classes=None,  # features only
            preprocessing=Preprocessing(),
            metrics={"top-1": top1},
            evaluation=_EVALUATION,
            num_params=num_params,
        ),
    )


BACKBONE_PRESETS = (
    _backbone("resnet18_v1b", "2d9d980c990442f826f20781ed039851e78dabe3", 70.94, 11_186_112),
    _backbone("resnet50_v1b", "0ecdba34691be172036ddf244ff1b2eade75ffde", 77.67, 23_561_152),
    _backbone("resnet101_v1b", "a455932aa95cb7dcfa05fd040b9b5a5660733c39", 79.20, 42_605_504),
    _backbone("resnet152_v1b", "a5a61ee1ce5ab7c09720775b223360f3c60e211d", 79.69, 58_295_232),
    _backbone("resnet50_v1d", "117a384ecf61490eb31ea147eb0e61e6d2b8a449", 79.15, 23_580_512),
    _backbone("resnet101_v1d", "1b2b825feff86b0354642a4ab59f9b6e35e47338", 80.51, 42_624_864),
    _backbone("resnet152_v1d", "cddbc86ff24a5544f57242ded0acb14ef1fbd437", 80.61, 58_314_592),
    _backbone("resnet50_v1s", "25a187fa281ddc98afbcd0cc0f0646885b874b80", None, 23_685_312),
    _backbone("resnet101_v1s", "bd93a83c05f709a803b1221aeff0b028e6eebb03", None, 42_729_664),
    _backbone("resnet152_v1s", "cf74621d988ad06c6c6aa44f5597e5b600a966cc", None, 58_419_392),
)
