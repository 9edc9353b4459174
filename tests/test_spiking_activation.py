"""`SpikingActivation` against Nengo 4.1's `RegularSpiking`, `SpikingRectifiedLinear`,
`StochasticSpiking` and `PoissonSpiking`, and KerasSpiking's published equations."""

import keras
import nengo
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from keras_spiking_conv import SpikingActivation, SpikingActivationCell
from tests.helpers import gradient, run_layer_test

DT = 0.001
ACTIVATIONS = ["tanh", "sigmoid", "relu6", "leaky_relu", "gelu", "hard_silu"]


def keras_spiking_reference(rates, v0, dt):
    """KerasSpiking's SpikingActivationCell: `v += r dt; n = floor(v); v -= n; n / dt`."""
    v = np.array(v0, dtype=np.float64)
    out = np.zeros(rates.shape)
    for t in range(rates.shape[1]):
        v = v + rates[:, t] * dt
        n = np.floor(v)
        out[:, t], v = n / dt, v - n
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_regular_mode_is_keras_spiking_and_nengo_regular_spiking(rng, activation):
    # Rates f(x) of about 1 Hz: 300 steps of 0.1 s (30 s) give a few dozen spikes.
    dt = 0.1
    x = rng.uniform(-4, 4, (1, 300, 20)).astype("float32")
    layer = SpikingActivation(activation, dt=dt, amplitude=0.5, seed=1)
    ours = ops.convert_to_numpy(layer(x))[0]
    v0 = ops.convert_to_numpy(layer.cell.voltage0).astype(np.float64)
    rates = ops.convert_to_numpy(keras.activations.get(activation)(x))[0].astype(np.float64)
    # Nengo's RegularSpiking takes the rate as its input `J`.
    neuron, voltage = nengo.RegularSpiking(nengo.RectifiedLinear(), amplitude=0.5), v0.copy()
    expected = np.zeros_like(rates)
    for t in range(rates.shape[0]):
        neuron.step(dt, rates[t], expected[t], voltage)
    n, n_expected = ours * dt / 0.5, expected * dt / 0.5
    assert np.mean(np.rint(n) == np.rint(n_expected)) >= 0.995  # float32 against float64
    np.testing.assert_allclose(n.sum(0), n_expected.sum(0), atol=1.0)
    reference = keras_spiking_reference(rates[None], v0, dt)[0]
    np.testing.assert_allclose(n.sum(0), (reference * dt).sum(0), atol=1.0)
    assert np.abs(n).sum() > 100
    if activation in ("tanh", "leaky_relu", "gelu", "hard_silu"):
        assert n.min() < 0  # negative rates give negative spikes


def test_relu_is_nengo_spiking_rectified_linear(rng):
    currents = rng.uniform(-500, 2500, (500, 30)).astype("float32")
    layer = SpikingActivation("relu", seed=4)
    ours = ops.convert_to_numpy(layer(currents[None]))[0]
    voltage = ops.convert_to_numpy(layer.cell.voltage0).astype(np.float64)
    expected = np.zeros(currents.shape)
    for t, current in enumerate(currents):
        nengo.SpikingRectifiedLinear().step(DT, current.astype(np.float64), expected[t], voltage)
    assert np.mean(np.rint(ours * DT) == np.rint(expected * DT)) >= 0.995
    np.testing.assert_allclose((ours * DT).sum(0), (expected * DT).sum(0), atol=1.0)


def _nengo_random(neuron_type, rates, seed=0):
    rng = np.random.RandomState(seed)
    out = np.zeros(rates.shape)
    for t in range(rates.shape[0]):
        neuron_type.step(DT, rates[t], out[t], rng=rng)
    return out


@pytest.mark.parametrize("mode", ["stochastic", "poisson"])
def test_random_modes_have_nengo_statistics(mode):
    # 4000 neurons at each of 4 signed rates, 50 steps: 200,000 draws per rate.
    rates = np.repeat(np.array([-300.0, 150.0, 700.0, 2600.0], "float32"), 4000)
    x = np.broadcast_to(rates, (1, 50, rates.size))
    counts = ops.convert_to_numpy(SpikingActivation("linear", mode=mode, seed=3)(x))[0] * DT
    nengo_type = {"stochastic": nengo.StochasticSpiking, "poisson": nengo.PoissonSpiking}[mode]
    # Nengo's random types use the sign of the rate with a "negative" base type.
    expected = _nengo_random(nengo_type(nengo.Tanh()), np.broadcast_to(rates, (50, rates.size)))
    expected = expected * DT
    for k, rate in enumerate((-300.0, 150.0, 700.0, 2600.0)):
        ours, theirs = counts[:, k * 4000 : (k + 1) * 4000], expected[:, k * 4000 : (k + 1) * 4000]
        mean = rate * DT
        np.testing.assert_allclose(ours.mean(), mean, atol=0.01 + 0.005 * abs(mean))
        np.testing.assert_allclose(theirs.mean(), mean, atol=0.01 + 0.005 * abs(mean))
        np.testing.assert_allclose(ours.var(), theirs.var(), rtol=0.05, atol=0.005)
        assert set(np.unique(np.sign(ours[ours != 0]))) == {np.sign(rate)}
        if mode == "stochastic":  # floor(|e|) or floor(|e|) + 1 spikes, never more
            whole = np.rint(np.abs(ours))
            np.testing.assert_allclose(np.abs(ours), whole, atol=1e-5)
            assert set(np.unique(whole)) <= {np.floor(abs(mean)), np.floor(abs(mean)) + 1}
    if mode == "poisson":
        np.testing.assert_allclose(counts[:, 8000:12000].var(), 0.7, rtol=0.03)  # var = mean


def test_seeds_pick_the_spikes():
    x = np.full((1, 200, 50), 300.0, "float32")
    a, b, c = (
        ops.convert_to_numpy(SpikingActivation("linear", mode="poisson", seed=s)(x))
        for s in (1, 1, 2)
    )
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
def test_gradient_is_the_activation_gradient(rng, activation):
    x = rng.uniform(-3, 3, (2, 5, 4)).astype("float32")
    layer = SpikingActivation(activation, amplitude=2.0, seed=0)
    grad = gradient(lambda v: layer(v, training=True), x)
    expected = gradient(lambda v: keras.activations.get(activation)(v) * 2.0, x)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)


def test_rate_mode_and_config_round_trip(rng, tmp_path):
    x = rng.uniform(-3, 3, (2, 7, 3, 3, 2)).astype("float32")
    rates = run_layer_test(
        SpikingActivation, {"activation": "sigmoid", "spiking": False}, x, x.shape
    )
    np.testing.assert_allclose(rates, 1 / (1 + np.exp(-x)), rtol=1e-5)
    run_layer_test(
        SpikingActivation, {"activation": "relu6", "mode": "poisson", "seed": 2}, x, x.shape
    )
    inp = keras.Input((20, 6))
    model = keras.Model(inp, SpikingActivation("leaky_relu", mode="stochastic", seed=5)(inp))
    model.save(tmp_path / "a.keras")
    loaded = keras.saving.load_model(tmp_path / "a.keras")
    y = rng.uniform(-900, 900, (2, 20, 6)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(y, verbose=0), model.predict(y, verbose=0))
    cell_out = keras.layers.RNN(SpikingActivationCell("tanh", seed=1), return_sequences=True)(y)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(cell_out), ops.convert_to_numpy(SpikingActivation("tanh", seed=1)(y))
    )


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"activation": "tanh", "mode": "bernoulli"}, ValueError, ["mode", "'poisson'", "bad"]),
        ({"activation": "no_such"}, ValueError, ["activation", "no_such", "keras.activations"]),
        ({"activation": lambda x: x}, ValueError, ["activation", "register_keras_serializable"]),
        ({"activation": keras.layers.ReLU()}, TypeError, ["activation", "'tanh'"]),
        ({"activation": 3}, TypeError, ["activation", "Received: activation=3"]),
    ],
)
def test_bad_arguments_are_named_with_a_fix(kwargs, error, words):
    with pytest.raises(error) as info:
        SpikingActivation(name="bad", **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("mode", ["regular", "stochastic", "poisson"])
def test_same_spikes_in_chunks_on_every_backend_path(rng, mode):
    inp = keras.Input((8,))
    h = keras.layers.Dense(8, activation="tanh", name="hid")(inp)
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    with pytest.warns(UserWarning, match="this neuron is not linear"):
        snn = ksc.convert(
            model,
            swap_activations={"tanh": SpikingActivation("tanh", mode=mode)},
            scale_firing_rates=300.0,
            dt=0.1,  # rates of tanh are at most 1 Hz: 6 s give a few spikes
            seed=0,
        )
    assert [type(layer) for layer in snn.layers].count(SpikingActivation) == 1
    x = np.repeat(rng.uniform(-1, 1, (2, 1, 8)), 60, axis=1).astype("float32")
    fused = snn.predict(x, verbose=0)
    assert np.count_nonzero(fused) > 0
    stream = ksc.Stream(snn)
    chunks = np.concatenate([stream(x[:, t : t + 7]) for t in range(0, 60, 7)], axis=1)
    np.testing.assert_array_equal(chunks, fused)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ksc.process_chunk(snn, x, ksc.initial_states(snn, 2))[0]), fused
    )
    snn.execution = "layers"
    np.testing.assert_allclose(snn.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-4)
