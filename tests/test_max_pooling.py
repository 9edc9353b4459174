"""Max pooling of firing rates: `AccumulatedMaxPooling` and `convert(max_pooling=...)`."""

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.layers import AccumulatedMaxPooling

L = keras.layers
T = 7


def cumulative_mean(x):
    return np.cumsum(x, axis=1) / np.arange(1, x.shape[1] + 1).reshape(
        (1, -1) + (1,) * (x.ndim - 2)
    )


@pytest.mark.parametrize(
    "pooling, shape",
    [
        (L.MaxPooling2D(2), (6, 6, 3)),
        (L.MaxPooling2D(3, strides=2, padding="same"), (7, 7, 2)),
        (L.MaxPooling1D(2), (8, 3)),
        (L.GlobalMaxPooling2D(), (5, 5, 4)),
    ],
)
def test_mean_output_is_the_max_pooling_of_the_mean_input_at_every_step(pooling, shape):
    rng = np.random.default_rng(0)
    spikes = (rng.uniform(size=(3, T, *shape)) < 0.3).astype("float32") * 1000.0
    out = keras.ops.convert_to_numpy(AccumulatedMaxPooling(pooling)(spikes))
    means = cumulative_mean(spikes)
    expected = np.stack(
        [keras.ops.convert_to_numpy(pooling(means[:, t])) for t in range(T)], axis=1
    )
    np.testing.assert_allclose(cumulative_mean(out), expected, rtol=1e-5, atol=1e-3)
    # spikes in, spikes out (whole multiples of 1000), none negative
    np.testing.assert_allclose(out / 1000.0, np.round(out / 1000.0), atol=1e-4)
    assert out.min() >= 0
    # pooling each step's spikes overcounts: the mean of per-step maxima
    per_step = np.stack(
        [keras.ops.convert_to_numpy(pooling(spikes[:, t])) for t in range(T)], axis=1
    )
    assert cumulative_mean(per_step)[:, -1].sum() > expected[:, -1].sum()


def pooled_net():
    inp = keras.Input((12, 12, 1))
    h = L.Conv2D(8, 3, activation="relu", padding="same", name="conv1")(inp)
    h = L.MaxPooling2D(2, name="pool")(h)
    h = L.Conv2D(8, 3, activation="relu", name="conv2")(h)
    h = L.GlobalMaxPooling2D(name="gmp")(h)
    model = keras.Model(inp, L.Dense(3, name="out")(h))
    keras.utils.set_random_seed(0)
    model.set_weights(
        [np.random.default_rng(i).normal(0, 0.4, w.shape) for i, w in enumerate(model.weights)]
    )
    x = np.random.default_rng(0).uniform(size=(32, 12, 12, 1)).astype("float32")
    return model, x


def spiking(model, x, **options):
    swap = {"relu": ksc.SpikingReLU(negative_spikes=True)}
    return ksc.Converter(
        model, swap_activations=swap, scale_firing_rates=ksc.calibrate(model, x), **options
    )


def test_spiking_conversion_pools_rates_and_converges_where_per_step_does_not():
    model, x = pooled_net()
    ann = model.predict(x, verbose=0)
    # rate networks keep per-step max pooling: exact on any input
    rate = ksc.Converter(model, readout="mean")
    assert {r["kind"] for r in rate.report.rows if r["layer"] in ("pool", "gmp")} == {"rate"}
    np.testing.assert_allclose(rate.model.predict(ksc.tile_time(x, 3), verbose=0), ann, atol=1e-5)
    accumulated = spiking(model, x, readout="mean")
    rows = {r["layer"]: r for r in accumulated.report.rows}
    assert rows["pool"]["kind"] == rows["gmp"]["kind"] == "pooling"
    per_step = spiking(model, x, readout="mean", max_pooling="per_step").model
    errors = {
        name: [np.abs(snn.predict(ksc.tile_time(x, t), verbose=0) - ann).mean() for t in (2, 32)]
        for name, snn in (("accumulated", accumulated.model), ("per_step", per_step))
    }
    assert errors["accumulated"][1] < errors["accumulated"][0] / 4
    assert errors["per_step"][1] > 4 * errors["accumulated"][1]


def test_accumulated_max_pooling_runs_on_every_path(tmp_path):
    model, x = pooled_net()
    snn = spiking(model, x).model
    seq = ksc.tile_time(x[:4], 6)
    fused = snn.predict(seq, verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(snn(seq)), fused, atol=1e-6)
    stream = ksc.Stream(snn)
    chunks = [keras.ops.convert_to_numpy(stream(seq[:, a:b])) for a, b in ((0, 2), (2, 6))]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), fused)
    snn.save(tmp_path / "snn.keras")
    np.testing.assert_array_equal(
        keras.saving.load_model(tmp_path / "snn.keras").predict(seq, verbose=0), fused
    )
    layout = ksc.state_layout(snn)
    totals = [spec for spec in layout.values() if spec.kind == "total"]
    assert [spec.shape[1:] for spec in totals] == [(12, 12, 8), (4, 4, 8)]
    # energy: the layers after a pooling see its pooled shape
    per_step = spiking(model, x, max_pooling="per_step").model
    pooled = ksc.estimate_energy(snn, seq)
    plain = ksc.estimate_energy(per_step, seq)
    assert pooled.macs == plain.macs and pooled.neurons == plain.neurons
    # re-converting follows the option now given
    back = ksc.Converter(snn, swap_activations={"relu": "spiking_relu"}, max_pooling="per_step")
    assert not any(isinstance(layer, AccumulatedMaxPooling) for layer in back.model.layers)
    again = ksc.convert(
        snn,
        swap_activations={"relu": ksc.SpikingReLU(negative_spikes=True)},
        scale_firing_rates=ksc.calibrate(model, x),
    )
    np.testing.assert_array_equal(again.predict(seq, verbose=0), fused)


@pytest.mark.tensorflow_only
def test_exported_step_signature_pools_as_the_model_does(tmp_path):
    import tensorflow as tf

    model, x = pooled_net()
    snn = spiking(model, x).model
    ksc.export(snn, tmp_path / "served")
    served = tf.saved_model.load(str(tmp_path / "served"))
    seq = ksc.tile_time(x[:2], 5)
    name, out = snn.inputs[0].name, snn.output_names[0]
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    steps = []
    for t in range(5):
        result = served.signatures["step"](**{name: tf.constant(seq[:, t])}, **state)
        steps.append(result[out].numpy())
        state = {k: v for k, v in result.items() if k != out}
    np.testing.assert_allclose(np.stack(steps, axis=1), snn.predict(seq, verbose=0), atol=1e-5)


def test_bad_max_pooling_arguments_say_what_to_pass():
    model, _ = pooled_net()
    with pytest.raises(
        ValueError, match="`max_pooling` must be one of.*Received: max_pooling='max'"
    ):
        ksc.convert(model, max_pooling="max")
    with pytest.raises(TypeError, match="max-pooling layer.*AveragePooling2D"):
        AccumulatedMaxPooling(L.AveragePooling2D(2))
