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


def test_encoders_fire_at_the_target_rate_and_average_to_the_input():
    x = np.linspace(0.0, 1.0, 11, dtype="float32").reshape(1, 1, 11)
    x = np.repeat(x, 2000, axis=1)  # 2 s at dt = 1 ms
    regular = np.asarray(keras.ops.convert_to_numpy(ksc.layers.RegularEncoder(100.0)(x)))
    counts = (regular * (100.0 * 0.001)).sum(axis=1)[0]  # spikes per feature
    np.testing.assert_allclose(counts, x[0, 0] * 100.0 * 2.0, atol=1.0)  # rounded counts
    np.testing.assert_allclose(regular.mean(axis=1)[0], x[0, 0], atol=0.01)
    poisson = keras.ops.convert_to_numpy(ksc.layers.PoissonEncoder(100.0, seed=3)(x))
    n = 2000 * 0.1 * x[0, 0]  # expected spikes
    counts = (poisson * 0.1).sum(axis=1)[0]
    # Binomial(2000, p): within 4 standard deviations.
    assert np.all(np.abs(counts - n) <= 4 * np.sqrt(n * (1 - 0.1 * x[0, 0])) + 1e-6)
    assert set(np.unique(poisson * 0.1)) <= {0.0, 1.0}


def test_poisson_seeds():
    x = np.full((2, 50, 8), 0.5, dtype="float32")

    def spikes(seed):
        return keras.ops.convert_to_numpy(ksc.layers.PoissonEncoder(200.0, seed=seed)(x))

    np.testing.assert_array_equal(spikes(1), spikes(1))
    assert not np.array_equal(spikes(1), spikes(2))


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: ksc.layers.PoissonEncoder(-5.0, seed=0), r"`max_rate` must be > 0"),
        (lambda: ksc.layers.PoissonEncoder(2000.0, seed=0), r"above 1 / dt = 1000 Hz"),
        (lambda: ksc.layers.PoissonEncoder(100.0), r"`seed` is required"),
        (lambda: ksc.layers.RegularEncoder(0.0), r"`max_rate` must be > 0"),
    ],
)
def test_encoder_arguments_are_checked(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_encoders_serialize_and_stream():
    x = np.random.default_rng(0).uniform(0, 1, (2, 30, 5)).astype("float32")
    for layer in (ksc.layers.RegularEncoder(300.0), ksc.layers.PoissonEncoder(300.0, seed=4)):
        copy = keras.layers.deserialize(keras.layers.serialize(layer))
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(copy(x)), keras.ops.convert_to_numpy(layer(x))
        )
    # The regular encoder's phase is a state: a stream of chunks equals the whole train.
    inp = keras.Input((None, 5))
    model = ksc.SpikingModel(inp, ksc.layers.RegularEncoder(300.0, name="encoder")(inp))
    assert list(ksc.state_layout(model)) == ["state_encoder"]
    stream = ksc.Stream(model)
    chunks = np.concatenate([stream(x[:, :13]), stream(x[:, 13:])], axis=1)
    np.testing.assert_array_equal(chunks, model.predict(x, verbose=0))


@pytest.mark.tensorflow_only
def test_evaluate_on_a_tfds_mock_split_with_a_constant_input_model():
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_spiking_conv.datasets import tfds_pipeline

    model = models.tutorial_convnet()
    snn = ksc.convert(model, n_steps=5, readout="mean", constant_input=True)
    snn.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    with tfds.testing.mock_data(num_examples=20):
        dataset = tfds_pipeline("mnist", "test", batch_size=8)
        images, labels = next(iter(dataset))
        assert tuple(images.shape) == (8, 28, 28, 1) and images.dtype.name == "float32"
        loss, accuracy = snn.evaluate(dataset, verbose=0)
        assert 0.0 <= accuracy <= 1.0 and np.isfinite(loss)
        tiled = tfds_pipeline("mnist", "test", batch_size=8, n_steps=5)
        assert tuple(next(iter(tiled))[0].shape) == (8, 5, 28, 28, 1)
