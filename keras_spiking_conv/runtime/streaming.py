"""Running a converted model step by step, with its neuron and synapse states made explicit.

A converted model maps a whole sequence `(batch, time, ...)` to `(batch, time, ...)`.
Its only memory across timesteps is the state of its recurrent layers: the
voltage of every spiking `SpikingReLU` and the filter state of every
`LowpassSynapse` (every other layer treats each timestep independently). This
module makes those states explicit, so a sequence can be processed in chunks
of any length, one request at a time:

- `state_layout(model)`: which states a model has, their keys and shapes;
- `initial_states(model, batch_size)`: the states at time zero;
- `process_chunk(model, inputs, states)`: outputs for a chunk, and the states
  after it;
- `Stream`: a small stateful wrapper that keeps the states between calls.

Processing a sequence in chunks (of any lengths) gives the outputs of
processing it at once. The same functions back the `chunk`, `step` and
`initial_state` signatures of `keras_spiking_conv.export`.

Chunks run on the step engine (`runtime.engine`), the loop that `predict`
uses for a model with state, so a stream gives the same spikes as `predict`.

State keys. Each state is keyed `"state_" + path`, where `path` is the name of
its layer, preceded by the names of the nested models it sits in, joined by
`"__"` (`"state_conv2d_neuron"`, `"state_block__dense_neuron"`). A layer (or a
nested model) called more than once has one state per call; calls after the
first get `"_call1"`, `"_call2"`, ... after their name, in graph order.
Characters other than letters, digits and `_` are replaced by `_` (as
TensorFlow does for signature arguments). The plan (`runtime.plan`) names them.
"""

import keras
from keras import ops, tree

from keras_spiking_conv.runtime import engine
from keras_spiking_conv.runtime.plan import StateSpec, pack_outputs, plan_of

__all__ = [
    "Stream",
    "StateSpec",
    "initial_states",
    "process_chunk",
    "state_layout",
]


def state_layout(model):
    """The states a converted model carries from one timestep to the next.

    These are the voltages of its spiking `SpikingReLU` layers and the filter
    states of its `LowpassSynapse` layers (rate-mode neurons have none), with
    their keys as used by `initial_states`, `process_chunk`, `Stream` and the
    `step`, `chunk` and `initial_state` signatures of `export`.

    Args:
        model: A converted model (from `keras_spiking_conv.convert`).

    Returns:
        A dict mapping each state key (see the module docstring; e.g.
        `"state_conv2d_neuron"`) to a `StateSpec` with its layer name, kind
        (`"voltage"` or `"filter"`), shape `(None, *features)` and dtype, in
        graph order.

    Example:

    >>> for key, spec in keras_spiking_conv.state_layout(snn).items():
    ...     print(key, spec.kind, spec.shape)
    state_conv2d_neuron voltage (None, 26, 26, 8)
    state_conv2d_synapse filter (None, 26, 26, 8)
    """
    check_model(model, "state_layout()")
    return dict(plan_of(model).states)


def check_model(model, where):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{where} expects a converted keras.Model (from keras_spiking_conv.convert). "
            f"Received: {type(model).__name__}"
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"{where}: model '{model.name}' is not built, so its inputs are unknown. Use a "
            "model from keras_spiking_conv.convert()."
        )


def standardize_inputs(model, inputs, where, time_axis=True):
    """`inputs` (one array, a list, or a dict by input name) as a flat list ordered like
    `model.inputs`, with a rank check that explains a missing time axis."""
    names = plan_of(model).input_keys
    if isinstance(inputs, dict):
        missing = sorted(set(names) - set(inputs))
        if missing:
            raise ValueError(
                f"{where}: missing inputs {missing}. Model '{model.name}' takes the inputs "
                f"{names}. Received keys: {sorted(inputs)}"
            )
        flat = [inputs[name] for name in names]
    elif isinstance(inputs, (list, tuple)):
        flat = list(inputs)
    else:
        flat = [inputs]
    if len(flat) != len(names):
        raise ValueError(
            f"{where}: model '{model.name}' takes {len(names)} inputs ({names}). "
            f"Received {len(flat)}."
        )
    for name, x, spec in zip(names, flat, model.inputs, strict=True):
        expected = len(spec.shape) - (0 if time_axis else 1)
        rank = len(ops.shape(x))
        if rank == expected - 1:
            hint = (
                "It has no time axis: add one, e.g. `x[:, None]` for one step or "
                "`keras_spiking_conv.tile_time(x, n_steps)` for a constant input (or "
                "convert with `constant_input=True` for a model that holds it itself)."
                if time_axis
                else "One step has the shape of the model input without its time axis."
            )
            raise ValueError(
                f"{where}: input '{name}' should have rank {expected} "
                f"({'(batch, time, ...)' if time_axis else '(batch, ...)'}), like "
                f"model input {tuple(spec.shape)}, but has shape {tuple(ops.shape(x))}. "
                f"{hint}"
            )
        if rank != expected:
            raise ValueError(
                f"{where}: input '{name}' should have rank {expected}, like model input "
                f"{tuple(spec.shape)}; received shape {tuple(ops.shape(x))}."
            )
    return flat


def initial_states(model, batch_size):
    """The states of a converted model at time zero, for `batch_size` sequences.

    Synapse filter states are zero; neuron voltages are each neuron's
    `initial_voltage` (its fixed random voltages, or the constant), repeated
    for every sequence of the batch.

    Args:
        model: A converted model.
        batch_size: Number of sequences (an int, or a scalar tensor).

    Returns:
        A dict mapping each key of `state_layout(model)` to a tensor of shape
        `(batch_size, *features)`.
    """
    check_model(model, "initial_states()")
    return engine.initial_states(plan_of(model), batch_size)


def process_chunk(model, inputs, states, training=False):
    """Runs a converted model on a chunk of timesteps from given states.

    Each recurrent layer (spiking neuron, synapse) starts from its entry in
    `states` instead of its initial state; every other layer runs as in the
    model. Running consecutive chunks, passing each call's new states to the
    next, gives the outputs of running the whole sequence at once.

    Args:
        model: A converted model (inputs and outputs `(batch, time, ...)`).
        inputs: The chunk, `(batch, time, ...)` with any `time >= 1`: an array,
            a list of arrays (one per model input) or a dict by input name.
        states: A dict with a `(batch, *features)` tensor for each key of
            `state_layout(model)`, e.g. from `initial_states` or a previous call.
        training: Run in training mode. Defaults to `False`.

    Returns:
        A tuple `(outputs, new_states)`: `outputs` structured like the model's
        outputs, each `(batch, time, ...)` (a model converted with a `readout`
        returns every step's output, before the readout: averaging them over
        all chunks gives the `"mean"` readout); `new_states` a dict like `states`,
        the states after the chunk's last step.

    It runs the step engine (the loop `predict` uses). This runs eagerly. For
    long streams prefer `Stream`, which compiles it: eager JAX compiles the
    time loop at every call, and on PyTorch (outside `torch.no_grad()`) each
    new state keeps the autograd graph of all chunks.
    """
    check_model(model, "process_chunk()")
    flat = standardize_inputs(model, inputs, "process_chunk()")
    layout = plan_of(model).states
    missing = sorted(set(layout) - set(states))
    if missing:
        raise ValueError(
            f"process_chunk(): missing states {missing}. Get them with "
            "keras_spiking_conv.initial_states(model, batch_size)."
        )
    return run_chunk(model, flat, states, training=training)


def run_chunk(model, flat_inputs, states, training=False):
    """`process_chunk` without checks: flat inputs; outputs structured like the model's."""
    outputs, new_states = engine.engine_of(model).run_chunk(flat_inputs, states, training)
    return pack_outputs(model, outputs), new_states


class Stream:
    """A converted model that keeps its neuron and synapse states between calls.

    Feed a long sequence in chunks of any length; the outputs equal those of
    running the whole sequence at once. `reset()` starts a new sequence. The
    batch size is set by the first chunk after a reset. The state is a fixed
    set of tensors replaced at every call, so memory does not grow with the
    number of chunks. Works on every Keras backend. The chunk function is
    compiled on TensorFlow (`tf.function`, with relaxed shapes after a few
    chunk lengths) and JAX (`jax.jit`, one compilation per chunk shape), and
    runs eagerly under `torch.no_grad()` on PyTorch. Each `Stream` compiles its
    own function: reuse a stream (`reset()`) rather than making one per sequence.

    Args:
        model: A converted model (from `keras_spiking_conv.convert`).
        compile: Compile the chunk function on TensorFlow and JAX. Defaults
            to `True`. (Eager JAX compiles the time loop again at every call,
            so memory grows with the number of chunks: keep `True` there.)

    Attributes:
        model: The wrapped model (shared, not copied: later weight changes apply).
        layout: `state_layout(model)`.
        states: The current states (dict by state key), or `None` after a reset.

    Example:

    ```python
    stream = keras_spiking_conv.Stream(snn)
    y1 = stream(x[:, :10])   # steps 0-9
    y2 = stream(x[:, 10:])   # steps 10-..., continuing from the states after step 9
    stream.reset()           # the next call starts a new sequence
    ```
    """

    def __init__(self, model, compile=True):
        check_model(model, "Stream()")
        self.model = model
        self.layout = state_layout(model)
        self.states = None
        self._fn = self._run
        backend = keras.backend.backend()
        if compile and backend == "tensorflow":
            import tensorflow as tf

            self._fn = tf.function(self._run, reduce_retracing=True, autograph=False)
        elif compile and backend == "jax":
            self._fn = self._jax_function()
        elif backend == "torch":
            import torch

            # Without this, each new state would hold the autograd graph of every
            # chunk before it, and memory would grow with the number of chunks.
            self._fn = torch.no_grad()(self._run)

    def _run(self, flat_inputs, states):
        return run_chunk(self.model, flat_inputs, states)

    def _jax_function(self):
        """The chunk function under `jax.jit`, with the weights passed in as arguments (so
        they are not baked into the compiled program and later changes apply). Eager JAX
        would compile the time loop again at every call, without bound."""
        import jax

        variables = list(self.model.variables)

        def pure(values, flat_inputs, states):
            with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
                return self._run(flat_inputs, states)

        jitted = jax.jit(pure)
        return lambda flat_inputs, states: jitted([v.value for v in variables], flat_inputs, states)

    def reset(self):
        """Forgets the states: the next call starts a new sequence from time zero."""
        self.states = None

    def __call__(self, chunk):
        """Processes the next chunk of the current sequence.

        Args:
            chunk: `(batch, time, ...)` with any `time >= 1`: an array, a list
                of arrays (one per model input) or a dict by input name.

        Returns:
            The model's outputs for the chunk, as NumPy arrays shaped
            `(batch, time, ...)`, structured like the model's outputs (for a
            model converted with a `readout`: every step's output before it).
        """
        flat = standardize_inputs(self.model, chunk, "Stream")
        flat = [
            ops.convert_to_tensor(x, dtype=spec.dtype)
            for x, spec in zip(flat, self.model.inputs, strict=True)
        ]
        batch = int(ops.shape(flat[0])[0])
        if self.states is None:
            self.states = initial_states(self.model, batch)
        else:
            expected = next(iter(self.states.values())).shape[0] if self.states else batch
            if int(expected) != batch:
                raise ValueError(
                    f"Stream: this sequence has batch size {int(expected)}, but the chunk has "
                    f"{batch}. Call `reset()` to start new sequences with another batch size."
                )
        outputs, self.states = self._fn(flat, self.states)
        return tree.map_structure(ops.convert_to_numpy, outputs)
