import keras
import numpy as np
import pytest
from keras import ops

from keras_spiking_conv import LowpassSynapse, LowpassSynapseCell
from tests import reference
from tests.helpers import gradient, run_layer_test


def test_layer_contract(rng):
    x = rng.normal(size=(2, 7, 3, 3, 4)).astype("float32")
    run_layer_test(LowpassSynapse, {"tau": 0.01}, x, (2, 7, 3, 3, 4))
    run_layer_test(LowpassSynapse, {"tau": [0.01, 0.02, 0.03, 0.04]}, x, (2, 7, 3, 3, 4))
    run_layer_test(LowpassSynapse, {"return_sequences": False}, x, (2, 3, 3, 4))


@pytest.mark.parametrize("tau", [0.002, 0.05, [0.001, 0.01, 0.1]])
def test_golden_trajectory(rng, tau):
    x = rng.normal(0, 100, (2, 30, 3)).astype("float32")
    out = LowpassSynapse(tau=tau, dt=0.001)(x)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), reference.lowpass(x, tau, 0.001), rtol=1e-5, atol=1e-4
    )


def test_settles_to_constant_input():
    x = np.full((1, 400, 2), 7.0, dtype="float32")
    out = ops.convert_to_numpy(LowpassSynapse(tau=0.01)(x))
    assert out[0, 0, 0] == pytest.approx(7.0 * (1 - np.exp(-0.1)), rel=1e-5)
    np.testing.assert_allclose(out[:, -1], 7.0, rtol=1e-5)


def test_trainable_tau_gets_gradient_and_stays_positive(rng):
    x = rng.uniform(0, 1, (8, 20, 3)).astype("float32")
    y = np.zeros((8, 20, 3), "float32")
    layer = LowpassSynapse(tau=0.01, trainable_tau=True, per_channel=True)
    model = keras.Sequential([keras.Input((20, 3)), layer])
    assert [w.shape for w in layer.trainable_weights] == [(3,)]
    model.compile(keras.optimizers.SGD(10.0), "mse")
    model.fit(x, y, epochs=3, verbose=0)
    tau = ops.convert_to_numpy(layer.trainable_weights[0])
    assert np.all(tau >= 0)
    assert not np.allclose(tau, 0.01)  # it trained
    assert np.all(np.isfinite(ops.convert_to_numpy(model(x))))


def test_fixed_tau_is_not_trainable():
    layer = LowpassSynapse(tau=0.01)
    layer.build((None, 5, 3))
    assert layer.trainable_weights == []


def test_input_gradient(rng):
    x = rng.normal(size=(1, 5, 2)).astype("float32")
    grad = gradient(LowpassSynapse(tau=0.001, dt=0.001), x)
    a = np.exp(-1.0)
    # d sum_t y_t / d x_s = (1 - a) * sum_{k=0}^{T-1-s} a^k
    expected = np.array([(1 - a) * sum(a**k for k in range(5 - s)) for s in range(5)])
    np.testing.assert_allclose(grad[0, :, 0], expected, rtol=1e-5)


def test_streaming_equals_whole_sequence(rng):
    x = rng.normal(0, 10, (2, 10, 4, 4, 2)).astype("float32")
    whole = ops.convert_to_numpy(LowpassSynapse(tau=0.004)(x))
    streaming = LowpassSynapse(tau=0.004, stateful=True)
    chunks = [ops.convert_to_numpy(streaming(x[:, i : i + 3])) for i in range(0, 10, 3)]
    np.testing.assert_allclose(np.concatenate(chunks, axis=1), whole, rtol=1e-6, atol=1e-6)
    streaming.reset_state()
    np.testing.assert_allclose(ops.convert_to_numpy(streaming(x)), whole, rtol=1e-6, atol=1e-6)


def test_cell_in_keras_rnn(rng):
    x = rng.normal(size=(2, 6, 4)).astype("float32")
    out = keras.layers.RNN(LowpassSynapseCell(tau=0.003), return_sequences=True)(x)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), reference.lowpass(x, 0.003, 0.001), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": 0}, r"tau.*> 0.*Received: tau=0"),
        ({"tau": -0.01}, r"tau.*Received: tau=-0.01"),
        ({"tau": [0.01, -1.0]}, r"tau.*Received: tau=-1.0"),
        ({"tau": "slow"}, r"tau.*real number.*Received: tau='slow'"),
        ({"dt": 0}, r"dt.*Received: dt=0"),
        ({"trainable_tau": 1}, r"trainable_tau.*Received: trainable_tau=1"),
    ],
)
def test_bad_arguments_name_argument_and_value(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LowpassSynapse(**kwargs)


def test_per_channel_tau_length_mismatch():
    with pytest.raises(ValueError, match=r"2 values but the input has 3 channels"):
        LowpassSynapse(tau=[0.1, 0.2])(np.zeros((1, 2, 3), "float32"))
