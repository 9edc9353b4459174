"""Layers of temporal models (`convert(..., temporal=True)`): what a Keras model computes
over its input's own time axis, one frame at a time, so that it streams.

- `CausalConv1D`: a causal `Conv1D` over time, holding its last `(K - 1) * dilation`
  input frames.
- `RunningPooling`: `GlobalAveragePooling1D` / `GlobalMaxPooling1D` over the frames so
  far (at the last frame, the original's pooling of the whole sequence).
- `FrameRecurrence`: a `SimpleRNN`, `GRU` or `LSTM` layer's cell stepped frame by frame,
  optionally with a neuron (a spiking ReLU, LIF, ...) in place of a `SimpleRNN`'s
  activation: the recurrent weights then act on the neuron's output (spikes).
- `FrameSteps`: marks a model that runs several simulation steps per frame.

With `k` steps per frame, a layer over time reads the steps `k` apart: the same step of
earlier frames (a `CausalConv1D` with its dilation times `k`, a `FrameRecurrence` with
`delay=k`), so with rate neurons each frame computes what the original computes.

Each is an RNN cell and a sequence layer (`FeatureSequence`, role `"state"`), so the
plan and the step engine run them like any other layer with a state.
"""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence, Recorded

PACKAGE = "keras_spiking_conv"

RECURRENT_CELLS = (keras.layers.SimpleRNNCell, keras.layers.GRUCell, keras.layers.LSTMCell)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameSteps(Recorded, keras.layers.Layer):
    """Marks a temporal model that runs `steps` simulation steps per frame of its input
    (`convert(..., temporal=True, steps_per_frame=steps)`): the step engine runs each
    frame `steps` times and outputs the mean of those steps. The layer itself passes its
    input through.

    Args:
        steps: Simulation steps per frame, an integer >= 1.
        **kwargs: Base layer keyword arguments.
    """

    role = "frames"

    def __init__(self, steps, **kwargs):
        super().__init__(**kwargs)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': Argument `steps` must be an integer "
                f">= 1. Received: steps={steps!r}"
            )
        self.steps = steps

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


class _FrameSequence(FeatureSequence):
    """A sequence layer whose step output has the cell's `output_shape`."""

    role = "state"

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length, features = sequences_shape[0], sequences_shape[1], sequences_shape[2:]
        if not self.cell.built:
            self.cell.build((batch, *features))
        out = self.cell.output_shape
        output_shape = (batch, length, *out) if self.return_sequences else (batch, *out)
        if self.return_state:
            return output_shape, (batch, *self.cell.state_shape)
        return output_shape


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalConv1DCell(FeatureCell):
    """One frame of a causal 1-D convolution over time (`neurons.causal_conv_step`).

    Args:
        filters: Output channels.
        kernel_size: Frames the kernel spans (at least 2; a kernel of one frame is a
            `Dense` layer per frame).
        dilation_rate: Frames between the kernel's taps. Defaults to `1`.
        activation: Applied to the output. Defaults to `None` (linear).
        use_bias: Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: One frame, `(batch, channels)`.
        states: List with the last `(kernel_size - 1) * dilation_rate` input frames,
            `(batch, frames, channels)`, oldest first.
    """

    def __init__(
        self, filters, kernel_size, dilation_rate=1, activation=None, use_bias=True, **kwargs
    ):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        for name, value, least in (
            ("filters", filters, 1),
            ("kernel_size", kernel_size, 2),
            ("dilation_rate", dilation_rate, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{owner}: Argument `{name}` must be an integer >= {least}. "
                    f"Received: {name}={value!r}"
                )
        self.filters = filters
        self.kernel_size = kernel_size
        self.dilation_rate = dilation_rate
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        super().build(input_shape)
        if len(self.feature_shape) != 1:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' takes frames of shape "
                f"(batch, channels). Received input shape per frame: {tuple(input_shape)}."
            )
        channels = self.feature_shape[0]
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, channels, self.filters)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    @property
    def state_shape(self):
        if self.feature_shape is None:
            return None
        return ((self.kernel_size - 1) * self.dilation_rate, *self.feature_shape)

    @property
    def output_shape(self):
        return (self.filters,)

    @property
    def output_size(self):
        return self.filters

    def initial_state_value(self, batch_size):
        return ops.zeros((batch_size, *self.state_shape), dtype=self.compute_dtype)

    def call(self, inputs, states):
        output, frames = neurons.causal_conv_step(
            inputs, states[0], self.kernel, self.bias, self.dilation_rate
        )
        return self.activation(output), [frames]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalConv1D(_FrameSequence):
    """A causal convolution over time, `(batch, time, channels)`, that streams: each
    step takes one frame and keeps the last `(kernel_size - 1) * dilation_rate`
    (`CausalConv1DCell`). Over a whole sequence it equals
    `keras.layers.Conv1D(filters, kernel_size, padding="causal", dilation_rate=...)`
    with the same weights (`convert(..., temporal=True)` makes it from one).

    Args:
        filters: Output channels, as `Conv1D`'s.
        kernel_size: Frames the kernel spans (at least 2).
        dilation_rate: Frames between the kernel's taps. Defaults to `1`.
        activation: Applied to the output. Defaults to `None` (linear).
        use_bias: Defaults to `True`.
        return_sequences: Return every step (the default, `True`) or the last.
        return_state: Also return the final state. Defaults to `False`.
        stateful: Keep the state between batches. Defaults to `False`.
        unroll: Unroll the loop over time. Defaults to `False`.
        **kwargs: Base layer keyword arguments.
    """

    state_kind = "frames"

    def __init__(
        self,
        filters,
        kernel_size,
        dilation_rate=1,
        activation=None,
        use_bias=True,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = CausalConv1DCell(
            filters,
            kernel_size,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            name=f"{kwargs.get('name', 'causal_conv1d')}_cell",
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

    filters = property(lambda self: self.cell.filters)
    kernel_size = property(lambda self: self.cell.kernel_size)
    dilation_rate = property(lambda self: self.cell.dilation_rate)

    def get_config(self):
        cell = self.cell.get_config()
        keys = ("filters", "kernel_size", "dilation_rate", "activation", "use_bias")
        return {**super().get_config(), **{key: cell[key] for key in keys}}


POOLING_MODES = ("mean", "max")


@keras.saving.register_keras_serializable(package=PACKAGE)
class RunningPoolingCell(FeatureCell):
    """Global pooling over the frames so far (`neurons.running_pool_step`).

    Args:
        mode: `"mean"` (`GlobalAveragePooling1D`) or `"max"` (`GlobalMaxPooling1D`).
        steps: Simulation steps per frame. Defaults to `1`.
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, mode="mean", steps=1, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        if mode not in POOLING_MODES:
            raise ValueError(
                f"{owner}: Argument `mode` must be 'mean' or 'max'. Received: mode={mode!r}"
            )
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"{owner}: Argument `steps` must be an integer >= 1. Received: steps={steps!r}"
            )
        self.mode = mode
        self.steps = steps

    @property
    def state_shape(self):
        if self.feature_shape is None or self.mode == "max":
            return self.feature_shape
        return (4, *self.feature_shape)

    @property
    def output_shape(self):
        return self.feature_shape

    def initial_state_value(self, batch_size):
        if self.mode == "max":
            return ops.full((batch_size, *self.feature_shape), -float("inf"), self.compute_dtype)
        return ops.zeros((batch_size, *self.state_shape), dtype=self.compute_dtype)

    def call(self, inputs, states):
        output, state = neurons.running_pool_step(inputs, states[0], self.mode, self.steps)
        return output, [state]

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "steps": self.steps}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RunningPooling(_FrameSequence):
    """The mean (or maximum) of `(batch, time, *features)` over the frames so far: at
    the last frame, `GlobalAveragePooling1D` (or `GlobalMaxPooling1D`) of the whole
    sequence, streamed (`RunningPoolingCell`).

    Args:
        mode: `"mean"` or `"max"`. Defaults to `"mean"`.
        steps: Simulation steps per frame (`RunningPoolingCell`). Defaults to `1`.
        return_sequences: Return every step (the default, `True`) or the last.
        return_state: Also return the final state. Defaults to `False`.
        stateful: Keep the state between batches. Defaults to `False`.
        unroll: Unroll the loop over time. Defaults to `False`.
        **kwargs: Base layer keyword arguments.
    """

    state_kind = "pooling"

    def __init__(
        self,
        mode="mean",
        steps=1,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = RunningPoolingCell(
            mode,
            steps=steps,
            name=f"{kwargs.get('name', 'running_pooling')}_cell",
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

    mode = property(lambda self: self.cell.mode)
    steps = property(lambda self: self.cell.steps)

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "steps": self.steps}


def _deserialize(value, kinds, what, owner):
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if not isinstance(value, kinds):
        raise TypeError(
            f"{owner}: `{what}` must be a {' or '.join(k.__name__ for k in kinds)} (or its "
            f"serialized config). Received: {value!r}"
        )
    return value


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameRecurrenceCell(FeatureCell):
    """One frame of a recurrent layer: a Keras `SimpleRNNCell`, `GRUCell` or
    `LSTMCell`, its states stacked on axis 1 of one state tensor.

    With `delay=k` (`k` simulation steps per frame) each step's recurrent input is the
    output of `k` steps before (the same step of the previous frame), kept in a ring of
    `k` outputs (and `k` cell states of an `LSTMCell`).

    With a `neuron` (a `SimpleRNNCell` only), the neuron replaces the cell's
    activation: its input is `scale * (x @ W + h @ U + b)` (`neurons.recurrent_current`)
    and the layer's output `h` is the neuron's output over `scale`, so the recurrent
    weights act on the previous frame's spikes.

    Args:
        cell: A Keras recurrent cell, or its serialized config; its weights are this
            cell's.
        neuron: `None`, or a neuron cell (`SpikingReLUCell`, `LIFCell`,
            `SpikingActivationCell`) or its serialized config.
        scale: The neuron's firing-rate scale (NengoDL's `scale_firing_rates`): one
            number, or one per unit (as `calibrate` gives them). Defaults to `1.0`.
        delay: Steps between a step and the one its recurrent input comes from.
            Defaults to `1`.
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, cell, neuron=None, scale=1.0, delay=1, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.cell = _deserialize(cell, RECURRENT_CELLS, "cell", owner)
        self.neuron = None
        if neuron is not None:
            if not isinstance(self.cell, keras.layers.SimpleRNNCell):
                raise ValueError(
                    f"{owner}: a `neuron` replaces a SimpleRNN's activation; a "
                    f"{type(self.cell).__name__}'s gates stay rate. Pass neuron=None."
                )
            self.neuron = _deserialize(neuron, (FeatureCell,), "neuron", owner)
        if np.ndim(scale) == 0:
            self.scale = float(scale)
        else:
            self.scale = tuple(float(v) for v in np.ravel(scale))
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 1:
            raise ValueError(
                f"{owner}: Argument `delay` must be an integer >= 1. Received: delay={delay!r}"
            )
        self.delay = delay

    @property
    def units(self):
        return self.cell.units

    def build(self, input_shape):
        super().build(input_shape)
        if not self.cell.built:
            self.cell.build((None, *self.feature_shape))
        if self.neuron is not None and not self.neuron.built:
            self.neuron.build((None, self.units))

    @property
    def _recurrent(self):
        """The recurrent states of the cell: 2 for an `LSTMCell` (h and c), else 1."""
        return 2 if isinstance(self.cell, keras.layers.LSTMCell) else 1

    @property
    def _parts(self):
        """The state components: `(name, shape)` each, stacked on axis 1: a ring of
        `delay` values per recurrent state (oldest first), then the neuron's."""
        parts = [("h", (self.units,))] * self.delay
        if self._recurrent == 2:
            parts += [("c", (self.units,))] * self.delay
        if self.neuron is not None:
            shape = tuple(self.neuron.state_shape or (self.units,))
            parts += [("neuron", (self.units,))] * (shape[0] if len(shape) == 2 else 1)
        return parts

    @property
    def state_shape(self):
        if self.feature_shape is None:
            return None
        n = len(self._parts)
        return (self.units,) if n == 1 else (n, self.units)

    @property
    def output_shape(self):
        return (self.units,)

    @property
    def output_size(self):
        return self.units

    def initial_state_value(self, batch_size):
        zeros = ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
        parts = [zeros] * (self._recurrent * self.delay)
        if self.neuron is not None:
            value = ops.cast(self.neuron.initial_state_value(batch_size), self.compute_dtype)
            n = len(self._parts) - len(parts)
            parts += ops.unstack(value, axis=1) if n > 1 else [value]
        return parts[0] if len(parts) == 1 else ops.stack(parts, axis=1)

    def start_frame(self, state, batch_size):
        """The state at the start of a frame: the ring of recurrent values carries over;
        the neuron's part is what its cell keeps (`start_frame`)."""
        if self.neuron is None:
            return state
        parts = list(ops.unstack(state, axis=1))
        kept = self._recurrent * self.delay
        neuron_parts = parts[kept:]
        neuron_state = (
            neuron_parts[0] if len(neuron_parts) == 1 else ops.stack(neuron_parts, axis=1)
        )
        neuron_state = self.neuron.start_frame(neuron_state, batch_size)
        rest = [neuron_state] if len(neuron_parts) == 1 else ops.unstack(neuron_state, axis=1)
        return ops.stack([*parts[:kept], *rest], axis=1)

    def call(self, inputs, states, training=False):
        state = states[0]
        n, k = len(self._parts), self.delay
        parts = [state] if n == 1 else list(ops.unstack(state, axis=1))
        rings = [parts[i * k : (i + 1) * k] for i in range(self._recurrent)]
        previous = [ring[0] for ring in rings]  # from `delay` steps before
        if self.neuron is None:
            output, new = self.cell(inputs, previous, training=training)
            new = list(new) if isinstance(new, (list, tuple)) else [new]
            rest = []
        else:
            cell = self.cell
            current = neurons.recurrent_current(
                inputs, previous[0], cell.kernel, cell.recurrent_kernel, cell.bias
            )
            neuron_parts = parts[k:]
            neuron_state = (
                neuron_parts[0] if len(neuron_parts) == 1 else ops.stack(neuron_parts, axis=1)
            )
            scale = ops.convert_to_tensor(np.asarray(self.scale), dtype=current.dtype)
            spikes, (neuron_state,) = self.neuron(
                current * scale, [neuron_state], training=training
            )
            output = spikes / scale
            new = [output]
            rest = [neuron_state] if len(neuron_parts) == 1 else ops.unstack(neuron_state, axis=1)
        updated = []
        for ring, value in zip(rings, new, strict=True):
            updated += [*ring[1:], value]
        updated += rest
        return output, [updated[0] if n == 1 else ops.stack(updated, axis=1)]

    def get_config(self):
        return {
            **super().get_config(),
            "cell": keras.saving.serialize_keras_object(self.cell),
            "neuron": None
            if self.neuron is None
            else keras.saving.serialize_keras_object(self.neuron),
            "scale": self.scale,
            "delay": self.delay,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class FrameRecurrence(_FrameSequence):
    """A `SimpleRNN`, `GRU` or `LSTM` stepped one frame at a time over
    `(batch, time, features)`, its state kept from frame to frame
    (`FrameRecurrenceCell`); with a `neuron`, a spiking recurrent layer.

    Args:
        cell: A Keras `SimpleRNNCell`, `GRUCell` or `LSTMCell` (or its config).
        neuron: `None`, or a neuron cell in place of a `SimpleRNNCell`'s activation.
        scale: The neuron's firing-rate scale, one or one per unit. Defaults to `1.0`.
        delay: Steps between a step and its recurrent input. Defaults to `1`.
        return_sequences: Return every step (the default, `True`) or the last.
        return_state: Also return the final state. Defaults to `False`.
        stateful: Keep the state between batches. Defaults to `False`.
        unroll: Unroll the loop over time. Defaults to `False`.
        **kwargs: Base layer keyword arguments.

    `convert` keeps every frame (`return_sequences=True`) and reads the last frame out
    where the original returned it alone.
    """

    state_kind = "recurrent"

    def __init__(
        self,
        cell,
        neuron=None,
        scale=1.0,
        delay=1,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        frame_cell = FrameRecurrenceCell(
            cell,
            neuron=neuron,
            scale=scale,
            delay=delay,
            name=f"{kwargs.get('name', 'frame_recurrence')}_cell",
            dtype=kwargs.get("dtype"),
        )
        super().__init__(
            frame_cell,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )

    neuron = property(lambda self: self.cell.neuron)
    scale = property(lambda self: self.cell.scale)
    delay = property(lambda self: self.cell.delay)

    def get_config(self):
        cell = self.cell.get_config()
        keys = ("cell", "neuron", "scale", "delay")
        return {**super().get_config(), **{key: cell[key] for key in keys}}
