"""`fuse()`: run a whole converted network step by step in one loop over time.

A converted model runs layer by layer: each stateless layer on every timestep
at once (time folded into the batch), each neuron and synapse as its own loop
over time. Every layer's whole `(batch, time, ...)` activity then goes through
memory. A fused model runs the whole network for one timestep, then the next,
inside a single loop (`keras.layers.RNN` over one cell that is the whole
network): each step's activity is small enough to stay in cache, and the
neuron's elementwise work sits next to the convolution that feeds it. On CPU
this is the faster form for spiking simulation (see docs/performance.md).

The fused model computes the same equations as the layer-wise one; its
outputs match up to float rounding (convolutions of different batch sizes
may round differently in the last bit, which can move a spike by one step
in rare cases).
"""

import math
import weakref

import keras
from keras import ops, tree

from keras_spiking_conv.layers import (
    LowpassSynapse,
    RateScale,
    SpikingReLU,
    TimeFold,
    TimeReadout,
)
from keras_spiking_conv.streaming import _walk, initial_states, state_layout

PACKAGE = "keras_spiking_conv"


@keras.saving.register_keras_serializable(package=PACKAGE)
class NetworkCell(keras.layers.Layer):
    """An RNN cell whose step is one timestep of a whole converted network.

    Its input is every network input of one step, flattened and concatenated;
    its output every network output, flattened and concatenated; its states
    are the network's neuron voltages and synapse states (see
    `keras_spiking_conv.state_layout`). An output's `TimeReadout` passes each
    step through: `FusedNetwork` applies it to the whole sequence.

    Args:
        network: A converted model (from `keras_spiking_conv.convert`).
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        if isinstance(network, dict):
            network = keras.saving.deserialize_keras_object(network)
        self.network = network
        self.layout = state_layout(network)
        self.keys = list(self.layout)
        self.input_shapes = [tuple(x.shape[2:]) for x in network.inputs]
        # Each output's readout (or None) and the shape of one step of what it reads.
        self.readouts = [readout_of(y) for y in network.outputs]
        self.output_shapes = [
            tuple(y.shape[1:] if readout else y.shape[2:])
            for y, readout in zip(network.outputs, self.readouts, strict=True)
        ]
        self.state_size = [-1] * len(self.keys) if self.keys else [1]
        self.output_size = sum(math.prod(s) for s in self.output_shapes)

    def build(self, input_shape):
        self.built = True

    def get_initial_state(self, batch_size=None):
        if not self.keys:
            return [ops.zeros((batch_size, 1), dtype=self.compute_dtype)]
        states = initial_states(self.network, batch_size)
        return [states[key] for key in self.keys]

    def split_inputs(self, flat):
        """The concatenated step input as one tensor per network input."""
        pieces, start = [], 0
        for shape in self.input_shapes:
            size = math.prod(shape)
            pieces.append(ops.reshape(flat[:, start : start + size], (-1, *shape)))
            start += size
        return pieces

    def call(self, inputs, states, training=False):
        by_path = {spec.path: key for key, spec in self.layout.items()}
        current = dict(zip(self.keys, states, strict=False))
        new_states = {}

        def visit(op, args, kwargs, path):
            x = args[0]
            if isinstance(op, TimeReadout):
                return x
            if isinstance(op, TimeFold):
                inner = op.layer
                if getattr(inner, "_call_has_training_arg", False):
                    return inner(x, training=training)
                return inner(x)
            if path in by_path:
                key = by_path[path]
                cell_kwargs = {"training": training} if op.cell._call_has_training_arg else {}
                output, (state,) = op.cell(x, [current[key]], **cell_kwargs)
                new_states[key] = state
                return output
            if isinstance(op, SpikingReLU):  # rate mode: no state
                output, _ = op.cell(x, [x], training=training)
                return output
            if isinstance(op, (RateScale, LowpassSynapse)) or not args[1:]:
                return op(*args, **kwargs)
            raise NotImplementedError(
                f"fuse(): layer '{op.name}' ({type(op).__name__}) cannot run one timestep "
                "at a time. Use the layer-wise converted model."
            )

        outputs = _walk(self.network, self.split_inputs(inputs), visit)
        flat_out = [ops.reshape(y, (ops.shape(y)[0], -1)) for y in tree.flatten(outputs)]
        output = flat_out[0] if len(flat_out) == 1 else ops.concatenate(flat_out, axis=-1)
        if not self.keys:
            return output, list(states)
        return output, [new_states[key] for key in self.keys]

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedNetwork(keras.layers.Layer):
    """A converted network run step by step in one loop over time.

    Args:
        network: A converted model (from `keras_spiking_conv.convert`).
        stateful: Keep the states between calls (streaming; static batch size).
            Defaults to `False`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        inputs: The network's inputs, each `(batch, time, ...)`.

    Output: the network's outputs, each `(batch, time, ...)`.
    """

    def __init__(self, network, stateful=False, **kwargs):
        # The loop carries the neuron and synapse states, which are float32 under any
        # policy (see the converter); each layer inside keeps its own policy.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.cell = NetworkCell(network, dtype=self.dtype_policy)
        self.rnn = keras.layers.RNN(
            self.cell, return_sequences=True, stateful=stateful, dtype=self.dtype_policy
        )
        self.stateful = stateful

    @property
    def network(self):
        return self.cell.network

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=False):
        flat = tree.flatten(inputs)
        if flat[0].shape[1] == 0:
            layers = [spec.layer for spec in self.cell.layout.values()]
            raise ValueError(
                f"FusedNetwork '{self.name}' (neurons and synapses {layers}) received a time "
                f"axis of length 0 (input shape {tuple(flat[0].shape)}): a simulation needs "
                "at least one step. Give the input at least one timestep."
            )
        batch, time = ops.shape(flat[0])[0], ops.shape(flat[0])[1]
        pieces = [ops.reshape(x, (batch, time, -1)) for x in flat]
        sequence = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)
        output = self.rnn(sequence, training=training)
        outputs, start = [], 0
        cell = self.cell
        for shape, spec, readout in zip(
            cell.output_shapes, self.network.outputs, cell.readouts, strict=True
        ):
            size = math.prod(shape)
            piece = ops.reshape(output[..., start : start + size], (batch, time, *shape))
            if readout is not None:
                piece = readout(piece)
            outputs.append(ops.cast(piece, spec.dtype))
            start += size
        return outputs[0] if len(outputs) == 1 else outputs

    def compute_output_spec(self, inputs, training=False):
        return self.network.compute_output_spec(inputs)

    def reset_state(self):
        """Returns a stateful fused network to its initial states."""
        if self.rnn.states is not None:
            batch = ops.shape(self.rnn.states[0])[0]
            values = self.cell.get_initial_state(batch)
            for variable, value in zip(self.rnn.states, values, strict=True):
                variable.assign(value)

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "stateful": self.stateful,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)


def readout_of(tensor):
    """The `TimeReadout` that made a model output, or None."""
    layer = tensor._keras_history[0]
    return layer if isinstance(layer, TimeReadout) else None


def fuse(model, stateful=False, batch_size=None):
    """The converted `model` as one loop over time: same outputs, usually faster.

    Args:
        model: A converted model (from `keras_spiking_conv.convert`), e.g. a
            `probe` model to also get layer activity.
        stateful: Keep neuron and synapse states between calls, for streaming
            chunks of a sequence (`reset_states` starts a new one). Needs
            `batch_size`. Defaults to `False`.
        batch_size: Fixed batch size (needed when `stateful`). Defaults to `None`.

    Returns:
        A `keras.Model` with the same inputs and outputs as `model`, sharing its
        weights (training one trains the other), whose layer is a `FusedNetwork`.
    """
    if stateful and batch_size is None:
        raise ValueError("fuse(): `stateful=True` needs a fixed `batch_size`. Received: None")
    inputs = [
        keras.Input(batch_shape=(batch_size, *x.shape[1:]), dtype=x.dtype, name=x.name)
        for x in model.inputs
    ]
    struct = getattr(model, "_inputs_struct", None)
    if struct is not None:  # dict inputs keep their keys
        inputs = tree.pack_sequence_as(struct, inputs)
    elif len(inputs) == 1:
        inputs = inputs[0]
    layer = FusedNetwork(model, stateful=stateful, name=f"{model.name}_fused")
    return keras.Model(inputs, layer(inputs), name=f"{model.name}_fused")


# The FusedNetwork of each SpikingModel, kept outside Keras' tracking (the layer refers
# back to its model, and a model must not track itself).
_FUSED = weakref.WeakKeyDictionary()


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingModel(keras.Model):
    """The model `convert` returns: a functional graph over `(batch, time, ...)`.

    Its layers are the layer-wise conversion (inspect them, probe them,
    re-convert them). When it runs, it picks the faster execution: a model with
    neuron or synapse states (spiking neurons, synapses) runs as one loop over
    time for the whole network (`FusedNetwork`); a stateless one (rate mode)
    runs layer by layer with time folded into the batch. Both give the same
    equations. Set `model.execution` to `"layers"` or `"fused"` to force one
    (not saved; `"auto"` by default).
    """

    execution = "auto"

    def _fused_network(self):
        if self not in _FUSED:
            _FUSED[self] = (
                FusedNetwork(self, name=f"{self.name}_fused") if state_layout(self) else None
            )
        return _FUSED[self]

    def call(self, inputs, training=None, mask=None):
        fused = None if self.execution == "layers" else self._fused_network()
        if self.execution == "fused" and fused is None:
            fused = FusedNetwork(self, name=f"{self.name}_fused")
        try:
            flat = self._standardize_inputs(inputs)  # Keras' own checks and messages
        except ValueError as error:
            raise ValueError(
                f"{error}\nA converted model takes (batch, time, ...) inputs: add a time "
                "axis with keras_spiking_conv.tile_time(x, n_steps) (a constant input) or "
                "x[:, None] (one step)."
            ) from None
        if fused is None:
            return super().call(inputs, training=training, mask=mask)
        outputs = fused(flat[0] if len(flat) == 1 else flat, training=training)
        return tree.pack_sequence_as(self._outputs_struct, tree.flatten(outputs))
