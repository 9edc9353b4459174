"""Spike encoders: a static input (intensities in [0, 1]) as spikes over time.

Both encoders fire at `x * max_rate` Hz for an input `x` clipped to [0, 1],
and scale each spike so that the output's mean over time is the input: a
network trained on `x` reads the spike train as `x`. Inputs are
`(batch, time, *features)` (hold a static input with `tile_time`).
"""

import keras
from keras import ops

from keras_spiking_conv._validation import check_number, check_seed
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence, Recorded

PACKAGE = "keras_spiking_conv"


def _check_rate(max_rate, dt, owner, at_most_one_per_step):
    max_rate = check_number("max_rate", max_rate, owner=owner, positive=True)
    dt = check_number("dt", dt, owner=owner, positive=True)
    if at_most_one_per_step and max_rate * dt > 1.0:
        raise ValueError(
            f"{owner}: `max_rate` {max_rate:g} Hz is above 1 / dt = {1.0 / dt:g} Hz: a "
            "Poisson encoder fires at most one spike per step. Lower `max_rate` or `dt`."
        )
    return max_rate, dt


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegularEncoderCell(FeatureCell):
    """Deterministic rate coding: an integrator fires whenever its phase passes 1.

    `phase += clip(x, 0, 1) * max_rate * dt; n = floor(phase); phase -= n`;
    the output is `n / (max_rate * dt)`. The phase starts at 0.5, so the count
    after `t` steps is the expected count rounded.

    Args:
        max_rate: Rate for an input of 1, in Hz (> 0).
        dt: Timestep in seconds (> 0).
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, max_rate=100.0, dt=0.001, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.max_rate, self.dt = _check_rate(max_rate, dt, owner, at_most_one_per_step=False)

    def initial_state_value(self, batch_size):
        return ops.full((batch_size, *self.feature_shape), 0.5, dtype=self.compute_dtype)

    def call(self, inputs, states):
        phase = states[0] + ops.clip(inputs, 0.0, 1.0) * (self.max_rate * self.dt)
        spikes = ops.floor(phase)
        return spikes / (self.max_rate * self.dt), [phase - spikes]

    def get_config(self):
        return {**super().get_config(), "max_rate": self.max_rate, "dt": self.dt}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegularEncoder(FeatureSequence):
    """Deterministic (regular) rate coding of `(batch, time, *features)` intensities.

    The sequence form of `RegularEncoderCell` (see it for the equations). Its
    state, the phase, makes it streaming-friendly: chunks continue the spike
    train, and `state_layout` lists it like a neuron's voltage.

    Args:
        max_rate: Rate for an input of 1, in Hz. Defaults to `100.0`.
        dt: Timestep in seconds. Defaults to `0.001`.
        **kwargs: `keras.layers.RNN` and base layer keyword arguments.
    """

    role = "state"
    state_kind = "phase"

    def __init__(self, max_rate=100.0, dt=0.001, **kwargs):
        cell = RegularEncoderCell(max_rate, dt, dtype=kwargs.get("dtype"))
        super().__init__(cell, **kwargs)

    max_rate = property(lambda self: self.cell.max_rate)
    dt = property(lambda self: self.cell.dt)

    def get_config(self):
        return {**super().get_config(), "max_rate": self.max_rate, "dt": self.dt}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PoissonEncoder(Recorded, keras.layers.Layer):
    """Poisson rate coding of `(batch, time, *features)` intensities, seeded.

    At each step and feature, a spike with probability
    `clip(x, 0, 1) * max_rate * dt` (at most one per step), output as
    `1 / (max_rate * dt)`. The same seed gives the same spikes; a layer's
    random stream continues across calls (chunks of a stream get fresh
    spikes), and a new layer with the seed starts it again.

    Args:
        max_rate: Rate for an input of 1, in Hz; at most `1 / dt`. Defaults to `100.0`.
        dt: Timestep in seconds. Defaults to `0.001`.
        seed: An integer (required: spikes must be reproducible).
        **kwargs: Base layer keyword arguments.
    """

    role = "other"

    def __init__(self, max_rate=100.0, dt=0.001, seed=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.max_rate, self.dt = _check_rate(max_rate, dt, owner, at_most_one_per_step=True)
        if seed is None:
            raise ValueError(
                f"{owner}: `seed` is required (an integer), so that its spikes can be "
                "reproduced. Pass e.g. PoissonEncoder(max_rate, seed=0)."
            )
        self.seed = check_seed("seed", seed, owner=owner)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, inputs):
        p = ops.clip(inputs, 0.0, 1.0) * (self.max_rate * self.dt)
        u = keras.random.uniform(ops.shape(inputs), dtype=inputs.dtype, seed=self.seed_generator)
        return ops.cast(u < p, inputs.dtype) / (self.max_rate * self.dt)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "max_rate": self.max_rate,
            "dt": self.dt,
            "seed": self.seed,
        }
