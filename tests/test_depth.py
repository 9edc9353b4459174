"""Conversion at depth: neurons as chips run them (binary spikes, zero reset), negative
spikes, clipped ReLUs (ReLU6), BatchNormalization folding, and QCFS conversion that is
exact at T = levels."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.layers import QuantizedReLU

DT = 0.001


def run(layer, x):
    return keras.ops.convert_to_numpy(layer(x)) * DT  # spikes per step


def reference_neuron(x, negative=False, k=None, reset="subtract", clip=None):
    """NumPy integrate-and-fire with the new options, one step at a time (signed input)."""
    v = np.full(x[:, 0].shape, 0.5)
    count = np.zeros_like(v)
    headroom = np.zeros_like(v)
    out = []
    for t in range(x.shape[1]):
        v = v + x[:, t] * DT
        n = np.floor(v)
        n = np.maximum(n, -count if negative else 0.0)
        if clip is not None:
            headroom = headroom + clip
            n = np.minimum(n, np.floor(headroom))
        if k is not None:
            n = np.clip(n, -k, k)
        v = np.where(n != 0, 0.0, v) if reset == "zero" else v - n
        count += n
        headroom -= n
        out.append(n)
    return np.stack(out, axis=1)


@pytest.mark.parametrize(
    "options",
    [
        {"negative_spikes": True},
        {"max_spikes_per_step": 1},
        {"max_spikes_per_step": 2, "reset": "zero"},
        {"clip": 0.5},
        {"negative_spikes": True, "max_spikes_per_step": 1, "clip": 1.0},
    ],
)
def test_neuron_options_follow_the_reference(rng, options):
    x = (rng.normal(size=(3, 40, 5)) * 3000).astype("float32")
    layer = ksc.SpikingReLU(initial_voltage=0.5, rectify_input=False, **options)
    spikes = run(layer, x)
    expected = reference_neuron(
        x.astype("float64"),
        negative=options.get("negative_spikes", False),
        k=options.get("max_spikes_per_step"),
        reset=options.get("reset", "subtract"),
        clip=options.get("clip"),
    )
    np.testing.assert_allclose(spikes, expected, atol=1e-5)
    if "max_spikes_per_step" in options:
        assert np.abs(spikes).max() <= options["max_spikes_per_step"] + 1e-6
    assert spikes.cumsum(axis=1).min() >= -1e-6  # the net count never goes below zero
    clone = ksc.SpikingReLU.from_config(layer.get_config())
    np.testing.assert_array_equal(run(clone, x), spikes)


def test_negative_spikes_count_the_quantized_relu_of_the_accumulated_input(rng):
    x = (rng.normal(size=(4, 60, 7)) * 2000).astype("float32")
    spikes = run(ksc.SpikingReLU(initial_voltage=0.5, negative_spikes=True), x)
    target = np.maximum(np.floor(0.5 + np.cumsum(x.astype("float64") * DT, axis=1)), 0)
    np.testing.assert_allclose(spikes.cumsum(axis=1), target, atol=1e-4)
    # without negative spikes a neuron that fired too early keeps its spikes
    unsigned = run(ksc.SpikingReLU(initial_voltage=0.5, rectify_input=False), x)
    assert (unsigned.cumsum(axis=1) > target + 0.5).any()


def test_clip_bounds_the_mean_and_the_rate_output(rng):
    x = (rng.uniform(0, 5000, size=(2, 30, 4))).astype("float32")
    spikes = run(ksc.SpikingReLU(initial_voltage=0.5, clip=(0.5, 1.0, 2.0, 3.0)), x)
    steps = np.arange(1, 31)[None, :, None]
    assert (spikes.cumsum(axis=1) <= np.array([0.5, 1.0, 2.0, 3.0]) * steps + 1e-6).all()
    rate = ksc.SpikingReLU(spiking=False, clip=2.0)(x[:, :1])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rate), np.minimum(x[:, :1], 2000))


@pytest.mark.parametrize(
    "options, match",
    [
        ({"max_spikes_per_step": 0}, "max_spikes_per_step"),
        ({"max_spikes_per_step": 1.5}, "max_spikes_per_step"),
        ({"reset": "half"}, "reset"),
        ({"negative_spikes": True, "rectify_input": True}, "rectify_input=False"),
        ({"clip": -1.0}, "clip"),
    ],
)
def test_bad_neuron_options_say_what_to_pass(options, match):
    with pytest.raises(ValueError, match=match):
        ksc.SpikingReLU(name="n", **options)


def test_template_takes_the_converters_defaults_for_what_it_does_not_set():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu")])
    snn = ksc.convert(
        model, swap_activations={"relu": ksc.SpikingReLU(max_spikes_per_step=1, reset="zero")}
    )
    (neuron,) = [layer for layer in snn.layers if isinstance(layer, ksc.SpikingReLU)]
    assert neuron.initial_voltage == 0.5 and neuron.rectify_input is False
    assert neuron.max_spikes_per_step == 1 and neuron.reset == "zero"


def relu6_bn_net():
    inp = keras.Input((10, 10, 2), name="image")
    h = keras.layers.Conv2D(6, 3, use_bias=False, name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(max_value=6.0, name="relu6")(h)
    h = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(h)
    h = keras.layers.BatchNormalization(name="dw_bn")(h)
    h = keras.layers.Activation("relu6", name="act6")(h)
    skip = keras.layers.Conv2D(12, 1, name="proj")(h)
    skip = keras.layers.BatchNormalization(name="proj_bn")(skip)
    h = keras.layers.Add(name="add")([h, skip])
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(4, name="out")(h)
    model = keras.Model(inp, out)
    x = np.random.default_rng(1).uniform(0, 4, (48, 10, 10, 2)).astype("float32")
    model.compile("adam", "mse")
    model.fit(x, np.random.default_rng(2).normal(size=(48, 4)), epochs=2, verbose=0)
    return model, x


def test_fold_batch_norm_computes_the_same_with_fewer_layers():
    model, x = relu6_bn_net()
    folded = ksc.fold_batch_norm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert len(folded.layers) == len(model.layers) - 3
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4)
    assert model.get_layer("bn") is not None  # the original is untouched


def test_clipped_relus_become_clipped_neurons():
    model, x = relu6_bn_net()
    ann = model.predict(x, verbose=0)
    # rate conversion stays exact with every ReLU6 a neuron block
    rate = ksc.convert(model, scale_firing_rates=3.0, readout="mean")
    np.testing.assert_allclose(rate.predict(ksc.tile_time(x, 2), verbose=0), ann, atol=1e-4)
    scales = ksc.calibrate(model, x)
    assert {"relu6", "act6", "relu"} == set(scales)
    snn = ksc.convert(
        model,
        swap_activations={"relu": ksc.SpikingReLU(negative_spikes=True)},
        scale_firing_rates=scales,
        readout="mean",
    )
    clipped = {
        layer.source: layer.clip for layer in snn.layers if isinstance(layer, ksc.SpikingReLU)
    }
    assert clipped["relu"] is None and clipped["relu6"] is not None
    # spikes per step at the clip: max_value * scale * dt, per channel
    np.testing.assert_allclose(clipped["relu6"], 6.0 * np.asarray(scales["relu6"]) * DT)
    errors = [np.abs(snn.predict(ksc.tile_time(x, t), verbose=0) - ann).mean() for t in (2, 8, 32)]
    assert errors[2] < errors[1] < errors[0]


def test_quantization_aware_conversion_is_exact_at_t_equal_levels():
    model, x = relu6_bn_net()
    q = ksc.quantize_activations(model, levels=4, x=x)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in q.layers)
    thresholds = {
        layer.name: layer.threshold_value()
        for layer in q.layers
        if isinstance(layer, QuantizedReLU)
    }
    # one threshold per channel (the default), none above the ReLU6's clip
    assert max(thresholds["relu6"]) <= 6.0 and max(thresholds["act6"]) <= 6.0
    assert len(set(thresholds["relu6"])) > 1
    swap = {QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)}
    snn = ksc.convert(q, swap_activations=swap, readout="mean")
    qann = q.predict(x, verbose=0)
    exact = np.abs(snn.predict(ksc.tile_time(x, 4), verbose=0) - qann)
    assert np.median(exact) < 1e-5
    # k steps per level: a threshold k times the learned one, exact again at T = k L
    spread = ksc.convert(q, swap_activations=swap, scale_firing_rates=0.5, readout="mean")
    assert np.median(np.abs(spread.predict(ksc.tile_time(x, 8), verbose=0) - qann)) < 1e-5
    finer = np.abs(snn.predict(ksc.tile_time(x, 8), verbose=0) - qann)
    assert np.median(finer) > 1e-3  # without: the mean over 8 steps is another quantization
    # without negative spikes deeper layers get their spikes unevenly over time
    unsigned = ksc.convert(q, swap_activations={QuantizedReLU: "spiking_relu"}, readout="mean")
    uneven = np.abs(unsigned.predict(ksc.tile_time(x, 4), verbose=0) - qann)
    assert uneven.mean() > exact.mean()


def test_batch_norm_kept_for_fine_tuning_folds_after_it():
    model, x = relu6_bn_net()
    q = ksc.quantize_activations(model, levels=4, x=x, fold_batch_norm=False)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in q.layers) == 3
    q.compile(keras.optimizers.Adam(0.01), "mse")
    q.fit(x, np.random.default_rng(3).normal(size=(48, 4)), epochs=2, verbose=0)
    folded = ksc.fold_batch_norm(q)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    for layer in q.layers:  # the learned per-channel thresholds travel with the fold
        if isinstance(layer, QuantizedReLU):
            learned = folded.get_layer(layer.name).threshold_value()
            assert learned == layer.threshold_value() and len(learned) > 1
    qann = q.predict(x, verbose=0)
    assert np.median(np.abs(folded.predict(x, verbose=0) - qann)) < 1e-5
    swap = {QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)}
    snn = ksc.convert(folded, swap_activations=swap, readout="mean")
    assert np.median(np.abs(snn.predict(ksc.tile_time(x, 4), verbose=0) - qann)) < 1e-5


def test_extended_neurons_give_the_same_spikes_on_every_path(tmp_path):
    model, x = relu6_bn_net()
    swap = {"relu": ksc.SpikingReLU(negative_spikes=True, max_spikes_per_step=2)}
    snn = ksc.convert(model, swap_activations=swap, scale_firing_rates=ksc.calibrate(model, x))
    seq = ksc.tile_time(x[:4], 6)
    fused = snn.predict(seq, verbose=0)
    stream = ksc.Stream(snn)
    chunks = np.concatenate(
        [
            keras.ops.convert_to_numpy(stream(seq[:, :2])),
            keras.ops.convert_to_numpy(stream(seq[:, 2:])),
        ],
        axis=1,
    )
    np.testing.assert_array_equal(chunks, fused)
    path = tmp_path / "snn.keras"
    snn.save(path)
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(seq, verbose=0), fused)
    layout = ksc.state_layout(snn)
    signed = [spec for spec in layout.values() if spec.layer.startswith("relu6")]
    # voltage, net count and headroom of the clip, stacked
    assert signed and signed[0].shape[1] == 3


def test_steps_within_counts_a_sweep_exactly_points_below():
    sweep = ksc.LatencySweep(
        [
            {"n_steps": 4, "accuracy": 83.5, "rate": 1.0},
            {"n_steps": 8, "accuracy": 83.75, "rate": 1.0},
        ],
        readout="mean",
        n_examples=2000,
    )
    assert sweep.steps_within(np.float32(84.75), 1.0) == 8
    assert sweep.steps_within(84.75, 0.5) is None


def test_sweep_finds_each_layers_error_against_its_reference():
    model, x = relu6_bn_net()
    q = ksc.quantize_activations(model, levels=4, x=x)
    labels = np.argmax(q.predict(x, verbose=0), axis=-1)
    converter = ksc.Converter(
        q, swap_activations={QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)}
    )
    sweep = ksc.latency_sweep(
        converter.model, x, labels, steps=(1, 2, 4), reference=q, verbose=0, batch_size=16
    )
    assert list(sweep.layer_errors) == ["relu6", "act6", "relu"]
    # at T = levels every layer is its quantized ANN layer, rounded alike; not before
    for layer in sweep.layer_errors:
        assert sweep.layer_error(layer, 4) < 1e-5
        assert sweep.layer_error(layer, 1) > 1e-2
    assert sweep.accuracy(4) == 100.0
    assert "| relu6 |" in sweep.layer_table() and "T=4" in str(sweep)
    converter.report.add_layer_errors(sweep)
    row = next(line for line in str(converter.report).splitlines() if line.startswith("act6"))
    assert "error vs reference (act6): T=1" in row
    # the model the converted one did not come from: named, with the fix
    with pytest.raises(ValueError, match="has no layer 'relu6'.*quantized model"):
        ksc.latency_sweep(
            converter.model, x, labels, steps=(1,), reference=relu6_bn_net_other(), verbose=0
        )
    with pytest.raises(ValueError, match="no layer errors.*reference=model"):
        converter.report.add_layer_errors(ksc.latency_sweep(converter.model, x, labels, (1,)))


def relu6_bn_net_other():
    inp = keras.Input((10, 10, 2))
    return keras.Model(inp, keras.layers.Dense(4, activation="relu", name="out")(inp))


def test_a_registered_rule_that_builds_a_neuron_is_a_neuron_everywhere():
    from keras_spiking_conv.conversion import registry

    class Rectifier(keras.layers.Layer):
        def call(self, x):
            return keras.ops.relu(x)

    @ksc.register_rule(Rectifier)
    def convert_rectifier(layer, args, kwargs, context):
        return context.neuron_block(layer.name, "relu", args[0])

    try:
        inp = keras.Input((6,))
        h = Rectifier(name="mine")(keras.layers.Dense(8, name="hidden")(inp))
        model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
        x = np.random.default_rng(0).uniform(size=(40, 6)).astype("float32")
        scales = ksc.calibrate(model, x)
        assert set(scales) == {"mine"}
        converter = ksc.Converter(
            model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=scales
        )
        (row,) = [r for r in converter.report.rows if r["layer"] == "mine"]
        assert row["kind"] == "neuron" and row["spiking"] is True
        assert "convert_rectifier" in row["became"] and "scale" in row["note"]
        assert converter.report.spiking_layers == ["mine"]
    finally:
        registry._RULES.pop(Rectifier)


def test_layer_errors_of_a_nested_model_called_twice_reach_its_report():
    inner_in = keras.Input((8,))
    inner = keras.Model(
        inner_in, keras.layers.Dense(8, activation="relu", name="d")(inner_in), name="block"
    )
    inp = keras.Input((6,))
    h = inner(inner(keras.layers.Dense(8, activation="relu", name="first")(inp)))
    model = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    x = np.random.default_rng(0).uniform(size=(40, 6)).astype("float32")
    converter = ksc.Converter(
        model,
        swap_activations={"relu": ksc.SpikingReLU(negative_spikes=True)},
        scale_firing_rates=ksc.calibrate(model, x),
    )
    sweep = ksc.latency_sweep(
        converter.model, x, np.arange(40) % 3, steps=(1, 32), reference=model, verbose=0
    )
    assert list(sweep.layer_errors) == ["first", "block/d", "block_call1/d"]
    for errors in sweep.layer_errors.values():
        assert errors[1] < errors[0] / 4  # converges
    converter.report.add_layer_errors(sweep)
    text = str(converter.report)
    block_rows = [line for line in text.splitlines() if line.startswith("block ")]
    assert block_rows and not any("error vs reference" in line for line in block_rows)
    (inner_row,) = [line for line in text.splitlines() if line.startswith("d ")]
    assert "error vs reference (d): T=1" in inner_row
    assert "error vs reference (d_call1): T=1" in inner_row
