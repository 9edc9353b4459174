"""The spiking version of any activation (KerasSpiking's `SpikingActivation`, Nengo's
`RegularSpiking`, `StochasticSpiking` and `PoissonSpiking`): an RNN cell and a sequence
layer."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import check_bool, check_number
from keras_spiking_conv.layers.base import NeuronSequence, VoltageCell
from keras_spiking_conv.layers.encoders import hash_uniform

PACKAGE = "keras_spiking_conv"

MODES = ("regular", "stochastic", "poisson")

# The neuron arguments, shared by the cell and its sequence layer.
ACTIVATION_ARGS = (
    "activation",
    "dt",
    "amplitude",
    "mode",
    "initial_voltage",
    "seed",
    "spiking_aware_training",
    "spiking",
)


def check_activation(activation, owner):
    """The activation function of a name or a callable, and its serialized form."""
    if isinstance(activation, keras.layers.Layer) or not (
        isinstance(activation, str) or callable(activation)
    ):
        raise TypeError(
            f"{owner}: Argument `activation` must be the name of a Keras activation (e.g. "
            "'tanh', 'sigmoid', 'relu6', 'leaky_relu', 'gelu') or an elementwise activation "
            "function; for a ReLU, SpikingReLU offers more. Pass e.g. "
            f"SpikingActivation('tanh'). Received: activation={activation!r}"
        )
    try:
        function = keras.activations.get(activation)
    except ValueError as error:
        raise ValueError(
            f"{owner}: Argument `activation` {activation!r} is not a Keras activation "
            f"({error}). Pass the name of one (see keras.activations), or a function "
            "registered with keras.saving.register_keras_serializable. "
            f"Received: activation={activation!r}"
        ) from None
    try:
        serialized = keras.activations.serialize(function)
        if keras.activations.deserialize(serialized) is not function:
            raise ValueError("it loads as another function")
    except Exception as error:  # Keras raises several kinds for what it cannot load
        raise ValueError(
            f"{owner}: Argument `activation` {function!r} cannot be saved with the layer "
            f"({type(error).__name__}: {error}), so a saved model could not be loaded. "
            "Define it as a named function and register it with "
            "@keras.saving.register_keras_serializable(), or pass a Keras activation's name. "
            f"Received: activation={activation!r}"
        ) from None
    return function, serialized


def check_mode(mode, owner):
    if mode not in MODES:
        raise ValueError(
            f"{owner}: Argument `mode` must be one of {MODES}: 'regular' spikes at regular "
            "intervals (KerasSpiking, Nengo's RegularSpiking), 'stochastic' rounds the "
            "expected spikes of each step at random (StochasticSpiking), 'poisson' draws "
            f"a Poisson count (PoissonSpiking). Received: mode={mode!r}"
        )
    return mode


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingActivationCell(VoltageCell):
    """Cell of the spiking version of an activation `f` (KerasSpiking's semantics).

    Each step, the rate is `r = amplitude * f(x)`, and with `mode`:
    - `"regular"` (KerasSpiking's `SpikingActivation`, Nengo's `RegularSpiking`):
      `v += f(x) * dt; n = floor(v); v -= n`, output `amplitude * n / dt`. A
      negative rate gives negative spikes; `v` stays in `[0, 1)`.
    - `"stochastic"` (Nengo's `StochasticSpiking`): `|f(x)| * dt` rounded down or
      up at random (up with the probability of its fraction), signed as `f(x)`.
    - `"poisson"` (Nengo's `PoissonSpiking`): a Poisson count of mean
      `|f(x)| * dt` (exact up to 32 spikes a step), signed as `f(x)`.
    The random numbers are a hash of (`seed`, step, sample, neuron), as
    `PoissonEncoder` draws them: the same on every backend and execution path; the
    state then counts the steps.

    In training with `spiking_aware_training`, spikes go forward and the gradient
    of `amplitude * f(x)` backward; without, `amplitude * f(x)` both ways.

    Args:
        activation: A Keras activation's name or an elementwise function (saved by
            name, so registered if it is your own), e.g. `"tanh"`, `"sigmoid"`,
            `"relu6"`, `"leaky_relu"`, `"gelu"`, `"hard_silu"`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        amplitude: Scale of each spike and of the rate. Defaults to `1.0`.
        mode: `"regular"`, `"stochastic"` or `"poisson"`. Defaults to `"regular"`.
        initial_voltage: `"regular"` mode's initial voltage: `"random"` (uniform in
            `[0, 1)` per neuron, from `seed`) or a constant in `[0, 1)`; None:
            `"random"`. Defaults to `None`.
        seed: Seed of the random initial voltage and of the random modes' numbers
            (None: drawn once, kept in the config). Defaults to `None`.
        spiking_aware_training: Spikes forward and the gradient of `f` backward in
            training. Defaults to `True`.
        spiking: If False, the rate `amplitude * f(x)`. Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.
    """

    def __init__(
        self,
        activation,
        dt=0.001,
        amplitude=1.0,
        mode="regular",
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        **kwargs,
    ):
        super().__init__(initial_voltage=initial_voltage, seed=seed, **kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.activation, self.activation_name = check_activation(activation, owner)
        self.dt = check_number("dt", dt, owner=owner, positive=True)
        self.amplitude = check_number("amplitude", amplitude, owner=owner, positive=True)
        self.mode = check_mode(mode, owner)
        self.spiking_aware_training = check_bool(
            "spiking_aware_training", spiking_aware_training, owner=owner
        )
        self.spiking = check_bool("spiking", spiking, owner=owner)
        if self.mode != "regular" and self.seed is None:
            self.seed = int(np.random.randint(0, 2**31 - 1))

    def rates(self, inputs):
        """The rate `amplitude * f(x)`."""
        return self.activation(inputs) * self.amplitude

    def initial_state_value(self, batch_size):
        if self.mode == "regular":
            return super().initial_state_value(batch_size)
        return ops.zeros((batch_size, *self.feature_shape), dtype=self.compute_dtype)

    def build(self, input_shape):
        if self.mode == "regular":
            super().build(input_shape)
        else:  # no voltage: the state counts the steps
            super(VoltageCell, self).build(input_shape)

    def call(self, inputs, states, training=False):
        state = states[0]
        if not self.spiking or (training and not self.spiking_aware_training):
            return self.rates(inputs), [state]
        f = self.activation(inputs)
        if self.mode == "regular":
            spikes, state = neurons.rate_to_spikes_step(f, state, self.dt, self.amplitude)
        else:
            batch = ops.shape(inputs)[0]
            step = ops.cast(ops.reshape(state, (batch, -1))[:, 0], "int32")
            uniform = ops.cast(hash_uniform(self.seed, step, batch, self.feature_shape), f.dtype)
            draw = (
                neurons.stochastic_spikes if self.mode == "stochastic" else neurons.poisson_spikes
            )
            spikes = draw(f, uniform, self.dt, self.amplitude)
            state = state + 1.0
        if training:
            rates = f * self.amplitude
            spikes = rates + ops.stop_gradient(spikes - rates)
        return spikes, [state]

    def get_config(self):
        return {
            **super().get_config(),
            "activation": self.activation_name,
            "dt": self.dt,
            "amplitude": self.amplitude,
            "mode": self.mode,
            "spiking_aware_training": self.spiking_aware_training,
            "spiking": self.spiking,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingActivation(NeuronSequence):
    """The spiking version of any activation over `(batch, time, *features)`.

    The sequence form of `SpikingActivationCell` (see it for the equations and the
    arguments): KerasSpiking's `SpikingActivation` (`mode="regular"`), or Nengo's
    `StochasticSpiking` / `PoissonSpiking` of the rate `f(x)`.

    Args:
        activation: A Keras activation's name or an elementwise function.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        amplitude: Scale of each spike and of the rate. Defaults to `1.0`.
        mode: `"regular"`, `"stochastic"` or `"poisson"`. Defaults to `"regular"`.
        initial_voltage: `"random"` or a constant in `[0, 1)` (regular mode);
            None: `"random"`. Defaults to `None`.
        seed: Seed of the initial voltage and the random modes. Defaults to `None`.
        spiking_aware_training: Spikes forward and the gradient of `f` backward in
            training. Defaults to `True`.
        spiking: If False, the rate `amplitude * f(x)`. Defaults to `True`.
        **kwargs: `keras.layers.RNN` keyword arguments (`return_sequences`, ...) and
            base layer keyword arguments, such as `name`.

    Input shape:
        `(batch, time, *features)`.

    Output shape:
        `(batch, time, *features)`: spikes of `amplitude / dt` (signed for negative
        rates), or `(batch, *features)` if `return_sequences=False`.

    Example:

    >>> x = np.full((1, 1000, 1), -2.0, dtype="float32")  # tanh(-2) = -0.96 Hz
    >>> spikes = SpikingActivation("tanh", dt=0.01, initial_voltage=0.5)(x)
    >>> float(np.sum(spikes) * 0.01)  # 10 s: 9.6 negative spikes, rounded
    -10.0
    """

    cell_args = ACTIVATION_ARGS

    def __init__(
        self,
        activation,
        dt=0.001,
        amplitude=1.0,
        mode="regular",
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = SpikingActivationCell(
            activation,
            dt=dt,
            amplitude=amplitude,
            mode=mode,
            initial_voltage=initial_voltage,
            seed=seed,
            spiking_aware_training=spiking_aware_training,
            spiking=spiking,
            name=f"{kwargs.get('name', 'spiking_activation')}_cell",
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

    activation = property(lambda self: self.cell.activation)
    dt = property(lambda self: self.cell.dt)
    amplitude = property(lambda self: self.cell.amplitude)
    mode = property(lambda self: self.cell.mode)
    initial_voltage = property(lambda self: self.cell.initial_voltage)
    seed = property(lambda self: self.cell.seed)
    spiking_aware_training = property(lambda self: self.cell.spiking_aware_training)
