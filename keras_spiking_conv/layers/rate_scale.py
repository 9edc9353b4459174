"""Firing-rate scaling."""

import keras

from keras_spiking_conv._validation import check_bool, check_number

PACKAGE = "keras_spiking_conv"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RateScale(keras.layers.Layer):
    """Multiplies its input by a firing-rate scale `scale` (or divides by it).

    The converter puts `RateScale(s)` before a neuron and
    `RateScale(s, inverse=True)` after it (NengoDL's `scale_firing_rates`):
    a ReLU neuron then fires `s` times faster while the next layer sees the
    same mean value, so spiking approaches rate as `s` grows.

    Args:
        scale: The factor, a finite number `> 0`.
        inverse: Divide by `scale` instead of multiplying. Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        Any. Output shape: the same.
    """

    def __init__(self, scale, inverse=False, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.scale = check_number("scale", scale, owner=owner, positive=True)
        self.inverse = check_bool("inverse", inverse, owner=owner)
        self.supports_masking = True

    def call(self, inputs):
        # Division is a multiplication by the reciprocal, computed once: XLA
        # (Keras' default for `predict` on TensorFlow) rewrites `x / s` that way,
        # and the eager, compiled and exported forms must round alike.
        factor = 1.0 / self.scale if self.inverse else self.scale
        return inputs * factor

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "inverse": self.inverse}
