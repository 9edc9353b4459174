"""`convert` with LIF neurons, spiking versions of activations and alpha synapses: the
rules, the report, and every execution path of the one plan and engine."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates

L = keras.layers


def conv_net(activation="relu"):
    inp = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(4, 3, padding="same", activation=activation, name="conv")(inp)
    h = L.Dense(8, activation=activation, name="hidden")(L.Flatten(name="flat")(h))
    return keras.Model(inp, L.Dense(3, name="out")(h))


def _x(n=2, steps=60):
    x = np.random.default_rng(0).uniform(0, 1, (n, 1, 8, 8, 1)).astype("float32")
    return np.repeat(x, steps, axis=1)


def lif_snn():
    keras.utils.set_random_seed(1)
    return ksc.convert(
        conv_net(),
        swap_activations={"relu": ksc.LIF(tau_rc=0.03, amplitude=0.01)},
        synapse={"conv": ksc.AlphaSynapse(0.005), "hidden": 0.01},
        seed=0,
    )


def test_lif_swap_runs_the_same_on_every_execution_path():
    snn = lif_snn()
    neurons = [layer for layer in snn.layers if isinstance(layer, ksc.LIF)]
    assert len(neurons) == 2 and all(n.spiking and n.tau_rc == 0.03 for n in neurons)
    layout = ksc.state_layout(snn)
    assert [spec.shape for spec in layout.values() if spec.kind == "voltage"] == [
        (None, 2, 8, 8, 4),
        (None, 2, 8),
    ]
    x = _x() * 20.0
    fused = snn.predict(x, verbose=0)
    assert np.count_nonzero(fused) > 0
    stream = ksc.Stream(snn)
    chunks = np.concatenate([stream(x[:, t : t + 7]) for t in range(0, 60, 7)], axis=1)
    np.testing.assert_array_equal(chunks, fused)
    chunk, _ = ksc.process_chunk(snn, x, ksc.initial_states(snn, 2))
    np.testing.assert_array_equal(ops.convert_to_numpy(chunk), fused)
    np.testing.assert_array_equal(ops.convert_to_numpy(snn(x)), fused)
    rates = firing_rates(snn, x)
    assert set(rates) == {"conv_neuron", "hidden_neuron"} and rates["conv_neuron"]["mean"] > 0
    _, spikes = ksc.probe(snn, ["hidden"]).predict(x, verbose=0)
    assert set(np.unique(np.round(spikes * 0.001 / 0.01, 4))) <= {0.0, 1.0}
    report = ksc.estimate_energy(snn, x)
    assert report.total_spikes == pytest.approx(
        sum(np.abs(p).sum() for p in ksc.probe(snn, ["conv", "hidden"]).predict(x, verbose=0)[1:])
        * 0.001
        / 0.01
        / 2,
        rel=1e-5,
    )
    snn.execution = "layers"
    np.testing.assert_allclose(snn.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-4)


def test_lif_snn_saves_and_loads(tmp_path):
    snn = lif_snn()
    x = _x() * 20.0
    snn.save(tmp_path / "lif.keras")
    loaded = keras.saving.load_model(tmp_path / "lif.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), snn.predict(x, verbose=0))


def poisson_snn():
    keras.utils.set_random_seed(1)
    neuron = ksc.SpikingActivation("sigmoid", mode="poisson")
    return ksc.convert(conv_net("sigmoid"), swap_activations={"sigmoid": neuron}, dt=0.05, seed=0)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("make", [lif_snn, poisson_snn], ids=["lif", "poisson"])
def test_exported_signatures_give_the_same_spikes(tmp_path, make):
    import tensorflow as tf

    snn = make()
    x = _x(steps=20) * 200.0
    fused = snn.predict(x, verbose=0)
    served = tf.saved_model.load(ksc.export(snn, tmp_path / "served"))
    (sequence,) = served.signatures["sequence"](image=tf.constant(x)).values()
    np.testing.assert_array_equal(sequence.numpy(), fused)
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    steps = []
    for t in range(20):
        result = served.signatures["step"](image=tf.constant(x[:, t]), **state)
        steps.append(result.pop("out").numpy())
        state = result
    np.testing.assert_array_equal(np.stack(steps, axis=1), fused)
    assert np.count_nonzero(fused) > 0
    if make is poisson_snn:
        return  # its hash needs tf.BitwiseAnd, which TFLite has only as a Flex op
    converter = tf.lite.TFLiteConverter.from_saved_model(
        ksc.export(snn, tmp_path / "fixed", batch_size=2, n_steps=20),
        signature_keys=["sequence"],
    )
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    lite = interpreter.get_signature_runner("sequence")(image=x)["out"]
    np.testing.assert_allclose(lite, fused, rtol=1e-5, atol=1e-3)


def test_lif_string_swap_report_and_reconversion():
    converter = ksc.Converter(conv_net(), swap_activations={"relu": "lif"})
    assert sorted(converter.report.spiking_layers) == ["conv", "hidden"]
    notes = [row["note"] for row in converter.report.rows if row["layer"] == "conv"]
    assert notes == ["spiking LIF (conv_neuron)"]
    tanh = ksc.Converter(conv_net("tanh"), swap_activations={"tanh": "spiking"}).report
    assert [r["note"] for r in tanh.rows if r["layer"] == "hidden"] == [
        "spiking tanh (hidden_neuron)"
    ]
    again = ksc.convert(converter.model)  # no swap: the same neuron type, as rates
    lifs = [layer for layer in again.layers if isinstance(layer, ksc.LIF)]
    assert len(lifs) == 2 and not any(n.spiking for n in lifs)
    back = ksc.convert(again, swap_activations={"relu": "lif"})
    assert all(n.spiking for n in back.layers if isinstance(n, ksc.LIF))


def test_reconversion_keeps_each_neurons_own_parameters():
    # Trained as rate LIF neurons in place of sigmoids (SoftLIFRate), then made spiking
    # by the key "lif" (or the class): tau_rc, amplitude and smoothing stay.
    rate_lif = ksc.LIF(tau_rc=0.03, amplitude=0.01, smoothing=0.02, spiking=False)
    trained = ksc.convert(conv_net("sigmoid"), swap_activations={"sigmoid": rate_lif})
    for key in ("lif", ksc.LIF):
        spiking = ksc.convert(trained, swap_activations={key: "lif"}, synapse=0.01)
        lifs = [layer for layer in spiking.layers if isinstance(layer, ksc.LIF)]
        assert len(lifs) == 2
        assert all(n.spiking and n.tau_rc == 0.03 and n.amplitude == 0.01 for n in lifs)
        assert all(n.cell.smoothing == 0.02 for n in lifs)
        assert sorted(n.name for n in lifs) == ["conv_neuron", "hidden_neuron"]  # not "_1"
    # A configured swap value is the whole neuron: its parameters, defaults included.
    again = ksc.convert(trained, swap_activations={"lif": ksc.LIF(tau_ref=0.001)})
    lifs = [layer for layer in again.layers if isinstance(layer, ksc.LIF)]
    assert all(n.tau_ref == 0.001 and n.tau_rc == 0.02 and n.amplitude == 1.0 for n in lifs)
    # Rate re-conversion without a swap: the same rates, from the same parameters.
    x = _x(steps=3)
    rate = ksc.convert(trained)
    np.testing.assert_allclose(
        rate.predict(x, verbose=0), trained.predict(x, verbose=0), rtol=1e-6, atol=1e-6
    )
    # A SpikingActivation keeps its mode and amplitude.
    poisson = ksc.SpikingActivation("tanh", mode="poisson", amplitude=0.5, spiking=False)
    tanh = ksc.convert(conv_net("tanh"), swap_activations={"tanh": poisson})
    spiking = ksc.convert(tanh, swap_activations={"tanh": "spiking"})
    neurons = [layer for layer in spiking.layers if isinstance(layer, ksc.SpikingActivation)]
    assert all(n.spiking and n.mode == "poisson" and n.amplitude == 0.5 for n in neurons)


@pytest.mark.parametrize(
    "activation, neuron_type",
    [
        ("tanh", ksc.SpikingActivation),
        ("sigmoid", ksc.SpikingActivation),
        ("leaky_relu", ksc.SpikingActivation),
        ("relu6", ksc.SpikingReLU),  # a clipped ReLU: SpikingReLU(clip=...)
    ],
)
def test_spiking_swap_makes_the_spiking_version_of_the_activation(activation, neuron_type):
    model = conv_net(activation)
    snn = ksc.convert(model, swap_activations={activation: "spiking"})
    neurons = [layer for layer in snn.layers if isinstance(layer, neuron_type)]
    assert len(neurons) == 2 and all(n.spiking for n in neurons)
    if neuron_type is ksc.SpikingReLU:
        assert neurons[0].clip is not None
        return
    assert neurons[0].activation is keras.activations.get(activation)
    # The configured rate version computes the original network at every step.
    rate = ksc.convert(
        model, swap_activations={activation: ksc.SpikingActivation(activation, spiking=False)}
    )
    assert [type(n) for n in rate.layers].count(ksc.SpikingActivation) == 2
    x = _x(steps=3)
    np.testing.assert_allclose(
        rate.predict(x, verbose=0)[:, -1], model.predict(x[:, 0], verbose=0), rtol=1e-5, atol=1e-6
    )


def test_scale_firing_rates_warns_for_a_nonlinear_neuron():
    with pytest.warns(UserWarning, match="not linear"):
        snn = ksc.convert(conv_net(), swap_activations={"relu": "lif"}, scale_firing_rates=10.0)
    scales = [layer for layer in snn.layers if isinstance(layer, ksc.RateScale)]
    assert len(scales) == 4


def test_swap_errors_name_the_layer_and_the_fix():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.LeakyReLU(negative_slope=0.3, name="leaky")(L.Dense(4)(inp)))
    with pytest.raises(ksc.ConversionError, match="'leaky'.*negative_slope=0.3.*'lif'"):
        ksc.convert(model, swap_activations={"leaky_relu": "spiking"})
    with pytest.raises(ValueError, match="'prelu'.*Swap it to 'lif'"):
        ksc.convert(model, swap_activations={L.PReLU: "spiking"})
    with pytest.raises(ValueError, match="'lif' \\(Nengo's LIF\\)"):
        ksc.convert(model, swap_activations={"relu": "izhikevich"})


def test_calibrate_scales_the_relus_and_explains_the_other_neurons():
    x = _x(n=8, steps=1)[:, 0]
    with pytest.raises(ValueError, match="LIF and SpikingActivation neurons"):
        ksc.calibrate(conv_net("tanh"), x)
    # A ReLU and a tanh layer: the ReLU is calibrated; the tanh, made spiking, keeps
    # scale 1 (no nonlinear-scale warning) and the network still runs.
    inp = keras.Input((8, 8, 1), name="image")
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    h = L.Dense(8, activation="tanh", name="hidden")(L.Flatten(name="flat")(h))
    model = keras.Model(inp, L.Dense(3, name="out")(h))
    # dt = 0.5: a tanh (rates up to 1 per unit time) fires up to one spike in 2 steps.
    scales = ksc.calibrate(model, x, per_channel=False, dt=0.5)
    assert set(scales) == {"conv"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        snn = ksc.convert(
            model,
            swap_activations={"relu": "spiking_relu", "tanh": "spiking"},
            scale_firing_rates=scales,
            readout="mean",
            dt=0.5,
        )
    report = ksc.Converter(
        model, swap_activations={"relu": "spiking_relu", "tanh": "spiking"}
    ).report
    assert sorted(report.spiking_layers) == ["conv", "hidden"]
    assert [type(n).__name__ for n in snn.layers if getattr(n, "role", None) == "neuron"] == [
        "SpikingReLU",
        "SpikingActivation",
    ]
    rate = model.predict(x, verbose=0)
    out = snn.predict(np.repeat(x[:, None], 200, axis=1), verbose=0)
    assert np.count_nonzero(out) and np.abs(out - rate).max() < 0.2 * np.abs(rate).max()
