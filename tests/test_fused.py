import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from tests import models


def _inputs(model, n, steps, high=255.0, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, high, (n, *x.shape[1:])).astype("float32") for x in model.inputs]
    return ksc.tile_time(xs[0] if len(xs) == 1 else xs, steps)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"swap_activations": {"relu": "spiking_relu"}},
        {"swap_activations": {"relu": "spiking_relu"}, "synapse": 0.01, "scale_firing_rates": 3},
    ],
)
def test_fused_equals_layerwise(options):
    model = models.tutorial_convnet()
    snn = ksc.convert(model, seed=0, **options)
    fused = ksc.fuse(snn)
    x = _inputs(model, 4, 25)
    expected = ops.convert_to_numpy(snn(x))
    actual = ops.convert_to_numpy(fused(x))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-4)
    if options:
        assert np.abs(expected).max() > 0  # real activity went through


def test_fused_nested_shared_multi_io_and_predict():
    model = models.nested_shared_multi_io()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.005, seed=1)
    fused = ksc.fuse(snn)
    x = _inputs(model, 3, 12, high=100.0)
    for a, b in zip(snn.predict(x, verbose=0), fused.predict(x, verbose=0), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)


def test_fused_trains_and_shares_weights():
    model = models.tutorial_convnet()
    rate = ksc.convert(model)
    fused = ksc.fuse(rate)
    x = _inputs(model, 16, 1, high=1.0)
    y = np.random.default_rng(1).integers(0, 10, (16, 1))
    fused.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = rate.layers[-1].get_weights()[0].copy()
    fused.fit(x, y, epochs=1, verbose=0)
    after = rate.layers[-1].get_weights()[0]
    assert not np.allclose(before, after)  # training the fused model trained the shared weights
    np.testing.assert_allclose(
        ops.convert_to_numpy(fused(x)), ops.convert_to_numpy(rate(x)), rtol=1e-5, atol=1e-5
    )


def test_fused_keras_file_round_trip(tmp_path):
    model = models.tutorial_convnet()
    fused = ksc.fuse(ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.01))
    x = _inputs(model, 2, 10)
    expected = ops.convert_to_numpy(fused(x))
    fused.save(tmp_path / "fused.keras")
    loaded = keras.saving.load_model(tmp_path / "fused.keras")
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), expected)


def test_stateful_fused_streams_chunks():
    model = models.tutorial_convnet()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.005, seed=2)
    x = _inputs(model, 2, 12)
    whole = ops.convert_to_numpy(snn(x))
    stream = ksc.fuse(snn, stateful=True, batch_size=2)
    chunks = [ops.convert_to_numpy(stream(x[:, i : i + 4])) for i in range(0, 12, 4)]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=1e-5, atol=1e-4)
    for layer in stream.layers:
        if isinstance(layer, ksc.FusedNetwork):
            layer.reset_state()
    np.testing.assert_allclose(ops.convert_to_numpy(stream(x)), whole, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="needs a fixed `batch_size`"):
        ksc.fuse(snn, stateful=True)


def test_convert_returns_a_spiking_model_that_picks_its_execution(tmp_path):
    model = models.tutorial_convnet()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.005, seed=3)
    assert isinstance(snn, ksc.SpikingModel)
    assert snn._fused_network() is not None  # stateful: runs as one fused loop
    assert ksc.convert(model)._fused_network() is None  # rate mode: layer by layer
    x = _inputs(model, 3, 15)
    fused = ops.convert_to_numpy(snn(x))
    snn.execution = "layers"
    layers = ops.convert_to_numpy(snn(x))
    np.testing.assert_allclose(fused, layers, rtol=1e-5, atol=1e-4)
    snn.execution = "auto"
    snn.save(tmp_path / "snn.keras")
    loaded = keras.saving.load_model(tmp_path / "snn.keras")
    assert isinstance(loaded, ksc.SpikingModel)
    np.testing.assert_allclose(ops.convert_to_numpy(loaded(x)), fused, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("wrap", ["sequential", "list", "single"])
def test_every_execution_returns_the_output_structure_keras_does(wrap):
    # Keras returns a functional model's one output alone even when built from a list (as
    # a Sequential model's is); the fused execution, Stream and process_chunk returned a
    # list of one there.
    layers = [keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    if wrap == "sequential":
        model = keras.Sequential([keras.Input((4,)), *layers])
    else:
        inp = keras.Input((4,))
        out = layers[1](layers[0](inp))
        model = keras.Model(inp, [out] if wrap == "list" else out)
    x = np.ones((2, 3, 4), "float32")
    for options in ({}, {"swap_activations": {"relu": "spiking_relu"}}):
        snn = ksc.convert(model, **options)
        for execution in ("layers", "fused"):
            snn.execution = execution
            assert snn.predict(x, verbose=0).shape == (2, 3, 2)
            assert tuple(snn(x).shape) == (2, 3, 2)
        # Streaming runs the same engine and returns the same structure.
        assert ksc.Stream(snn)(x).shape == (2, 3, 2)
        outputs, _ = ksc.process_chunk(snn, x, ksc.initial_states(snn, 2))
        assert tuple(outputs.shape) == (2, 3, 2)


def test_weights_save_and_load_after_the_model_ran(tmp_path):
    # Running a model with state caches its step engine on it, which refers back to the
    # model; Keras' load_weights walked that cycle until the recursion limit.
    model = models.tutorial_convnet()
    options = {"swap_activations": {"relu": "spiking_relu"}, "synapse": 0.01}
    snn = ksc.convert(model, **options)
    x = _inputs(model, 2, 5)
    expected = snn.predict(x, verbose=0)
    snn.save_weights(tmp_path / "w.weights.h5")
    snn.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(snn.predict(x, verbose=0), expected)
    other = ksc.convert(models.tutorial_convnet(), **options)
    other.predict(x, verbose=0)
    other.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_array_equal(other.predict(x, verbose=0), expected)


def _predict_in_threads(model, feeds, rounds=3):
    """Each feed predicted in its own thread, all at once, `rounds` times: the results
    (or the exceptions) of every round."""
    import threading

    rounds_out = []
    for _ in range(rounds):
        results = [None] * len(feeds)

        def work(i, results):
            try:
                results[i] = model.predict(feeds[i], verbose=0, batch_size=4)
            except Exception as error:  # noqa: BLE001 - reported by the assertion
                results[i] = error

        threads = [threading.Thread(target=work, args=(i, results)) for i in range(len(feeds))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rounds_out.append(results)
    return rounds_out


def test_two_threads_predicting_at_once_get_what_one_after_the_other_gets():
    model = models.tutorial_convnet()
    rng = np.random.default_rng(0)
    xs = [rng.uniform(0, high, (16, 28, 28, 1)).astype("float32") for high in (60, 255)]
    plain = _predict_in_threads(model, xs, rounds=1)[0]
    if any(isinstance(r, Exception) for r in plain):
        # Keras' own predict on one model from two threads fails on this backend (JAX:
        # its trainer keeps the jitted function on the model during predict).
        pytest.skip(f"plain Keras predict is not thread-safe on this backend: {plain}")
    options = {"swap_activations": {"relu": "spiking_relu"}, "scale_firing_rates": 0.5}
    converted = ksc.convert(model, readout="mean", **options)
    constant = ksc.convert(model, readout="mean", constant_input=True, n_steps=6, **options)
    for snn, feeds in ((converted, [ksc.tile_time(x, 6) for x in xs]), (constant, xs)):
        alone = [snn.predict(f, verbose=0, batch_size=4) for f in feeds]
        assert not np.array_equal(alone[0], alone[1])
        for results in _predict_in_threads(snn, feeds):
            for result, expected in zip(results, alone, strict=True):
                assert not isinstance(result, Exception), result
                np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize("steps", [1, 3, 4, 5])
def test_a_few_known_steps_run_unrolled_with_the_same_spikes(steps):
    # Up to UNROLL_STEPS known steps, predict and fit run the step loop unrolled (faster
    # at T = 1-2); Stream and process_chunk run the loop: every path gives the same spikes.
    from keras_spiking_conv.runtime.engine import UNROLL_STEPS, engine_of

    model = models.tutorial_convnet()
    options = {"swap_activations": {"relu": "spiking_relu"}, "scale_firing_rates": 5.0, "seed": 2}
    snn = ksc.convert(model, **options)
    x = _inputs(model, 3, steps)
    engine = engine_of(snn)
    sequence, _ = engine._sequence(ops.convert_to_tensor(x))
    unrolled = engine._loop(sequence, engine.rnn) is engine.unrolled_rnn
    assert unrolled == (steps <= UNROLL_STEPS)
    predicted = snn.predict(x, verbose=0)
    assert np.count_nonzero(predicted) > 0
    outputs, _ = ksc.process_chunk(snn, x, ksc.initial_states(snn, 3))
    np.testing.assert_array_equal(ops.convert_to_numpy(outputs), predicted)
    np.testing.assert_array_equal(ops.convert_to_numpy(ksc.Stream(snn)(x)), predicted)
    # A constant input held for the same steps: the same spikes too.
    held = ksc.convert(model, constant_input=True, n_steps=steps, **options)
    np.testing.assert_array_equal(held.predict(x[:, 0], verbose=0), predicted)
