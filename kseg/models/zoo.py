"""The semantic segmentation zoo: every entry's metadata in one place.

Names, SHA-1s and scores are GluonCV's (``model_store.py`` and the model zoo
tables). pixAcc/mIoU are percentages; VOC numbers come from the VOC2012 test
server, which reports mIoU only.
"""

import dataclasses

from kseg.data.classes import CLASSES_BY_DATASET

GLUONCV_STORE_URL = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"

METHOD_HEADS = {"fcn": "fcn", "psp": "psp", "deeplab": "deeplabv3", "deeplab_v3b_plus": "deeplabv3plus"}


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    """Metadata of one zoo model (torchvision's ``Weights.meta`` in one record)."""

    name: str
    method: str  # fcn | psp | deeplab | deeplab_v3b_plus
    backbone: str  # resnet50_v1s | resnet101_v1s | resnet152_v1s | wideresnet38
    dataset: str  # ade20k | pascal_voc | coco | citys (GluonCV's keys)
    sha1: str
    pixacc: float | None
    miou: float | None
    base_size: int = 520
    crop_size: int = 480
    aux: bool = True  # whether GluonCV's file carries the auxiliary head
    notes: str = ""

    @property
    def head(self):
        return METHOD_HEADS[self.method]

    @property
    def classes(self):
        return CLASSES_BY_DATASET[self.dataset]

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def gluoncv_file(self):
        """The file name inside GluonCV's zip, ``{name}-{sha1[:8]}.params``."""
        return f"{self.name}-{self.sha1[:8]}.params"

    @property
    def url(self):
        return f"{GLUONCV_STORE_URL}gluon/models/{self.name}-{self.sha1[:8]}.zip"

    @property
    def recipe(self):
        return f"recipes/{self.name}.flags"

    @property
    def metrics(self):
        return {"pixAcc": self.pixacc, "mIoU": self.miou}


_VOC_NOTE = "mIoU on the VOC2012 test server (trained on trainval)"

# fmt: off
_ENTRIES = (
    # name, method, backbone, dataset, GluonCV SHA-1, pixAcc, mIoU
    ZooEntry("fcn_resnet50_ade", "fcn", "resnet50_v1s", "ade20k", "3479525af7bdbf345e74e150aaae2e48174c0c5f", 79.0, 39.5),
    ZooEntry("fcn_resnet101_ade", "fcn", "resnet101_v1s", "ade20k", "d544440a35586f662ed1a5405ab9aa89cd750558", 80.6, 41.6),
    ZooEntry("fcn_resnet101_coco", "fcn", "resnet101_v1s", "coco", "766cdf9cc3e5b980b141643f054db5b48863f634", 92.2, 66.2),
    ZooEntry("fcn_resnet101_voc", "fcn", "resnet101_v1s", "pascal_voc", "12c2b9b3be7d4e133e52477150a9b3e616626a82",
             None, 83.6, notes=_VOC_NOTE),
    ZooEntry("psp_resnet50_ade", "psp", "resnet50_v1s", "ade20k", "3f220f537400dfa607c3d041ed3b172db39b0b01", 80.1, 41.5),
    ZooEntry("psp_resnet101_ade", "psp", "resnet101_v1s", "ade20k", "240a4758b506447faf7c55cd7a7837d66f5039a6", 80.8, 43.3),
    ZooEntry("psp_resnet101_coco", "psp", "resnet101_v1s", "coco", "09f89cad0e107cb2bffdb1b07706ba31798096f2", 92.4, 70.4),
    ZooEntry("psp_resnet101_voc", "psp", "resnet101_v1s", "pascal_voc", "2c2f4e1c2b11461b52598a4b2038bccbcfc166eb",
             None, 85.1, notes=_VOC_NOTE),
    ZooEntry("psp_resnet101_citys", "psp", "resnet101_v1s", "citys", "d0e8603120ab02118a8973d52a26b8296d1b4078",
             96.4, 79.9, base_size=2048, crop_size=768),
    ZooEntry("deeplab_resnet50_ade", "deeplab", "resnet50_v1s", "ade20k", "c7789b237adc7253405bee57c84d53b15db45942",
             80.5, 42.5),
    ZooEntry("deeplab_resnet101_ade", "deeplab", "resnet101_v1s", "ade20k", "bf1584dfcec12063eff3075ee643e181c0f6d443",
             81.1, 44.1),
    ZooEntry("deeplab_resnet101_coco", "deeplab", "resnet101_v1s", "coco", "ed817f76086abb4c3404af62ec1b5487c67642b7",
             92.5, 70.4),
    ZooEntry("deeplab_resnet101_voc", "deeplab", "resnet101_v1s", "pascal_voc",
             "311ed22c63f3ac28b5f1e1663c458f26600e62da", None, 86.2, notes=_VOC_NOTE),
    ZooEntry("deeplab_resnet152_voc", "deeplab", "resnet152_v1s", "pascal_voc",
             "d35bea8817935d1ab310ef1e6dd06bb18c2d5f0d", None, 86.7, notes=_VOC_NOTE),
    ZooEntry("deeplab_v3b_plus_wideresnet_citys", "deeplab_v3b_plus", "wideresnet38", "citys",
             "ef2bb40ad8f8f59f451969b2fabe4e548394e80a", None, 83.5, base_size=2048, crop_size=768, aux=False,
             notes="VPLR (Zhu et al., CVPR 2019); GluonCV gives no pixAcc nor recipe; sizes assumed as PSP citys"),
)
# fmt: on

SEMANTIC_ZOO = {entry.name: entry for entry in _ENTRIES}


# GluonCV's ImageNet classifiers that its segmentation recipes start from (--pretrained-backbone).
IMAGENET_BACKBONES = {
    "resnet18_v1b": "2d9d980c990442f826f20781ed039851e78dabe3",
    "resnet50_v1b": "0ecdba34691be172036ddf244ff1b2eade75ffde",
    "resnet101_v1b": "a455932aa95cb7dcfa05fd040b9b5a5660733c39",
    "resnet152_v1b": "a5a61ee1ce5ab7c09720775b223360f3c60e211d",
    "resnet50_v1d": "117a384ecf61490eb31ea147eb0e61e6d2b8a449",
    "resnet101_v1d": "1b2b825feff86b0354642a4ab59f9b6e35e47338",
    "resnet152_v1d": "cddbc86ff24a5544f57242ded0acb14ef1fbd437",
    "resnet50_v1s": "25a187fa281ddc98afbcd0cc0f0646885b874b80",
    "resnet101_v1s": "bd93a83c05f709a803b1221aeff0b028e6eebb03",
    "resnet152_v1s": "cf74621d988ad06c6c6aa44f5597e5b600a966cc",
}


@dataclasses.dataclass(frozen=True)
class BackboneWeights:
    """GluonCV's ImageNet file of a backbone, in the shape the downloader takes (name, sha1, gluoncv_file)."""

    name: str
    sha1: str

    @property
    def gluoncv_file(self):
        return f"{self.name}-{self.sha1[:8]}.params"

    @property
    def url(self):
        return f"{GLUONCV_STORE_URL}gluon/models/{self.name}-{self.sha1[:8]}.zip"


def imagenet_backbone(name):
    """The :class:`BackboneWeights` of backbone ``name`` (``resnet101_v1s``)."""
    if name not in IMAGENET_BACKBONES:
        raise ValueError(f"No GluonCV ImageNet weights for {name!r}; known: {', '.join(IMAGENET_BACKBONES)}")
    return BackboneWeights(name, IMAGENET_BACKBONES[name])
