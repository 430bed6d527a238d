"""Readers on data sets written in each official layout, against GluonCV's own readers."""

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kseg
from kseg.data.datasets.cityscapes import label_ids_to_train_ids
from kseg.data.synthetic import write_dataset

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata"
KEYS = ("ade20k", "pascal_voc", "pascal_aug", "coco", "citys")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for key in KEYS:
        write_dataset(key, root, num_train=4, num_val=3, size=(72, 96), seed=1)
    return root


@pytest.mark.parametrize("key", KEYS)
def test_reader_lists_and_loads_every_layout(data_root, key):
    train, val = (kseg.data.get_dataset(key, split, data_root) for split in ("train", "val"))
    expected = {"pascal_voc": (7, 3), "pascal_aug": (7, 3), "coco": (3, 2)}.get(key, (4, 3))  # VOC train = trainval
    assert (len(train), len(val)) == expected
    assert len(set(val.ids)) == len(val) and val.num_classes == len(val.classes)
    image, mask = val.load(0)
    assert image.dtype == np.uint8 and image.shape == (72, 96, 3)
    assert mask.dtype == np.int32 and mask.shape == (72, 96)
    assert mask.min() >= -1 and mask.max() < val.num_classes
    assert val.mask_fill == (-1 if key in ("ade20k", "citys") else 0)
    assert val.pred_offset == (1 if key == "ade20k" else 0)


def test_root_may_be_the_data_set_folder_or_kseg_data(data_root, monkeypatch):
    direct = kseg.data.get_dataset("ade20k", "val", data_root / "ADEChallengeData2016")
    monkeypatch.setenv("KSEG_DATA", str(data_root))
    from_env = kseg.data.get_dataset("ade20k", "val")
    assert direct.ids == from_env.ids and direct.root == from_env.root


def test_tf_dataset_equals_load_and_is_seeded(data_root):
    dataset = kseg.data.get_dataset("citys", "train", data_root)
    elements = list(dataset.as_tf_dataset(with_ids=True, num_parallel_calls=3))
    for index, (sample_id, image, mask) in enumerate(elements):
        expected_image, expected_mask = dataset.load(index)
        assert sample_id.numpy().decode() == dataset.ids[index]
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(mask, expected_mask)

    def order(seed):
        return [i.numpy().decode() for i, _, _ in dataset.as_tf_dataset(shuffle=True, seed=seed, with_ids=True)]

    assert order(3) == order(3) and sorted(order(3)) == sorted(dataset.ids)


def test_missing_and_malformed_folders_name_the_layout(data_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)No ade20k data set.*images/validation"):
        kseg.data.get_dataset("ade20k", "val", tmp_path)
    with pytest.raises(FileNotFoundError, match="--dataset-dir"):
        kseg.data.datasets.ADE20K(None, "val")
    broken = tmp_path / "VOCdevkit" / "VOC2012"
    (broken / "JPEGImages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"(?s)missing split list.*ImageSets/Segmentation/trainval.txt"):
        kseg.data.get_dataset("pascal_voc", "train", tmp_path)
    ade = tmp_path / "ade" / "ADEChallengeData2016"
    (ade / "annotations" / "validation").mkdir(parents=True)
    (ade / "images" / "validation").mkdir(parents=True)
    (ade / "images" / "validation" / "ADE_val_00000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FileNotFoundError, match="has no annotation"):
        kseg.data.get_dataset("ade20k", "val", tmp_path / "ade")
    (ade / "annotations" / "validation" / "ADE_val_00000001.png").write_bytes(b"")
    with pytest.raises(ValueError, match="Cannot read .*ADE_val_00000001.jpg"):
        kseg.data.get_dataset("ade20k", "val", tmp_path / "ade").load(0)
    with pytest.raises(ValueError, match="Did you mean: pascal_voc"):
        kseg.data.get_dataset("pascal-voc")
    with pytest.raises(ValueError, match="splits"):
        kseg.data.get_dataset("pascal_aug", "test", data_root)


def test_cityscapes_label_map():
    label_ids = np.array([[0, 7, 8, 11], [26, 33, 34 - 1, 1]])
    np.testing.assert_array_equal(label_ids_to_train_ids(label_ids), [[-1, 0, 1, 2], [13, 18, 18, -1]])
    with pytest.raises(ValueError, match="0..33"):
        label_ids_to_train_ids(np.array([[40]]))


def test_tfds_cityscapes_not_prepared_says_how(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build cityscapes/semantic_segmentation"):
        kseg.data.datasets.cityscapes_from_tfds("validation", data_dir=str(tmp_path))


GLUONCV_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from gluoncv.data import get_segmentation_dataset
    roots = json.loads(sys.argv[1])
    out = {}
    for key, root in roots.items():
        for split in ("train", "val"):
            if key == "pascal_aug":  # GluonCV's VOCAugSegmentation has no testval mode: read the .mat as it does
                ds = get_segmentation_dataset(key, root=root, split=split, mode="val")
                items = [(p, np.asarray(ds._load_mat(m)).astype("int32")) for p, m in zip(ds.images, ds.masks)]
            else:
                ds = get_segmentation_dataset(key, root=root, split=split, mode="testval")
                paths = ds.images if key != "coco" else [str(i) for i in ds.ids]
                items = [(p, ds[i][1].asnumpy()) for i, p in enumerate(paths)]
            for path, mask in items:
                stem = os.path.splitext(os.path.basename(path))[0]
                out[f"{key}/{split}/{stem}"] = mask
    np.savez(sys.argv[2], **out)
    """
)


@pytest.mark.gluoncv
def test_masks_equal_gluoncv_readers(side_python, data_root, tmp_path):
    roots = {
        "ade20k": data_root,
        "pascal_voc": data_root / "VOCdevkit",
        "pascal_aug": data_root,
        "coco": data_root / "coco",
        "citys": data_root / "cityscapes",
    }
    if (REALDATA / "ADEChallengeData2016").is_dir():
        roots["real_ade20k"] = REALDATA
    roots = {k: str(v) for k, v in roots.items()}
    side_roots = {k.removeprefix("real_"): v for k, v in roots.items() if not k.startswith("real_")}
    result = subprocess.run(
        [side_python, "-c", GLUONCV_SCRIPT, json.dumps(side_roots), str(tmp_path / "masks.npz")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = np.load(tmp_path / "masks.npz")
    seen = set()
    for key in KEYS:
        for split in ("train", "val"):
            dataset = kseg.data.get_dataset(key, split, data_root)
            for index, sample_id in enumerate(dataset.ids):
                stem = sample_id.removesuffix("_leftImg8bit") + "_leftImg8bit" if key == "citys" else sample_id
                name = f"{key}/{split}/{stem}"
                np.testing.assert_array_equal(dataset.load_mask(index), expected[name], err_msg=name)
                seen.add(name)
    assert seen == set(expected.files)  # the same samples, COCO's >1000-pixel filter included


@pytest.mark.gluoncv
@pytest.mark.parametrize("key, folder", [("ade20k", "ADEChallengeData2016"), ("citys", "cityscapes")])
def test_real_samples_equal_gluoncv(side_python, tmp_path, key, folder):
    if not (REALDATA / folder).is_dir():
        pytest.skip(f"real samples not found in {REALDATA / folder}")
    root = REALDATA if key == "ade20k" else REALDATA / folder
    result = subprocess.run(
        [side_python, "-c", GLUONCV_SCRIPT.replace('("train", "val")', '("val",)'), json.dumps({key: str(root)}),
         str(tmp_path / "masks.npz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = np.load(tmp_path / "masks.npz")
    dataset = kseg.data.get_dataset(key, "val", REALDATA)
    assert len(dataset) == len(expected.files) > 0
    for index, sample_id in enumerate(dataset.ids):
        np.testing.assert_array_equal(dataset.load_mask(index), expected[f"{key}/val/{sample_id}"])
    if key == "citys":
        # The sample ships trainIds too; they were downscaled separately, so allow boundary pixels to differ.
        with Image.open(str(dataset.masks[0]).replace("labelIds", "labelTrainIds")) as png:
            train_ids = np.asarray(png).astype(np.int32)
        train_ids[train_ids == 255] = -1
        assert np.mean(train_ids == dataset.load_mask(0)) > 0.99
