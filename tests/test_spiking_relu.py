import keras
import numpy as np
import pytest
from keras import ops

from keras_spiking_conv import SpikingReLU, SpikingReLUCell
from tests import reference
from tests.helpers import gradient, run_layer_test


def test_layer_contract(rng):
    x = rng.uniform(-50, 200, (2, 7, 5)).astype("float32")
    run_layer_test(SpikingReLU, {"seed": 3}, x, (2, 7, 5))
    run_layer_test(SpikingReLU, {"return_sequences": False, "initial_voltage": 0.5}, x, (2, 5))


@pytest.mark.parametrize("initial_voltage", ["random", 0.0, 0.25])
def test_golden_trajectory(rng, initial_voltage):
    x = rng.uniform(-300, 900, (3, 40, 6)).astype("float32")
    out, voltage = SpikingReLU(
        initial_voltage=initial_voltage, seed=11, amplitude=0.5, return_state=True
    )(x)
    v0 = (
        np.random.default_rng(11).uniform(0, 1, (6,))
        if initial_voltage == "random"
        else initial_voltage
    )
    expected, expected_v = reference.spiking_relu(x, v0, 0.001, amplitude=0.5)
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, rtol=1e-6)
    np.testing.assert_allclose(ops.convert_to_numpy(voltage), expected_v, atol=1e-5)


def test_spike_count_closed_form_on_conv_maps():
    # The must-show case: (2, 50, 8, 8, 3) input, spike counts exactly
    # floor(v0 + sum(max(x, 0) * dt)).
    rng = np.random.default_rng(1)
    x = rng.uniform(-100, 400, (2, 50, 8, 8, 3)).astype("float32")
    layer = SpikingReLU(seed=5)
    spikes = ops.convert_to_numpy(layer(x))
    counts = np.rint(spikes * 0.001).sum(axis=1)
    v0 = ops.convert_to_numpy(layer.cell.voltage0).astype(np.float64)
    drive = (np.maximum(x.astype(np.float64), 0) * 0.001).sum(axis=1)
    expected = np.floor(v0 + drive)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() > 1000  # the test exercises real spiking


def test_output_is_whole_spikes(rng):
    x = rng.uniform(0, 3000, (2, 20, 4)).astype("float32")
    out = ops.convert_to_numpy(SpikingReLU(dt=0.002, amplitude=2.0, seed=0)(x))
    n = out * 0.002 / 2.0
    np.testing.assert_allclose(n, np.rint(n), atol=1e-4)
    assert n.max() >= 2  # several spikes per step happen


def test_huge_dt_limit_spiking_equals_rate(rng):
    x = rng.uniform(-5, 10, (2, 5, 16)).astype("float32")
    dt = 1000.0
    spikes = ops.convert_to_numpy(SpikingReLU(dt=dt, initial_voltage=0.0)(x))
    rates = np.maximum(x, 0)
    # Each step's output is floor(v + x * dt) / dt: within one spike (1 / dt) of the rate.
    assert np.all(np.abs(spikes - rates) <= 1.0 / dt + 1e-6)


def test_rate_mode_outputs_relu(rng):
    x = rng.normal(0, 10, (2, 6, 3, 3, 2)).astype("float32")
    out = SpikingReLU(spiking=False, amplitude=0.25)(x)
    np.testing.assert_allclose(ops.convert_to_numpy(out), 0.25 * np.maximum(x, 0), rtol=1e-6)


@pytest.mark.parametrize("spiking_aware_training", [True, False])
def test_training_gradient_is_relu_rate_gradient(rng, spiking_aware_training):
    x = rng.uniform(-20, 20, (2, 10, 4)).astype("float32")
    layer = SpikingReLU(amplitude=0.5, spiking_aware_training=spiking_aware_training)
    grad = gradient(lambda v: layer(v, training=True), x)
    np.testing.assert_allclose(grad, 0.5 * (x > 0), atol=1e-6)
    if spiking_aware_training:
        # Forward pass in training is the spikes, not the rates.
        train_out = ops.convert_to_numpy(layer(x, training=True))
        np.testing.assert_allclose(train_out, ops.convert_to_numpy(layer(x)), rtol=1e-5)
        assert not np.allclose(train_out, 0.5 * np.maximum(x, 0))


def test_trains_inside_model_fit(rng):
    x = rng.uniform(0, 1, (16, 8, 4)).astype("float32")
    y = rng.uniform(0, 1, (16, 8, 2)).astype("float32")
    inp = keras.Input((8, 4))
    h = keras.layers.Dense(6)(inp)
    h = SpikingReLU(seed=0, amplitude=0.01)(h)
    out = keras.layers.Dense(2)(h)
    model = keras.Model(inp, out)
    model.compile("sgd", "mse")
    before = model.layers[1].get_weights()[0].copy()
    model.fit(x * 300, y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(before, model.layers[1].get_weights()[0])


def test_streaming_equals_whole_sequence(rng):
    x = rng.uniform(-100, 500, (2, 12, 4, 4, 3)).astype("float32")
    whole = ops.convert_to_numpy(SpikingReLU(seed=9)(x))
    streaming = SpikingReLU(seed=9, stateful=True)
    steps = [ops.convert_to_numpy(streaming(x[:, t : t + 1])) for t in range(12)]
    np.testing.assert_array_equal(np.concatenate(steps, axis=1), whole)
    # reset_state returns to the initial voltage, not to zero.
    streaming.reset_state()
    again = ops.convert_to_numpy(streaming(x))
    np.testing.assert_array_equal(again, whole)


def test_cell_in_keras_rnn_for_dense_and_conv_shapes(rng):
    dense = rng.uniform(0, 800, (2, 9, 5)).astype("float32")
    cell = SpikingReLUCell(initial_voltage=0.5)
    symbolic = keras.layers.RNN(cell, return_sequences=True)(keras.Input((9, 5)))
    assert tuple(symbolic.shape) == (None, 9, 5)
    out = keras.layers.RNN(SpikingReLUCell(initial_voltage=0.5), return_sequences=True)(dense)
    expected, _ = reference.spiking_relu(dense, 0.5, 0.001)
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, rtol=1e-6)

    conv = rng.uniform(0, 800, (2, 9, 4, 4, 3)).astype("float32")
    rnn = keras.layers.RNN(SpikingReLUCell(initial_voltage=0.5), return_sequences=True)
    out = rnn(conv)
    expected, _ = reference.spiking_relu(conv, 0.5, 0.001)
    np.testing.assert_allclose(ops.convert_to_numpy(out), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dt": 0}, r"dt.*> 0.*Received: dt=0"),
        ({"dt": -0.001}, r"dt.*Received: dt=-0.001"),
        ({"amplitude": 0}, r"amplitude.*Received: amplitude=0"),
        ({"amplitude": -2}, r"amplitude.*Received: amplitude=-2"),
        ({"dt": "fast"}, r"dt.*real number.*Received: dt='fast'"),
        ({"initial_voltage": 1.5}, r"initial_voltage.*Received: initial_voltage=1.5"),
        ({"initial_voltage": "zeros"}, r"initial_voltage.*Received: initial_voltage='zeros'"),
        ({"seed": -1}, r"seed.*Received: seed=-1"),
        ({"spiking": "yes"}, r"spiking.*Received: spiking='yes'"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SpikingReLU(**kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        SpikingReLUCell(**kwargs)


def test_missing_time_axis_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\(batch, time, \*features\)"):
        SpikingReLU()(np.ones((2, 3), "float32"))
