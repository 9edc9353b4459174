"""Integrate-and-fire spiking ReLU: an RNN cell and a sequence layer."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import (
    check_bool,
    check_initial_voltage,
    check_number,
    check_seed,
)
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence

PACKAGE = "keras_spiking_conv"

# The neuron arguments, shared by the cell and its sequence layer.
NEURON_ARGS = (
    "dt",
    "amplitude",
    "initial_voltage",
    "seed",
    "spiking_aware_training",
    "spiking",
    "rectify_input",
)


def _neuron_args(
    owner, dt, amplitude, initial_voltage, seed, spiking_aware_training, spiking, rectify_input
):
    """Validates the neuron arguments shared by the cell and the layer."""
    return dict(
        dt=check_number("dt", dt, owner=owner, positive=True),
        amplitude=check_number("amplitude", amplitude, owner=owner, positive=True),
        initial_voltage=check_initial_voltage(initial_voltage, owner=owner),
        seed=check_seed("seed", seed, owner=owner),
        spiking_aware_training=check_bool(
            "spiking_aware_training", spiking_aware_training, owner=owner
        ),
        spiking=check_bool("spiking", spiking, owner=owner),
        rectify_input=check_bool("rectify_input", rectify_input, owner=owner),
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingReLUCell(FeatureCell):
    """Cell of an integrate-and-fire ReLU neuron with remainder reset.

    Each step, with input `x` and voltage `v` (Nengo's `SpikingRectifiedLinear`):
    `v += max(x, 0) * dt; n = floor(v); output = amplitude * n / dt; v -= n`.
    Several spikes per step are allowed, so the output is `amplitude / dt`
    times a non-negative integer, and averaged over time it approaches the
    rate `amplitude * max(x, 0)`.

    Works in `keras.layers.RNN` for any feature shape. For symbolic use with
    multi-dimensional features (e.g. conv maps) use `SpikingReLU`, which infers
    such output shapes.

    Args:
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        amplitude: Scale of each spike (and of the rate output). Defaults to `1.0`.
        initial_voltage: `"random"` for a voltage per neuron drawn uniformly in
            `[0, 1)` from `seed` (as Nengo does), or a constant in `[0, 1)`.
            Defaults to `"random"`.
        seed: Seed of the random initial voltage. `None` draws one at
            construction and stores it in the config, so a saved layer keeps
            its voltages. Defaults to `None`.
        spiking_aware_training: In training, if True, spikes go forward and the
            ReLU rate gradient backward (`rates + stop_gradient(spikes - rates)`);
            if False, training uses the rate output in both passes. Defaults
            to `True`.
        spiking: If False, the cell is a rate neuron: it outputs
            `amplitude * max(x, 0)` and keeps its voltage. Defaults to `True`.
        rectify_input: If True (Nengo's neuron), the input is rectified before
            it is integrated; if False, the voltage integrates the signed
            input and may go below zero (`v += x * dt; n = max(floor(v), 0)`),
            so the spike count follows the ReLU of the mean input: what
            low-latency conversion needs when inputs are spikes (see
            `neurons.spiking_relu_step`). Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: One timestep, shape `(batch, *features)`.
        states: List with the voltage, shape `(batch, *features)`.
        training: Python bool, training or inference mode.
    """

    def __init__(
        self,
        dt=0.001,
        amplitude=1.0,
        initial_voltage="random",
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        rectify_input=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        args = _neuron_args(
            owner,
            dt,
            amplitude,
            initial_voltage,
            seed,
            spiking_aware_training,
            spiking,
            rectify_input,
        )
        self.dt = args["dt"]
        self.amplitude = args["amplitude"]
        self.initial_voltage = args["initial_voltage"]
        self.seed = args["seed"]
        if self.initial_voltage == "random" and self.seed is None:
            self.seed = int(np.random.randint(0, 2**31 - 1))
        self.spiking_aware_training = args["spiking_aware_training"]
        self.spiking = args["spiking"]
        self.rectify_input = args["rectify_input"]

    def build(self, input_shape):
        super().build(input_shape)
        if self.initial_voltage == "random":
            values = np.random.default_rng(self.seed).uniform(0.0, 1.0, self.feature_shape)
            self.voltage0 = self.add_weight(
                shape=self.feature_shape,
                initializer=keras.initializers.Constant(values.astype("float32")),
                trainable=False,
                name="initial_voltage",
            )

    def initial_state_value(self, batch_size):
        shape = (batch_size, *self.feature_shape)
        if self.initial_voltage == "random":
            # Adding to zeros (not `ops.broadcast_to`) gives a tensor with its own
            # memory on every backend: PyTorch's `broadcast_to` returns a stride-0
            # view, and a stateful layer's state variable made from it cannot be
            # assigned in place ("more than one element ... refers to a single
            # memory location").
            voltage0 = ops.cast(self.voltage0, self.compute_dtype)
            return ops.zeros(shape, dtype=self.compute_dtype) + voltage0
        return ops.full(shape, self.initial_voltage, dtype=self.compute_dtype)

    def call(self, inputs, states, training=False):
        voltage = states[0]
        if not self.spiking or (training and not self.spiking_aware_training):
            return neurons.spiking_relu_rates(inputs, self.amplitude), [voltage]
        spikes, voltage = neurons.spiking_relu_step(
            inputs, voltage, self.dt, self.amplitude, self.rectify_input
        )
        if training:
            rates = neurons.spiking_relu_rates(inputs, self.amplitude)
            spikes = rates + ops.stop_gradient(spikes - rates)
        return spikes, [voltage]

    def get_config(self):
        return {
            **super().get_config(),
            "dt": self.dt,
            "amplitude": self.amplitude,
            "initial_voltage": self.initial_voltage,
            "seed": self.seed,
            "spiking_aware_training": self.spiking_aware_training,
            "spiking": self.spiking,
            "rectify_input": self.rectify_input,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingReLU(FeatureSequence):
    """Integrate-and-fire spiking ReLU over `(batch, time, *features)`.

    The sequence form of `SpikingReLUCell` (see it for the equations and the
    neuron arguments): a `keras.layers.RNN` whose state is the voltage of every
    neuron, for any feature shape (dense `(batch, time, units)` or conv maps
    `(batch, time, H, W, C)`). In rate mode (`spiking=False`) it is a
    stateless ReLU applied to every step at once.

    Args:
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        amplitude: Scale of each spike (and of the rate output). Defaults to `1.0`.
        initial_voltage: `"random"` (per neuron, from `seed`) or a constant in
            `[0, 1)`, as in `SpikingReLUCell`. Defaults to `"random"`.
        seed: Seed of the random initial voltage. Defaults to `None`.
        spiking_aware_training: Spikes forward and the rate gradient backward
            in training. Defaults to `True`.
        spiking: If False, a rate neuron (a stateless ReLU). Defaults to `True`.
        rectify_input: Integrate `max(x, 0)` (True, Nengo's) or the signed
            input (False, the converter's neurons). Defaults to `True`.
        return_sequences: Return the output of every step (True) or only the
            last. Defaults to `True` (unlike `keras.layers.RNN`).
        return_state: Also return the final voltage. Defaults to `False`.
        stateful: Keep the final voltage of each batch item as the initial
            voltage of the next call (needs a static batch size); `reset_state()`
            returns it to the initial voltage. Defaults to `False`.
        unroll: Unroll the time loop (static length only). Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        `(batch, time, *features)`.

    Output shape:
        `(batch, time, *features)`, or `(batch, *features)` if
        `return_sequences=False`; plus the voltage `(batch, *features)` if
        `return_state=True`.

    Example:

    >>> x = np.full((1, 1000, 1), 20.0, dtype="float32")  # 20 Hz input
    >>> spikes = SpikingReLU(initial_voltage=0.0)(x)
    >>> float(np.sum(spikes) * 0.001)  # spike count
    20.0
    """

    def __init__(
        self,
        dt=0.001,
        amplitude=1.0,
        initial_voltage="random",
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        rectify_input=True,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = SpikingReLUCell(
            dt=dt,
            amplitude=amplitude,
            initial_voltage=initial_voltage,
            seed=seed,
            spiking_aware_training=spiking_aware_training,
            spiking=spiking,
            rectify_input=rectify_input,
            name=f"{kwargs.get('name', 'spiking_relu')}_cell",
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

    role = "neuron"
    state_kind = "voltage"

    @property
    def has_state(self):
        """A spiking neuron carries its voltage; a rate neuron has no state."""
        return self.spiking

    dt = property(lambda self: self.cell.dt)
    amplitude = property(lambda self: self.cell.amplitude)
    initial_voltage = property(lambda self: self.cell.initial_voltage)
    seed = property(lambda self: self.cell.seed)
    spiking_aware_training = property(lambda self: self.cell.spiking_aware_training)
    spiking = property(lambda self: self.cell.spiking)
    rectify_input = property(lambda self: self.cell.rectify_input)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if self.spiking:
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        rates = neurons.spiking_relu_rates(sequences, self.amplitude)
        if not self.return_sequences:
            rates = rates[:, -1]
        if not self.return_state:
            return rates
        if initial_state is None:
            initial_state = (
                self.states if self.stateful else self.get_initial_state(ops.shape(sequences)[0])
            )
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        return rates, state

    def get_config(self):
        cell_config = self.cell.get_config()
        return {**super().get_config(), **{key: cell_config[key] for key in NEURON_ARGS}}
