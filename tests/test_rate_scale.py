import numpy as np
import pytest
from keras import ops

from keras_spiking_conv import RateScale, SpikingReLU
from tests.helpers import run_layer_test


def test_scale_and_inverse(rng):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    out = run_layer_test(RateScale, {"scale": 4.0}, x, (2, 3, 4))
    np.testing.assert_allclose(out, 4 * x, rtol=1e-6)
    back = RateScale(4.0, inverse=True)(out)
    np.testing.assert_allclose(ops.convert_to_numpy(back), x, rtol=1e-6)


def test_scaling_brings_spiking_towards_rate(rng):
    x = rng.uniform(0, 50, (2, 20, 32)).astype("float32")
    rate = np.maximum(x, 0).mean(axis=1)

    def error(scale):
        y = RateScale(scale, inverse=True)(SpikingReLU(seed=1)(RateScale(scale)(x)))
        return np.abs(ops.convert_to_numpy(y).mean(axis=1) - rate).mean()

    assert error(100.0) < error(10.0) < error(1.0)


@pytest.mark.parametrize("scale", [0, -1.5, float("inf"), "big", None])
def test_bad_scale(scale):
    with pytest.raises((ValueError, TypeError), match=r"scale.*Received: scale="):
        RateScale(scale)
