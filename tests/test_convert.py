import warnings

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates
from tests import models
from tests.helpers import native_relu, run_in_fresh_process

L = keras.layers


def _data(model, n=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, 1, (n, *x.shape[1:])).astype("float32") for x in model.inputs]
    return xs[0] if len(xs) == 1 else xs


@pytest.mark.parametrize(
    "build",
    [
        models.tutorial_convnet,
        models.skip_and_concat,
        models.nested_shared_multi_io,
        models.conv1d_and_3d,
    ],
)
def test_default_conversion_equals_original_at_every_step(build):
    model = build()
    converted = ksc.convert(model)
    x = _data(model)
    ksc.verify(model, converted, x, n_steps=4)
    for original, new in zip(model.inputs, converted.inputs, strict=True):
        assert tuple(new.shape) == (None, None, *original.shape[1:])


def test_n_steps_fixes_the_time_axis():
    converted = ksc.convert(models.tutorial_convnet(), n_steps=7)
    assert converted.input_shape == (None, 7, 28, 28, 1)
    assert converted.output_shape == (None, 7, 10)


def test_sequential_model_converts():
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2)]
    )
    ksc.verify(model, ksc.convert(model), _data(model))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("MobileNetV2", {}),
        ("VGG16", {}),
        # The longest: in the TensorFlow session only (CI time). Their layers and keras.ops
        # calls are converted on every backend by the two above (MobileNetV2: convolutions,
        # BatchNormalization, Add, ReLU6), test_generic and test_properties.
        pytest.param("ResNet50", {}, marks=pytest.mark.one_backend),
        pytest.param("DenseNet121", {}, marks=pytest.mark.one_backend),
        pytest.param("EfficientNetB0", {}, marks=pytest.mark.one_backend),
        # keras.ops calls (hard sigmoid: x + 3, * 1/6)
        pytest.param("MobileNetV3Small", {}, marks=pytest.mark.one_backend),
        # keras.ops calls and a layer without a rule (LayerScale)
        pytest.param("ConvNeXtTiny", {}, marks=pytest.mark.one_backend),
        # a rule-less layer taking a list
        pytest.param("InceptionResNetV2", {"size": 75}, marks=pytest.mark.one_backend),
    ],
)
def test_keras_applications_convert_exactly(name, kwargs):
    # benchmarks/applications.py checks every other model of keras.applications.
    app = getattr(keras.applications, name)
    size = kwargs.get("size", 32)
    model = app(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # generic conversions warn
        converted = ksc.convert(model)
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")
    ksc.verify(model, converted, x, n_steps=2, rtol=1e-4, atol=1e-4)


def _relu_forms():
    L = keras.layers
    inp = keras.Input((10,))
    a = L.Dense(6, activation="relu", name="by_name")(inp)
    b = L.Dense(6, activation=keras.activations.relu, name="by_keras_fn")(a)
    c = L.Dense(6, activation=native_relu(), name="by_native_fn")(b)
    d = L.Activation("relu", name="act_layer")(L.Dense(6, name="pre_act")(c))
    e = L.ReLU(name="relu_layer")(L.Dense(6, name="pre_relu")(d))
    f = L.Dense(6, activation="tanh", name="tanh_dense")(e)
    return keras.Model(inp, L.Dense(3, name="out")(f))


@pytest.mark.parametrize("key", ["relu", keras.activations.relu, keras.layers.ReLU, "native"])
def test_swap_finds_every_relu_form(key):
    # "native" is the backend's own function: tf.nn.relu, jax.nn.relu or torch.relu.
    key = native_relu() if key == "native" else key
    model = _relu_forms()
    converter = ksc.Converter(model, swap_activations={key: "spiking_relu"})
    assert sorted(converter.report.spiking_layers) == sorted(
        ["by_name", "by_keras_fn", "by_native_fn", "act_layer", "relu_layer"]
    )
    neurons = [layer for layer in converter.model.layers if isinstance(layer, ksc.SpikingReLU)]
    assert len(neurons) == 5 and all(n.spiking for n in neurons)
    tanh = next(r for r in converter.report.rows if r["layer"] == "tanh_dense")
    assert "not a ReLU" in tanh["note"]


def test_model_with_native_relu_converts_exactly(rng):
    model = _relu_forms()
    x = rng.normal(size=(4, 10)).astype("float32")
    ksc.verify(model, ksc.convert(model), x, n_steps=3)
    rate = ksc.convert(model, swap_activations={native_relu(): "relu"}, scale_firing_rates=2.0)
    ksc.verify(model, rate, x, n_steps=3)


@pytest.mark.parametrize(
    "module, name", [("tensorflow", "nn.relu"), ("jax", "nn.relu"), ("torch", "relu")]
)
def test_every_framework_relu_function_is_a_relu_key(module, name):
    # Keys are matched by name, so any framework's ReLU works on any backend.
    fn = pytest.importorskip(module)
    for part in name.split("."):
        fn = getattr(fn, part)
    converter = ksc.Converter(_relu_forms(), swap_activations={fn: "spiking_relu"})
    assert len(converter.report.spiking_layers) == 5


def test_unmatched_swap_key_warns():
    with pytest.warns(UserWarning, match="matched no layer: sigmoid"):
        ksc.convert(models.tutorial_convnet(), swap_activations={"sigmoid": "spiking_relu"})


def test_non_relu_activation_can_be_swapped():
    converter = ksc.Converter(_relu_forms(), swap_activations={"tanh": "relu"})
    assert converter.model.get_layer("tanh_dense_neuron").spiking is False


def test_high_rate_scale_approaches_rate_output():
    model = models.tutorial_convnet()
    x = np.random.default_rng(2).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    rate = model.predict(x, verbose=0)

    def error(scale, steps):
        snn = ksc.convert(
            model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=scale, seed=0
        )
        out = snn.predict(ksc.tile_time(x, steps), verbose=0)
        return np.abs(out[:, steps // 2 :].mean(axis=1) - rate).mean()

    low, high = error(1, 40), error(1000, 40)
    assert high < 0.05 * np.abs(rate).mean()
    assert high < low / 10


def test_per_layer_options_by_object_and_name():
    model = models.tutorial_convnet()
    conv0, conv1 = model.layers[1], model.layers[2]
    snn = ksc.convert(
        model,
        swap_activations={"relu": "spiking_relu"},
        scale_firing_rates={conv0: 5.0},
        synapse={conv1.name: 0.02},
    )
    names = {layer.name for layer in snn.layers}
    assert {"conv2d_scale", "conv2d_unscale"} <= {n.replace(conv0.name, "conv2d") for n in names}
    assert f"{conv1.name}_synapse" in names and f"{conv1.name}_scale" not in names
    assert snn.get_layer(f"{conv0.name}_scale").scale == 5.0
    assert snn.get_layer(f"{conv1.name}_synapse").tau == 0.02


def test_synapse_option_takes_a_configured_lowpass_synapse():
    model = models.tutorial_convnet()
    conv0, conv1 = model.layers[1], model.layers[2]
    per_channel = ksc.LowpassSynapse(tau=[0.01 + 0.001 * i for i in range(8)], dt=0.5)
    trainable = ksc.LowpassSynapse(0.02, trainable_tau=True, per_channel=True)
    converter = ksc.Converter(
        model,
        swap_activations={"relu": "spiking_relu"},
        synapse={conv0: per_channel, conv1.name: trainable},
        dt=0.002,
    )
    snn = converter.model
    s0, s1 = (snn.get_layer(f"{layer.name}_synapse") for layer in (conv0, conv1))
    assert s0 is not per_channel and s1 is not trainable  # templates, not reused
    assert s0.dt == s1.dt == 0.002  # convert's dt, not the template's
    np.testing.assert_allclose(s0.cell.tau_weight.numpy(), per_channel.tau)
    assert not s0.trainable_tau and s1.trainable_tau
    assert tuple(s1.cell.tau_weight.shape) == (16,)  # one learnable tau per channel
    assert any(w is s1.cell.tau_weight for w in snn.trainable_weights)
    report = str(converter.report)
    assert "synapse tau=0.01-0.017 s (per channel)" in report
    assert "synapse tau=0.02 s per channel, learnable" in report
    # The learnable taus train with fit (those of channels that spiked).
    x = ksc.tile_time(np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)), 20)
    snn.compile(keras.optimizers.SGD(1e-3), "mse")
    snn.fit(x, np.ones((8, 20, 10), "float32"), epochs=1, verbose=0)
    assert not np.allclose(s1.cell.tau_weight.numpy(), 0.02)


def test_reconverting_keeps_hand_added_synapses_and_scales():
    model = models.tutorial_convnet()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.01)
    readout = ksc.LowpassSynapse(0.02, trainable_tau=True, name="readout_synapse")
    gain = ksc.RateScale(3.0, name="gain")
    by_hand = keras.Model(snn.inputs, gain(readout(snn.outputs[0])))
    readout.cell.tau_weight.assign(0.03)  # as if trained

    again = ksc.Converter(by_hand, swap_activations={"relu": "spiking_relu"}, synapse=0.005)
    # A new dt reaches the kept synapse too (its tau stays in seconds).
    finer = ksc.convert(by_hand, swap_activations={"relu": "spiking_relu"}, dt=0.0005)
    assert finer.get_layer("readout_synapse").dt == 0.0005
    names = [layer.name for layer in again.model.layers]
    kept = again.model.get_layer("readout_synapse")
    assert kept is not readout and "gain" in names
    assert float(kept.cell.tau_weight.numpy()) == pytest.approx(0.03)
    # The neuron blocks' synapses follow the new options; nothing else was added.
    block_synapses = [
        layer for layer in again.model.layers if isinstance(layer, ksc.LowpassSynapse)
    ]
    assert sorted(layer.tau for layer in block_synapses) == [0.005, 0.005, 0.02]
    rows = {row["layer"]: row["became"] for row in again.report.rows}
    assert rows["readout_synapse"].startswith("kept") and rows["gain"].startswith("kept")
    # The kept layers compute what the hand-built ones did on the re-converted network.
    x = ksc.tile_time(np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 1)), 20)
    inner = keras.Model(again.model.inputs, again.model.get_layer("readout_synapse").input)
    expected = 3.0 * ksc.LowpassSynapse(0.03)(inner.predict(x, verbose=0))
    actual = again.model.predict(x, verbose=0)
    np.testing.assert_allclose(actual, keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-4)
    # Back to rate: the hand-added layers stay, the blocks go.
    rate = ksc.convert(again.model)
    assert {"readout_synapse", "gain"} <= {layer.name for layer in rate.layers}
    assert not any(isinstance(layer, ksc.SpikingReLU) and layer.spiking for layer in rate.layers)
    synapses = [layer.name for layer in rate.layers if isinstance(layer, ksc.LowpassSynapse)]
    assert synapses == ["readout_synapse"]


def test_initial_voltage_option():
    model = models.tutorial_convnet()
    conv0, conv1 = model.layers[1], model.layers[2]
    swap = {"relu": "spiking_relu"}

    def voltages(snn):
        return {
            layer.name: layer.cell.initial_voltage
            for layer in snn.layers
            if isinstance(layer, ksc.SpikingReLU)
        }

    # Default: mid-threshold, so a constant input's spike count is its rate times time, rounded.
    default = ksc.convert(model, swap_activations=swap)
    assert set(voltages(default).values()) == {0.5}
    # 32 Hz with dt = 1/1024 s (exact in binary): a spike every 32 steps, the first after 16.
    x = np.full((1, 40, 4), 32.0, "float32")
    inp = keras.Input((4,))
    dense = keras.layers.Dense(4, activation="relu", kernel_initializer="identity")
    dt = 2.0**-10
    one_step = ksc.convert(keras.Model(inp, dense(inp)), swap_activations=swap, dt=dt)
    counts = np.cumsum(keras.ops.convert_to_numpy(one_step(x))[0, :, 0]) * dt
    np.testing.assert_array_equal(counts, np.r_[[0] * 15, [1] * 25])
    # Per layer, and "random" as NengoDL (a seeded voltage per neuron).
    mixed = ksc.convert(
        model, swap_activations=swap, initial_voltage={conv0: "random", conv1.name: 0.25}, seed=4
    )
    assert voltages(mixed) == {f"{conv0.name}_neuron": "random", f"{conv1.name}_neuron": 0.25}
    v0 = keras.ops.convert_to_numpy(mixed.get_layer(f"{conv0.name}_neuron").cell.voltage0)
    assert v0.min() >= 0 and v0.max() < 1 and v0.std() > 0.2
    # A configured SpikingReLU keeps its own.
    own = ksc.convert(model, swap_activations={"relu": ksc.SpikingReLU(initial_voltage=0.75)})
    assert set(voltages(own).values()) == {0.75}
    with pytest.raises(ValueError, match=r"layer 'x'.*\[0, 1\).*Received: initial_voltage=1.0"):
        ksc.convert(model, swap_activations=swap, initial_voltage={"x": 1.0})
    with pytest.raises(ValueError, match="initial_voltage.*Received: initial_voltage='zero'"):
        ksc.convert(model, swap_activations=swap, initial_voltage="zero")


def test_original_model_is_never_changed():
    model = models.skip_and_concat()
    before = [w.copy() for w in model.get_weights()]
    layers_before = [(layer.name, type(layer)) for layer in model.layers]
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.01)
    snn.set_weights([w * 0 for w in snn.get_weights()])
    assert [(layer.name, type(layer)) for layer in model.layers] == layers_before
    for b, a in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a)


def test_training_the_converted_model_leaves_the_original_usable():
    # The two models share no weight buffer: on JAX, `fit` donates the converted
    # model's variable buffers, which would delete the original's if they were shared.
    model = models.tutorial_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    expected = model.predict(x, verbose=0)
    snn = ksc.convert(model)
    snn.compile(keras.optimizers.SGD(0.1), "mse")
    snn.fit(ksc.tile_time(x, 2), np.ones((4, 2, 10), "float32"), epochs=2, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), expected)
    assert not np.allclose(snn.predict(ksc.tile_time(x, 2), verbose=0)[:, 0], expected)


def test_reconverting_keeps_trained_weights():
    model = models.tutorial_convnet()
    rate = ksc.convert(model)
    x = np.random.default_rng(0).uniform(0, 1, (16, 1, 28, 28, 1)).astype("float32")
    y = np.random.default_rng(1).integers(0, 10, (16, 1))
    rate.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rate.fit(x, y, epochs=1, verbose=0)
    trained = {layer.name: layer.get_weights() for layer in rate.layers}

    spiking = ksc.convert(rate, swap_activations={"relu": "spiking_relu"}, synapse=0.005)
    assert any(isinstance(layer, ksc.SpikingReLU) and layer.spiking for layer in spiking.layers)
    for name in (layer.name for layer in model.layers[1:]):
        for w0, w1 in zip(trained[name], spiking.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(w0, w1)
    # ... and back to rate: exactly the trained rate model again.
    back = ksc.convert(spiking)
    xs = x[:4, 0]
    np.testing.assert_allclose(
        back.predict(ksc.tile_time(xs, 2), verbose=0), rate.predict(ksc.tile_time(xs, 2), verbose=0)
    )


def test_probe_returns_layer_activity():
    model = models.tutorial_convnet()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"})
    probed = ksc.probe(snn, [model.layers[1], model.layers[-1].name])
    out, conv_activity, dense_out = probed.predict(
        ksc.tile_time(np.ones((2, 28, 28, 1), "float32"), 5), verbose=0
    )
    assert conv_activity.shape == (2, 5, 26, 26, 8)
    np.testing.assert_allclose(dense_out, out)
    spikes = conv_activity * 0.001
    np.testing.assert_allclose(spikes, np.rint(spikes), atol=1e-4)  # whole spikes
    with pytest.raises(ValueError, match="no layer 'nope'"):
        ksc.probe(snn, ["nope"])


def _two_level_nested():
    deep = keras.Sequential(
        [keras.Input((6,)), L.Dense(5, activation="relu", name="deep"), L.Dense(4)], name="seq"
    )
    block_in = keras.Input((3,))
    block = keras.Model(
        block_in, deep(L.Dense(6, activation="relu", name="inner_a")(block_in)), name="block"
    )
    inp = keras.Input((3,))
    h = L.Dense(3, activation="relu", name="first")(inp)
    return keras.Model(inp, L.Dense(2, name="top")(block(h)))


def test_probe_finds_layers_inside_nested_models():
    model = _two_level_nested()
    deep = model.get_layer("block").get_layer("seq")
    x = np.random.default_rng(0).uniform(0, 1, (4, 3)).astype("float32")
    rate = ksc.convert(model, swap_activations={"relu": "relu"})
    out, inner_a, deep_act, top = ksc.probe(rate, ["inner_a", "deep", "top"]).predict(
        ksc.tile_time(x, 3), verbose=0
    )
    np.testing.assert_allclose(out, rate.predict(ksc.tile_time(x, 3), verbose=0), rtol=1e-6)
    np.testing.assert_allclose(top, out)
    w, b = model.get_layer("first").get_weights()
    expected_first = np.maximum(x @ w + b, 0)
    w, b = model.get_layer("block").get_layer("inner_a").get_weights()
    expected_a = np.maximum(expected_first @ w + b, 0)
    w, b = deep.get_layer("deep").get_weights()
    expected_deep = np.maximum(expected_a @ w + b, 0)
    for t in range(3):
        np.testing.assert_allclose(inner_a[:, t], expected_a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(deep_act[:, t], expected_deep, rtol=1e-5, atol=1e-6)
    # Spiking: the nested neurons' activity is whole spikes.
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"})
    _, spikes = ksc.probe(snn, ["deep"]).predict(ksc.tile_time(1000 * x, 100), verbose=0)
    counts = spikes.sum(axis=1) * 0.001
    assert spikes.shape == (4, 100, 5) and counts.max() >= 2
    np.testing.assert_allclose(spikes * 0.001, np.rint(spikes * 0.001), atol=1e-4)


def test_firing_rates_include_neurons_of_nested_models():
    model = _two_level_nested()
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"})
    x = ksc.tile_time(300 * np.random.default_rng(0).uniform(0, 1, (4, 3)), 50)
    stats = firing_rates(snn, x)
    assert list(stats) == ["first_neuron", "block/inner_a_neuron", "block/seq/deep_neuron"]
    _, first, inner_a, deep = ksc.probe(snn, ["first", "inner_a", "deep"]).predict(x, verbose=0)
    for key, activity in zip(stats, (first, inner_a, deep), strict=True):
        assert stats[key]["mean"] == pytest.approx(activity.mean(), rel=1e-5)
        assert stats[key]["max"] == pytest.approx(activity.mean(axis=1).max(), rel=1e-5)
    assert list(firing_rates(snn, x, layers=["deep"])) == ["block/seq/deep_neuron"]
    # The probes built above (new calls of the same layers) leave top-level probing working.
    assert firing_rates(snn, x, layers=["first"])["first_neuron"] == stats["first_neuron"]
    np.testing.assert_allclose(ksc.probe(snn, ["first"]).predict(x, verbose=0)[1], first)
    with pytest.raises(ValueError, match=r"no layer 'nope'.*block/seq/deep_neuron"):
        firing_rates(snn, x, layers=["nope"])


def test_probe_paths_for_every_call_sequential_and_dict_inputs():
    # A nested model called twice, with dict inputs whose keys differ from the Input names.
    ia, ib = keras.Input((3,), name="zz"), keras.Input((3,), name="aa")
    h = L.Dense(4, activation="relu", name="inner")(L.Concatenate()([ia, ib]))
    block = keras.Model({"a": ia, "b": ib}, h, name="block")
    x1, x2 = keras.Input((3,), name="x1"), keras.Input((3,), name="x2")
    model = keras.Model(
        [x1, x2], L.Add(name="sum")([block({"a": x1, "b": x2}), block({"a": x2, "b": x1})])
    )
    snn = ksc.convert(model, swap_activations={"relu": "relu"})
    rng = np.random.default_rng(0)
    x = [rng.uniform(0, 1, (2, 3)).astype("float32") for _ in range(2)]
    stats = firing_rates(snn, ksc.tile_time(x, 2))
    assert list(stats) == ["block/inner_neuron", "block_call1/inner_neuron"]
    probed = ksc.probe(snn, [*stats, "block_call1", "x1"])  # the paths are accepted back
    out, first, second, block_out, x1_in = probed.predict(ksc.tile_time(x, 2), verbose=0)
    w, b = model.get_layer("block").get_layer("inner").get_weights()
    np.testing.assert_allclose(first[:, 0], np.maximum(np.concatenate(x, 1) @ w + b, 0), rtol=1e-5)
    np.testing.assert_allclose(
        second[:, 0], np.maximum(np.concatenate(x[::-1], 1) @ w + b, 0), rtol=1e-5
    )
    np.testing.assert_allclose(block_out, second)  # the block's output is its neuron's
    np.testing.assert_allclose(x1_in[:, 0], x[0])
    np.testing.assert_allclose(out, first + second, rtol=1e-5)
    assert stats["block/inner_neuron"]["mean"] == pytest.approx(first.mean(), rel=1e-5)
    # A first call has a path of its own too; alone or with others, an activity is the same.
    with pytest.raises(ValueError, match=r"'block' matches 2 .*or `block_call0`"):
        ksc.probe(snn, ["block"])
    alone = ksc.probe(snn, ["block_call0"]).predict(ksc.tile_time(x, 2), verbose=0)[1]
    np.testing.assert_allclose(alone, first)

    # Outer dict inputs keyed differently from their Input names: fed as the model is.
    da, db = keras.Input((3,), name="za"), keras.Input((3,), name="zb")
    h = L.Dense(2, activation="relu", name="h")(L.Add()([da, db]))
    keyed = keras.Model({"a": da, "b": db}, h)
    keyed_snn = ksc.convert(keyed, swap_activations={"relu": "spiking_relu"})
    xd = ksc.tile_time({"a": x[0], "b": x[1]}, 2)
    out, h = ksc.probe(keyed_snn, ["h"]).predict(xd, verbose=0)
    np.testing.assert_allclose(out, keyed_snn.predict(xd, verbose=0))
    assert list(firing_rates(keyed_snn, xd)) == ["h_neuron"]

    # A hand-built Sequential of the package's layers.
    seq = keras.Sequential(
        [
            keras.Input((None, 4)),
            ksc.TimeFold(L.Dense(3)),
            ksc.SpikingReLU(name="n1"),
            ksc.LowpassSynapse(0.01),
        ]
    )
    xs = np.full((2, 50, 4), 0.1, "float32")
    spikes = ksc.probe(seq, ["n1"]).predict(xs, verbose=0)[1]
    assert firing_rates(seq, xs)["n1"]["mean"] == pytest.approx(spikes.mean(), rel=1e-5)


def test_converted_model_keras_file_in_fresh_process(tmp_path):
    model = models.nested_shared_multi_io()
    snn = ksc.convert(
        model,
        swap_activations={"relu": "spiking_relu"},
        synapse=0.005,
        scale_firing_rates=20,
        initial_voltage="random",  # seeded voltages stored as weights must survive too
        seed=3,
    )
    x = ksc.tile_time(_data(model, n=2), 6)
    expected = snn.predict(x, verbose=0)
    snn.save(tmp_path / "snn.keras")
    np.savez(tmp_path / "x.npz", *x)
    run_in_fresh_process(
        f"""
        import keras, numpy as np
        import keras_spiking_conv
        model = keras.saving.load_model(r"{tmp_path / "snn.keras"}")
        data = np.load(r"{tmp_path / "x.npz"}")
        out = model.predict([data["arr_0"], data["arr_1"]], verbose=0)
        np.savez(r"{tmp_path / "y.npz"}", *out)
        """
    )
    loaded = np.load(tmp_path / "y.npz")
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(loaded[f"arr_{i}"], e)


def test_report_lists_every_layer():
    model = models.skip_and_concat()
    converter = ksc.Converter(model, swap_activations={"relu": "spiking_relu"})
    listed = {row["layer"] for row in converter.report.rows}
    assert listed == {layer.name for layer in model.layers[1:]}
    text = str(converter.report)
    assert "spiking ReLU" in text and "sigmoid" in text


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


class _MyLayer(keras.layers.Layer):
    def call(self, x):
        return x * 2


def test_clear_errors():
    with pytest.raises(TypeError, match="expects a keras.Model.*Received: Dense"):
        ksc.convert(keras.layers.Dense(3))
    sub = _Subclassed()
    sub(np.zeros((1, 3)))
    with pytest.raises(ksc.ConversionError, match="subclassed model.*functional API"):
        ksc.convert(sub)
    with pytest.raises(ksc.ConversionError, match="not built.*keras.Input"):
        ksc.convert(keras.Sequential([keras.layers.Dense(2)]))
    factor = 2.0
    inp = keras.Input((4,))
    lam = keras.Model(inp, keras.layers.Lambda(lambda t: t * factor, name="double")(inp))
    with pytest.raises(ksc.ConversionError, match="'double' \\(Lambda\\).*register_stateless"):
        ksc.convert(lam)
    seq_in = keras.Input((5, 4))
    rnn = keras.Model(seq_in, keras.layers.LSTM(3, name="lstm")(seq_in))
    with pytest.raises(ksc.ConversionError, match="'lstm' \\(LSTM\\) is a recurrent layer"):
        ksc.convert(rnn)
    with pytest.raises(ValueError, match="n_steps.*Received: n_steps=0"):
        ksc.convert(models.tutorial_convnet(), n_steps=0)
    with pytest.raises(ValueError, match="swap_activations.*Received: 'izhikevich'"):
        ksc.convert(models.tutorial_convnet(), swap_activations={"relu": "izhikevich"})
    with pytest.raises(ValueError, match="scale_firing_rates.*Received: scale_firing_rates=-1"):
        ksc.convert(models.tutorial_convnet(), scale_firing_rates=-1)


def test_unregistered_layer_strict_error_then_register_stateless():
    inp = keras.Input((4,))
    model = keras.Model(inp, _MyLayer(name="mine")(inp))
    with pytest.raises(ksc.ConversionError, match="'mine' \\(_MyLayer\\) has no conversion rule"):
        ksc.convert(model, strict=True)
    ksc.register_stateless(_MyLayer)
    ksc.verify(model, ksc.convert(model), np.ones((2, 4), "float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ksc.register_stateless(_MyLayer)  # same rule again: no warning
