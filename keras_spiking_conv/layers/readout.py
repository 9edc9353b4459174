"""Reading a class score (or any output) out of a sequence of timesteps."""

import keras
from keras import ops

from keras_spiking_conv.layers.base import Recorded

PACKAGE = "keras_spiking_conv"

READOUTS = ("mean", "last")


def check_readout(readout, *, owner):
    """Checks a readout option: `None`, `"mean"` or `"last"`."""
    if readout is not None and readout not in READOUTS:
        raise ValueError(
            f"{owner}: Argument `readout` must be None (every timestep's output), 'mean' "
            "(the mean over time) or 'last' (the last timestep). "
            f"Received: readout={readout!r}"
        )
    return readout


@keras.saving.register_keras_serializable(package=PACKAGE)
class TimeReadout(Recorded, keras.layers.Layer):
    """Reduces `(batch, time, ...)` to `(batch, ...)`: the mean over time, or the last step.

    `convert(..., readout="mean")` puts one after every output of the converted
    model, so `predict` returns `(batch, ...)` and `evaluate`/`fit` take the
    ordinary labels of the original model. Running step by step (`Stream`,
    `process_chunk`, the `step` and `chunk` signatures of `export`), there is
    no whole sequence to reduce: those return every step's output (this
    layer's input) and leave the reduction to the caller.

    Args:
        mode: `"mean"` or `"last"`. Defaults to `"mean"`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        `(batch, time, *features)`. Output shape: `(batch, *features)`.
    """

    role = "readout"

    def __init__(self, mode="mean", **kwargs):
        super().__init__(**kwargs)
        if mode not in READOUTS:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': Argument `mode` must be 'mean' or "
                f"'last'. Received: mode={mode!r}"
            )
        self.mode = mode

    def call(self, inputs):
        if self.mode == "last":
            return inputs[:, -1]
        return ops.mean(inputs, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
