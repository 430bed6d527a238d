"""--pretrained-backbone: GluonCV's ImageNet classifiers load into a segmentation model's backbone."""

import subprocess

import numpy as np
import pytest

import kseg
from kseg.weights.gluoncv import load_gluoncv_backbone_params, load_gluoncv_detector_backbone_params

# Seeded ImageNet classifiers from GluonCV, their .params and their layer4 features (before the pooling).
GLUONCV_SCRIPT = r"""
import sys
import mxnet as mx
import numpy as np
from gluoncv.model_zoo import get_model

out = sys.argv[1]
mx.random.seed(0)
x = mx.nd.array(np.random.RandomState(0).randn(2, 3, 67, 75).astype("float32"))
np.save(f"{out}/input.npy", x.asnumpy())
for name in ("resnet18_v1b", "resnet50_v1s"):
    net = get_model(name, pretrained=False)
    net.initialize(mx.init.MSRAPrelu(slope=0.0))
    net(x)
    for key, param in net.collect_params().items():
        if key.endswith("running_var"):
            param.set_data(mx.nd.random.uniform(0.5, 2.0, param.shape))
        elif key.endswith("running_mean"):
            param.set_data(mx.nd.random.normal(0, 0.1, param.shape))
    net.save_parameters(f"{out}/{name}.params")
    y = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    y = net.layer4(net.layer3(net.layer2(net.layer1(y))))
    np.save(f"{out}/{name}_c5.npy", y.asnumpy())
    # Mask R-CNN C4 runs stages 1-3 on the image and stage 4 on 14 x 14 regions: a 224 x 224 input has both.
    x224 = mx.nd.array(np.random.RandomState(1).randn(1, 3, 224, 224).astype("float32"))
    c4 = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x224)))))))
    np.save(f"{out}/input224.npy", x224.asnumpy())
    np.save(f"{out}/{name}_c4_224.npy", c4.asnumpy())
    np.save(f"{out}/{name}_c5_224.npy", net.layer4(c4).asnumpy())
"""


@pytest.fixture(scope="module")
def gluoncv_files(side_python, tmp_path_factory):
    out = tmp_path_factory.mktemp("imagenet")
    subprocess.run([side_python, "-c", GLUONCV_SCRIPT, str(out)], check=True, capture_output=True)
    return out


@pytest.mark.gluoncv
@pytest.mark.parametrize("backbone", ["resnet18_v1b", "resnet50_v1s"])
def test_imagenet_params_load_into_the_backbone(gluoncv_files, backbone):
    model = kseg.models.build("fcn", backbone, 7, output_stride=32)
    head_before = model.get_layer("head_classifier").get_weights()[0].copy()
    load_gluoncv_backbone_params(model.backbone, gluoncv_files / f"{backbone}.params")
    x = np.load(gluoncv_files / "input.npy").transpose(0, 2, 3, 1)
    ours = model.backbone(x, training=False)["c5"].numpy()
    theirs = np.load(gluoncv_files / f"{backbone}_c5.npy").transpose(0, 2, 3, 1)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-5
    np.testing.assert_array_equal(model.get_layer("head_classifier").get_weights()[0], head_before)


@pytest.mark.gluoncv
def test_a_classifier_of_another_backbone_is_refused(gluoncv_files):
    model = kseg.models.build("fcn", "resnet50_v1s", 7, output_stride=32)
    with pytest.raises(ValueError, match="do not match"):
        load_gluoncv_backbone_params(model.backbone, gluoncv_files / "resnet18_v1b.params")


@pytest.mark.gluoncv
def test_the_backbone_preset_loads_gluoncvs_imagenet_file(gluoncv_files):
    """``kseg.models.get("resnet50_v1s", weights=GluonCV's .params)``: the feature extractor alone, stride 32."""
    backbone = kseg.models.get("resnet50_v1s", weights=gluoncv_files / "resnet50_v1s.params")
    x = np.load(gluoncv_files / "input.npy").transpose(0, 2, 3, 1)
    ours = backbone(x, training=False)["c5"].numpy()
    theirs = np.load(gluoncv_files / "resnet50_v1s_c5.npy").transpose(0, 2, 3, 1)
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-5


@pytest.mark.gluoncv
@pytest.mark.parametrize("name", ["mask_rcnn_resnet18_v1b_coco", "mask_rcnn_fpn_resnet18_v1b_coco"])
def test_imagenet_params_load_into_a_mask_rcnn(gluoncv_files, name):
    """train_mask_rcnn.py starts from the ImageNet classifier: C4 models take stage 4 into ``top_features``."""
    detector = kseg.models.get(name)
    rpn_before = detector.rpn_head.get_weights()[0].copy()
    load_gluoncv_detector_backbone_params(detector, gluoncv_files / "resnet18_v1b.params")
    x = np.load(gluoncv_files / "input224.npy").transpose(0, 2, 3, 1)
    c4 = np.load(gluoncv_files / "resnet18_v1b_c4_224.npy").transpose(0, 2, 3, 1)
    c5 = np.load(gluoncv_files / "resnet18_v1b_c5_224.npy").transpose(0, 2, 3, 1)
    if detector.config.fpn:
        ours = detector.feature_extractor.get_layer("backbone")(x, training=False)
        pairs = [(ours["c4"].numpy(), c4), (ours["c5"].numpy(), c5)]
    else:
        ours_c4 = detector.feature_extractor(x, training=False)["c4"].numpy()
        pairs = [(ours_c4, c4), (detector.top_features(c4, training=False).numpy(), c5)]
    for ours, theirs in pairs:
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-5
    np.testing.assert_array_equal(detector.rpn_head.get_weights()[0], rpn_before)  # heads untouched
    with pytest.raises(ValueError, match="do not match"):
        load_gluoncv_detector_backbone_params(detector, gluoncv_files / "resnet50_v1s.params")
