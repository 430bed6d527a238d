"""GluonCV's training and validation transforms, bit for bit, and the tf.data wrapper."""

import random
import subprocess
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from kseg.data.preprocessing import normalize_image
from kseg.data.transforms import SegmentationTransform, train_transform, val_transform

SIZES = [(97, 131), (300, 200), (64, 64)]  # height x width
SEEDS = range(12)
BASE, CROP = 96, 80  # small, so that pads, crops and both resize directions all happen


def raw_sample(height, width, seed):
    """An RGB image and a raw mask with 0 (VOC background / ADE other) and 255 (VOC boundary)."""
    rng = np.random.default_rng([seed, height, width])
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = rng.choice([0, 1, 2, 7, 255], size=(height, width)).astype(np.uint8)
    mask[: height // 2, : width // 3] = 3  # a block, so that nearest resizing has structure to keep
    return image, mask


# Raw mask -> kseg label, and the label of raw 0 (the padding), as the readers define them.
LABEL_MAPS = {
    "voc": (lambda raw: np.where(raw == 255, -1, raw.astype(np.int32)), 0),
    "ade": (lambda raw: raw.astype(np.int32) - 1, -1),
}

GLUONCV_SCRIPT = textwrap.dedent(
    """
    import random, sys
    import numpy as np
    from PIL import Image
    from gluoncv.data.segbase import SegmentationDataset

    class Probe(SegmentationDataset):
        def __init__(self, base_size, crop_size):
            self.base_size, self.crop_size = base_size, crop_size

    samples = np.load(sys.argv[1])
    base, crop, seeds = int(sys.argv[3]), int(sys.argv[4]), [int(s) for s in sys.argv[5].split(",")]
    probe = Probe(base, crop)
    out = {}
    for key in sorted({k.rsplit("_", 1)[0] for k in samples.files}):
        image, mask = Image.fromarray(samples[key + "_image"]), Image.fromarray(samples[key + "_mask"])
        for seed in seeds:
            random.seed(seed)
            x, y = probe._sync_transform(image, mask)
            out[f"{key}_train{seed}_image"], out[f"{key}_train{seed}_mask"] = x.asnumpy(), y.asnumpy()
        x, y = probe._val_sync_transform(image, mask)
        out[f"{key}_val_image"], out[f"{key}_val_mask"] = x.asnumpy(), y.asnumpy()
    np.savez(sys.argv[2], **out)
    """
)


@pytest.fixture(scope="module")
def gluoncv_outputs(side_python, tmp_path_factory):
    folder = tmp_path_factory.mktemp("transforms")
    samples = {}
    for height, width in SIZES:
        image, mask = raw_sample(height, width, 0)
        samples[f"s{height}x{width}_image"], samples[f"s{height}x{width}_mask"] = image, mask
    np.savez(folder / "in.npz", **samples)
    seeds = ",".join(map(str, SEEDS))
    command = [side_python, "-c", GLUONCV_SCRIPT, folder / "in.npz", folder / "out.npz", BASE, CROP, seeds]
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(folder / "out.npz")


@pytest.mark.gluoncv
@pytest.mark.parametrize("labels", sorted(LABEL_MAPS))
def test_train_transform_equals_gluoncv(gluoncv_outputs, labels):
    to_labels, fill = LABEL_MAPS[labels]
    branches = set()
    for height, width in SIZES:
        image, raw = raw_sample(height, width, 0)
        for seed in SEEDS:
            x, y, drawn = train_transform(image, to_labels(raw), random.Random(seed), BASE, CROP, mask_fill=fill)
            key = f"s{height}x{width}_train{seed}"
            np.testing.assert_array_equal(x, gluoncv_outputs[key + "_image"], err_msg=key)
            np.testing.assert_array_equal(y, to_labels(gluoncv_outputs[key + "_mask"]), err_msg=key)
            assert x.shape == (CROP, CROP, 3) and y.dtype == np.int32
            branches |= {("flip", drawn.flip), ("blur", drawn.blur_radius is not None), ("pad", min(drawn.size) < CROP)}
    assert branches == {(b, v) for b in ("flip", "blur", "pad") for v in (True, False)}


@pytest.mark.gluoncv
def test_val_transform_equals_gluoncv(gluoncv_outputs):
    to_labels, _ = LABEL_MAPS["voc"]
    for height, width in SIZES:
        image, raw = raw_sample(height, width, 0)
        x, y = val_transform(image, to_labels(raw), CROP)
        key = f"s{height}x{width}_val"
        np.testing.assert_array_equal(x, gluoncv_outputs[key + "_image"])
        np.testing.assert_array_equal(y, to_labels(gluoncv_outputs[key + "_mask"]))


def pairs_dataset(count=6):
    samples = [raw_sample(97 + i, 131 - i, i) for i in range(count)]
    images = tf.ragged.constant([s[0] for s in samples], dtype=tf.uint8, ragged_rank=2, inner_shape=(3,))
    masks = tf.ragged.constant([s[1].astype(np.int32) - 1 for s in samples], dtype=tf.int32, ragged_rank=2)
    return tf.data.Dataset.from_tensor_slices((images, masks)).map(lambda x, y: (x.to_tensor(), y.to_tensor()))


def collect(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_pipeline_equals_numpy_and_is_deterministic():
    transform = SegmentationTransform("train", BASE, CROP, mask_fill=-1, seed=5)
    first = collect(transform(pairs_dataset(), epoch=0, num_parallel_calls=4))
    again = collect(transform(pairs_dataset(), epoch=0, num_parallel_calls=2))
    next_epoch = collect(transform(pairs_dataset(), epoch=1))
    raw = collect(pairs_dataset())
    for index, ((x, y), (x2, y2), (image, mask)) in enumerate(zip(first, again, raw, strict=True)):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y, y2)
        crop, labels = transform.transform(image, mask, index=index, epoch=0)
        np.testing.assert_array_equal(x, normalize_image(crop))
        np.testing.assert_array_equal(y, labels)
        assert x.shape == (CROP, CROP, 3) and x.dtype == np.float32
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, next_epoch, strict=True))


def test_pipeline_shapes_per_mode():
    data = pairs_dataset(2)
    val = SegmentationTransform("val", crop_size=CROP)(data)
    assert val.element_spec[0].shape.as_list() == [CROP, CROP, 3]
    testval = SegmentationTransform("testval", normalize=False)(data)
    assert testval.element_spec[0].shape.as_list() == [None, None, 3]
    (x, y), (image, mask) = next(iter(testval)), next(iter(data))
    np.testing.assert_array_equal(x, image)
    np.testing.assert_array_equal(y, mask)


def test_bad_input_is_named():
    image, raw = raw_sample(20, 30, 0)
    with pytest.raises(ValueError, match="uint8 RGB"):
        val_transform(image.astype(np.float32), raw, 16)
    with pytest.raises(ValueError, match="does not match"):
        val_transform(image, raw[:10], 16)
    with pytest.raises(ValueError, match="integer class indices"):
        val_transform(image, raw.astype(np.float32), 16)
    with pytest.raises(ValueError, match="mode must be"):
        SegmentationTransform("test")
