"""Temporal models (`convert(..., temporal=True)`): the input's own axis 1 is the
simulation's time; causal convolutions, recurrent layers and pooling over time stream."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates

L = keras.layers
FRAMES, FEATURES = 12, 6


def _x(n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, FRAMES, FEATURES)).astype("float32")


def conv_net():
    """Causal dilated convolutions, a one-frame convolution, pooling over time."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, FEATURES), name="frames")
    h = L.Conv1D(8, 3, padding="causal", activation="relu", name="c0")(inp)
    h = L.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="tanh", name="c1")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.Conv1D(8, 1, activation="relu", name="c2")(h)
    h = L.GlobalAveragePooling1D(name="gap")(h)
    return keras.Model(inp, L.Dense(4, name="out")(h))


def rnn_net():
    keras.utils.set_random_seed(1)
    inp = keras.Input((None, FEATURES), name="frames")
    h = L.Dense(8, activation="relu", name="d")(inp)
    h = L.SimpleRNN(8, activation="relu", name="r")(h)
    return keras.Model(inp, L.Dense(4, name="out")(h))


def gated_net():
    keras.utils.set_random_seed(2)
    inp = keras.Input((None, FEATURES), name="frames")
    h = L.GRU(8, return_sequences=True, name="gru")(inp)
    h = L.LSTM(8, return_sequences=True, name="lstm")(h)
    h = L.GlobalMaxPooling1D(name="gmp")(h)
    return keras.Model(inp, L.Dense(4, name="out")(h))


def every_frame_net():
    keras.utils.set_random_seed(3)
    inp = keras.Input((None, FEATURES), name="frames")
    h = L.Conv1D(8, 4, padding="causal", dilation_rate=3, name="c")(inp)
    h = L.LayerNormalization(name="ln")(h)
    h = L.SimpleRNN(8, return_sequences=True, name="r")(h)
    return keras.Model(inp, L.Add(name="add")([h, L.Dense(8, name="skip")(inp)]))


NETS = [conv_net, rnn_net, gated_net, every_frame_net]


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("make", NETS, ids=lambda f: f.__name__)
def test_rate_conversion_equals_the_original_on_sequences(make, steps):
    # With several steps per frame, layers over time read the same step of earlier
    # frames (dilations and recurrent delays times `steps`): with rate neurons every
    # step of a frame computes the original's value of that frame.
    model = make()
    snn = ksc.convert(model, temporal=True, steps_per_frame=steps)
    x = _x()
    assert ksc.verify(model, snn, x) < 1e-5
    # Streamed in chunks (state kept), the same outputs as one predict.
    stream = ksc.Stream(snn)
    chunks = np.concatenate([stream(x[:, t : t + 5]) for t in range(0, FRAMES, 5)], axis=1)
    whole = ksc.process_chunk(snn, x, ksc.initial_states(snn, len(x)))[0]
    np.testing.assert_array_equal(chunks, keras.ops.convert_to_numpy(whole))
    # The running output at the last frame is the original's (every frame where the
    # original returns every frame).
    expected = model.predict(x, verbose=0)
    last = chunks[:, -1] if expected.ndim == 2 else chunks
    np.testing.assert_allclose(last, expected, rtol=1e-5, atol=1e-5)


def test_a_causal_convolution_streamed_frame_by_frame_is_exact():
    keras.utils.set_random_seed(4)
    inp = keras.Input((None, FEATURES))
    out = L.Conv1D(5, 3, padding="causal", dilation_rate=2, name="c")(inp)
    model = keras.Model(inp, out)
    snn = ksc.convert(model, temporal=True)
    assert isinstance(snn.get_layer("c"), ksc.layers.CausalConv1D)
    x = _x()
    stream = ksc.Stream(snn)
    frames = np.concatenate([stream(x[:, t : t + 1]) for t in range(FRAMES)], axis=1)
    np.testing.assert_allclose(frames, model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(frames, snn.predict(x, verbose=0))


@pytest.mark.tensorflow_only
def test_exported_step_takes_one_frame(tmp_path):
    import tensorflow as tf

    model = rnn_net()
    snn = ksc.convert(model, temporal=True)
    x = _x()
    served = tf.saved_model.load(ksc.export(snn, tmp_path / "served"))
    state = served.signatures["initial_state"](batch_size=tf.constant(len(x)))
    outputs = []
    for t in range(FRAMES):
        result = served.signatures["step"](frames=tf.constant(x[:, t]), **state)
        outputs.append(result.pop(next(k for k in result if not k.startswith("state_"))).numpy())
        state = result
    np.testing.assert_allclose(outputs[-1], model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_spiking_simple_rnn_applies_its_recurrent_weights_to_spikes():
    model = rnn_net()
    x = _x()
    converter = ksc.Converter(
        model,
        temporal=True,
        swap_activations={"relu": "spiking_relu"},
        scale_firing_rates=1e5,  # 100 spikes per step for an input of 1: fine coding
    )
    snn = converter.model
    assert sorted(converter.report.spiking_layers) == ["d", "r"]
    recurrence = snn.get_layer("r")
    assert isinstance(recurrence.cell.neuron, ksc.SpikingReLUCell)
    assert recurrence.cell.neuron.spiking
    expected = model.predict(x, verbose=0)
    error = np.abs(snn.predict(x, verbose=0) - expected).max() / np.abs(expected).max()
    assert error < 0.05
    # Its output is spikes: whole counts per step over the scale.
    probe = ksc.probe(snn, ["r"])
    _, spikes = probe.predict(x, verbose=0)
    counts = spikes * 1e5 * 0.001
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)
    # A coarse code is worse: the spikes, not the rates, carry the recurrence.
    coarse = ksc.convert(model, temporal=True, swap_activations={"relu": "spiking_relu"})
    assert np.abs(coarse.predict(x, verbose=0) - expected).max() > 3 * error


def test_reconversion_and_saving(tmp_path):
    model = rnn_net()
    x = _x()
    rate = ksc.convert(model, temporal=True)
    spiking = ksc.convert(rate, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=1e5)
    assert spiking.get_layer("r").cell.neuron.spiking
    assert [layer.name for layer in spiking.layers if isinstance(layer, ksc.TimeReadout)]
    back = ksc.convert(spiking)  # no swap: rate again, the same as the original
    np.testing.assert_allclose(
        back.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )
    spiking.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), spiking.predict(x, verbose=0))


def _refused(layer_fn, match):
    inp = keras.Input((FRAMES, FEATURES))
    model = keras.Model(inp, layer_fn(inp))
    with pytest.raises(ksc.ConversionError, match=match):
        ksc.convert(model, temporal=True)


@pytest.mark.parametrize(
    "layer_fn, match",
    [
        (
            lambda x: L.Conv1D(4, 3, padding="same", name="c")(x),
            r"'c' \(Conv1D\).*padding='causal'",
        ),
        (lambda x: L.Conv1D(4, 3, strides=2, padding="causal", name="c")(x), "frame rate"),
        (lambda x: L.Bidirectional(L.GRU(4), name="bi")(x), r"'bi' \(Bidirectional\).*backwards"),
        (lambda x: L.Flatten(name="flat")(x), r"'flat' \(Flatten\).*per frame"),
        (lambda x: L.LayerNormalization(axis=(1, 2), name="ln")(x), r"'ln'.*include time"),
        (lambda x: L.GRU(4, go_backwards=True, name="g")(x), "go_backwards"),
        (lambda x: keras.ops.mean(x, axis=1, keepdims=True), "ops Mean"),
    ],
    ids=["noncausal", "strides", "bidirectional", "flatten", "norm_time", "backwards", "op"],
)
def test_layers_that_need_other_frames_are_refused_with_the_reason(layer_fn, match):
    _refused(layer_fn, match)


def test_bad_temporal_options():
    inp = keras.Input((FEATURES,))
    flat = keras.Model(inp, L.Dense(2)(inp))
    with pytest.raises(ksc.ConversionError, match=r"\(batch, time, \.\.\.\)"):
        ksc.convert(flat, temporal=True)
    with pytest.raises(ValueError, match="choose one"):
        ksc.convert(rnn_net(), temporal=True, constant_input=True, n_steps=4)
    with pytest.raises(ksc.ConversionError, match="temporal=True"):
        ksc.convert(rnn_net())  # a recurrent layer without temporal=True
    with pytest.raises(TypeError, match="temporal"):
        ksc.convert(rnn_net(), temporal="yes")
    with pytest.raises(ValueError, match="steps_per_frame"):
        ksc.convert(rnn_net(), steps_per_frame=2)  # without temporal=True
    with pytest.raises(ValueError, match="steps_per_frame"):
        ksc.convert(rnn_net(), temporal=True, steps_per_frame=0)


def test_more_steps_per_frame_code_each_frame_finer():
    # Spiking ReLUs take each frame's ReLU (a negative voltage rises to zero at the
    # frame's start) and integrate its input over its steps: with k steps a frame's value
    # is coded in k chances to spike, so the error of the spiking SimpleRNN net falls as
    # k grows (measured on this net, 64 sequences: 1.52, 0.52, 0.16, 0.04 mean relative
    # error at k = 1, 4, 16, 64).
    model = rnn_net()
    x = _x(n=16)
    expected = model.predict(x, verbose=0)
    errors = []
    for steps in (1, 4, 16):
        snn = ksc.convert(
            model,
            temporal=True,
            steps_per_frame=steps,
            swap_activations={"relu": "spiking_relu"},
            scale_firing_rates=1000.0,  # one spike per step for an activation of 1
        )
        assert snn.get_layer("r").delay == steps
        out = snn.predict(x, verbose=0)
        errors.append(np.abs(out - expected).mean() / np.abs(expected).mean())
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.25
    # The same frames streamed one at a time, and the engine alone runs it.
    stream = ksc.Stream(snn)
    frames = np.concatenate([stream(x[:, t : t + 1]) for t in range(FRAMES)], axis=1)
    np.testing.assert_array_equal(frames[:, -1], out)
    layerwise = ksc.convert(
        model, temporal=True, swap_activations={"relu": "spiking_relu"}, steps_per_frame=2
    )
    layerwise.execution = "layers"
    with pytest.raises(ValueError, match="temporal model"):
        layerwise.predict(x, verbose=0)


def test_quantization_aware_simple_rnn_spikes_its_quantized_ann_exactly(tmp_path):
    # `quantize_activations` quantizes a SimpleRNN's ReLU inside the recurrence (a
    # `QuantizedSimpleRNNCell`), so its threshold trains with the rest; converted with
    # `levels` steps a frame, spiking ReLUs with negative spikes (which take back a spike
    # fired too early, and clip at the threshold as the QuantizedReLU does) compute the
    # quantized network exactly.
    model = rnn_net()
    x = _x(n=32)
    q = ksc.quantize_activations(model, levels=4, x=x)
    rnn = q.get_layer("r")
    assert isinstance(rnn.cell, ksc.QuantizedSimpleRNNCell)
    assert "threshold" in [w.name for w in rnn.trainable_weights]
    expected = q.predict(x, verbose=0)
    assert np.abs(expected - model.predict(x, verbose=0)).max() > 1e-3  # it quantizes
    q.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = np.array(rnn.cell.quantizer.threshold.numpy())
    q.fit(x, np.zeros((32, 4), "float32"), epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(before, rnn.cell.quantizer.threshold.numpy())
    expected = q.predict(x, verbose=0)
    q.save(tmp_path / "q.keras")
    loaded = keras.saving.load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-6)

    rate = ksc.convert(q, temporal=True)
    np.testing.assert_allclose(rate.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    signed = ksc.convert(
        q,
        temporal=True,
        steps_per_frame=4,
        swap_activations={ksc.QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)},
    )
    neuron = signed.get_layer("r").cell.neuron
    assert neuron.spiking and neuron.negative_spikes and neuron.clip is not None
    np.testing.assert_allclose(signed.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    # Without negative spikes a neuron keeps spikes it fired too early and fires past
    # the threshold: the recurrence compounds it (measured 0.47 mean relative error).
    unsigned = ksc.convert(
        q, temporal=True, steps_per_frame=4, swap_activations={ksc.QuantizedReLU: "spiking_relu"}
    )
    error = np.abs(unsigned.predict(x, verbose=0) - expected).mean() / np.abs(expected).mean()
    assert error > 0.05


def test_firing_rates_of_a_spiking_simple_rnn():
    model = rnn_net()
    x = _x(n=8)
    snn = ksc.convert(
        model, temporal=True, swap_activations={"relu": "spiking_relu"}, scale_firing_rates=100.0
    )
    rates = firing_rates(snn, x)
    assert sorted(rates) == ["d_neuron", "r"]
    # The recurrent layer's output is its neurons' over the scale: rates in Hz are
    # whole spike counts per step over dt.
    _, out = ksc.probe(snn, ["r"]).predict(x, verbose=0)
    counts = out * 100.0 * 0.001
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)
    per_neuron = counts.mean(axis=1) / 0.001
    assert rates["r"]["mean"] == pytest.approx(per_neuron.mean(), rel=1e-5)
    assert rates["r"]["max"] == pytest.approx(per_neuron.max(), rel=1e-5)
    assert rates["r"]["mean"] > 0


def test_energy_counts_causal_convolutions_and_recurrent_layers():
    x = _x(n=4)
    snn = ksc.convert(
        rnn_net(),
        temporal=True,
        swap_activations={"relu": "spiking_relu"},
        scale_firing_rates=100.0,
    )
    report = ksc.estimate_energy(snn, x)
    rows = {row.name: row for row in report.rows}
    _, d, r = ksc.probe(snn, ["d", "r"]).predict(x, verbose=0)
    d_spikes = (d * 0.001).sum(axis=(1, 2)).mean()  # the neuron's output (Hz) * dt
    r_spikes = (r * 0.1).sum(axis=(1, 2)).mean()  # the layer's output * scale * dt
    assert r_spikes > 0 and d_spikes > 0
    # A spiking SimpleRNN: 8 neurons; each spike into it or of its own reaches its 8 units.
    assert rows["r"].type == "SimpleRNN" and rows["r"].neurons == 8 and rows["r"].spiking
    assert rows["r"].spikes == pytest.approx(r_spikes, rel=1e-5)
    assert rows["r"].synops == pytest.approx(8 * (d_spikes + r_spikes), rel=1e-5)
    assert rows["r"].dense_macs == 0 and rows["r"].macs == FRAMES * (8 + 8) * 8
    assert rows["out"].synops == pytest.approx(4 * r_spikes, rel=1e-5)
    # Rate layers over time compute every connection every step: a causal convolution
    # on the inputs (3 taps x 6 features x 8 filters), a GRU (3 gates) on the spikes. The
    # ANN's MACs are those of its pass over every frame.
    steps = FRAMES
    conv = ksc.estimate_energy(ksc.convert(conv_net(), temporal=True), x)
    c0 = next(row for row in conv.rows if row.name == "c0")
    assert c0.type == "Conv1D" and c0.macs == FRAMES * 3 * 6 * 8
    assert c0.dense_macs == steps * 3 * 6 * 8
    gated = ksc.convert(gated_net(), temporal=True)
    gru = next(row for row in ksc.estimate_energy(gated, x).rows if row.name == "gru")
    assert gru.type == "GRU" and gru.macs == FRAMES * 3 * (6 + 8) * 8
    assert gru.dense_macs == steps * 3 * (6 + 8) * 8


def test_calibrate_takes_a_recurrent_layers_activations_at_every_frame():
    # The SimpleRNN returns its last frame only; its ReLU fires at every frame, and the
    # neuron that replaces it must code all of them.
    model = rnn_net()
    x = _x(n=32)
    scales = ksc.calibrate(model, x, percentile=99.0)
    rnn = model.get_layer("r")
    every_frame = keras.Model(
        model.inputs, L.RNN(rnn.cell, return_sequences=True)(model.get_layer("d").output)
    )
    values = every_frame.predict(x, verbose=0).reshape(-1, 8)
    expected = np.percentile(values, 99.0, axis=0)
    # (A unit silent at the percentile takes its layer's value instead: see `calibrate`.)
    firing = expected > 0
    assert firing.sum() >= 4
    thresholds = 1 / (np.asarray(scales["r"]) * 0.001)
    np.testing.assert_allclose(thresholds[firing], expected[firing], rtol=1e-4)
    last_frame = np.percentile(values.reshape(32, FRAMES, 8)[:, -1], 99.0, axis=0)
    assert np.abs(last_frame - expected).max() > 0.01 * expected.max()


def test_energy_counts_every_step_of_a_frame():
    # Quantization-aware with 4 levels, spiking at 1, 2 or 4 steps a frame (at most 4, 2 or
    # 1 spikes a step) gives the same outputs with the same spikes; the layers compute
    # every step, and the ANN's MACs are those of its pass over every frame.
    model = rnn_net()
    x = _x(n=8)
    q = ksc.quantize_activations(model, levels=4, x=x)
    reports = {}
    for k in (1, 2, 4):
        snn = ksc.convert(
            q,
            temporal=True,
            steps_per_frame=k,
            swap_activations={ksc.QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)},
            scale_firing_rates=4 / k,
        )
        reports[k] = ksc.estimate_energy(snn, x)
    rows = {k: {row.name: row for row in report.rows} for k, report in reports.items()}
    for k in (2, 4):
        assert reports[k].n_steps == FRAMES * k
        for name in ("d", "r"):
            assert rows[k][name].spikes == pytest.approx(rows[1][name].spikes, rel=1e-5)
            assert rows[k][name].synops == pytest.approx(rows[1][name].synops, rel=1e-5)
        assert rows[k]["d"].dense_macs == k * rows[1]["d"].dense_macs == k * FRAMES * 6 * 8
        assert rows[k]["r"].macs == rows[1]["r"].macs == FRAMES * (8 + 8) * 8
    assert rows[1]["r"].spikes > 0
