"""The model `convert` returns, and `fuse`: which engine runs a converted model.

A converted model runs layer by layer (Keras' functional execution: each
per-step layer on every timestep at once, time folded into the batch; each
neuron and synapse as its own loop) or as one loop over time for the whole
network (`FusedNetwork`, the step engine). The fused form keeps each step's
activity in cache and memory flat in the number of steps; on CPU it is the
faster form for spiking simulation (docs/performance.md). Both compute the
same equations; their outputs match up to float rounding (convolutions of
different batch sizes may round differently in the last bit).
"""

import keras
import numpy as np
from keras import tree

from keras_spiking_conv.runtime.engine import FusedNetwork, engine_of
from keras_spiking_conv.runtime.plan import inputs_struct, pack_outputs, plan_of

PACKAGE = "keras_spiking_conv"


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
    inputs = tree.pack_sequence_as(inputs_struct(model), inputs)  # dict keys kept
    layer = FusedNetwork(model, stateful=stateful, name=f"{model.name}_fused")
    return keras.Model(inputs, layer(inputs), name=f"{model.name}_fused")


class CheckedInputs:
    """Mixin: `fit`, `evaluate` and `predict` check their data's shapes up front.

    Keras traces its step functions once per input signature and then relaxes
    them (a second rank becomes an unknown shape), so a wrong shape after a
    first run would only meet an opaque error inside the trace. Arrays, a
    `tf.data.Dataset`'s element spec and a `keras.utils.PyDataset`'s first batch
    are checked before Keras sees them (`check_input_shapes`).
    """

    time_axis = True  # whether the model's inputs have a time axis

    def _check_data(self, x):
        if hasattr(x, "element_spec"):  # a tf.data.Dataset: its spec, no data read
            x = x.element_spec
        elif isinstance(x, keras.utils.PyDataset):
            x = x[0]
        else:
            check_input_shapes(self, x, self.time_axis)
            return
        if isinstance(x, tuple):  # (inputs, targets[, weights])
            x = x[0]
        check_input_shapes(self, x, self.time_axis)

    def fit(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_data(x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        self._check_data(x)
        return super().predict(x, *args, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class SpikingModel(CheckedInputs, keras.Model):
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
        """The step engine this model runs on, or None when it runs layer by layer."""
        plan = plan_of(self)
        if self.execution == "layers" and plan.states and plan.temporal:
            raise ValueError(
                f"Model '{self.name}' is a temporal model (convert(..., temporal=True)) "
                "with state: only the step engine runs its frames (several steps per "
                "frame, neurons starting each frame afresh). Set model.execution = "
                "'auto' (or 'fused')."
            )
        if self.execution == "fused" or (self.execution == "auto" and plan.states):
            return engine_of(self)
        return None

    def call(self, inputs, training=None, mask=None):
        fused = self._fused_network()
        check_input_shapes(self, inputs, time_axis=True)
        flat = self._standardize_inputs(inputs)  # Keras' own checks and conversions
        if fused is None:
            return super().call(inputs, training=training, mask=mask)
        outputs = fused(flat[0] if len(flat) == 1 else flat, training=training)
        return pack_outputs(self, outputs)  # structured as the layer-wise execution's


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConstantInput(keras.layers.Layer):
    """A converted network run on inputs held constant for `n_steps` steps.

    Takes the original model's inputs (no time axis) and runs the network for
    `n_steps` steps without a `(batch, n_steps, ...)` copy of them: the layers
    before the first neuron or synapse run once, the rest in the step engine's
    loop. `convert(model, n_steps=T, constant_input=True)` builds it.

    Args:
        network: A converted model (inputs `(batch, time, ...)`).
        n_steps: Number of timesteps, an integer `>= 1`.
        **kwargs: Base layer keyword arguments.
    """

    def __init__(self, network, n_steps, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if isinstance(network, dict):
            network = keras.saving.deserialize_keras_object(network)
        self.network = network
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(
                f"ConstantInput '{self.name}': `n_steps` must be a positive integer (the "
                f"steps each input is held for). Received: n_steps={n_steps!r}"
            )
        self.n_steps = int(n_steps)
        self.engine = FusedNetwork(network, name=f"{network.name}_engine")

    def build(self, input_shape):
        self.built = True

    def call(self, inputs, training=False):
        return self.engine.run_constant(inputs, self.n_steps, training=training)

    def compute_output_spec(self, inputs, training=False):
        def with_time(x):
            return keras.KerasTensor((x.shape[0], self.n_steps, *x.shape[1:]), dtype=x.dtype)

        return self.network.compute_output_spec(tree.map_structure(with_time, inputs))

    def get_config(self):
        return {
            **super().get_config(),
            "network": keras.saving.serialize_keras_object(self.network),
            "n_steps": self.n_steps,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConstantInputModel(CheckedInputs, keras.Model):
    """The model `convert(..., constant_input=True)` returns.

    It takes the original model's inputs, without a time axis, and holds each
    for `n_steps` steps (its one layer is a `ConstantInput`). `fit`, `evaluate`
    and `predict` work as for any Keras model. Tools that work on time steps
    (`probe`, `Stream`, `export`, `latency_sweep`, `estimate_energy`, ...) take
    its `network`, the converted model with a time axis, fed with
    `tile_time(x, model.n_steps)`.
    """

    # Recorded, not parsed: the plan refuses this model and points to `network`.
    constant_input = True
    time_axis = False

    @property
    def _constant_input_layer(self):
        return next(layer for layer in self.layers if isinstance(layer, ConstantInput))

    @property
    def network(self):
        """The converted model with a time axis that this model runs."""
        return self._constant_input_layer.network

    @property
    def n_steps(self):
        """The number of steps each input is held for."""
        return self._constant_input_layer.n_steps

    def __call__(self, inputs, *args, **kwargs):
        # Before Keras' own input check, whose message cannot say why.
        check_input_shapes(self, inputs, time_axis=False)
        return super().__call__(inputs, *args, **kwargs)


def check_input_shapes(model, inputs, time_axis):
    """Raises a ValueError naming the expected shape when an input cannot be `model`'s.

    Keras' own standardization would expand a missing last axis of size 1, which
    turns an image batch `(batch, 28, 28, 1)` into a wrong `(batch, 28, 28, 1, 1)`
    sequence instead of an error, so ranks and known sizes are checked first.
    """
    if inputs is None:
        return
    expected = tree.flatten(inputs_struct(model))
    if isinstance(inputs, dict) and not isinstance(inputs_struct(model), dict):
        # Keras feeds list-structured inputs by name too.
        if not all(ref.name in inputs for ref in expected):
            return  # Keras' message names the inputs
        received = [inputs[ref.name] for ref in expected]
    else:
        received = tree.flatten(inputs)
    if len(received) != len(expected):
        return  # Keras' message names the number of inputs
    for ref, x in zip(expected, received, strict=True):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            return  # a generator, a DataLoader, ...: Keras reads and checks it
        try:
            dtype = keras.backend.standardize_dtype(x.dtype)
            shape = tuple(x.shape)
        except (ValueError, TypeError):  # unknown rank while tracing, object arrays
            continue
        want = tuple(ref.shape)
        ranks = [want] + ([want[:-1]] if want and want[-1] == 1 else [])
        fits = any(
            len(shape) == len(w)
            and all(a is None or b is None or a == b for a, b in zip(shape[1:], w[1:], strict=True))
            for w in ranks
        )
        if fits and dtype != "string":
            continue
        owner = f"{type(model).__name__} '{model.name}'"
        shown = (
            "(batch, "
            + ", ".join("time" if i == 1 and time_axis else str(d) for i, d in enumerate(want) if i)
            + ")"
        )
        if time_axis:
            hint = (
                "It takes a time axis: hold static inputs for T steps with "
                "keras_spiking_conv.tile_time(x, T) (or tfds_pipeline(..., n_steps=T)), or "
                "convert with constant_input=True and n_steps=T to feed them as they are."
            )
        else:
            hint = (
                f"It holds each input for its {model.n_steps} steps itself: feed inputs "
                "without a time axis (a time series needs the model's `network`, which "
                "takes (batch, time, ...))."
            )
        problem = f"dtype {dtype}" if fits else f"shape {shape}"
        raise ValueError(
            f"{owner}: input '{ref.name}' expects shape {shown} ({ref.dtype}), but received "
            f"{problem}. {hint}"
        )


def constant_input_model(network, n_steps):
    """A model taking `network`'s inputs without their time axis, held for `n_steps`."""
    inputs = [
        keras.Input(batch_shape=(x.shape[0], *x.shape[2:]), dtype=x.dtype, name=x.name)
        for x in network.inputs
    ]
    inputs = tree.pack_sequence_as(inputs_struct(network), inputs)
    layer = ConstantInput(network, n_steps, name=f"{network.name}_constant_input")
    return ConstantInputModel(inputs, layer(inputs), name=network.name)
