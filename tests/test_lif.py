"""`LIF` against Nengo 4.1's own neuron step functions, and SoftLIFRate against its
published equation."""

import keras
import nengo
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from keras_spiking_conv import LIF, LIFCell, neurons
from tests.helpers import gradient, run_layer_test

DT = 0.001


def nengo_lif(currents, v0, tau_rc=0.02, tau_ref=0.002, min_voltage=0.0, amplitude=1.0):
    """`nengo.LIF.step` over axis 0 of `currents` (steps, neurons), in float64."""
    neuron = nengo.LIF(tau_rc=tau_rc, tau_ref=tau_ref, min_voltage=min_voltage, amplitude=amplitude)
    voltage = np.array(v0, dtype=np.float64)
    refractory_time = np.zeros_like(voltage)
    out = np.zeros_like(currents, dtype=np.float64)
    for t, current in enumerate(currents):
        neuron.step(DT, current.astype(np.float64), out[t], voltage, refractory_time)
    return out


def changing_currents(steps=1000, n=200, seed=0):
    """Random currents per neuron, drifting sinusoidally, with noise at every step."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-1, 6, n)
    swing = rng.uniform(0, 3, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    t = np.arange(steps)[:, None] * DT
    noise = rng.normal(0, 0.5, (steps, n))
    return (base + swing * np.sin(2 * np.pi * 3 * t + phase) + noise).astype("float32")


@pytest.mark.parametrize(
    "params",
    [{}, {"tau_rc": 0.05, "tau_ref": 0.001, "min_voltage": -1.0, "amplitude": 0.5}],
    ids=["default", "other"],
)
def test_spike_trains_match_nengo_lif(params):
    currents = changing_currents()
    layer = LIF(seed=3, **params)
    ours = ops.convert_to_numpy(layer(currents[None]))[0]
    v0 = ops.convert_to_numpy(layer.cell.voltage0)
    theirs = nengo_lif(currents, v0, **params)
    amplitude = params.get("amplitude", 1.0)
    ours_spiked, theirs_spiked = ours > 0, theirs > 0
    np.testing.assert_allclose(ours[ours_spiked], amplitude / DT, rtol=1e-6)
    assert theirs_spiked.sum() > 5_000  # a real test: many spikes, some neurons silent too
    assert (theirs_spiked.sum(axis=0) == 0).any()
    agreement = np.mean(ours_spiked == theirs_spiked)
    assert agreement >= 0.995, agreement
    counts, nengo_counts = ours_spiked.sum(axis=0), theirs_spiked.sum(axis=0)
    assert np.abs(counts - nengo_counts).max() <= 1


def test_rates_match_nengo_lif_rate():
    currents = np.linspace(-2, 20, 1001).astype("float32")
    for tau_rc, tau_ref, amplitude in [(0.02, 0.002, 1.0), (0.05, 0.0, 0.3)]:
        expected = np.zeros(currents.shape)
        nengo.LIFRate(tau_rc=tau_rc, tau_ref=tau_ref, amplitude=amplitude).step(
            DT, currents.astype(np.float64), expected
        )
        layer = LIF(tau_rc=tau_rc, tau_ref=tau_ref, amplitude=amplitude, spiking=False)
        ours = ops.convert_to_numpy(layer(currents[None, None]))[0, 0]
        np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)
        assert expected.max() > 100


def test_spike_rate_approaches_lif_rate_for_constant_input():
    currents = np.array([0.5, 1.2, 2.0, 5.0, 20.0], dtype="float32")
    spikes = LIF(initial_voltage=0.0)(np.broadcast_to(currents, (1, 2000, 5)))
    rates = ops.convert_to_numpy(spikes)[0].mean(axis=0)
    expected = ops.convert_to_numpy(neurons.lif_rates(currents, 0.02, 0.002))
    np.testing.assert_allclose(rates, expected, atol=1.0)  # within a spike in 2 s


def soft_lif_published(j, tau_rc, tau_ref, sigma, amplitude=1.0):
    """Hunsberger & Eliasmith (2015), as NengoDL's SoftLIFRate computes it."""
    j = np.asarray(j, dtype=np.float64) - 1
    y = j / sigma
    smooth = np.where(y < 34, sigma * np.log1p(np.exp(np.minimum(y, 34))), j)
    return amplitude / (tau_ref + tau_rc * np.log1p(1 / smooth))


def test_soft_lif_rate_matches_its_published_equation():
    currents = np.linspace(-1, 10, 500).astype("float32")
    for sigma in (0.01, 0.05, 0.5):
        layer = LIF(smoothing=sigma, spiking=False, amplitude=0.5)
        ours = ops.convert_to_numpy(layer(currents[None, None]))[0, 0]
        expected = soft_lif_published(currents, 0.02, 0.002, sigma, amplitude=0.5)
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-6)
    assert np.all(ours > 0)  # smooth: a (small) rate below the threshold too


def test_spiking_aware_training_uses_the_soft_lif_gradient():
    x = np.linspace(0.0, 4.0, 12, dtype="float32").reshape(1, 3, 4)
    layer = LIF(smoothing=0.05, seed=0)
    grad = gradient(lambda v: layer(v, training=True), x)
    h = 1e-3
    soft = [soft_lif_published(x + s * h, 0.02, 0.002, 0.05) for s in (1, -1)]  # central difference
    np.testing.assert_allclose(grad, (soft[0] - soft[1]) / (2 * h), rtol=2e-3)
    forward = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(forward, ops.convert_to_numpy(layer(x)), rtol=1e-5, atol=1e-3)


def test_gradient_is_finite_without_smoothing_at_and_below_threshold():
    x = np.array([[[-1.0, 0.5, 1.0, 1.5]]], dtype="float32")
    grad = gradient(lambda v: LIF(seed=0)(v, training=True), x)
    assert np.isfinite(grad).all() and grad[0, 0, -1] > 0 and grad[0, 0, 0] == 0


def test_layer_contract_and_config_round_trip(rng):
    x = rng.uniform(0, 5, (2, 7, 3, 3, 2)).astype("float32")
    out = run_layer_test(LIF, {"seed": 3, "tau_rc": 0.03, "smoothing": 0.02}, x, x.shape)
    np.testing.assert_allclose(np.unique(out), [0.0, 1000.0])
    run_layer_test(LIF, {"spiking": False}, x, x.shape)
    run_layer_test(LIF, {"initial_voltage": 0.5, "return_sequences": False}, x, (2, 3, 3, 2))


def test_cell_runs_in_a_plain_rnn(rng):
    x = rng.uniform(0, 5, (2, 50, 4)).astype("float32")
    cell_out = keras.layers.RNN(LIFCell(seed=1), return_sequences=True)(x)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(cell_out), ops.convert_to_numpy(LIF(seed=1)(x))
    )


def test_saved_model_predicts_the_same(tmp_path, rng):
    inp = keras.Input((20, 6))
    model = keras.Model(inp, LIF(seed=2, smoothing=0.02, tau_ref=0.001)(keras.layers.Dense(6)(inp)))
    x = rng.uniform(0, 3, (2, 20, 6)).astype("float32")
    model.save(tmp_path / "lif.keras")
    loaded = keras.saving.load_model(tmp_path / "lif.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"tau_ref": -0.001}, ["LIF", "'bad_cell'", "tau_ref", "cannot be negative", "Pass 0"]),
        ({"smoothing": 0}, ["'bad_cell'", "smoothing", "> 0", "Pass None"]),
        ({"min_voltage": 0.5}, ["min_voltage", "<= 0"]),
        ({"tau_rc": 0}, ["tau_rc", "> 0"]),
        ({"initial_voltage": 1.5}, ["initial_voltage", "[0, 1)"]),
    ],
)
def test_bad_arguments_are_named_with_a_fix(kwargs, words):
    with pytest.raises(ValueError) as info:
        LIF(name="bad", **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ksc.LIF(return_state=True),
        lambda: ksc.LIF(return_state=True, spiking=False),
        lambda: ksc.AlphaSynapse(0.01, return_state=True),
        lambda: ksc.SpikingReLU(return_state=True, negative_spikes=True),
        lambda: ksc.SpikingReLU(return_state=True),
    ],
    ids=["lif", "lif_rate", "alpha", "signed_relu", "relu"],
)
def test_symbolic_state_shape_is_the_eager_one(make):
    # A state with several components (voltage and refractory time, the alpha filter's
    # two stages) is stacked on axis 1, symbolically as when run.
    layer = make()
    _, symbolic = layer(keras.Input((5, 3, 4)))
    _, eager = layer(np.ones((2, 5, 3, 4), "float32"))
    assert tuple(symbolic.shape)[1:] == tuple(eager.shape)[1:] == layer.cell.state_shape
