"""GluonCV's six Mask R-CNN models (``gluoncv/model_zoo/rcnn/mask_rcnn/predefined_models.py``, ``model_store.py``).

Box and mask AP (AP, AP50, AP75, percent) on COCO val2017 are GluonCV's
(``docs/model_zoo/csv_tables/Segmentations/IS_MS-COCO.csv``). The architecture
arguments are those of :class:`kseg.models.mask_rcnn.MaskRCNNConfig` that differ
from its defaults.
"""

from kseg.presets.classes import COCO_DETECTION_CLASSES
from kseg.presets.schema import INSTANCE, Preprocessing, Preset, PresetMetadata, ShortSideResize, WeightsSource

_EVALUATION = "COCO val2017, pycocotools bbox and segm (GluonCV's eval_mask_rcnn.py: short side 800, max 1333)"


def _mask_rcnn(name, depth, variant, fpn, sha1, box_ap, mask_ap, num_params, **architecture):
    box, mask = ("AP", "AP50", "AP75"), dict(zip(("AP", "AP50", "AP75"), mask_ap, strict=True))
    metrics = {**{f"box {k}": v for k, v in zip(box, box_ap, strict=True)}, **{f"mask {k}": v for k, v in mask.items()}}
    return Preset(
        name=name,
        task=INSTANCE,
        builder="mask_rcnn",
        architecture={"depth": depth, "variant": variant, "fpn": fpn, **architecture},
        weights=WeightsSource(name, sha1, converter="gluoncv_rcnn"),
        metadata=PresetMetadata(
            dataset="coco",
            classes=COCO_DETECTION_CLASSES,
            preprocessing=Preprocessing(resize=ShortSideResize(800, 1333)),
            metrics=metrics,
            evaluation=_EVALUATION,
            num_params=num_params,
            recipe=f"recipes/{name}.flags",
        ),
    )


# fmt: off
INSTANCE_PRESETS = (
    _mask_rcnn("mask_rcnn_resnet18_v1b_coco", 18, "v1b", False, "e071cf1550bc0331c218a9072b59e9550595d1e7",
               (31.2, 51.1, 33.1), (28.4, 48.1, 29.8), 14_374_124),
    _mask_rcnn("mask_rcnn_fpn_resnet18_v1b_coco", 18, "v1b", True, "14a922c38b0b196fdb1f7141be4666c10476f426",
               (34.9, 56.4, 37.4), (30.4, 52.2, 31.4), 32_528_816, roi_size=7, mask_convs=2),
    _mask_rcnn("mask_rcnn_resnet50_v1b_coco", 50, "v1b", False, "a3527fdc2cee5b1f32a61e5fd7cda8fb673e86e5",
               (38.3, 58.7, 41.4), (33.1, 54.8, 35.0), 36_015_852),
    _mask_rcnn("mask_rcnn_fpn_resnet50_v1b_coco", 50, "v1b", True, "1364d0afe4de575af5d4389d50c2dbf22449ceac",
               (39.2, 61.2, 42.2), (35.4, 57.5, 37.3), 46_821_296, box_pool=True, mask_convs=4),
    _mask_rcnn("mask_rcnn_resnet101_v1d_coco", 101, "v1d", False, "4a3249c584f81c2a9b5d852b742637cd692ebdcb",
               (41.3, 61.7, 44.4), (35.2, 57.8, 36.9), 55_079_564),
    _mask_rcnn("mask_rcnn_fpn_resnet101_v1d_coco", 101, "v1d", True, "89c7d8669b677a05c6eaa25375ead9a174109c69",
               (42.3, 63.9, 46.2), (37.7, 60.5, 40.0), 65_885_008, box_pool=True, mask_convs=4),
)
# fmt: on
