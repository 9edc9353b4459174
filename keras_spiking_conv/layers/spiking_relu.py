"""Integrate-and-fire spiking ReLU: an RNN cell and a sequence layer."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import (
    check_bool,
    check_initial_voltage,
    check_integer,
    check_number,
    check_positive_values,
    check_seed,
)
from keras_spiking_conv.layers.base import FeatureCell, NeuronSequence

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
    "max_spikes_per_step",
    "reset",
    "negative_spikes",
    "clip",
)

RESETS = ("subtract", "zero")


def _check_reset(value, owner):
    if value not in RESETS:
        raise ValueError(
            f"{owner}: Argument `reset` must be 'subtract' (the voltage keeps what is left "
            "over the threshold) or 'zero' (it returns to zero after a spike). "
            f"Received: reset={value!r}"
        )
    return value


def _neuron_args(
    owner,
    dt,
    amplitude,
    initial_voltage,
    seed,
    spiking_aware_training,
    spiking,
    rectify_input,
    max_spikes_per_step=None,
    reset="subtract",
    negative_spikes=False,
    clip=None,
):
    """Validates the neuron arguments shared by the cell and the layer."""
    return dict(
        max_spikes_per_step=check_integer(
            "max_spikes_per_step",
            max_spikes_per_step,
            owner=owner,
            minimum=1,
            optional=True,
            hint="None: no limit; 1: binary spikes, as neuromorphic chips emit them",
        ),
        reset=_check_reset(reset, owner),
        negative_spikes=check_bool("negative_spikes", negative_spikes, owner=owner),
        clip=None if clip is None else check_positive_values("clip", clip, owner=owner),
        dt=check_number("dt", dt, owner=owner, positive=True),
        amplitude=check_number("amplitude", amplitude, owner=owner, positive=True),
        initial_voltage=(
            None if initial_voltage is None else check_initial_voltage(initial_voltage, owner=owner)
        ),
        seed=check_seed("seed", seed, owner=owner),
        spiking_aware_training=check_bool(
            "spiking_aware_training", spiking_aware_training, owner=owner
        ),
        spiking=check_bool("spiking", spiking, owner=owner),
        rectify_input=(
            None
            if rectify_input is None
            else check_bool("rectify_input", rectify_input, owner=owner)
        ),
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
            `None` (not given): `"random"`; as a `convert(swap_activations=...)`
            template, the converter's `initial_voltage`. Defaults to `None`.
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
            `neurons.spiking_relu_step`). `None` (not given): True, except
            with `negative_spikes`; as a `convert(swap_activations=...)`
            template, the converter's signed input. Defaults to `None`.
        max_spikes_per_step: None (as many spikes a step as the voltage
            allows) or an integer `k >= 1`: at most `k` spikes a step (`1`:
            binary spikes, as neuromorphic chips emit them); the rest stays in
            the voltage. Defaults to `None`.
        reset: `"subtract"` (the voltage keeps what is left above the
            threshold) or `"zero"` (it returns to zero after a spike, as
            NIR's `IF` and most chips do). Defaults to `"subtract"`.
        negative_spikes: If True, a neuron whose voltage falls below zero
            after it has fired emits negative spikes (never more than it has
            fired: its net count stays `>= 0`), so a neuron that fired too
            early takes it back. Its cumulative count is then the quantized
            ReLU of its accumulated input at every step, and a network of them
            read out as a mean over `T` steps computes its ANN with every
            activation rounded to `1/T` of a spike per step. Needs
            `rectify_input=False` to have any effect. Defaults to `False`.
        clip: None, or the largest mean number of spikes per step (a number,
            or one per channel): the cumulative count never exceeds `clip`
            times the steps so far, so the mean output is a ReLU clipped at
            `clip * amplitude / dt` (the rate output too). `convert` sets it
            for clipped ReLUs (`ReLU(max_value=6)`, `relu6`) and
            `QuantizedReLU`. Defaults to `None`.
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
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        rectify_input=None,
        max_spikes_per_step=None,
        reset="subtract",
        negative_spikes=False,
        clip=None,
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
            max_spikes_per_step,
            reset,
            negative_spikes,
            clip,
        )
        self.max_spikes_per_step = args["max_spikes_per_step"]
        self.reset = args["reset"]
        self.negative_spikes = args["negative_spikes"]
        self.clip = args["clip"]
        self.dt = args["dt"]
        self.amplitude = args["amplitude"]
        # None: not given ("random" here; a `swap_activations` template then takes the
        # converter's initial voltage).
        self.initial_voltage_arg = args["initial_voltage"]
        self.initial_voltage = (
            "random" if self.initial_voltage_arg is None else self.initial_voltage_arg
        )
        self.seed = args["seed"]
        if self.initial_voltage == "random" and self.seed is None:
            self.seed = int(np.random.randint(0, 2**31 - 1))
        self.spiking_aware_training = args["spiking_aware_training"]
        self.spiking = args["spiking"]
        # None: not given (Nengo's rectified input here; a `swap_activations` template
        # then takes the converter's signed input).
        self.rectify_input_arg = args["rectify_input"]
        if self.rectify_input_arg is None:
            self.rectify_input = not self.negative_spikes
        else:
            self.rectify_input = self.rectify_input_arg
        if self.negative_spikes and self.rectify_input_arg:
            raise ValueError(
                f"{owner}: `negative_spikes=True` needs the signed input "
                "(`rectify_input=False`): a rectified input never lowers the voltage, so "
                "no spike would be taken back. Pass rectify_input=False (or leave it "
                "unset in a swap_activations template, which then integrates the signed "
                "input). Received: rectify_input=True"
            )
        # The clip as an array, made once (one, or one per channel: the last axis).
        self._clip = None if self.clip is None else np.asarray(self.clip, dtype="float64")

    @property
    def n_components(self):
        """State components: the voltage, the net count (negative spikes), the headroom (clip)."""
        return 1 + int(self.negative_spikes) + int(self.clip is not None)

    @property
    def state_shape(self):
        if self.feature_shape is None or self.n_components == 1:
            return self.feature_shape
        return (self.n_components, *self.feature_shape)

    def _clip_tensor(self, dtype):
        return None if self._clip is None else ops.convert_to_tensor(self._clip, dtype=dtype)

    def build(self, input_shape):
        super().build(input_shape)
        if isinstance(self.clip, tuple) and len(self.clip) != self.feature_shape[-1]:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has {len(self.clip)} per-channel clips "
                f"but its input has {self.feature_shape[-1]} channels (last axis; feature "
                f"shape {self.feature_shape}). Give one clip per channel, or one for all."
            )
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
            voltage = ops.zeros(shape, dtype=self.compute_dtype) + voltage0
        else:
            voltage = ops.full(shape, self.initial_voltage, dtype=self.compute_dtype)
        if self.n_components == 1:
            return voltage
        # The net count and the headroom start at zero.
        zeros = ops.zeros(shape, dtype=self.compute_dtype)
        return ops.stack([voltage] + [zeros] * (self.n_components - 1), axis=1)

    def start_frame(self, state, batch_size):
        """The state at the start of a frame of a temporal model: a negative voltage
        (the net input of the frames before was negative) rises to zero, so the neuron
        takes the ReLU of each frame; the positive remainder, less than a spike, carries
        over, so its rounding is paid back in the next frame. A neuron with more state
        (negative spikes, a clip) starts afresh."""
        if self.n_components > 1:
            return super().start_frame(state, batch_size)
        return ops.maximum(state, ops.zeros_like(state))

    def rates(self, inputs):
        max_rate = None if self._clip is None else self._clip_tensor(inputs.dtype) / self.dt
        return neurons.spiking_relu_rates(inputs, self.amplitude, max_rate)

    def call(self, inputs, states, training=False):
        state = states[0]
        if not self.spiking or (training and not self.spiking_aware_training):
            return self.rates(inputs), [state]
        parts = [state] if self.n_components == 1 else ops.unstack(state, axis=1)
        spikes, voltage, count, headroom = neurons.integrate_and_fire_step(
            inputs,
            parts[0],
            parts[1] if self.negative_spikes else None,
            parts[-1] if self.clip is not None else None,
            self.dt,
            self.amplitude,
            rectify_input=self.rectify_input,
            max_spikes_per_step=self.max_spikes_per_step,
            reset=self.reset,
            negative_spikes=self.negative_spikes,
            clip=self._clip_tensor(inputs.dtype),
        )
        parts = [p for p in (voltage, count, headroom) if p is not None]
        state = parts[0] if len(parts) == 1 else ops.stack(parts, axis=1)
        if training:
            rates = self.rates(inputs)
            spikes = rates + ops.stop_gradient(spikes - rates)
        return spikes, [state]

    def get_config(self):
        return {
            **super().get_config(),
            "dt": self.dt,
            "amplitude": self.amplitude,
            "initial_voltage": self.initial_voltage_arg,
            "seed": self.seed,
            "spiking_aware_training": self.spiking_aware_training,
            "spiking": self.spiking,
            "rectify_input": self.rectify_input_arg,
            "max_spikes_per_step": self.max_spikes_per_step,
            "reset": self.reset,
            "negative_spikes": self.negative_spikes,
            "clip": list(self.clip) if isinstance(self.clip, tuple) else self.clip,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingReLU(NeuronSequence):
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
            `[0, 1)`, as in `SpikingReLUCell`; `None`: `"random"`, or the
            converter's as a `swap_activations` template. Defaults to `None`.
        seed: Seed of the random initial voltage. Defaults to `None`.
        spiking_aware_training: Spikes forward and the rate gradient backward
            in training. Defaults to `True`.
        spiking: If False, a rate neuron (a stateless ReLU). Defaults to `True`.
        rectify_input: Integrate `max(x, 0)` (True, Nengo's) or the signed
            input (False, the converter's neurons); `None`: True, or False with
            `negative_spikes` (see `SpikingReLUCell`). Defaults to `None`.
        max_spikes_per_step: None or at most `k` spikes a step (`1`: binary
            spikes). Defaults to `None`.
        reset: `"subtract"` or `"zero"`. Defaults to `"subtract"`.
        negative_spikes: A neuron that fired too early takes spikes back
            (its net count stays `>= 0`). Defaults to `False`.
        clip: None, or the largest mean spike count per step (one, or one per
            channel). Defaults to `None`.
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
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        rectify_input=None,
        max_spikes_per_step=None,
        reset="subtract",
        negative_spikes=False,
        clip=None,
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
            max_spikes_per_step=max_spikes_per_step,
            reset=reset,
            negative_spikes=negative_spikes,
            clip=clip,
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

    cell_args = NEURON_ARGS

    dt = property(lambda self: self.cell.dt)
    amplitude = property(lambda self: self.cell.amplitude)
    initial_voltage = property(lambda self: self.cell.initial_voltage)
    seed = property(lambda self: self.cell.seed)
    spiking_aware_training = property(lambda self: self.cell.spiking_aware_training)
    rectify_input = property(lambda self: self.cell.rectify_input)
    max_spikes_per_step = property(lambda self: self.cell.max_spikes_per_step)
    reset = property(lambda self: self.cell.reset)
    negative_spikes = property(lambda self: self.cell.negative_spikes)
    clip = property(lambda self: self.cell.clip)
