"""Inputs over time without copies: constant-input models."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
import keras_spiking_conv.datasets
from keras_spiking_conv.runtime.plan import is_converted
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
    # Through `predict` (a compiled loop): a direct call steps TensorFlow's eager loop
    # 2,000 times (17 s on 2 shared cores).
    regular = keras.Sequential([ksc.layers.RegularEncoder(100.0)]).predict(x, verbose=0)
    counts = (regular * (100.0 * 0.001)).sum(axis=1)[0]  # spikes per feature
    np.testing.assert_allclose(counts, x[0, 0] * 100.0 * 2.0, atol=1.0)  # rounded counts
    np.testing.assert_allclose(regular.mean(axis=1)[0], x[0, 0], atol=0.01)
    poisson = keras.Sequential([ksc.layers.PoissonEncoder(100.0, seed=3)]).predict(x, verbose=0)
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


def test_hash_uniform_matches_a_uint32_reference():
    from keras_spiking_conv.layers.encoders import hash_uniform

    def lowbias32(x):
        x = np.uint32(x) if np.ndim(x) == 0 else x.astype(np.uint32)
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))

    seed, steps = 12345, np.array([0, 7, 100000], dtype=np.uint32)
    with np.errstate(over="ignore"):
        key = lowbias32(np.uint32(seed))
        x = lowbias32(steps[:, None, None] ^ key)
        x = lowbias32(x ^ np.arange(3, dtype=np.uint32)[:, None, None])
        x = lowbias32(x ^ np.arange(6, dtype=np.uint32).reshape(1, 2, 3))
    expected = (x >> np.uint32(8)).astype(np.float64) / 2**24
    actual = keras.ops.convert_to_numpy(
        hash_uniform(seed, keras.ops.convert_to_tensor(steps.astype("int32")), 3, (2, 3))
    )
    np.testing.assert_array_equal(actual, expected.astype("float32"))
    # Uniform enough for rate coding: mean and spread over many draws.
    many = keras.ops.convert_to_numpy(
        hash_uniform(1, keras.ops.arange(64, dtype="int32"), 64, (100,))
    )
    assert abs(many.mean() - 0.5) < 0.01 and abs(many.std() - np.sqrt(1 / 12)) < 0.01


@pytest.mark.parametrize("encoder", ["regular", "poisson"])
def test_encoder_option_in_constant_and_tiled_models(encoder):
    model = models.tutorial_convnet()
    options = dict(
        swap_activations={"relu": "spiking_relu"}, scale_firing_rates=1000, encoder=encoder, seed=3
    )
    converter = ksc.Converter(model, n_steps=8, **options)
    assert converter.report.rows[0]["kind"] == "encoder"
    constant = ksc.convert(model, n_steps=8, constant_input=True, **options)
    x = _images(4) / 255.0
    tiled = converter.model.predict(ksc.tile_time(x, 8), verbose=0)
    np.testing.assert_array_equal(constant.predict(x, verbose=0), tiled)
    assert np.abs(tiled).max() > 0
    # The layer-wise execution draws the same spikes as the fused loop.
    converter.model.execution = "layers"
    np.testing.assert_allclose(
        converter.model.predict(ksc.tile_time(x, 8), verbose=0), tiled, rtol=1e-5, atol=1e-4
    )
    # Re-converting with an encoder replaces the old one instead of adding a second.
    again = ksc.Converter(converter.model, encoder="regular").report
    assert [row["kind"] for row in again.rows[:2]] == ["encoder", "dropped"]


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(encoder="poisson"), r"encoder='poisson'.*needs `seed`"),
        (dict(encoder="gaussian"), r"`encoder` must be None, 'regular', 'poisson'"),
    ],
)
def test_encoder_option_is_checked(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ksc.convert(models.tutorial_convnet(), **kwargs)


def test_wrong_input_shapes_name_the_expected_shape():
    model = models.tutorial_convnet()
    tiled = ksc.convert(model, readout="mean")
    constant = ksc.convert(model, n_steps=4, readout="mean", constant_input=True)
    x = _images(4)
    with pytest.raises(ValueError, match=r"expects shape \(batch, time, 28, 28, 1\).*tile_time"):
        tiled.predict(x, verbose=0)
    with pytest.raises(ValueError, match=r"expects shape \(batch, 28, 28, 1\).*4 steps"):
        constant.predict(ksc.tile_time(x, 4), verbose=0)
    with pytest.raises(ValueError, match=r"expects shape \(batch, 28, 28, 1\)"):
        constant.predict(x[:, :20], verbose=0)
    # Tools that work on time steps point to the time-axis network.
    with pytest.raises(TypeError, match=r"constant-input model.*model\.network"):
        ksc.probe(constant, ksc.tile_time(x, 4))
    assert is_converted(constant.network) and constant.n_steps == 4


@pytest.mark.tensorflow_only
def test_evaluate_a_tf_data_dataset_and_reject_a_wrong_one():
    import tensorflow as tf

    model = models.tutorial_convnet()
    snn = ksc.convert(model, n_steps=4, readout="mean", constant_input=True)
    snn.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
    )
    x, y = _images(16), np.arange(16) % 10
    loss, accuracy = snn.evaluate(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0
    wrong = tf.data.Dataset.from_tensor_slices((ksc.tile_time(x, 4), y)).batch(8)
    snn.compile(loss=snn.loss)  # a new evaluate function: traced for this dataset's shapes
    with pytest.raises(ValueError, match=r"expects shape \(batch, 28, 28, 1\)"):
        snn.evaluate(wrong, verbose=0)
    strings = tf.data.Dataset.from_tensor_slices((tf.fill((16, 28, 28, 1), "a"), y)).batch(8)
    snn.compile(loss=snn.loss)
    with pytest.raises(ValueError, match=r"expects shape \(batch, 28, 28, 1\).*dtype string"):
        snn.evaluate(strings, verbose=0)


@pytest.mark.tensorflow_only
def test_load_mnist_from_tfds_and_its_offline_fallback(monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from keras_spiking_conv import datasets

    with tfds.testing.mock_data(num_examples=12):
        train, test = datasets.load_mnist(source="tfds", batch_size=5, n_steps=3)
        images, labels = next(iter(train))
        assert tuple(images.shape) == (5, 3, 28, 28, 1) and images.dtype.name == "float32"
        assert sum(int(b[1].shape[0]) for b in test) == 12

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tfds, "load", offline)
    with pytest.warns(UserWarning, match="using the bundled real subset"):
        train, test = datasets.load_mnist(source="tfds", batch_size=1000)
    assert sum(int(b[1].shape[0]) for b in train) == 8000
    assert tuple(next(iter(test))[0].shape) == (1000, 28, 28, 1)
    with pytest.raises(RuntimeError, match="could not load 'mnist'.*data_dir"):
        datasets.load_mnist(source="tfds", allow_fallback=False)


def test_array_pipeline_feeds_both_kinds_of_model_lazily():
    from keras_spiking_conv.datasets import ArrayPipeline

    (x, y), _ = ksc.datasets.load_bundled_mnist()
    x, y = x[:64], y[:64]
    held = ArrayPipeline(x, y, batch_size=16, n_steps=4)
    images, labels = held[0]
    assert images.shape == (16, 4, 28, 28, 1) and images.strides[1] == 0  # a view, no copy
    np.testing.assert_array_equal(images[:, 3], x[:16, :, :, None])
    model = models.tutorial_convnet()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    tiled = ksc.convert(model, readout="mean")
    tiled.compile(loss=loss, metrics=["accuracy"])
    constant = ksc.convert(model, n_steps=4, readout="mean", constant_input=True)
    constant.compile(keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    np.testing.assert_allclose(
        tiled.evaluate(held, verbose=0),
        constant.evaluate(ArrayPipeline(x, y, batch_size=16), verbose=0),
        rtol=1e-5,
    )
    history = constant.fit(ArrayPipeline(x, y, 16, shuffle=True, seed=0), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(ValueError, match="as many samples"):
        ArrayPipeline(x, y[:10])


def test_data_checks_leave_what_they_cannot_read_to_keras():
    z, a = keras.Input((3,), name="z"), keras.Input((5,), name="a")
    merged = keras.layers.Add()([keras.layers.Dense(2)(z), keras.layers.Dense(2)(a)])
    snn = ksc.convert(keras.Model([z, a], merged), n_steps=3, constant_input=True, readout="mean")
    xz, xa = np.ones((4, 3), "float32"), np.zeros((4, 5), "float32")
    # A list-structured model fed by name: matched by name, not by sorted keys.
    np.testing.assert_array_equal(
        snn.predict({"a": xa, "z": xz}, verbose=0), snn.predict([xz, xa], verbose=0)
    )
    # A generator is Keras' to read.
    snn.compile(loss="mse")

    def batches():
        while True:
            yield (xz, xa), np.zeros((4, 2), "float32")

    snn.fit(batches(), steps_per_epoch=2, epochs=1, verbose=0)


def test_constant_input_arguments_and_reconversion_are_checked():
    from keras_spiking_conv.runtime.model import ConstantInput

    network = ksc.convert(models.tutorial_convnet())
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"`n_steps` must be a positive integer"):
            ConstantInput(network, bad)
    constant = ksc.convert(models.tutorial_convnet(), n_steps=3, constant_input=True)
    with pytest.raises(TypeError, match=r"convert\(model.network, .*n_steps=3"):
        ksc.convert(constant)


def test_random_layers_run_in_the_loop_when_training():
    from keras_spiking_conv.runtime.engine import constant_prefix
    from keras_spiking_conv.runtime.plan import plan_of

    inp = keras.Input((6,))
    h = keras.layers.Dense(4, name="first")(inp)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    out = keras.layers.Dense(2, activation="relu", name="last")(h)
    snn = ksc.convert(keras.Model(inp, out), swap_activations={"relu": "spiking_relu"})
    plan = plan_of(snn)
    names = lambda sites: [site.layer.name for site in sites]  # noqa: E731
    assert "drop" in names(constant_prefix(plan)) and "first" in names(constant_prefix(plan))
    training = names(constant_prefix(plan, training=True))
    assert "first" in training and "drop" not in training and "last" not in training


def test_encoders_compute_in_float32_under_a_mixed_policy():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        for layer in (ksc.layers.RegularEncoder(100.0), ksc.layers.PoissonEncoder(100.0, seed=0)):
            assert layer.dtype_policy.name == "float32"
            assert layer.cell.dtype_policy.name == "float32"
    finally:
        keras.config.set_dtype_policy("float32")


def test_kept_encoders_take_the_new_dt_and_are_checked_against_it():
    def encoder_of(model):
        return next(layer for layer in model.layers if isinstance(layer, ksc.layers.PoissonEncoder))

    snn = ksc.convert(models.tutorial_convnet(), encoder="poisson", seed=0)  # 1000 Hz at dt 1 ms
    assert encoder_of(snn).dt == 0.001
    again = encoder_of(ksc.convert(snn, dt=0.0005))
    assert again.dt == 0.0005 and again.max_rate == 1000.0
    with pytest.raises(ValueError, match=r"above 1 / dt = 500 Hz"):
        ksc.convert(snn, dt=0.002)
