"""kseg.arithmetic: multiply-accumulates counted from the graph against hand counts and the issue's figures."""

import keras
import pytest

import kseg
from kseg.arithmetic import MacCount, arithmetic_limits, count_macs, matmul_peak
from kseg.models.layers import Conv2D, Conv2DTranspose


def test_counts_match_hand_counts():
    inputs = keras.Input((10, 12, 3))
    x = Conv2D(8, 3, padding="same")(inputs)  # 10 * 12 outputs x 8 filters x 27: Winograd-eligible
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(x)  # 5 * 6 x 4 x 72: stride 2, direct
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 5 * 6 x 4 x 9
    x = Conv2DTranspose(2, 2, strides=2)(x)  # one einsum: 5 * 6 x 4 -> 2 * 2 * 2
    x = keras.layers.Dense(5)(x)  # 10 * 12 x 2 -> 5
    model = keras.Model(inputs, x)
    eligible = 10 * 12 * 8 * 27
    expected = eligible + 5 * 6 * 4 * 72 + 5 * 6 * 4 * 9 + 5 * 6 * 4 * 8 + 10 * 12 * 2 * 5
    assert count_macs(model, (10, 12)) == MacCount(expected, eligible)
    assert count_macs(model, (10, 12), batch=3) == MacCount(3 * expected, 3 * eligible)


def test_limits_and_peak():
    limits = arithmetic_limits(MacCount(100_000_000_000, 36_000_000_000), 100.0)
    assert limits["direct_s"] == pytest.approx(2.0)
    assert limits["winograd_s"] == pytest.approx(2 * (100 - 36 * 20 / 36) / 100)
    assert matmul_peak("float32", n=256, repeats=2) > 0.1


@pytest.mark.large
def test_fcn_resnet101_is_196_gmac_at_480():
    """The issue's own count: 196 GMAC at 480x480, 118.5 of them in 3x3 convolutions (the stem's stride-2 ones
    included, which Winograd does not take: 0.7 GMAC)."""
    macs = count_macs(kseg.models.get("fcn_resnet101_voc"), (480, 480))
    assert macs.total / 1e9 == pytest.approx(196.0, abs=0.3)
    assert 117.0 < macs.winograd_eligible / 1e9 < 118.5
