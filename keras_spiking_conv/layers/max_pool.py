"""Max pooling of firing rates for spiking inputs: an RNN cell and a sequence layer."""

import keras

from keras_spiking_conv import neurons
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence

PACKAGE = "keras_spiking_conv"

L = keras.layers

# The max-pooling layers the cell pools with.
MAX_POOLING = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)


def _pooling_layer(pooling, owner):
    if isinstance(pooling, dict):
        pooling = keras.layers.deserialize(pooling)
    if not isinstance(pooling, MAX_POOLING):
        raise TypeError(
            f"{owner}: `pooling` must be a Keras max-pooling layer "
            f"({', '.join(c.__name__ for c in MAX_POOLING)}) or its serialized config. "
            f"Received: {pooling!r} ({type(pooling).__name__})"
        )
    return pooling


@keras.saving.register_keras_serializable(package=PACKAGE)
class AccumulatedMaxPoolCell(FeatureCell):
    """Cell of max pooling over the accumulated input.

    Each step: `total += x; y = pool(total) - pool(total - x)`
    (`neurons.accumulated_max_pool_step`), from `total = 0`. The mean of the
    first `T` outputs is `pool` of the mean of the first `T` inputs: max pooling
    of firing rates, at every `T`.

    Args:
        pooling: A Keras max-pooling layer (`MaxPooling1D/2D/3D`,
            `GlobalMaxPooling1D/2D/3D`) or its serialized config: the pooling
            applied to the totals.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: One timestep, shape `(batch, *features)`.
        states: List with the accumulated input, shape `(batch, *features)`.
    """

    def __init__(self, pooling, **kwargs):
        super().__init__(**kwargs)
        self.pooling = _pooling_layer(pooling, f"{type(self).__name__} '{self.name}'")

    def build(self, input_shape):
        super().build(input_shape)
        if not self.pooling.built:
            self.pooling.build((None, *self.feature_shape))

    @property
    def pooled_shape(self):
        """Shape of one step's output without the batch axis (None before build)."""
        if self.feature_shape is None:
            return None
        return tuple(self.pooling.compute_output_shape((None, *self.feature_shape))[1:])

    @property
    def output_size(self):
        shape = self.pooled_shape
        return shape[0] if shape is not None and len(shape) == 1 else -1

    def call(self, inputs, states):
        output, total = neurons.accumulated_max_pool_step(inputs, states[0], self.pooling)
        return output, [total]

    def get_config(self):
        return {**super().get_config(), "pooling": keras.layers.serialize(self.pooling)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AccumulatedMaxPooling(FeatureSequence):
    """Rate-correct max pooling of a spiking sequence, `(batch, time, *features)`.

    Pools the inputs accumulated since the first step and outputs, each step,
    how much the pooled total grew (`AccumulatedMaxPoolCell`). Read out as a
    mean over `T` steps, it is exactly `pooling` of the mean inputs: max pooling
    of firing rates. Pooling each step's spikes instead (the layer folded over
    time) gives the mean of per-step maxima, which overcounts when neurons of a
    window fire at different steps. `convert` uses it for a model's max pooling
    when the network has spiking neurons (`max_pooling="accumulated"`).

    Args:
        pooling: A Keras max-pooling layer or its serialized config.
        return_sequences: Return every step. Defaults to `True`.
        return_state: Also return the final state. Defaults to `False`.
        stateful: Keep the state between batches. Defaults to `False`.
        unroll: Unroll the loop over time. Defaults to `False`.
        **kwargs: Base layer keyword arguments.

    Call arguments:
        sequences: Shape `(batch, time, *features)`.
    """

    role = "state"
    state_kind = "total"

    def __init__(
        self,
        pooling,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = AccumulatedMaxPoolCell(
            pooling,
            name=f"{kwargs.get('name', 'accumulated_max_pooling')}_cell",
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

    @property
    def pooling(self):
        return self.cell.pooling

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length, features = sequences_shape[0], sequences_shape[1], sequences_shape[2:]
        pooled = tuple(self.pooling.compute_output_shape((batch, *features))[1:])
        output_shape = (batch, length, *pooled) if self.return_sequences else (batch, *pooled)
        if self.return_state:
            return output_shape, (batch, *features)
        return output_shape

    def get_config(self):
        return {**super().get_config(), "pooling": keras.layers.serialize(self.pooling)}
