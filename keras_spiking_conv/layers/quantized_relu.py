"""The conversion-aware QCFS activation: a ReLU quantized to what a spiking neuron computes."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import check_bool, check_integer, check_number

PACKAGE = "keras_spiking_conv"

# A learned threshold is kept above this (the activation divides by it).
MIN_THRESHOLD = 1e-3


def check_levels(levels, *, owner):
    """Checks a number of quantization levels: an integer `>= 1`."""
    hint = "the number of timesteps whose spike counts the activation mimics; 4-16 is usual"
    return check_integer("levels", levels, owner=owner, minimum=1, hint=hint)


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedReLU(keras.layers.Layer):
    """ReLU clipped at a learned threshold and quantized to `levels` steps (QCFS).

    `threshold * clip(floor(x * levels / threshold + 1/2) / levels, 0, 1)`, the
    quantization clip-floor-shift activation of Bu et al. (ICLR 2022), with a
    learned `threshold` (one per layer, or with `per_channel` one per channel)
    and a straight-through gradient for the floor.
    A network trained with it converts to integrate-and-fire neurons whose
    threshold is `threshold` and whose voltage starts at half of it (the
    converter's default `initial_voltage=0.5`), and reaches its accuracy in
    about `levels` timesteps. `keras_spiking_conv.quantize_activations` puts
    it in place of a trained model's ReLUs; `convert(...,
    swap_activations={QuantizedReLU: "spiking_relu"})` (or `"quantized_relu"`)
    then makes those neurons spiking with no scale to choose.

    Args:
        levels: Number of quantization steps, an integer `>= 1`. Defaults to `8`.
        threshold: Initial threshold (the clip value), `> 0`: a number, or with
            `per_channel` one number per channel (a list). Defaults to `1.0`.
        trainable_threshold: Learn the threshold. Defaults to `True`.
        per_channel: One threshold per channel (the last axis: a convolution's
            filters, a Dense layer's units) instead of one for the layer, so each
            channel's levels cover its own range (after BatchNormalization is
            folded, channels' ranges differ several-fold). Defaults to `False`;
            `quantize_activations` turns it on (docs/latency.md: measured).
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        Any. Output shape: the same.

    Example:

    >>> layer = QuantizedReLU(levels=4, threshold=2.0)
    >>> keras.ops.convert_to_numpy(layer(np.array([-1.0, 0.3, 0.8, 1.3, 5.0])))
    array([0. , 0.5, 1. , 1.5, 2. ], dtype=float32)
    """

    def __init__(
        self, levels=8, threshold=1.0, trainable_threshold=True, per_channel=False, **kwargs
    ):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.levels = check_levels(levels, owner=owner)
        self.per_channel = check_bool("per_channel", per_channel, owner=owner)
        if isinstance(threshold, (list, tuple, np.ndarray)):
            if not self.per_channel:
                raise ValueError(
                    f"{owner}: Argument `threshold` is one value per channel "
                    f"({len(threshold)} values) but `per_channel` is False. Pass "
                    "per_channel=True, or one number."
                )
            self.initial_threshold = [
                check_number("threshold", float(t), owner=owner, positive=True)
                for t in np.ravel(threshold)
            ]
        else:
            self.initial_threshold = check_number(
                "threshold", threshold, owner=owner, positive=True
            )
        self.trainable_threshold = check_bool(
            "trainable_threshold", trainable_threshold, owner=owner
        )
        self.supports_masking = True

    def build(self, input_shape):
        shape = ()
        initial = self.initial_threshold
        if self.per_channel:
            channels = input_shape[-1]
            if isinstance(initial, list) and channels is not None and len(initial) != channels:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': Argument `threshold` has "
                    f"{len(initial)} values but the input has {channels} channels (its last "
                    f"axis; input shape {tuple(input_shape)}). Pass one value per channel, "
                    "or one number for all."
                )
            shape = (channels,)
        self.threshold = self.add_weight(
            shape=shape,
            initializer=keras.initializers.Constant(initial),
            trainable=self.trainable_threshold,
            constraint=keras.constraints.NonNeg(),
            name="threshold",
        )
        self.built = True

    def threshold_value(self):
        """The current threshold: a Python float, or with `per_channel` a tuple of
        floats (one per channel)."""
        # `.numpy()`: `np.array` of a TensorFlow Variable warns (NumPy 2 `copy` keyword).
        value = np.maximum(np.asarray(self.threshold.numpy(), dtype="float64"), MIN_THRESHOLD)
        return tuple(value.tolist()) if self.per_channel else float(value)

    def call(self, inputs):
        threshold = ops.maximum(ops.cast(self.threshold, inputs.dtype), MIN_THRESHOLD)
        return neurons.quantized_relu(inputs, threshold, self.levels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "levels": self.levels,
            "threshold": self.initial_threshold,
            "trainable_threshold": self.trainable_threshold,
            "per_channel": self.per_channel,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class QuantizedSimpleRNNCell(keras.layers.SimpleRNNCell):
    """A `SimpleRNNCell` whose ReLU is a `QuantizedReLU` (QCFS): each frame's output is
    `QuantizedReLU(x @ W + h @ U + b)`, so the next frame's recurrent input is quantized too.

    `quantize_activations` puts it (in a `keras.layers.RNN`) in place of a
    `SimpleRNN(activation="relu")` of a temporal model; `convert(temporal=True,
    steps_per_frame=k, swap_activations={QuantizedReLU: SpikingReLU(negative_spikes=True)},
    scale_firing_rates=levels / k)` then makes its units spiking ReLUs with the learned
    thresholds, which compute it exactly (docs/temporal.md; without negative spikes the
    recurrence compounds each frame's early spikes).

    Args:
        units: Number of units.
        levels: Quantization levels of the `QuantizedReLU`. Defaults to `8`.
        threshold: Initial threshold: a number, or with `per_channel` one per unit.
            Defaults to `1.0`.
        trainable_threshold: Learn the threshold. Defaults to `True`.
        per_channel: One threshold per unit. Defaults to `False`.
        **kwargs: The `SimpleRNNCell` arguments (`use_bias`, initializers,
            regularizers, dropout, ...) except `activation`.

    Example:

    >>> cell = QuantizedSimpleRNNCell(4, levels=4)
    >>> layer = keras.layers.RNN(cell, return_sequences=True)
    >>> layer(np.ones((2, 3, 5), "float32")).shape
    (2, 3, 4)
    """

    def __init__(
        self,
        units,
        levels=8,
        threshold=1.0,
        trainable_threshold=True,
        per_channel=False,
        **kwargs,
    ):
        activation = kwargs.pop("activation", "linear")
        if activation not in (None, "linear"):
            raise ValueError(
                f"{type(self).__name__}: its activation is its `QuantizedReLU`. "
                f"Received: activation={activation!r}; leave `activation` out."
            )
        super().__init__(units, activation="linear", **kwargs)
        self.quantizer = QuantizedReLU(
            levels=levels,
            threshold=threshold,
            trainable_threshold=trainable_threshold,
            per_channel=per_channel,
            dtype=self.dtype_policy,
            name=f"{self.name}_qrelu",
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.quantizer.build((None, self.units))

    def call(self, sequence, states, training=False):
        output, _ = super().call(sequence, states, training=training)
        output = self.quantizer(output)
        return output, [output] if isinstance(states, (list, tuple)) else output

    def get_config(self):
        config = super().get_config()
        config.pop("activation", None)
        quantizer = self.quantizer.get_config()
        keys = ("levels", "threshold", "trainable_threshold", "per_channel")
        return {**config, **{key: quantizer[key] for key in keys}}
