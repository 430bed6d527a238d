"""GluonCV's 15 semantic segmentation models (``gluoncv/model_zoo/model_store.py``, its zoo tables).

pixAcc/mIoU are percentages from GluonCV's model zoo tables
(``docs/model_zoo/csv_tables/Segmentations``); the VOC models were scored by
the VOC2012 test server, which reports mIoU only.
"""

from kseg.presets.datasets import CLASSES_BY_DATASET
from kseg.presets.schema import SEMANTIC, CropResize, Preprocessing, Preset, PresetMetadata, WeightsSource

_EVALUATION = {
    "ade20k": "ADE20K val, GluonCV's test.py (multi-scale 0.5-1.75 with flip, testval mode)",
    "coco": "GluonCV's zoo table (COCO, 21 VOC classes)",
    "pascal_voc": "VOC2012 test server, mIoU only (trained on VOC2012 trainval)",
    "citys": "Cityscapes val, GluonCV's test.py (multi-scale with flip, testval mode)",
}


def _semantic(name, method, backbone, dataset, sha1, pixacc, miou, num_params, base_size=520, crop_size=480,
              aux=True, notes=""):
    """A semantic preset; ``aux``: GluonCV's file carries the auxiliary FCN head."""
    return Preset(
        name=name,
        task=SEMANTIC,
        builder="semantic_segmenter",
        architecture={"method": method, "backbone": backbone, "aux": aux, "output_stride": 8},
        weights=WeightsSource(name, sha1, converter="gluoncv_semantic"),
        metadata=PresetMetadata(
            dataset=dataset,
            classes=CLASSES_BY_DATASET[dataset],
            preprocessing=Preprocessing(resize=CropResize(base_size, crop_size)),
            metrics={"pixAcc": pixacc, "mIoU": miou},
            evaluation=_EVALUATION[dataset],
            num_params=num_params,
            recipe=f"recipes/{name}.flags",
            notes=notes,
        ),
    )


_VPLR_NOTE = "VPLR (Zhu et al., CVPR 2019); GluonCV gives no pixAcc nor recipe; sizes assumed as PSP citys"

# fmt: off
SEMANTIC_PRESETS = (
    # name, method, backbone, dataset, GluonCV SHA-1, pixAcc, mIoU, parameters
    _semantic("fcn_resnet50_ade", "fcn", "resnet50_v1s", "ade20k", "3479525af7bdbf345e74e150aaae2e48174c0c5f", 79.0, 39.5, 35_600_364),
    _semantic("fcn_resnet101_ade", "fcn", "resnet101_v1s", "ade20k", "d544440a35586f662ed1a5405ab9aa89cd750558", 80.6, 41.6, 54_644_716),
    _semantic("fcn_resnet101_coco", "fcn", "resnet101_v1s", "coco", "766cdf9cc3e5b980b141643f054db5b48863f634", 92.2, 66.2, 54_545_386),
    _semantic("fcn_resnet101_voc", "fcn", "resnet101_v1s", "pascal_voc", "12c2b9b3be7d4e133e52477150a9b3e616626a82", None, 83.6, 54_545_386),
    _semantic("psp_resnet50_ade", "psp", "resnet50_v1s", "ade20k", "3f220f537400dfa607c3d041ed3b172db39b0b01", 80.1, 41.5, 49_240_044),
    _semantic("psp_resnet101_ade", "psp", "resnet101_v1s", "ade20k", "240a4758b506447faf7c55cd7a7837d66f5039a6", 80.8, 43.3, 68_284_396),
    _semantic("psp_resnet101_coco", "psp", "resnet101_v1s", "coco", "09f89cad0e107cb2bffdb1b07706ba31798096f2", 92.4, 70.4, 68_185_066),
    _semantic("psp_resnet101_voc", "psp", "resnet101_v1s", "pascal_voc", "2c2f4e1c2b11461b52598a4b2038bccbcfc166eb", None, 85.1, 68_185_066),
    _semantic("psp_resnet101_citys", "psp", "resnet101_v1s", "citys", "d0e8603120ab02118a8973d52a26b8296d1b4078", 96.4, 79.9, 68_183_526,
              base_size=2048, crop_size=768),
    _semantic("deeplab_resnet50_ade", "deeplab", "resnet50_v1s", "ade20k", "c7789b237adc7253405bee57c84d53b15db45942", 80.5, 42.5, 42_251_756),
    _semantic("deeplab_resnet101_ade", "deeplab", "resnet101_v1s", "ade20k", "bf1584dfcec12063eff3075ee643e181c0f6d443", 81.1, 44.1, 61_296_108),
    _semantic("deeplab_resnet101_coco", "deeplab", "resnet101_v1s", "coco", "ed817f76086abb4c3404af62ec1b5487c67642b7", 92.5, 70.4, 61_229_802),
    _semantic("deeplab_resnet101_voc", "deeplab", "resnet101_v1s", "pascal_voc", "311ed22c63f3ac28b5f1e1663c458f26600e62da", None, 86.2, 61_229_802),
    _semantic("deeplab_resnet152_voc", "deeplab", "resnet152_v1s", "pascal_voc", "d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d", None, 86.7, 76_919_530),
    _semantic("deeplab_v3b_plus_wideresnet_citys", "deeplab_v3b_plus", "wideresnet38", "citys",
              "ef2bb40ad8f8f59f451969b2fabe4e548394e80a", None, 83.5, 137_147_072, base_size=2048, crop_size=768, aux=False,
              notes=_VPLR_NOTE),
)
# fmt: on
