"""Graphs with `keras.ops` calls and layers that have no conversion rule."""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc

L = keras.layers


@keras.saving.register_keras_serializable(package="tests")
class ChannelGain(L.Layer):
    """A per-sample layer with weights and no `compute_output_shape` (Keras infers it)."""

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.gain + 0.1


@keras.saving.register_keras_serializable(package="tests")
class PairMix(L.Layer):
    """Takes a list of two tensors."""

    def call(self, inputs):
        a, b = inputs
        return a * 0.5 + ops.tanh(b)


class Counter(L.Layer):
    """Counts its calls: a state of its own."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, x):
        self.calls.assign_add(1.0)
        return x


class Sequence(L.Layer):
    """Claims a time axis of its own."""

    return_sequences = True

    def call(self, x):
        return x


def ops_model():
    """Arithmetic, hard-swish, channel reductions, concatenation, reshapes and slices."""
    a = keras.Input((6, 6, 2), name="a")
    b = keras.Input((6, 6, 2), name="b")
    h = L.Conv2D(8, 3, padding="same", name="conv")(a * 2.0 - 1.0)
    h = h * ops.relu6(h + 3.0) / 6.0  # hard swish
    g = ops.relu(L.Conv2D(8, 3, padding="same", name="conv_b")(a + b))
    h = ops.concatenate([h, g], axis=-1)
    h = h - ops.mean(h, axis=-1, keepdims=True)  # a reduction over channels
    pooled = ops.sum(h, axis=(1, 2)) / 36.0
    flat = ops.reshape(h[:, 1:5, 1:5, :], (-1, 4 * 4 * 16))
    swapped = ops.transpose(h, (0, 2, 1, 3))[:, 0, 0, :]
    joined = ops.concatenate([pooled, swapped], axis=-1)
    out = L.Dense(5, name="out")(ops.relu(L.Dense(12, name="hidden")(flat)) + joined[:, :12])
    return keras.Model([a, b], out, name="ops_model")


def custom_model():
    inp = keras.Input((10,))
    h = L.Dense(16, activation="relu", name="d1")(inp)
    h = ChannelGain(name="gain")(h)
    h = PairMix(name="mix")([h, L.Dense(16, name="d2")(inp)])
    h = ChannelGain(name="gain2")(L.Dense(16, activation="relu", name="d3")(h))
    return keras.Model(inp, L.Dense(3, name="out")(h), name="custom_model")


def _data(model, n=4, seed=0):
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(0, 1, (n, *x.shape[1:])).astype("float32") for x in model.inputs]
    return xs[0] if len(xs) == 1 else xs


def _convert(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return ksc.Converter(model, **kwargs)


def test_keras_ops_graph_converts_exactly_in_every_execution(tmp_path):
    model = ops_model()
    converter = _convert(model)
    x = _data(model)
    ksc.verify(model, converter.model, x, n_steps=3, rtol=1e-5, atol=1e-5)
    kinds = {row["layer"]: row["kind"] for row in converter.report.rows}
    assert sum(kind == "operation" for kind in kinds.values()) >= 12
    # The same outputs step by step and after a .keras round trip.
    tiled = ksc.tile_time(x, 3)
    expected = converter.model.predict(tiled, verbose=0)
    streamed = ksc.Stream(converter.model)(tiled)
    np.testing.assert_allclose(streamed, expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "ops.keras"
    converter.model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(tiled, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_ops_relu_is_swappable_and_spikes_approach_the_rates():
    model = ops_model()
    x = _data(model, n=8)
    converter = _convert(model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=200.0)
    spiking = converter.report.spiking_layers
    # two ops.relu and the hard swish's ops.relu6 (a clipped ReLU: a neuron clipped at 6)
    assert len(spiking) == 3 and all(name.startswith("relu") for name in spiking)
    neurons = [layer for layer in converter.model.layers if isinstance(layer, ksc.SpikingReLU)]
    assert len(neurons) == 3 and all(n.spiking for n in neurons)
    assert sorted(n.clip is not None for n in neurons) == [False, False, True]
    rates = model.predict(x, verbose=0)
    spikes = converter.model.predict(ksc.tile_time(x, 400), verbose=0).mean(axis=1)
    error = np.abs(spikes - rates).max() / np.abs(rates).max()
    assert error < 0.05, error
    # Re-converting a rate conversion finds the ReLU operations again.
    again = _convert(_convert(model).model, swap_activations={"relu": "spiking_relu"})
    assert sorted(again.report.spiking_layers) == sorted(spiking)
    assert any(row["kind"] == "operation" for row in again.report.rows)


def test_custom_layers_convert_generically_with_a_warning_per_class():
    model = custom_model()
    with pytest.warns(UserWarning, match="has no conversion rule") as record:
        converter = ksc.Converter(model)
    messages = [str(w.message) for w in record if "conversion rule" in str(w.message)]
    assert len(messages) == 2  # ChannelGain (twice) and PairMix: one warning per class
    assert sum("ChannelGain" in m for m in messages) == 1
    assert sorted(converter.report.generic_layers) == ["gain", "gain2", "mix"]
    assert "generic" in str(converter.report)
    x = _data(model)
    ksc.verify(model, converter.model, x, n_steps=3)
    # Kept with its weights, as a copy: training the conversion leaves the original alone.
    gain = converter.model.get_layer("gain").layer
    assert gain is not model.get_layer("gain")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(ops.copy(gain.gain.value)),
        ops.convert_to_numpy(ops.copy(model.get_layer("gain").gain.value)),
    )


def test_custom_layers_spike_towards_the_rates_in_every_execution():
    model = custom_model()
    x = _data(model, n=8)
    snn = _convert(model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=200.0)
    rates = model.predict(x, verbose=0)
    tiled = ksc.tile_time(x, 400)
    fused = snn.model.predict(tiled, verbose=0)
    assert np.abs(fused.mean(axis=1) - rates).max() / np.abs(rates).max() < 0.05
    # The same spikes layer by layer and streamed in chunks (generic layers in each engine).
    snn.model.execution = "layers"
    np.testing.assert_allclose(snn.model.predict(tiled, verbose=0), fused, rtol=1e-5, atol=1e-2)
    stream = ksc.Stream(snn.model)
    chunks = np.concatenate([stream(tiled[:, :150]), stream(tiled[:, 150:])], axis=1)
    np.testing.assert_allclose(chunks, fused, rtol=1e-5, atol=1e-2)


def test_strict_refuses_generic_layers_and_register_rule_overrides():
    model = custom_model()
    with pytest.raises(ksc.ConversionError, match=r"'gain' \(ChannelGain\) has no conversion rule"):
        ksc.convert(model, strict=True)

    calls = []

    @ksc.register_rule(PairMix)
    def pair_rule(layer, args, kwargs, context):
        calls.append(layer.name)
        context.record(layer, kind="rate")
        return context.fold(context.clone(layer), layer, args, kwargs)

    try:
        converter = _convert(model)
        assert calls == ["mix"]
        assert sorted(converter.report.generic_layers) == ["gain", "gain2"]
    finally:
        from keras_spiking_conv.conversion import registry

        registry._RULES.pop(PairMix)


def test_report_lists_layers_that_a_custom_rule_did_not_record():
    # docs/converter.md's example rule: no `context.record` call.
    model = custom_model()

    @ksc.register_rule(PairMix)
    def convert_pair_mix(layer, args, kwargs, context):
        return context.fold(context.clone(layer), layer, args, kwargs)

    try:
        report = _convert(model).report
    finally:
        from keras_spiking_conv.conversion import registry

        registry._RULES.pop(PairMix)
    rows = {row["layer"]: row for row in report.rows}
    assert rows["mix"]["kind"] == "custom"
    assert rows["mix"]["became"] == "converted by the rule convert_pair_mix"
    assert "convert_pair_mix" in str(report)
    # Every original layer is listed, once.
    layers = [layer.name for layer in model.layers if not isinstance(layer, L.InputLayer)]
    assert sorted(row["layer"] for row in report.rows) == sorted(layers)


def test_a_pure_lambda_converts_generically():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2)(L.Lambda(lambda t: t * 2.0 + 1.0, name="affine")(inp)))
    converter = _convert(model)
    assert converter.report.generic_layers == ["affine"]
    ksc.verify(model, converter.model, _data(model))


@pytest.mark.parametrize(
    "layer, pattern",
    [
        (Counter(name="counter"), r"'counter' \(Counter, no conversion rule\) changes its own"),
        (Sequence(name="seq"), r"'seq' \(Sequence\) runs over a time axis of its own"),
    ],
    ids=["state", "time_axis"],
)
def test_unsafe_layers_keep_clear_errors(layer, pattern):
    inp = keras.Input((4,))
    model = keras.Model(inp, layer(inp))
    before = [ops.convert_to_numpy(ops.copy(v.value)) for v in model.variables]
    with pytest.raises(ksc.ConversionError, match=pattern) as info:
        ksc.convert(model)
    assert info.match("Fix: ")
    after = [ops.convert_to_numpy(ops.copy(v.value)) for v in model.variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize(
    "build, pattern",
    [
        (lambda x: ops.sum(x), r"does not keep the batch axis first"),
        (lambda x: ops.cumsum(x, axis=0), r"mixes the samples of a batch"),
        (lambda x: ops.reshape(x, (1, -1)), r"does not keep the batch axis first"),
    ],
    ids=["sum_all", "cumsum_batch", "reshape_batch"],
)
def test_batch_mixing_ops_name_the_op_and_the_fix(build, pattern):
    inp = keras.Input((4,))
    model = keras.Model(inp, build(L.Dense(4, name="before")(inp)))
    with pytest.raises(ksc.ConversionError, match=pattern) as info:
        ksc.convert(model)
    assert info.match(r"Operation '\w+' \(keras\.ops \w+, applied to the output of 'before'\)")
    assert info.match("Fix: ")


def test_unknown_feature_sizes_get_the_shape_check():
    inp = keras.Input((None, 3))
    h = L.Conv1D(4, 3, activation="relu", name="conv")(inp)
    model = keras.Model(inp, ops.max(h * 2.0 + 1.0, axis=1))
    converter = _convert(model)
    x = np.random.default_rng(0).uniform(size=(2, 7, 3)).astype("float32")
    ksc.verify(model, converter.model, x)
    inp = keras.Input((None, 3))
    mixing = keras.Model(inp, ops.sum(inp, axis=0))
    with pytest.raises(ksc.ConversionError, match="batch axis"):
        ksc.convert(mixing)


def test_nan_propagates_through_spiking_neurons_under_predict():
    # The configuration of issue 14: Dense -> spiking neuron -> Dense -> spiking neuron.
    inp = keras.Input((4,))
    out = L.Dense(3, activation="relu")(L.Dense(5, activation="relu")(inp))
    model = keras.Model(inp, out)
    snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"})
    x = np.ones((2, 3, 4), "float32")
    x[0, 1, 2] = np.nan
    for y in (
        snn.predict(x, verbose=0),
        ops.convert_to_numpy(snn(x)),
        ksc.Stream(snn)(x),
    ):
        assert np.isnan(y[0, 1:]).all()  # NaN from its step on (voltage stays NaN)
        assert np.isfinite(y[0, :1]).all() and np.isfinite(y[1]).all()


def test_rate_mode_handles_nan_as_the_original_does():
    # Rate mode is the original model: on TensorFlow with oneDNN, a compiled
    # MatMul + BiasAdd + ReLU turns NaN into 0 in both (docs/reliability.md).
    inp = keras.Input((4,))
    out = L.Dense(3, activation="relu")(L.Dense(5, activation="relu")(inp))
    model = keras.Model(inp, out)
    snn = ksc.convert(model)
    x = np.ones((2, 4), "float32")
    x[0, 2] = np.nan
    expected = np.isnan(model.predict(x, verbose=0))
    actual = np.isnan(snn.predict(ksc.tile_time(x, 3), verbose=0))
    for t in range(3):
        np.testing.assert_array_equal(actual[:, t], expected)
    assert np.isnan(ops.convert_to_numpy(snn(ksc.tile_time(x, 3)))[0]).all()


def test_calibrate_and_quantize_find_ops_relu():
    model = ops_model()
    x = _data(model, n=16)
    scales = ksc.calibrate(model, x, per_channel=False)
    # two ops.relu and an ops.relu6 (a clipped ReLU), keyed by the operations' names
    relus = {op.name for op in model.operations if type(op).__name__ in ("Relu", "Relu6")}
    assert len(relus) == 3 and set(scales) == relus
    converter = _convert(
        model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=scales
    )
    assert len(converter.report.spiking_layers) == 3
    quantized = ksc.quantize_activations(model, levels=4)
    relus = [layer for layer in quantized.layers if isinstance(layer, ksc.QuantizedReLU)]
    assert len(relus) == 3
    assert min(np.max(layer.threshold_value()) for layer in relus) <= 6.0  # per channel
    snn = _convert(quantized, swap_activations={ksc.QuantizedReLU: "spiking_relu"}, readout="mean")
    assert snn.model.predict(ksc.tile_time(x, 4), verbose=0).shape == (16, 5)


@pytest.mark.tensorflow_only
def test_ops_and_generic_layers_export_as_a_savedmodel(tmp_path):
    import tensorflow as tf

    inp = keras.Input((10,), name="x")
    h = ChannelGain(name="gain")(L.Dense(16, activation="relu", name="d1")(inp))
    h = h * ops.relu6(h + 3.0) / 6.0
    model = keras.Model(inp, L.Dense(3, name="out")(h))
    snn = _convert(model, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=50.0).model
    x = ksc.tile_time(_data(model), 6)
    ksc.export(snn, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    outputs = served.signatures["sequence"](x=tf.constant(x))
    (y,) = outputs.values()
    np.testing.assert_allclose(y.numpy(), snn.predict(x, verbose=0), rtol=1e-5, atol=1e-3)
    assert np.count_nonzero(y.numpy()) > 0


@pytest.mark.tensorflow_only
def test_nan_propagates_through_an_exported_spiking_model(tmp_path):
    import tensorflow as tf

    inp = keras.Input((4,), name="x")
    out = L.Dense(3, activation="relu")(L.Dense(5, activation="relu")(inp))
    snn = ksc.convert(keras.Model(inp, out), swap_activations={"relu": "spiking_relu"})
    ksc.export(snn, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    x = np.ones((2, 3, 4), "float32")
    x[0, 1, 2] = np.nan
    (y,) = served.signatures["sequence"](x=tf.constant(x)).values()
    y = y.numpy()
    assert np.isnan(y[0, 1:]).all() and np.isfinite(y[0, :1]).all() and np.isfinite(y[1]).all()
