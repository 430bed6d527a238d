"""The geometry of GluonCV's multi-scale evaluation, against GluonCV's own loop on numbers."""

import math

import numpy as np
import pytest

from kseg.evaluation.grid import normalized_black, plan_scale, scaled_size, window_stride
from kseg.evaluation.multiscale import chunk_sizes

SIZES = [(512, 683), (364, 500), (300, 400), (200, 150), (170, 260), (480, 480), (1, 7), (1024, 2048), (97, 131)]
SETTINGS = [(520, 480), (2048, 768), (240, 160), (64, 48), (33, 10)]
SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def gluoncv_numbers(h, w, base_size, crop_size, scale):
    """MultiEvalModel.__call__ (segbase.py at cb07ee2a) for one scale, keeping the numbers only."""
    stride_rate = 2.0 / 3.0
    stride = int(crop_size * stride_rate)
    long_size = int(math.ceil(base_size * scale))
    if h > w:
        height = long_size
        width = int(1.0 * w * long_size / h + 0.5)
        short_size = width
    else:
        width = long_size
        height = int(1.0 * h * long_size / w + 0.5)
        short_size = height
    if long_size <= crop_size:
        ph, pw = max(height, crop_size), max(width, crop_size)  # _pad_image(cur_img, crop_size)
        return dict(size=(height, width), sliding=False, padded=(ph, pw), windows=[(0, ph, 0, pw)], count=None)
    if short_size < crop_size:
        ph, pw = max(height, crop_size), max(width, crop_size)
    else:
        ph, pw = height, width
    h_grids = int(math.ceil(1.0 * (ph - crop_size) / stride)) + 1
    w_grids = int(math.ceil(1.0 * (pw - crop_size) / stride)) + 1
    count_norm = np.zeros((ph, pw))
    windows = []
    for idh in range(h_grids):
        for idw in range(w_grids):
            h0 = idh * stride
            w0 = idw * stride
            h1 = min(h0 + crop_size, ph)
            w1 = min(w0 + crop_size, pw)
            windows.append((h0, h1, w0, w1))
            count_norm[h0:h1, w0:w1] += 1
    assert (count_norm == 0).sum() == 0
    return dict(size=(height, width), sliding=True, padded=(ph, pw), windows=windows, count=count_norm[:height, :width])


@pytest.mark.parametrize("base_size,crop_size", SETTINGS)
def test_plan_matches_gluoncv_loop(base_size, crop_size):
    for h, w in SIZES:
        for scale in SCALES:
            expected = gluoncv_numbers(h, w, base_size, crop_size, scale)
            plan = plan_scale(h, w, base_size, crop_size, scale)
            where = (h, w, base_size, crop_size, scale)
            assert (plan.height, plan.width) == expected["size"], where
            assert plan.sliding == expected["sliding"], where
            assert plan.padded == expected["padded"], where
            assert plan.windows() == expected["windows"], where
            counts = plan.counts()
            assert counts.shape == expected["size"]
            if expected["count"] is None:
                assert np.all(counts == 1), where  # GluonCV does not divide: the same as dividing by 1
            else:
                np.testing.assert_array_equal(counts, expected["count"], err_msg=str(where))
            assert plan.extent[0] >= plan.padded[0] and plan.extent[1] >= plan.padded[1]


def test_known_grids():
    # ADE default 520/480 at 1.75 on a 512x683 image: long 910, short int(512*910/683 + .5) = 682.
    plan = plan_scale(512, 683, 520, 480, 1.75)
    assert (plan.height, plan.width, plan.stride) == (682, 910, 320)
    assert plan.rows == (0, 320) and plan.cols == (0, 320, 640)
    # The last window is not shifted back: 640 + 480 > 910, it is cut and padded.
    assert plan.windows()[-1] == (320, 682, 640, 910)
    # Long side within the crop: one window, the image padded to the crop.
    small = plan_scale(512, 683, 520, 480, 0.75)
    assert (small.height, small.width, small.sliding, small.padded) == (292, 390, False, (480, 480))
    assert small.num_windows == 1


def test_rounding_is_half_up_and_long_side_is_ceil():
    assert window_stride(480) == 320 and window_stride(768) == 512 and window_stride(160) == 106
    # 5 * 3 / 6 = 2.5 rounds up to 3 (Python's round() would give 2).
    assert scaled_size(6, 5, 3, 1.0) == (3, 3)
    assert scaled_size(5, 6, 3, 1.0) == (3, 3)
    # ceil(520 * 0.75) = 390; ceil(base * 1.25) for 2048 = 2560.
    assert scaled_size(512, 683, 520, 0.75)[1] == 390
    assert scaled_size(1024, 2048, 2048, 1.25) == (1280, 2560)
    # Square images: the width is the long side.
    assert scaled_size(300, 300, 520, 0.5) == (260, 260)


def test_pad_value_is_normalised_black():
    expected = -np.array([0.485, 0.456, 0.406]) / np.array([0.229, 0.224, 0.225])
    value = normalized_black()
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, expected.astype(np.float32))
    np.testing.assert_allclose(value * np.array([0.229, 0.224, 0.225]) + [0.485, 0.456, 0.406], 0, atol=1e-7)


@pytest.mark.parametrize("total,largest", [(0, 4), (1, 4), (7, 4), (9, 4), (17, 8), (6, 3), (5, 1), (100, 16)])
def test_chunk_sizes(total, largest):
    sizes = chunk_sizes(total, largest)
    assert sum(sizes) == total
    assert all(s == largest or (s < largest and s & (s - 1) == 0) for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
