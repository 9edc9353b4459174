"""The step engine: one timestep of a converted network, and the loop over time around it.

`step` runs every call site of a `Plan` for one timestep: a folded per-step
layer on the step's tensors, a neuron or synapse cell from its state, a scale
elementwise, a readout passed through. `NetworkCell` is that step as a Keras
RNN cell, and `FusedNetwork` the loop over time (`keras.layers.RNN`) around
it. Everything that runs a converted model step by step uses this one step
function: `SpikingModel.predict` (a model with state), `fuse`, `Stream`,
`process_chunk` and the `sequence`, `chunk` and `step` signatures of
`export`. Whole sequences, chunks of any length and single steps therefore
compute the same operations on the same shapes: the same spikes.
"""

import math
import threading

import keras
from keras import ops, tree

from keras_spiking_conv.layers.base import FeatureSequence
from keras_spiking_conv.runtime.plan import plan_of, readout_of

PACKAGE = "keras_spiking_conv"

# Up to this many steps (known when the model is traced), `predict` and `fit` run the loop
# unrolled: the same step calls, without a `while` loop to set up around them. Measured
# with `benchmarks/low_latency.py`-style rounds (tutorial convnet, batch 200, 2 CPU cores,
# TensorFlow): 1.31x the images/s at T = 1, 1.13x at T = 2, 1.02x at T = 4 and 1.03x at
# T = 8 (medians of 8 interleaved rounds); a longer unrolled graph only takes longer to trace.
UNROLL_STEPS = 4

# The constant values of the loops running now, per thread: `{id(cell): values}`. Two
# threads running one model's constant-input loop at once each see their own.
_LOOP_CONSTANTS = threading.local()


def step(plan, inputs, states, training=False, constants=None):
    """One timestep of the network of `plan`.

    Args:
        plan: The model's `Plan`.
        inputs: One tensor per model input, `(batch, *features)`.
        states: Dict state key -> `(batch, *features)` tensor.
        training: Training mode.
        constants: Dict value id -> tensor of values that are the same at every
            step (see `constant_prefix`): their sites are skipped. `inputs` may
            then be None.

    Returns:
        `(outputs, new_states)`: one tensor per model output (before any
        readout), and the states after the step.
    """
    values = dict(zip(plan.inputs, inputs, strict=True)) if inputs is not None else {}
    values.update(constants or {})
    new_states = {}
    for site in plan.sites:
        if constants and site.outputs[0] in constants:
            continue  # computed once, before the loop
        args, kwargs = site.fill(values)
        outputs = _step_site(site, args, kwargs, states, new_states, training)
        for i, y in zip(site.outputs, tree.flatten(outputs), strict=True):
            values[i] = y
    return [values[i] for i in plan.outputs], new_states


def constant_prefix(plan, training=False):
    """The sites whose outputs stay the same at every step when every input is held
    constant (stateless sites that read only inputs or such outputs), in order.

    In training, a layer that draws random numbers (dropout, noise: a layer with a
    `seed_generator`) draws anew at every step, so it and what follows it run in
    the loop, as on a tiled input.
    """
    constant, sites = set(plan.inputs), []
    for site in plan.sites:
        layer = getattr(site.layer, "layer", site.layer)  # a TimeFold's per-step layer
        if training and isinstance(
            getattr(layer, "seed_generator", None), keras.random.SeedGenerator
        ):
            continue
        if site.role in ("stateless", "scale") and all(i in constant for i in site.inputs):
            constant.update(site.outputs)
            sites.append(site)
    return sites


def run_sites(sites, values, training=False):
    """Runs `sites` (one step each) on `values` (dict id -> tensor), adding their outputs."""
    for site in sites:
        args, kwargs = site.fill(values)
        outputs = _step_site(site, args, kwargs, {}, {}, training)
        for i, y in zip(site.outputs, tree.flatten(outputs), strict=True):
            values[i] = y
    return values


def _training(layer, training):
    return {"training": training} if getattr(layer, "_call_has_training_arg", False) else {}


def _step_site(site, args, kwargs, states, new_states, training):
    layer = site.layer
    if site.role in ("readout", "frames"):  # the loop's caller reads out; frames: a mark
        return args[0]
    if site.role == "stateless":
        return layer.layer(args[0], **_training(layer.layer, training))
    if isinstance(layer, FeatureSequence):
        cell = layer.cell
        if site.state is None:  # no state (a rate neuron): the state slot is unused
            output, _ = cell(args[0], [args[0]], **_training(cell, training))
            return output
        output, (state,) = cell(args[0], [states[site.state.key]], **_training(cell, training))
        new_states[site.state.key] = state
        return output
    if site.role in ("scale", "other") and len(args) == 1:
        return layer(*args, **{**kwargs, **_training(layer, training)})
    raise NotImplementedError(
        f"Layer '{site.name}' ({type(layer).__name__}) cannot run one timestep at a time: "
        "it is not a layer convert makes. Use the layer-wise converted model "
        "(model.execution = 'layers')."
    )


def start_frame(plan, states, batch_size):
    """A temporal model's states at the start of a frame: each neuron's cell says what it
    keeps (`FeatureCell.start_frame`: by default it starts afresh, so each frame is coded
    in its own steps; a spiking ReLU keeps its positive remainder); synapses, convolution
    frames, pooling and recurrent values carry over (`FrameRecurrenceCell.start_frame`
    asks its neuron)."""
    new = dict(states)
    for site in plan.sites:
        if site.state is None:
            continue
        if site.role == "neuron" or hasattr(site.layer.cell, "neuron"):
            key = site.state.key
            new[key] = site.layer.cell.start_frame(states[key], batch_size)
    return new


def initial_states(plan, batch_size):
    """Dict state key -> the state at time zero, `(batch_size, *features)`."""
    states = {}
    for site in plan.sites:
        if site.state is not None:
            (value,) = site.layer.get_initial_state(batch_size)
            states[site.state.key] = ops.cast(value, site.layer.compute_dtype)
    return states


@keras.saving.register_keras_serializable(package=PACKAGE)
class NetworkCell(keras.layers.Layer):
    """An RNN cell whose step is one timestep of a whole converted network (`step`).

    Its input is every network input of one step, flattened and concatenated;
    its output every network output, flattened and concatenated; its states
    are the network's neuron voltages and synapse states, in the order of
    `state_layout`. An output's `TimeReadout` passes each step through:
    `FusedNetwork` applies it to the whole sequence.

    Args:
        network: A converted model (from `keras_spiking_conv.convert`).
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, network, **kwargs):
        super().__init__(**kwargs)
        if isinstance(network, dict):
            network = keras.saving.deserialize_keras_object(network)
        self.network = network
        self.plan = plan_of(network)
        self.keys = list(self.plan.states)
        self.input_shapes = [tuple(x.shape[2:]) for x in network.inputs]
        # Each output's readout (or None) and the shape of one step of what it reads.
        self.readouts = [readout_of(y) for y in network.outputs]
        self.output_shapes = [
            tuple(y.shape[1:] if readout else y.shape[2:])
            for y, readout in zip(network.outputs, self.readouts, strict=True)
        ]
        self.state_size = [-1] * len(self.keys) if self.keys else [1]
        self.output_size = sum(math.prod(s) for s in self.output_shapes)
        self.constants = None

    @property
    def constants(self):
        """Values that are the same at every step (`FusedNetwork.run_constant` sets them
        for the duration of one loop, in its own thread), or None."""
        return getattr(_LOOP_CONSTANTS, "values", {}).get(id(self))

    @constants.setter
    def constants(self, values):
        running = _LOOP_CONSTANTS.__dict__.setdefault("values", {})
        if values is None:
            running.pop(id(self), None)
        else:
            running[id(self)] = values

    def build(self, input_shape):
        self.built = True

    def get_initial_state(self, batch_size=None):
        if not self.keys:
            return [ops.zeros((batch_size, 1), dtype=self.compute_dtype)]
        states = initial_states(self.plan, batch_size)
        return [states[key] for key in self.keys]

    def flatten_inputs(self, inputs):
        """One step's network inputs (one tensor each) as the cell's flat input."""
        pieces = [ops.reshape(x, (ops.shape(x)[0], -1)) for x in inputs]
        return pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)

    def split_inputs(self, flat):
        """The concatenated step input as one tensor per network input."""
        pieces, start, batch = [], 0, ops.shape(flat)[0]
        for shape in self.input_shapes:
            size = math.prod(shape)
            pieces.append(ops.reshape(flat[:, start : start + size], (batch, *shape)))
            start += size
        return pieces

    def split_outputs(self, flat, leading):
        """The cell's flat output (`(*leading, size)`) as one tensor per network output,
        each `(*leading, *step_shape)`."""
        pieces, start = [], 0
        for shape in self.output_shapes:
            size = math.prod(shape)
            pieces.append(ops.reshape(flat[..., start : start + size], (*leading, *shape)))
            start += size
        return pieces

    def call(self, inputs, states, training=False):
        current = dict(zip(self.keys, states, strict=False))
        split = None if self.constants is not None else self.split_inputs(inputs)
        if self.plan.temporal and self.keys:
            current = start_frame(self.plan, current, ops.shape(inputs)[0])
        # A temporal model with several steps per frame runs them all on this input
        # step (a frame) and outputs their mean.
        steps = []
        for _ in range(self.plan.steps_per_frame):
            if split is None:  # a constant input: only the loop's part runs
                outputs, new_states = step(self.plan, None, current, training, self.constants)
            else:
                outputs, new_states = step(self.plan, split, current, training)
            flat_out = [ops.reshape(y, (ops.shape(y)[0], -1)) for y in outputs]
            steps.append(flat_out[0] if len(flat_out) == 1 else ops.concatenate(flat_out, -1))
            current = {**current, **new_states}
        output = steps[0] if len(steps) == 1 else ops.mean(ops.stack(steps), axis=0)
        if not self.keys:
            return output, list(states)
        return output, [current[key] for key in self.keys]

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
        self.constant_rnn = keras.layers.RNN(
            self.cell, return_sequences=True, dtype=self.dtype_policy
        )
        # The same loop unrolled, for a few known steps (UNROLL_STEPS).
        self.unrolled_rnn = keras.layers.RNN(
            self.cell, return_sequences=True, unroll=True, dtype=self.dtype_policy
        )
        # Chunks from given states: the same cell in the same loop, also returning states.
        self.chunk_rnn = keras.layers.RNN(
            self.cell, return_sequences=True, return_state=True, dtype=self.dtype_policy
        )
        self.stateful = stateful

    @property
    def network(self):
        return self.cell.network

    def build(self, input_shape):
        self.built = True

    def _sequence(self, inputs):
        flat = tree.flatten(inputs)
        if flat[0].shape[1] == 0:
            layers = [spec.layer for spec in self.cell.plan.states.values()]
            raise ValueError(
                f"FusedNetwork '{self.name}' (neurons and synapses {layers}) received a time "
                f"axis of length 0 (input shape {tuple(flat[0].shape)}): a simulation needs "
                "at least one step. Give the input at least one timestep."
            )
        batch, time = ops.shape(flat[0])[0], ops.shape(flat[0])[1]
        pieces = [ops.reshape(x, (batch, time, -1)) for x in flat]
        sequence = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)
        return sequence, (batch, time)

    def _loop(self, sequence, rnn):
        """`rnn`, or the unrolled loop when the sequence has a few known steps."""
        steps = sequence.shape[1]
        if not rnn.stateful and steps is not None and steps <= UNROLL_STEPS:
            return self.unrolled_rnn
        return rnn

    def call(self, inputs, training=False):
        sequence, leading = self._sequence(inputs)
        return self._read_out(self._loop(sequence, self.rnn)(sequence, training=training), leading)

    def _read_out(self, output, leading):
        outputs = []
        for piece, spec, readout in zip(
            self.cell.split_outputs(output, leading),
            self.network.outputs,
            self.cell.readouts,
            strict=True,
        ):
            if readout is not None:
                piece = readout(piece)
            outputs.append(ops.cast(piece, spec.dtype))
        return outputs[0] if len(outputs) == 1 else outputs

    def run_constant(self, inputs, n_steps, training=False):
        """The network on inputs held constant for `n_steps` steps (inputs without a time
        axis): the sites before the first neuron or synapse run once, the rest in the
        loop. Returns the outputs as `call` does (each read out if it has a readout)."""
        flat = tree.flatten(inputs)
        values = run_sites(
            constant_prefix(self.cell.plan, training),
            dict(zip(self.cell.plan.inputs, flat, strict=True)),
            training,
        )
        batch = ops.shape(flat[0])[0]
        # The loop needs a sequence to run over: one number per step, not the inputs.
        clock = ops.zeros((batch, n_steps, 1), dtype=self.compute_dtype)
        self.cell.constants = values
        try:
            output = self._loop(clock, self.constant_rnn)(clock, training=training)
        finally:
            self.cell.constants = None
        return self._read_out(output, (batch, n_steps))

    def run_chunk(self, inputs, states, training=False):
        """The network on a chunk from given states: `(outputs, new_states)`, outputs
        before any readout (every step), states as dicts by key."""
        sequence, leading = self._sequence(inputs)
        keys = self.cell.keys
        initial = [states[key] for key in keys] if keys else None
        output, *final = self.chunk_rnn(sequence, initial_state=initial, training=training)
        outputs = [
            ops.cast(piece, spec.dtype)
            for piece, spec in zip(
                self.cell.split_outputs(output, leading), self.network.outputs, strict=True
            )
        ]
        return outputs, dict(zip(keys, final, strict=False)) if keys else {}

    def run_step(self, inputs, states, training=False):
        """One step from given states (inputs `(batch, *features)`): the cell's call."""
        keys = self.cell.keys
        flat = self.cell.flatten_inputs(inputs)
        batch = ops.shape(flat)[0]
        current = [states[key] for key in keys] if keys else self.cell.get_initial_state(batch)
        output, new = self.cell(flat, current, training=training)
        outputs = [
            ops.cast(piece, spec.dtype)
            for piece, spec in zip(
                self.cell.split_outputs(output, (batch,)),
                self.network.outputs,
                strict=True,
            )
        ]
        return outputs, dict(zip(keys, new, strict=False)) if keys else {}

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


def engine_of(model):
    """The `FusedNetwork` that runs `model` step by step (one per model). It is kept on the
    model outside Keras' attribute tracking: the layer refers back to its model, and a
    model must not track itself. Its name starts with `__` because Keras' weight saving
    and loading walk every other attribute (`load_weights` recursed through the cycle)."""
    fused = vars(model).get(ENGINE_ATTRIBUTE)
    if fused is None:
        fused = FusedNetwork(model, name=f"{model.name}_fused")
        object.__setattr__(model, ENGINE_ATTRIBUTE, fused)
    return fused


ENGINE_ATTRIBUTE = "__ksc_engine"
