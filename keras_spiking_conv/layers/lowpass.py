"""First-order low-pass synapse: an RNN cell and a sequence layer."""

import keras
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import check_bool, check_number, check_positive_values
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence

PACKAGE = "keras_spiking_conv"

# Smallest time constant a trainable `tau` is clamped to, in seconds.
MIN_TAU = 1e-6


@keras.saving.register_keras_serializable(package=PACKAGE)
class LowpassSynapseCell(FeatureCell):
    """Cell of a first-order low-pass filter with zero-order hold.

    Each step: `y_t = a * y_{t-1} + (1 - a) * x_t` with `a = exp(-dt / tau)`,
    starting from `y = 0`. The DC gain is 1, so a constant input is passed
    through once the filter has settled.

    Args:
        tau: Time constant in seconds, `> 0`: one value, or a sequence with
            one value per channel (last axis). Defaults to `0.005`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        trainable_tau: Whether `tau` is a trainable weight. It is kept
            positive (clamped to at least 1 microsecond). Defaults to `False`.
        per_channel: Learn one `tau` per channel even when `tau` is one value.
            Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: One timestep, shape `(batch, *features)`.
        states: List with the filter state, shape `(batch, *features)`.
    """

    def __init__(self, tau=0.005, dt=0.001, trainable_tau=False, per_channel=False, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.tau = check_positive_values("tau", tau, owner=owner)
        self.dt = check_number("dt", dt, owner=owner, positive=True)
        self.trainable_tau = check_bool("trainable_tau", trainable_tau, owner=owner)
        self.per_channel = check_bool("per_channel", per_channel, owner=owner)

    def build(self, input_shape):
        super().build(input_shape)
        channels = self.feature_shape[-1]
        if isinstance(self.tau, tuple):
            if len(self.tau) != channels:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': `tau` has {len(self.tau)} "
                    f"values but the input has {channels} channels (last axis of "
                    f"{self.feature_shape}). Give one value or one per channel. "
                    f"Received: tau={self.tau}"
                )
            shape, value = (channels,), list(self.tau)
        else:
            shape, value = ((channels,) if self.per_channel else ()), self.tau
        self.tau_weight = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(value),
            trainable=self.trainable_tau,
            constraint=keras.constraints.NonNeg(),
            name="tau",
        )

    def positive_tau(self):
        """`tau`, clamped to at least `MIN_TAU`."""
        return ops.maximum(ops.cast(self.tau_weight, self.compute_dtype), MIN_TAU)

    def decay(self):
        """The per-step decay `exp(-dt / tau)`, with `tau` kept positive."""
        return neurons.lowpass_coefficient(self.positive_tau(), self.dt)

    def call(self, inputs, states):
        output = neurons.lowpass_step(inputs, states[0], self.decay())
        return output, [output]

    def get_config(self):
        tau = list(self.tau) if isinstance(self.tau, tuple) else self.tau
        return {
            **super().get_config(),
            "tau": tau,
            "dt": self.dt,
            "trainable_tau": self.trainable_tau,
            "per_channel": self.per_channel,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class LowpassSynapse(FeatureSequence):
    """First-order low-pass synapse over `(batch, time, *features)`.

    The sequence form of `LowpassSynapseCell` (see it for the equation and the
    filter arguments), for any feature shape.

    Args:
        tau: Time constant in seconds, `> 0`: one value, or one per channel
            (last axis). Defaults to `0.005`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        trainable_tau: Whether `tau` is a trainable weight (kept positive).
            Defaults to `False`.
        per_channel: Learn one `tau` per channel even when `tau` is one value.
            Defaults to `False`.
        return_sequences: Return every step (True) or only the last.
            Defaults to `True`.
        return_state: Also return the final filter state. Defaults to `False`.
        stateful: Keep the final state as the next call's initial state
            (static batch size needed); `reset_state()` sets it back to zero.
            Defaults to `False`.
        unroll: Unroll the time loop (static length only). Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        `(batch, time, *features)`.

    Output shape:
        `(batch, time, *features)`, or `(batch, *features)` if
        `return_sequences=False`; plus the state if `return_state=True`.
    """

    role = "synapse"
    state_kind = "filter"
    cell_class = LowpassSynapseCell
    default_name = "lowpass_synapse"

    def __init__(
        self,
        tau=0.005,
        dt=0.001,
        trainable_tau=False,
        per_channel=False,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = self.cell_class(
            tau=tau,
            dt=dt,
            trainable_tau=trainable_tau,
            per_channel=per_channel,
            name=f"{kwargs.get('name', self.default_name)}_cell",
            dtype=kwargs.get("dtype"),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )

    tau = property(lambda self: self.cell.tau)
    dt = property(lambda self: self.cell.dt)
    trainable_tau = property(lambda self: self.cell.trainable_tau)
    per_channel = property(lambda self: self.cell.per_channel)

    def get_config(self):
        return {
            **super().get_config(),
            **{
                key: self.cell.get_config()[key]
                for key in ("tau", "dt", "trainable_tau", "per_channel")
            },
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlphaSynapseCell(LowpassSynapseCell):
    """Cell of the alpha filter `1 / (tau s + 1)^2` with zero-order hold (Nengo's
    `Alpha(tau)`, as `nengo.Alpha(tau).filt` computes it).

    Its impulse response is `(t / tau^2) exp(-t / tau)`: a spike's effect rises,
    peaks after `tau` and decays, where a low-pass jumps and decays. Two low-passes
    in series, discretized exactly for an input held over each step
    (`neurons.alpha_step`); the DC gain is 1. Its state stacks the two on axis 1.
    The arguments are `LowpassSynapseCell`'s (`tau`, `dt`, `trainable_tau`,
    `per_channel`).

    Call arguments:
        inputs: One timestep, shape `(batch, *features)`.
        states: List with the state, shape `(batch, 2, *features)`.
    """

    @property
    def state_shape(self):
        return None if self.feature_shape is None else (2, *self.feature_shape)

    def initial_state_value(self, batch_size):
        return ops.zeros((batch_size, *self.state_shape), dtype=self.compute_dtype)

    def call(self, inputs, states):
        tau = self.positive_tau()
        first, second = ops.unstack(states[0], axis=1)
        output, state = neurons.alpha_step(
            inputs, (first, second), neurons.lowpass_coefficient(tau, self.dt), self.dt / tau
        )
        return output, [ops.stack(state, axis=1)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlphaSynapse(LowpassSynapse):
    """Alpha synapse over `(batch, time, *features)`: Nengo's `Alpha(tau)`.

    The sequence form of `AlphaSynapseCell`, usable wherever a `LowpassSynapse` is
    (`convert(synapse=AlphaSynapse(0.005))`, by hand after a neuron), with the
    same arguments.

    Args:
        tau: Time constant in seconds, `> 0`: one value, or one per channel.
            Defaults to `0.005`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        trainable_tau: Whether `tau` is a trainable weight (kept positive).
            Defaults to `False`.
        per_channel: Learn one `tau` per channel even when `tau` is one value.
            Defaults to `False`.
        **kwargs: `keras.layers.RNN` and base layer keyword arguments, as
            `LowpassSynapse` takes them.

    Input shape:
        `(batch, time, *features)`.

    Output shape:
        `(batch, time, *features)`, or `(batch, *features)` if
        `return_sequences=False`.
    """

    cell_class = AlphaSynapseCell
    default_name = "alpha_synapse"
