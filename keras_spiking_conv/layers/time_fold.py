"""Apply a per-step layer to every timestep at once by folding time into the batch."""

import keras
from keras import ops, tree

from keras_spiking_conv.layers.base import Recorded

PACKAGE = "keras_spiking_conv"


def _fold_shape(shape):
    batch, time = shape[0], shape[1]
    folded = None if batch is None or time is None else batch * time
    return (folded, *shape[2:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeFold(Recorded, keras.layers.Wrapper):
    """Applies a stateless layer to every timestep of `(batch, time, ...)` inputs.

    Unlike `keras.layers.TimeDistributed`, which calls the layer once per step
    in a Python loop, `TimeFold` reshapes every input to
    `(batch * time, ...)`, calls the layer once, and reshapes every output back
    to `(batch, time, ...)`. The wrapped layer must treat batch items
    independently (Dense, convolutions, pooling, merges, inference-mode
    batch normalization, ...). Nested inputs (merge layers) are supported.

    Args:
        layer: The per-step `keras.layers.Layer`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        Each input `(batch, time, *step_shape)`.

    Output shape:
        Each output `(batch, time, *layer_output_shape[1:])`.
    """

    role = "stateless"

    def __init__(self, layer, **kwargs):
        super().__init__(layer, **kwargs)
        self.supports_masking = False

    def _check_rank(self, shapes):
        for shape in shapes:
            if len(shape) < 2:
                raise ValueError(
                    f"TimeFold '{self.name}' (wrapping {type(self.layer).__name__}) "
                    "expects inputs of shape (batch, time, ...). Received an input of "
                    f"shape {tuple(shape)}. Add a time axis to the data."
                )

    def build(self, input_shape=None):
        shapes = _shape_list(input_shape)
        self._check_rank(shapes)
        folded = [_fold_shape(s) for s in shapes]
        if not self.layer.built:
            self.layer.build(folded[0] if _is_single(input_shape) else folded)
        self.built = True

    def compute_output_spec(self, inputs, **kwargs):
        batch_time = tuple(tree.flatten(inputs)[0].shape[:2])
        folded = tree.map_structure(
            lambda x: keras.KerasTensor(_fold_shape(x.shape), dtype=x.dtype), inputs
        )
        outputs = self.layer.compute_output_spec(folded, **kwargs)
        return tree.map_structure(
            lambda y: keras.KerasTensor((*batch_time, *y.shape[1:]), dtype=y.dtype), outputs
        )

    def call(self, inputs, training=None):
        sizes = None

        def fold(x):
            nonlocal sizes
            shape = ops.shape(x)
            sizes = (shape[0], shape[1])
            return ops.reshape(x, (-1, *shape[2:]))

        folded = tree.map_structure(fold, inputs)
        kwargs = {"training": training} if self.layer._call_has_training_arg else {}
        outputs = self.layer(folded, **kwargs)
        return tree.map_structure(lambda y: ops.reshape(y, (*sizes, *ops.shape(y)[1:])), outputs)


def _is_single(shape):
    return isinstance(shape, (tuple, list)) and (
        len(shape) == 0 or shape[0] is None or isinstance(shape[0], int)
    )


def _shape_list(shape):
    """A list of shape tuples from one shape or a nested structure of shapes."""
    if _is_single(shape):
        return [tuple(shape)]
    if isinstance(shape, dict):
        return [s for v in shape.values() for s in _shape_list(v)]
    return [s for v in shape for s in _shape_list(v)]
