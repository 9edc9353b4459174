"""Spike encoders: a static input (intensities in [0, 1]) as spikes over time.

Both encoders fire at `x / max_value * max_rate` Hz for an input `x` clipped to
`[0, max_value]`, and scale each spike (to `max_value / (max_rate * dt)`) so that
the output's mean over time is the input: a network trained on `x` reads the
spike train as `x`. Inputs are
`(batch, time, *features)` (hold a static input with `tile_time`).
"""

import keras
from keras import ops

from keras_spiking_conv._validation import check_number, check_seed
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence

PACKAGE = "keras_spiking_conv"


class EncoderCell(FeatureCell):
    """Base of the encoder cells: checked `max_rate`, `dt` and `max_value`.

    Args:
        max_rate: Rate for an input of `max_value`, in Hz (> 0).
        dt: Timestep in seconds (> 0).
        max_value: The input that fires at `max_rate` (> 0).
        **kwargs: Base layer keyword arguments.
    """

    at_most_one_spike_per_step = False

    def __init__(self, max_rate=100.0, dt=0.001, max_value=1.0, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.max_rate = check_number("max_rate", max_rate, owner=owner, positive=True)
        self.dt = check_number("dt", dt, owner=owner, positive=True)
        self.max_value = check_number("max_value", max_value, owner=owner, positive=True)
        if self.at_most_one_spike_per_step and self.max_rate * self.dt > 1.0:
            raise ValueError(
                f"{owner}: `max_rate` {self.max_rate:g} Hz is above 1 / dt = "
                f"{1.0 / self.dt:g} Hz: a Poisson encoder fires at most one spike per "
                "step. Lower `max_rate` or `dt`."
            )

    @property
    def amplitude(self):
        """The value of one spike: `max_value / (max_rate * dt)`."""
        return self.max_value / (self.max_rate * self.dt)

    def arguments(self):
        """The encoder's own arguments (its sequence layer's config adds them too)."""
        return {"max_rate": self.max_rate, "dt": self.dt, "max_value": self.max_value}

    def get_config(self):
        return {**super().get_config(), **self.arguments()}


class Encoder(FeatureSequence):
    """Base of the encoder layers: a `FeatureSequence` whose arguments are its cell's."""

    role = "state"

    max_rate = property(lambda self: self.cell.max_rate)
    dt = property(lambda self: self.cell.dt)
    max_value = property(lambda self: self.cell.max_value)

    def get_config(self):
        return {**super().get_config(), **self.cell.arguments()}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegularEncoderCell(EncoderCell):
    """Deterministic rate coding: an integrator fires whenever its phase passes 1.

    `phase += clip(x / max_value, 0, 1) * max_rate * dt; n = floor(phase);
    phase -= n`; the output is `n * max_value / (max_rate * dt)`. The phase
    starts at 0.5, so the count after `t` steps is the expected count rounded.

    Args:
        max_rate: Rate for an input of `max_value`, in Hz (> 0).
        dt: Timestep in seconds (> 0).
        max_value: The input that fires at `max_rate` (> 0).
        **kwargs: Base layer keyword arguments.
    """

    def initial_state_value(self, batch_size):
        return ops.full((batch_size, *self.feature_shape), 0.5, dtype=self.compute_dtype)

    def call(self, inputs, states):
        fraction = ops.clip(inputs / self.max_value, 0.0, 1.0)
        phase = states[0] + fraction * (self.max_rate * self.dt)
        spikes = ops.floor(phase)
        return spikes * self.amplitude, [phase - spikes]


@keras.saving.register_keras_serializable(package=PACKAGE)
class RegularEncoder(Encoder):
    """Deterministic (regular) rate coding of `(batch, time, *features)` intensities.

    The sequence form of `RegularEncoderCell` (see it for the equations). Its
    state, the phase, makes it streaming-friendly: chunks continue the spike
    train, and `state_layout` lists it like a neuron's voltage.

    Args:
        max_rate: Rate for an input of `max_value`, in Hz. Defaults to `100.0`.
        dt: Timestep in seconds. Defaults to `0.001`.
        max_value: The input that fires at `max_rate` (e.g. `255.0` for raw
            pixels). Defaults to `1.0`.
        **kwargs: `keras.layers.RNN` and base layer keyword arguments.
    """

    state_kind = "phase"

    def __init__(self, max_rate=100.0, dt=0.001, max_value=1.0, **kwargs):
        # A phase integrated in float16/bfloat16 drifts: float32 unless asked otherwise.
        kwargs.setdefault("dtype", "float32")
        cell = RegularEncoderCell(max_rate, dt, max_value, dtype=kwargs.get("dtype"))
        super().__init__(cell, **kwargs)


# A 32-bit integer hash (Chris Wellons' "lowbias32"): counter-based random numbers,
# so that a spike depends only on (seed, step, sample, feature), not on a random
# generator's state: the same inside a compiled loop over time on every backend.
_HASH_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)


def _int32(value):
    """A uint32 bit pattern as the int32 of the same bits."""
    return (value & 0xFFFFFFFF ^ 0x80000000) - 0x80000000


def _shift_right(x, bits):
    """Logical (unsigned) right shift of int32 tensors."""
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _hash(x):
    """lowbias32 on int32 tensors (multiplication wraps modulo 2**32)."""
    x = ops.bitwise_xor(x, _shift_right(x, 16))
    x = ops.multiply(x, ops.convert_to_tensor(_int32(_HASH_MULTIPLIERS[0]), dtype="int32"))
    x = ops.bitwise_xor(x, _shift_right(x, 15))
    x = ops.multiply(x, ops.convert_to_tensor(_int32(_HASH_MULTIPLIERS[1]), dtype="int32"))
    return ops.bitwise_xor(x, _shift_right(x, 16))


def hash_uniform(seed, step, batch_size, feature_shape):
    """Uniform numbers in [0, 1) for each sample and feature of one step.

    `hash(hash(hash(hash(seed) ^ step) ^ sample) ^ feature)`, its top 24 bits
    over 2**24: a function of its arguments only (no generator state).

    Args:
        seed: An integer.
        step: int32 tensor `(batch,)`, the step of each sample's sequence.
        batch_size: The batch size.
        feature_shape: The shape of one sample's features.

    Returns:
        float32 tensor `(batch_size, *feature_shape)`.
    """
    key = _hash(ops.convert_to_tensor(_int32(seed), dtype="int32"))
    ones = (1,) * len(feature_shape)
    x = _hash(ops.bitwise_xor(ops.reshape(step, (-1, *ones)), key))
    sample = ops.reshape(ops.arange(batch_size, dtype="int32"), (-1, *ones))
    x = _hash(ops.bitwise_xor(x, sample))
    n = 1
    for d in feature_shape:
        n *= d
    feature = ops.reshape(ops.arange(n, dtype="int32"), (1, *feature_shape))
    x = _hash(ops.bitwise_xor(x, feature))
    return ops.cast(_shift_right(x, 8), "float32") / float(1 << 24)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PoissonEncoderCell(EncoderCell):
    """Poisson rate coding, one step: a spike with probability
    `clip(x / max_value, 0, 1) * max_rate * dt`, output as
    `max_value / (max_rate * dt)`.

    The random numbers are a hash of (seed, step, sample, feature)
    (`hash_uniform`): the state counts the steps (exact up to 2**24 steps).

    Args:
        max_rate: Rate for an input of `max_value`, in Hz; at most `1 / dt`.
        dt: Timestep in seconds.
        seed: An integer.
        max_value: The input that fires at `max_rate`.
        **kwargs: Base layer keyword arguments.
    """

    at_most_one_spike_per_step = True

    def __init__(self, max_rate=100.0, dt=0.001, seed=0, max_value=1.0, **kwargs):
        super().__init__(max_rate, dt, max_value, **kwargs)
        self.seed = check_seed("seed", seed, owner=f"{type(self).__name__} '{self.name}'")

    def call(self, inputs, states):
        step = states[0]
        batch = ops.shape(inputs)[0]
        flat_step = ops.cast(ops.reshape(step, (batch, -1))[:, 0], "int32")
        u = hash_uniform(self.seed, flat_step, batch, self.feature_shape)
        x = ops.cast(inputs, "float32")
        p = ops.clip(x / self.max_value, 0.0, 1.0) * (self.max_rate * self.dt)
        spikes = ops.cast(u < p, inputs.dtype)
        return spikes * self.amplitude, [step + 1.0]

    def arguments(self):
        return {**super().arguments(), "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PoissonEncoder(Encoder):
    """Poisson rate coding of `(batch, time, *features)` intensities, seeded.

    At each step and feature, a spike with probability
    `clip(x / max_value, 0, 1) * max_rate * dt` (at most one per step), output
    as `max_value / (max_rate * dt)`. The random numbers are a hash of the
    seed, the step, the sample's row in the batch and the feature: the same
    seed gives the same spikes on every backend, layer by layer, fused, in
    a constant-input model and in a `Stream` (its state counts the steps, so
    chunks continue the spike train) for the same batch layout; another seed
    gives other spikes. The row in the batch, not the sample, picks the noise:
    the same row of every batch (and epoch) gets the same noise, and a sample's
    spikes depend on where `batch_size` puts it (shuffle training data).

    Args:
        max_rate: Rate for an input of `max_value`, in Hz; at most `1 / dt`.
            Defaults to `100.0`.
        dt: Timestep in seconds. Defaults to `0.001`.
        seed: An integer (required: spikes must be reproducible).
        max_value: The input that fires at `max_rate` (e.g. `255.0` for raw
            pixels). Defaults to `1.0`.
        **kwargs: `keras.layers.RNN` and base layer keyword arguments.
    """

    state_kind = "step"

    def __init__(self, max_rate=100.0, dt=0.001, seed=None, max_value=1.0, **kwargs):
        if seed is None:
            raise ValueError(
                f"{type(self).__name__} '{kwargs.get('name', 'poisson_encoder')}': `seed` "
                "is required (an integer), so that its spikes can be reproduced. Pass "
                "e.g. PoissonEncoder(max_rate, seed=0)."
            )
        # A step counter in float16/bfloat16 stops counting: float32 unless asked otherwise.
        kwargs.setdefault("dtype", "float32")
        cell = PoissonEncoderCell(max_rate, dt, seed, max_value, dtype=kwargs.get("dtype"))
        super().__init__(cell, **kwargs)

    seed = property(lambda self: self.cell.seed)
