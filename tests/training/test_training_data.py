"""The training stream: seeded, and a resumed run sees exactly the batches an uninterrupted run sees."""

import numpy as np
import pytest

from kseg.data import get_dataset
from kseg.data.synthetic import write_dataset
from kseg.training.data import sample_order, steps_per_epoch, training_dataset, validation_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_dataset("ade20k", root, num_train=5, num_val=3, size=(40, 56), seed=3)
    return get_dataset("ade20k", split="train", root=root)


def batches(data):
    return [(x.copy(), y.copy()) for x, y in data.as_numpy_iterator()]


def test_sample_order_is_a_seeded_permutation_per_epoch():
    epoch_of, index_of = sample_order(7, 3, seed=5)
    assert epoch_of.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    for epoch in range(3):
        assert sorted(index_of[epoch * 7 : (epoch + 1) * 7]) == list(range(7))
    assert not np.array_equal(index_of[:7], index_of[7:14])  # reshuffled each epoch
    assert np.array_equal(sample_order(7, 3, seed=5)[1], index_of)
    assert not np.array_equal(sample_order(7, 3, seed=6)[1], index_of)


def test_resumed_stream_equals_the_uninterrupted_one(dataset):
    # 5 images in batches of 2: 2 steps per epoch, the fifth image rolls over into the next epoch.
    assert steps_per_epoch(len(dataset), 2) == 2
    full = batches(training_dataset(dataset, 2, 3, 64, 48, seed=1).take(6))
    resumed = batches(training_dataset(dataset, 2, 3, 64, 48, seed=1, start_step=3).take(3))
    for (x, y), (rx, ry) in zip(full[3:], resumed, strict=True):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)
    other_seed = batches(training_dataset(dataset, 2, 3, 64, 48, seed=2).take(1))
    assert not np.array_equal(full[0][0], other_seed[0][0])


def test_training_batches_have_the_crop_shape_and_labels_in_range(dataset):
    images, masks = next(iter(training_dataset(dataset, 2, 1, 64, 48, seed=0)))
    assert images.shape == (2, 48, 48, 3) and images.dtype == "float32"
    assert masks.shape == (2, 48, 48) and masks.dtype == "int32"
    assert int(masks.numpy().min()) >= -1 and int(masks.numpy().max()) < dataset.num_classes


def test_validation_keeps_every_image_once(dataset):
    sizes = [int(x.shape[0]) for x, _ in validation_dataset(dataset, 2, 48)]
    assert sizes == [2, 2, 1]


def test_too_small_a_training_split_is_an_error(dataset):
    with pytest.raises(ValueError, match="fewer than one batch"):
        steps_per_epoch(len(dataset), 8)
