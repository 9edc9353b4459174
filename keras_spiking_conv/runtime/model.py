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
        """The step engine this model runs on, or None when it runs layer by layer."""
        if self.execution == "fused" or (self.execution == "auto" and plan_of(self).states):
            return engine_of(self)
        return None

    def call(self, inputs, training=None, mask=None):
        fused = self._fused_network()
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
        return pack_outputs(self, outputs)  # structured as the layer-wise execution's
