"""Low latency: QuantizedReLU, quantize_activations, calibrate, readout, latency sweeps."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates
from keras_spiking_conv.layers import QuantizedReLU, TimeReadout
from tests.helpers import gradient, run_layer_test

QRELU = {QuantizedReLU: "spiking_relu"}
SPIKING = {"relu": "spiking_relu"}


def small_convnet():
    inp = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(6, name="hidden")(h)
    h = keras.layers.ReLU(name="relu")(h)
    out = keras.layers.Dense(3, name="out")(h)
    return keras.Model(inp, out, name="small")


# -- QuantizedReLU ------------------------------------------------------------------------
def test_quantized_relu_values_and_config():
    x = np.array([[-1.0, 0.2, 0.3, 0.8, 1.3, 1.9, 5.0]], dtype="float32")
    out = run_layer_test(QuantizedReLU, {"levels": 4, "threshold": 2.0}, x, x.shape)
    # 2 * clip(floor(x * 4 / 2 + 0.5) / 4, 0, 1), by hand
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0]])


def test_quantized_relu_straight_through_gradient():
    layer = QuantizedReLU(levels=4, threshold=2.0)
    x = np.array([-1.0, 0.3, 1.1, 1.6, 3.0], dtype="float32")
    # Identity gradient where the clip is not active (-0.25 < x < 1.75), zero elsewhere.
    np.testing.assert_allclose(gradient(layer, x), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_quantized_relu_learns_its_threshold():
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).uniform(0, 3, (256, 1)).astype("float32")
    model = keras.Sequential([keras.Input((1,)), QuantizedReLU(levels=8, threshold=1.0)])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    model.fit(x, np.minimum(x, 2.5), epochs=40, batch_size=64, verbose=0)
    # The target is clipped at 2.5: the learned threshold moves there from 1.
    assert abs(model.layers[-1].threshold_value() - 2.5) < 0.25


def test_quantized_relu_per_channel_thresholds(tmp_path):
    layer = QuantizedReLU(levels=4, threshold=[1.0, 2.0, 0.5], per_channel=True, name="q")
    x = np.random.default_rng(0).uniform(-1, 3, (5, 4, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x))
    t = np.array([1.0, 2.0, 0.5], dtype="float32")  # along the last axis
    np.testing.assert_allclose(out, t * np.clip(np.floor(x * 4 / t + 0.5) / 4, 0, 1))
    assert layer.threshold_value() == (1.0, 2.0, 0.5)
    # One number for every channel, learned per channel; saved and loaded.
    model = keras.Sequential(
        [keras.Input((3,)), QuantizedReLU(levels=4, threshold=1.5, per_channel=True)]
    )
    model.layers[-1].threshold.assign([0.7, 1.1, 2.0])
    model.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    v = np.array([[0.1, 0.5, 2.0]], dtype="float32")
    np.testing.assert_allclose(loaded.predict(v, verbose=0), model.predict(v, verbose=0))
    np.testing.assert_allclose(loaded.layers[-1].threshold_value(), [0.7, 1.1, 2.0])
    with pytest.raises(ValueError, match="'q2'.*3 values.*per_channel=True"):
        QuantizedReLU(threshold=[1.0, 2.0, 3.0], name="q2")
    with pytest.raises(ValueError, match="'q3'.*2 values but the input has 3 channels"):
        QuantizedReLU(threshold=[1.0, 2.0], per_channel=True, name="q3")(x)
    with pytest.raises(ValueError, match="`threshold`"):
        QuantizedReLU(threshold=[1.0, -2.0], per_channel=True)


def test_quantized_relu_saves(tmp_path):
    model = keras.Sequential([keras.Input((3,)), QuantizedReLU(levels=4, threshold=1.5)])
    model.layers[-1].threshold.assign(0.7)
    model.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    x = np.array([[0.1, 0.5, 2.0]], dtype="float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[-1].threshold_value() == pytest.approx(0.7)


# -- readout ------------------------------------------------------------------------------
@pytest.mark.parametrize("readout", ["mean", "last"])
def test_readout_reduces_time_in_every_execution(readout):
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (5, 8, 8, 1)).astype("float32")
    full = ksc.convert(model, swap_activations=SPIKING)
    snn = ksc.convert(model, swap_activations=SPIKING, readout=readout)
    tiled = ksc.tile_time(x, 6)
    steps = full.predict(tiled, verbose=0)
    expected = steps.mean(axis=1) if readout == "mean" else steps[:, -1]
    assert snn.output.shape == (None, 3)
    np.testing.assert_allclose(snn.predict(tiled, verbose=0), expected, atol=1e-5)
    snn.execution = "layers"
    np.testing.assert_allclose(snn.predict(tiled, verbose=0), expected, atol=1e-5)
    # A stream returns every step, before the readout.
    stream = ksc.Stream(snn)
    chunks = np.concatenate([stream(tiled[:, :2]), stream(tiled[:, 2:])], axis=1)
    np.testing.assert_allclose(chunks, steps, atol=1e-5)


def test_readout_rate_model_equals_original_and_evaluates_with_labels():
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 3
    snn = ksc.convert(model, readout="mean")
    np.testing.assert_allclose(
        snn.predict(ksc.tile_time(x, 3), verbose=0), model.predict(x, verbose=0), atol=1e-5
    )
    snn.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = snn.evaluate(ksc.tile_time(x, 3), y, verbose=0)
    snn.fit(ksc.tile_time(x, 3), y, epochs=3, verbose=0)
    assert snn.evaluate(ksc.tile_time(x, 3), y, verbose=0) < before


def test_reconverting_applies_the_new_readout(tmp_path):
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (2, 8, 8, 1)).astype("float32")
    snn = ksc.convert(model, swap_activations=SPIKING, readout="mean")
    snn.save(tmp_path / "snn.keras")
    loaded = keras.models.load_model(tmp_path / "snn.keras")
    tiled = ksc.tile_time(x, 4)
    np.testing.assert_allclose(loaded.predict(tiled, verbose=0), snn.predict(tiled, verbose=0))
    again = ksc.Converter(loaded, swap_activations=SPIKING)
    assert not any(isinstance(layer, TimeReadout) for layer in again.model.layers)
    assert again.model.predict(tiled, verbose=0).shape == (2, 4, 3)
    last = ksc.convert(loaded, swap_activations=SPIKING, readout="last")
    assert [type(layer) for layer in last.layers].count(TimeReadout) == 1


def test_bad_readout_is_a_clear_error():
    with pytest.raises(ValueError, match="`readout` must be None.*Received: readout='max'"):
        ksc.convert(small_convnet(), readout="max")


# -- conversion of QuantizedReLU ----------------------------------------------------------
def test_quantized_layer_equals_its_spiking_neurons_at_t_equals_levels():
    """QCFS with L levels is what an integrate-and-fire neuron with the same threshold,
    starting at half of it, computes over L steps of a constant input (below the clip)."""
    inp = keras.Input((5,))
    out = QuantizedReLU(levels=4, threshold=2.0, name="q")(keras.layers.Dense(7)(inp))
    model = keras.Model(inp, keras.layers.Dense(3)(out))
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (20, 5)).astype("float32")
    hidden = keras.Model(inp, model.layers[1].output).predict(x, verbose=0)
    assert hidden.max() < 1.75  # no clipping: spikes and QCFS agree exactly
    for swap in (QRELU, {"quantized_relu": "spiking_relu"}):
        snn = ksc.convert(model, swap_activations=swap, readout="mean")
        np.testing.assert_allclose(
            snn.predict(ksc.tile_time(x, 4), verbose=0), model.predict(x, verbose=0), atol=1e-5
        )
    report = ksc.Converter(model, swap_activations=QRELU).report
    assert report.spiking_layers == ["q"]
    # The scale is 1 / (threshold * dt): one spike per step at the threshold.
    scale = ksc.convert(model, swap_activations=QRELU).get_layer("q_scale").scale
    assert scale == pytest.approx(1 / (2.0 * 0.001))


def test_quantized_relu_stays_exact_by_default():
    inp = keras.Input((4,))
    model = keras.Model(inp, QuantizedReLU(levels=2, threshold=1.0)(inp))
    x = np.random.default_rng(0).uniform(-1, 2, (6, 4)).astype("float32")
    ksc.verify(model, ksc.convert(model), x)


# -- quantize_activations -----------------------------------------------------------------
def relu_forms_model():
    inp = keras.Input((6,), name="x")
    a = keras.layers.Dense(5, activation="relu", name="d0")(inp)
    b = keras.layers.Dense(5, activation=keras.activations.relu, name="d1")(a)
    c = keras.layers.Activation("relu", name="act")(keras.layers.Dense(5, name="d2")(b))
    inner_in = keras.Input((5,))
    inner = keras.Model(inner_in, keras.layers.ReLU(name="inner_relu")(inner_in), name="inner")
    d = inner(c)
    e = keras.layers.Dense(4, activation="tanh", name="d3")(d)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(e), name="forms")


def test_quantize_activations_replaces_every_relu_and_keeps_weights():
    model = relu_forms_model()
    q = ksc.quantize_activations(model, levels=1000, initial_threshold=10.0)
    names = {layer.name: layer for layer in q.layers}
    inner = names["inner"]
    quantized = [n for n, layer in names.items() if isinstance(layer, QuantizedReLU)]
    assert sorted(quantized) == ["act", "d0_qrelu", "d1_qrelu"]
    assert isinstance(inner.get_layer("inner_relu"), QuantizedReLU)
    assert names["d3"].activation is keras.activations.tanh  # not a ReLU: kept
    # A threshold above every activation and fine levels (0.01): close to the ReLU model.
    x = np.random.default_rng(0).uniform(0, 1, (16, 6)).astype("float32")
    np.testing.assert_allclose(q.predict(x, verbose=0), model.predict(x, verbose=0), atol=0.05)
    # A copy: training it leaves the original alone.
    before = [w.copy() for w in model.get_weights()]
    q.compile("sgd", "mse")
    q.fit(x, np.zeros((16, 2)), epochs=1, verbose=0)
    for w, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(w, b)


def test_quantize_activations_thresholds_from_data():
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    q = ksc.quantize_activations(model, levels=8, x=x, percentile=100, per_channel=False)
    acts = keras.Model(model.inputs, model.get_layer("conv").output).predict(x, verbose=0)
    assert q.get_layer("conv_qrelu").threshold_value() == pytest.approx(acts.max(), rel=1e-5)
    # The default: one threshold per channel, each at its channel's percentile.
    per_channel = ksc.quantize_activations(model, levels=8, x=x, percentile=100)
    thresholds = per_channel.get_layer("conv_qrelu").threshold_value()
    np.testing.assert_allclose(thresholds, acts.reshape(-1, 4).max(axis=0), rtol=1e-5)
    assert len(set(thresholds)) == 4
    snn = ksc.convert(q, swap_activations=QRELU, readout="mean")
    assert [layer.name for layer in snn.layers if isinstance(layer, ksc.SpikingReLU)] == [
        "conv_qrelu_neuron",
        "relu_neuron",
    ]


# -- calibrate ----------------------------------------------------------------------------
def test_calibrate_scales_are_percentiles():
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (300, 8, 8, 1)).astype("float32")
    scales = ksc.calibrate(model, x, percentile=99.0, per_channel=False, dt=0.002, batch_size=64)
    assert list(scales) == ["conv", "relu"]
    conv = keras.Model(model.inputs, model.get_layer("conv").output).predict(x, verbose=0)
    assert scales["conv"] == pytest.approx(1 / (np.percentile(conv, 99.0) * 0.002), rel=1e-4)
    # One scale per channel (the default): each channel's own percentile, at least 1 % of
    # the layer's.
    channels = ksc.calibrate(model, x, percentile=99.0, dt=0.002)["conv"]
    layer = np.percentile(conv, 99.0)
    per_channel = np.maximum(np.percentile(conv.reshape(-1, 4), 99.0, axis=0), 0.01 * layer)
    assert channels == pytest.approx(tuple(1 / (per_channel * 0.002)), rel=1e-4)
    # The same from a tf.data-like iterable of (x, y) batches and from a PyDataset.

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return x[i * 100 : (i + 1) * 100], np.zeros(100)

    kwargs = dict(percentile=99.0, per_channel=False, dt=0.002)
    from_dataset = ksc.calibrate(model, Batches(), **kwargs)
    from_iterable = ksc.calibrate(
        model, ((x[i : i + 100], None) for i in range(0, 300, 100)), **kwargs
    )
    import tensorflow as tf  # tf.data feeds every backend

    from_tf_data = ksc.calibrate(
        model, tf.data.Dataset.from_tensor_slices((x, np.zeros(300))).batch(100), **kwargs
    )
    for other in (from_dataset, from_iterable, from_tf_data):
        assert other == pytest.approx(scales, rel=1e-4)


def test_calibrated_conversion_converges_to_the_original():
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    scales = ksc.calibrate(model, x)
    snn = ksc.convert(model, swap_activations=SPIKING, scale_firing_rates=scales, readout="mean")
    expected = model.predict(x, verbose=0)
    errors = [
        np.abs(snn.predict(ksc.tile_time(x, t), verbose=0) - expected).mean() for t in (2, 32)
    ]
    assert errors[1] < errors[0] / 4
    assert errors[1] < 0.05 * np.abs(expected).mean()


def test_calibration_is_consistent_where_branches_meet():
    """Branches of very different magnitudes meet at Add and Concatenate: each block
    unscales its spikes, so the calibrated network still matches the original."""
    inp = keras.Input((6,))
    big = keras.layers.Dense(8, activation="relu", name="big")(inp)
    small = keras.layers.Dense(8, activation="relu", name="small")(inp)
    small = keras.layers.Rescaling(0.01)(small)
    added = keras.layers.Add()([big, small])
    joined = keras.layers.Concatenate()([added, small])
    h = keras.layers.Dense(8, activation="relu", name="after")(joined)
    model = keras.Model(inp, keras.layers.Dense(2)(h))
    model.get_layer("big").set_weights([np.full((6, 8), 10.0), np.zeros(8)])
    x = np.random.default_rng(0).uniform(0, 1, (100, 6)).astype("float32")
    scales = ksc.calibrate(model, x)
    assert min(scales["small"]) > 20 * max(scales["big"])  # per channel by default
    snn = ksc.convert(model, swap_activations=SPIKING, scale_firing_rates=scales, readout="mean")
    expected = model.predict(x, verbose=0)
    got = snn.predict(ksc.tile_time(x, 32), verbose=0)
    assert np.abs(got - expected).mean() < 0.05 * np.abs(expected).mean()


def test_calibrate_nested_and_shared_layers():
    inner_in = keras.Input((4,))
    inner = keras.Model(
        inner_in, keras.layers.Dense(4, activation="relu", name="deep")(inner_in), name="block"
    )
    shared = keras.layers.Dense(4, activation="relu", name="shared")
    inp = keras.Input((4,))
    a = shared(inner(inp))
    b = shared(inp)
    model = keras.Model(inp, keras.layers.Add()([a, b]))
    x = np.random.default_rng(0).uniform(0, 1, (50, 4)).astype("float32")
    percentiles = ksc.latency.activation_percentiles(model, x, percentile=100)
    assert set(percentiles) == {"deep", "shared"}
    outs = keras.Model(inp, [a, b]).predict(x, verbose=0)
    assert percentiles["shared"] == pytest.approx(max(o.max() for o in outs), rel=1e-5)


def test_calibrate_bad_inputs():
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (10, 8, 8, 1)).astype("float32")
    for bad in (0, -1, 100.5, float("nan")):
        with pytest.raises(ValueError, match="percentile"):
            ksc.calibrate(model, x, percentile=bad)
    nan = x.copy()
    nan[3, 2, 2, 0] = np.nan
    with pytest.raises(ValueError, match="batch 0 of `x` holds NaN.*clean or drop"):
        ksc.calibrate(model, nan)
    inp = keras.Input((3,))
    no_relu = keras.Model(inp, keras.layers.Dense(2, activation="tanh")(inp), name="tanh_net")
    with pytest.raises(ValueError, match="'tanh_net' has no ReLU"):
        ksc.calibrate(no_relu, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="already converted"):
        ksc.calibrate(ksc.convert(model), x)
    with pytest.raises(ValueError, match="`levels` must be an integer >= 1.*Received: levels=0"):
        ksc.quantize_activations(model, levels=0)
    with pytest.raises(ValueError, match="has no ReLU"):
        ksc.quantize_activations(no_relu)
    with pytest.raises(ValueError, match="QuantizedReLU 'q'.*levels"):
        QuantizedReLU(levels=2.5, name="q")


# -- latency sweep ------------------------------------------------------------------------
def test_latency_sweep_matches_separate_runs(tmp_path):
    model = small_convnet()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (30, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 30)
    scales = ksc.calibrate(model, x)
    snn = ksc.convert(model, swap_activations=SPIKING, scale_firing_rates=scales, readout="mean")
    sweep = ksc.latency_sweep(snn, x, y, steps=(1, 3, 8), batch_size=7, verbose=0)
    assert sweep.steps == [1, 3, 8]
    for t in (1, 3, 8):
        predicted = snn.predict(ksc.tile_time(x, t), verbose=0).argmax(-1)
        assert sweep.accuracy(t) == pytest.approx(100 * np.mean(predicted == y))
    rates = firing_rates(snn, ksc.tile_time(x, 8))
    mean = sum(r["mean"] * n for r, n in zip(rates.values(), (36 * 4, 6), strict=True)) / 150
    assert sweep.rows[-1]["rate"] == pytest.approx(mean, rel=1e-4)
    assert "| 8 |" in sweep.table()
    path = ksc.plot_latency({"calibrated": sweep}, tmp_path / "sweep.png", reference=50.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the signed integrate-and-fire neuron --------------------------------------------------
def test_signed_input_neuron_follows_the_relu_of_the_mean():
    # Input alternating -2000 / +3000 Hz: mean 500 Hz.
    x = np.tile(np.array([-2000.0, 3000.0], dtype="float32"), 50).reshape(1, 100, 1)
    signed = keras.ops.convert_to_numpy(
        ksc.SpikingReLU(initial_voltage=0.5, rectify_input=False)(x)
    )
    rectified = keras.ops.convert_to_numpy(ksc.SpikingReLU(initial_voltage=0.5)(x))
    assert float(np.sum(signed)) * 0.001 == pytest.approx(50.0)  # 500 Hz for 0.1 s
    assert float(np.sum(rectified)) * 0.001 == pytest.approx(150.0)  # mean of the ReLU
    neuron = ksc.convert(small_convnet(), swap_activations=SPIKING).get_layer("conv_neuron")
    assert neuron.rectify_input is False  # the converter's neurons integrate signed input
    config = neuron.get_config()
    assert ksc.SpikingReLU.from_config(config).rectify_input is False


def test_calibrate_sparse_and_silent_layers_warn():
    inp = keras.Input((2,))
    sparse = keras.layers.Dense(1, activation="relu", name="sparse")(inp)
    dead = keras.layers.Dense(1, activation="relu", name="dead")(inp)
    model = keras.Model(inp, keras.layers.Concatenate()([sparse, dead]))
    model.get_layer("sparse").set_weights([np.array([[2.0], [0.0]]), np.zeros(1)])
    model.get_layer("dead").set_weights([np.array([[-1.0], [-1.0]]), np.full(1, -1.0)])
    x = np.zeros((1000, 2), dtype="float32")
    x[:5, 0] = 1.0  # the sparse layer fires on 0.5 % of the inputs, at 2.0
    with pytest.warns(UserWarning) as caught:
        scales = ksc.calibrate(model, x, percentile=99, per_channel=False, dt=0.001)
    messages = " ".join(str(w.message) for w in caught)
    assert "'sparse'" in messages and "nonzero activations" in messages
    assert "'dead'" in messages and "silent on every input" in messages
    assert scales == pytest.approx({"sparse": 1 / (2.0 * 0.001), "dead": 1 / 0.001})


def test_per_channel_scales_convert_save_and_check_their_length(tmp_path):
    model = small_convnet()
    x = np.random.default_rng(0).uniform(0, 1, (40, 8, 8, 1)).astype("float32")
    scales = ksc.calibrate(model, x)
    assert len(scales["conv"]) == 4 and len(scales["relu"]) == 6
    converter = ksc.Converter(
        model, swap_activations=SPIKING, scale_firing_rates=scales, readout="mean"
    )
    assert "(per channel)" in str(converter.report)
    snn = converter.model
    snn.save(tmp_path / "snn.keras")
    loaded = keras.models.load_model(tmp_path / "snn.keras")
    tiled = ksc.tile_time(x, 8)
    np.testing.assert_allclose(loaded.predict(tiled, verbose=0), snn.predict(tiled, verbose=0))
    with pytest.raises(ValueError, match="'conv_scale' has 3 per-channel scales.*4 channels"):
        ksc.convert(model, swap_activations=SPIKING, scale_firing_rates={"conv": (1000.0,) * 3})
