"""Shared plumbing: recorded roles, and cells over arbitrary feature shapes and their
sequence layers."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv._validation import check_initial_voltage, check_seed


class Recorded:
    """Mixin of the package's layers: a recorded role, and the layer `convert` made it from.

    `role` (a class attribute) tells the runtime how a call runs one timestep:
    `"stateless"` (a per-step layer applied to every step), `"neuron"`,
    `"synapse"` or `"state"` (a cell with a state), `"scale"` (elementwise) or
    `"readout"`. `source` is the name of the original layer a converted layer
    belongs to (its neuron, scales, synapse or per-step copy), kept in the
    config, so re-conversion and probing do not depend on layer names.

    Args:
        source: Name of the original layer. Defaults to `None` (made by hand).
    """

    role = "other"

    def __init__(self, *args, source=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = None if source is None else str(source)

    def get_config(self):
        config = super().get_config()
        if self.source is not None:
            config["source"] = self.source
        return config


class FeatureCell(keras.layers.Layer):
    """An RNN cell whose single state has the shape of its input features.

    `keras.layers.RNN` needs `state_size` before the cell is built; as
    `keras.layers.ConvLSTM2D` does, the cell reports `-1` until it knows its
    input shape, then the flat size for 1-D features (so a plain
    `keras.layers.RNN` infers its output shape) and `-1` for larger feature
    shapes (use the cell's sequence layer, or call `keras.layers.RNN` eagerly).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.feature_shape = None

    def build(self, input_shape):
        feature_shape = tuple(input_shape[1:])
        if not feature_shape or any(d is None for d in feature_shape):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' needs a static feature shape "
                "(every axis after batch and time known), because its state has that "
                f"shape. Received input shape per step: {tuple(input_shape)}. "
                "Give the model's Input a full `shape`."
            )
        self.feature_shape = feature_shape
        self.built = True

    @property
    def state_shape(self):
        """Shape of the state without the batch axis (the feature shape, unless a cell
        stacks several components on a leading axis)."""
        return self.feature_shape

    @property
    def state_size(self):
        shape = self.state_shape
        if shape is not None and len(shape) == 1:
            return shape[0]
        return -1

    @property
    def output_size(self):
        if self.feature_shape is not None and len(self.feature_shape) == 1:
            return self.feature_shape[0]
        return -1

    def initial_state_value(self, batch_size):
        """Initial state tensor of shape `(batch_size, *state_shape)`."""
        return ops.zeros((batch_size, *self.feature_shape), dtype=self.compute_dtype)

    def get_initial_state(self, batch_size=None):
        return [self.initial_state_value(batch_size)]

    def start_frame(self, state, batch_size):
        """The state at the start of a frame of a temporal model (`convert(...,
        temporal=True)`): by default the initial state, so each frame is coded afresh."""
        return ops.cast(self.initial_state_value(batch_size), self.compute_dtype)


class FeatureSequence(Recorded, keras.layers.RNN):
    """`keras.layers.RNN` over `(batch, time, *features)` for a `FeatureCell`.

    Differences from `keras.layers.RNN`: `return_sequences` defaults to True,
    output shapes keep the full feature shape, and `reset_state` returns the
    state to the cell's initial state (not to zeros).
    """

    role = "state"
    state_kind = "state"

    @property
    def has_state(self):
        """Whether it carries a state from one timestep to the next."""
        return True

    def __init__(
        self,
        cell,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) < 3:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' expects input of shape "
                "(batch, time, *features) (rank >= 3). Received input shape: "
                f"{tuple(sequences_shape)}. Add a time axis, e.g. "
                "`x[:, None]` for one step or `np.repeat(x[:, None], T, axis=1)`."
            )
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if sequences.shape[1] == 0:
            raise ValueError(
                f"{type(self).__name__} '{self.name}' received a time axis of length 0 "
                f"(input shape {tuple(sequences.shape)}): a simulation needs at least one "
                "step. Give the input at least one timestep."
            )
        return super().call(sequences, initial_state=initial_state, mask=mask, training=training)

    def stateless_output(self, outputs, sequences, initial_state=None):
        """What `call` returns for `outputs` computed on every step at once (a rate
        neuron): the last step without `return_sequences`, and the state unchanged
        with `return_state`."""
        if not self.return_sequences:
            outputs = outputs[:, -1]
        if not self.return_state:
            return outputs
        if initial_state is None:
            initial_state = (
                self.states if self.stateful else self.get_initial_state(ops.shape(sequences)[0])
            )
        state = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
        return outputs, state

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length, features = sequences_shape[0], sequences_shape[1], sequences_shape[2:]
        output_shape = (batch, length, *features) if self.return_sequences else (batch, *features)
        if self.return_state:
            if not self.cell.built:
                self.cell.build((batch, *features))
            return output_shape, (batch, *self.cell.state_shape)
        return output_shape

    def reset_state(self):
        """Returns a stateful layer's state to the cell's initial state."""
        if self.states is not None:
            batch_size = ops.shape(self.states[0])[0]
            for variable, value in zip(
                self.states, self.get_initial_state(batch_size), strict=True
            ):
                variable.assign(ops.cast(value, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.pop("cell", None)
        for key in ("go_backwards", "zero_output_for_mask"):
            config.pop(key, None)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class NeuronSequence(FeatureSequence):
    """A neuron as a sequence layer: its cell's recurrence over time when spiking; its
    rates (`cell.rates`) on every step at once, with no state, when not.

    `cell_args` names the arguments the layer and its cell share (its config).
    """

    role = "neuron"
    state_kind = "voltage"
    cell_args = ()

    @property
    def has_state(self):
        """A spiking neuron carries its voltage (and the rest of its state); a rate
        neuron none."""
        return self.spiking

    spiking = property(lambda self: self.cell.spiking)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if self.spiking:
            return super().call(
                sequences, initial_state=initial_state, mask=mask, training=training
            )
        return self.stateless_output(self.cell.rates(sequences), sequences, initial_state)

    def get_config(self):
        cell_config = self.cell.get_config()
        return {**super().get_config(), **{key: cell_config[key] for key in self.cell_args}}


class VoltageCell(FeatureCell):
    """A `FeatureCell` whose state starts with a voltage per neuron: `"random"`
    (uniform in `[0, 1)` from `seed`, as Nengo draws it) or a constant, followed by
    `n_components - 1` components that start at zero (stacked on axis 1).

    Args:
        initial_voltage: `"random"`, a constant in `[0, 1)`, or None (`"random"`).
        seed: Seed of the random voltage; None draws one, kept in the config.
        **kwargs: Base layer keyword arguments.
    """

    n_components = 1

    def __init__(self, initial_voltage=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.initial_voltage_arg = (
            None if initial_voltage is None else check_initial_voltage(initial_voltage, owner=owner)
        )
        self.initial_voltage = (
            "random" if self.initial_voltage_arg is None else self.initial_voltage_arg
        )
        self.seed = check_seed("seed", seed, owner=owner)
        if self.initial_voltage == "random" and self.seed is None:
            self.seed = int(np.random.randint(0, 2**31 - 1))

    @property
    def state_shape(self):
        if self.feature_shape is None or self.n_components == 1:
            return self.feature_shape
        return (self.n_components, *self.feature_shape)

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
            # Added to zeros, not broadcast: a tensor with its own memory (see
            # `SpikingReLUCell.initial_state_value`).
            voltage = ops.zeros(shape, dtype=self.compute_dtype) + ops.cast(
                self.voltage0, self.compute_dtype
            )
        else:
            voltage = ops.full(shape, self.initial_voltage, dtype=self.compute_dtype)
        if self.n_components == 1:
            return voltage
        zeros = ops.zeros(shape, dtype=self.compute_dtype)
        return ops.stack([voltage] + [zeros] * (self.n_components - 1), axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_voltage": self.initial_voltage_arg,
            "seed": self.seed,
        }
