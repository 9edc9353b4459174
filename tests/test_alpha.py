"""`AlphaSynapse` against `nengo.Alpha(tau).filt`, and as a drop-in for `LowpassSynapse`."""

import keras
import nengo
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from keras_spiking_conv import AlphaSynapse, AlphaSynapseCell
from tests.helpers import gradient, run_layer_test


@pytest.mark.parametrize("tau, dt", [(0.005, 0.001), (0.02, 0.001), (0.003, 0.002)])
def test_matches_nengo_alpha_filt(rng, tau, dt):
    x = rng.normal(0, 100, (2, 200, 3)).astype("float32")
    x[:, ::7] += 1000.0  # spike-like input
    ours = ops.convert_to_numpy(AlphaSynapse(tau, dt=dt)(x))
    expected = np.stack(
        [nengo.Alpha(tau).filt(sample.astype(np.float64), dt=dt, y0=0) for sample in x]
    )
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3)
    assert np.abs(expected).max() > 100


def test_impulse_response_peaks_after_tau_and_settles_to_the_input():
    x = np.zeros((1, 60, 1), "float32")
    x[0, 0] = 1000.0
    impulse = ops.convert_to_numpy(AlphaSynapse(0.01)(x))[0, :, 0]
    assert np.argmax(impulse) in (9, 10)  # (t / tau^2) exp(-t / tau) peaks at t = tau
    constant = ops.convert_to_numpy(AlphaSynapse(0.01)(np.full((1, 400, 2), 7.0, "float32")))
    np.testing.assert_allclose(constant[:, -1], 7.0, rtol=1e-5)


def test_per_channel_tau_matches_one_filter_per_channel(rng):
    x = rng.normal(size=(1, 50, 2)).astype("float32")
    both = ops.convert_to_numpy(AlphaSynapse([0.002, 0.02])(x))
    for k, tau in enumerate((0.002, 0.02)):
        alone = ops.convert_to_numpy(AlphaSynapse(tau)(x[..., k : k + 1]))
        np.testing.assert_allclose(both[..., k : k + 1], alone, rtol=1e-6, atol=1e-7)


def test_layer_contract(rng):
    x = rng.normal(size=(2, 7, 3, 3, 4)).astype("float32")
    run_layer_test(AlphaSynapse, {"tau": 0.01}, x, (2, 7, 3, 3, 4))
    run_layer_test(AlphaSynapse, {"tau": [0.01, 0.02, 0.03, 0.04]}, x, (2, 7, 3, 3, 4))
    run_layer_test(AlphaSynapse, {"return_sequences": False}, x, (2, 3, 3, 4))
    cell_out = keras.layers.RNN(AlphaSynapseCell(0.01), return_sequences=True)(x[:, :, 0, 0])
    np.testing.assert_allclose(
        ops.convert_to_numpy(cell_out), ops.convert_to_numpy(AlphaSynapse(0.01)(x[:, :, 0, 0]))
    )


def test_trainable_tau_gets_a_gradient_and_trains(rng):
    x = rng.uniform(0, 1, (8, 20, 3)).astype("float32")
    layer = AlphaSynapse(tau=0.01, trainable_tau=True)
    model = keras.Sequential([keras.Input((20, 3)), layer])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.fit(x, np.zeros_like(x), epochs=3, verbose=0)
    tau = ops.convert_to_numpy(layer.trainable_weights[0])
    assert tau > 0 and not np.isclose(tau, 0.01)
    assert np.isfinite(gradient(layer, x)).all()


def test_convert_takes_an_alpha_synapse_and_saves_it(tmp_path, rng):
    inp = keras.Input((6,))
    model = keras.Model(inp, keras.layers.Dense(4)(keras.layers.Dense(8, activation="relu")(inp)))
    converter = ksc.Converter(
        model, swap_activations={"relu": "spiking_relu"}, synapse=AlphaSynapse(0.005), seed=0
    )
    snn = converter.model
    synapses = [layer for layer in snn.layers if isinstance(layer, ksc.LowpassSynapse)]
    assert [type(s) for s in synapses] == [AlphaSynapse] and synapses[0].tau == 0.005
    assert "alpha synapse tau=0.005 s" in str(converter.report)
    x = np.repeat(rng.uniform(0, 1, (2, 1, 6)), 30, axis=1).astype("float32") * 50
    fused = snn.predict(x, verbose=0)
    assert np.count_nonzero(fused) > 0
    snn.save(tmp_path / "alpha.keras")
    loaded = keras.saving.load_model(tmp_path / "alpha.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), fused)
    again = ksc.convert(snn, synapse=AlphaSynapse(0.01))  # rebuilt, not kept
    taus = [s.tau for s in again.layers if isinstance(s, ksc.LowpassSynapse)]
    assert taus == [0.01]


def test_bad_tau_is_named():
    with pytest.raises(ValueError, match="tau.*Received: tau=-0.01"):
        AlphaSynapse(-0.01)
