"""Firing-rate scaling."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv._validation import check_bool, check_positive_values
from keras_spiking_conv.layers.base import Recorded

PACKAGE = "keras_spiking_conv"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RateScale(Recorded, keras.layers.Layer):
    """Multiplies its input by a firing-rate scale `scale` (or divides by it).

    The converter puts `RateScale(s)` before a neuron and
    `RateScale(s, inverse=True)` after it (NengoDL's `scale_firing_rates`):
    a ReLU neuron then fires `s` times faster while the next layer sees the
    same mean value, so spiking approaches rate as `s` grows.

    Args:
        scale: The factor, a finite number `> 0`, or one per channel (a 1-D
            sequence as long as the input's last axis, e.g. from
            `calibrate(..., per_channel=True)`).
        inverse: Divide by `scale` instead of multiplying. Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        Any (with per-channel scales, the last axis is the channels). Output
        shape: the same.
    """

    role = "scale"

    def __init__(self, scale, inverse=False, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.scale = check_positive_values("scale", scale, owner=owner)
        self.inverse = check_bool("inverse", inverse, owner=owner)
        self.supports_masking = True

    def build(self, input_shape):
        if isinstance(self.scale, tuple) and input_shape[-1] != len(self.scale):
            raise ValueError(
                f"{type(self).__name__} '{self.name}' has {len(self.scale)} per-channel scales "
                f"but its input has {input_shape[-1]} channels (last axis; input shape "
                f"{tuple(input_shape)}). Give one scale per channel, or one for all."
            )
        self.built = True

    def call(self, inputs):
        # Division is a multiplication by the reciprocal, computed once: XLA
        # (Keras' default for `predict` on TensorFlow) rewrites `x / s` that way,
        # and the eager, compiled and exported forms must round alike.
        scale = np.asarray(self.scale, dtype="float64")  # one, or one per channel
        factor = 1.0 / scale if self.inverse else scale
        return inputs * ops.convert_to_tensor(factor, dtype=inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        scale = list(self.scale) if isinstance(self.scale, tuple) else self.scale
        return {**super().get_config(), "scale": scale, "inverse": self.inverse}
