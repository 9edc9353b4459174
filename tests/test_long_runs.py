"""Long simulations: over 10,000 steps voltages stay in [0, 1) and spike counts stay exact.

Why the exact references use dyadic numbers. A neuron adds `max(x, 0) * dt` to a voltage
in [0, 1) every step, in float32. With `dt = 0.001` neither `dt` nor `x * dt` is exact in
binary, and each step's add rounds to the voltage's ulp (2**-23 just above 1), so after
10,000 steps the float32 voltage may be ~1e-3 away from the real-number one: a spike can
come a step early or late, and the total count can differ by one from a float64
reference. A float32 *reference* is worse, not better: `floor(cumsum(x * dt))` sums the
whole drive, which grows to thousands, whose ulp (~1e-4 .. 1e-3) swamps the voltage. So:

- exact tests use `dt = 2**-10`, integer inputs (so integer weights and pre-activations)
  and a dyadic initial voltage: every float32 operation of the neuron is then exact
  (values are multiples of 2**-10 far below 2**14), and the reference is integer
  arithmetic in units of 2**-10;
- with `dt = 0.001` and real-valued inputs the tests assert what float32 guarantees:
  voltages in [0, 1), whole spikes every step, and a total count within one spike of
  the float64 reference.

Runs go through `predict` (one compiled loop); features are kept to a handful.
"""

import keras
import numpy as np

import keras_spiking_conv as ksc
from keras_spiking_conv import SpikingReLU, SpikingReLUCell

T = 10_000
DT = 2.0**-10
UNIT = 2**10  # voltages in units of DT: the reference is integer arithmetic


class VoltageCell(SpikingReLUCell):
    """The spiking ReLU cell, reporting its voltage after each step as its output."""

    def call(self, inputs, states, training=False):
        _, new_states = super().call(inputs, states, training=training)
        return new_states[0], new_states


def _integer_reference(k, v0_units):
    """Exact spikes per step and voltage after each step (units of 2**-10) for integer
    inputs `k` (batch, time, features): `V_t = v0 + sum_{s <= t} max(k_s, 0)`."""
    total = v0_units + np.cumsum(np.maximum(k, 0), axis=1, dtype=np.int64)
    fired = total // UNIT  # spikes so far (none before the first step: v0 < 1)
    return np.diff(fired, axis=1, prepend=0), total % UNIT


def _predict(model, x):
    return model.predict(x, batch_size=len(x), verbose=0)


def _integer_inputs(seed, low, high, features=3):
    return np.random.default_rng(seed).integers(low, high, (2, T, features))


def test_ten_thousand_steps_exact_counts_and_voltages():
    # Drive from -600 to 3000 per second: up to ~3 spikes per step, negative steps too.
    k = _integer_inputs(0, -600, 3000)
    inp = keras.Input((None, 3))
    spikes = SpikingReLU(dt=DT, initial_voltage=0.375)(inp)
    voltage = keras.layers.RNN(VoltageCell(dt=DT, initial_voltage=0.375), return_sequences=True)
    model = keras.Model(inp, [spikes, voltage(inp)])
    out, volts = _predict(model, k.astype("float32"))

    counts, volt_units = _integer_reference(k, int(0.375 * UNIT))
    assert counts.max() >= 2 and counts.sum() > 50_000  # many spikes, several per step
    np.testing.assert_array_equal(out / UNIT, counts)  # output = n * amplitude / dt
    assert volts.min() >= 0 and volts.max() < 1
    np.testing.assert_array_equal(volts, volt_units / UNIT)


def test_ten_thousand_steps_through_a_converted_model():
    # Integer weights and inputs: Dense outputs are exact integers, hence exact drive.
    rng = np.random.default_rng(1)
    inp = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation="relu", use_bias=False, name="hid")
    out = keras.layers.Dense(2, use_bias=False, name="out")
    model = keras.Model(inp, out(hidden(inp)))
    hidden.set_weights([rng.integers(-2, 4, (4, 3)).astype("float32")])
    out.set_weights([rng.integers(-2, 3, (3, 2)).astype("float32")])
    snn = ksc.convert(
        model,
        # rectified input, given: a template's unset `rectify_input` is the converter's
        swap_activations={"relu": SpikingReLU(initial_voltage=0.5, rectify_input=True)},
        dt=DT,
    )
    probed = ksc.probe(snn, ["hid"])
    k = _integer_inputs(2, 0, 300, features=4)
    y, activity = _predict(probed, k.astype("float32"))

    drive = k @ hidden.get_weights()[0].astype(np.int64)
    counts, _ = _integer_reference(drive, UNIT // 2)
    assert counts.sum() > 10_000
    np.testing.assert_array_equal(activity / UNIT, counts)
    np.testing.assert_array_equal(y, (counts * UNIT) @ out.get_weights()[0].astype(np.int64))


def test_ten_thousand_steps_at_a_real_valued_dt_stay_within_one_spike():
    rng = np.random.default_rng(3)
    x = rng.uniform(-200, 900, (2, T, 3)).astype("float32")  # up to ~1 spike per step
    inp = keras.Input((None, 3))
    spikes, final = SpikingReLU(seed=7, return_state=True)(inp)
    voltage = keras.layers.RNN(VoltageCell(seed=7), return_sequences=True)(inp)
    out, v_final, volts = _predict(keras.Model(inp, [spikes, final, voltage]), x)

    n = out.astype(np.float64) / 1000  # output = n * amplitude / dt
    np.testing.assert_array_equal(n, np.rint(n))  # whole spikes at every step
    assert volts.min() >= 0 and volts.max() < 1
    np.testing.assert_array_equal(v_final, volts[:, -1])
    v0 = np.random.default_rng(7).uniform(0, 1, 3).astype("float32").astype(np.float64)
    exact = np.floor(v0 + (np.maximum(x.astype(np.float64), 0) * 0.001).sum(axis=1))
    assert np.abs(n.sum(axis=1) - exact).max() <= 1
