"""Inputs over time without copies: constant-input models."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from tests import models


def _images(n=8, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, 28, 28, 1)).astype("float32")


@pytest.mark.parametrize("readout", [None, "mean", "last"])
def test_constant_input_equals_the_tiled_input(readout):
    model = models.tutorial_convnet()
    options = dict(swap_activations={"relu": "spiking_relu"}, synapse=0.01, scale_firing_rates=10)
    steps = 20
    tiled = ksc.convert(model, n_steps=steps, readout=readout, **options)
    constant = ksc.convert(model, n_steps=steps, readout=readout, constant_input=True, **options)
    assert constant.input_shape == (None, 28, 28, 1)
    x = _images()
    expected = tiled.predict(ksc.tile_time(x, steps), verbose=0)
    actual = constant.predict(x, verbose=0)
    np.testing.assert_array_equal(actual, expected)
    assert np.abs(expected).max() > 0


def test_constant_input_needs_n_steps():
    with pytest.raises(ValueError, match=r"constant_input=True.*n_steps"):
        ksc.convert(models.tutorial_convnet(), constant_input=True)


def test_constant_input_model_trains():
    model = models.tutorial_convnet()
    snn = ksc.convert(model, n_steps=4, readout="mean", constant_input=True)
    x = _images(32) / 255.0
    y = np.random.default_rng(1).integers(0, 10, (32,))
    snn.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = snn.fit(x, y, epochs=5, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_constant_input_model_saves_and_loads(tmp_path):
    model = models.tutorial_convnet()
    snn = ksc.convert(
        model, swap_activations={"relu": "spiking_relu"}, n_steps=10, constant_input=True
    )
    x = _images(4)
    path = tmp_path / "constant.keras"
    snn.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), snn.predict(x, verbose=0))
