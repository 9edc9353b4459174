"""`quantize_activations()`: a trained model with its ReLUs made conversion-aware (QCFS)."""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv._validation import check_bool, check_number
from keras_spiking_conv.conversion.activations import (
    NEURON_KEYS,
    activation_clip,
    layer_activation_key,
)
from keras_spiking_conv.conversion.cloning import ModelCopier
from keras_spiking_conv.latency import folding
from keras_spiking_conv.latency.calibration import (
    activation_percentiles,
    check_original,
    neuron_sites,
)
from keras_spiking_conv.layers import QuantizedReLU, QuantizedSimpleRNNCell
from keras_spiking_conv.layers.quantized_relu import check_levels
from keras_spiking_conv.runtime.plan import Plan

# Name of the QuantizedReLU that follows a layer whose own ReLU it replaces.
SUFFIX = "qrelu"


class _Quantizer(ModelCopier):
    def __init__(self, levels, thresholds, initial_threshold, per_channel):
        super().__init__()
        self.levels = levels
        self.thresholds = thresholds
        self.initial_threshold = initial_threshold
        self.per_channel = per_channel
        self.activations = {}

    def quantized_relu(self, layer, name):
        """The one `QuantizedReLU` of an original ReLU layer (shared calls share it)."""
        if id(layer) not in self.activations:
            self.activations[id(layer)] = QuantizedReLU(
                levels=self.levels,
                threshold=self.threshold(layer),
                per_channel=self.per_channel,
                name=name,
            )
        return self.activations[id(layer)]

    def threshold(self, layer):
        """The starting threshold of `layer`'s ReLU (clipped where the ReLU clips)."""
        threshold = np.asarray(self.thresholds.get(layer.name, self.initial_threshold))
        max_value = activation_clip(layer)
        if max_value is not None:  # a clipped ReLU (ReLU6) clips no higher than it did
            threshold = np.minimum(threshold, max_value)
        return threshold.tolist() if np.ndim(threshold) else float(threshold)

    def quantized_rnn(self, layer):
        """A `SimpleRNN(relu)` as a `keras.layers.RNN` of a `QuantizedSimpleRNNCell`:
        the ReLU is inside the recurrence, so it is quantized there."""
        config = layer.cell.get_config()
        config.pop("activation")
        return self.clone(
            layer,
            factory=lambda: keras.layers.RNN(
                QuantizedSimpleRNNCell(
                    **config,
                    levels=self.levels,
                    threshold=self.threshold(layer),
                    per_channel=self.per_channel,
                ),
                return_sequences=layer.return_sequences,
                return_state=layer.return_state,
                go_backwards=layer.go_backwards,
                stateful=layer.stateful,
                unroll=layer.unroll,
                name=layer.name,
            ),
        )

    def copy_call(self, layer, args, kwargs):
        if isinstance(layer, keras.layers.RNN):
            if not isinstance(layer, keras.layers.SimpleRNN) or (
                layer_activation_key(layer.cell) not in NEURON_KEYS
            ):  # GRU and LSTM gates, and other activations, stay as they are
                return super().copy_call(layer, args, kwargs)
            new = self.quantized_rnn(layer)
            outputs = new(*args, **kwargs)
            if not self.weights_copied(new):
                for weight in ("kernel", "recurrent_kernel", "bias"):
                    source = getattr(layer.cell, weight, None)
                    if source is not None:  # a copy: JAX training donates buffers
                        getattr(new.cell, weight).assign(ops.copy(source.value))
                self.mark_weights_copied(new)
            return outputs
        if layer_activation_key(layer) not in NEURON_KEYS:
            return super().copy_call(layer, args, kwargs)
        is_operation = not isinstance(layer, keras.layers.Layer)  # a keras.ops call
        if is_operation or isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            return self.quantized_relu(layer, layer.name)(args[0])
        new = self.clone(layer, drop_activation=True)
        outputs = new(*args, **kwargs)
        self.copy_weights_once(new, layer)
        return self.quantized_relu(layer, f"{layer.name}_{SUFFIX}")(outputs)


def quantize_activations(
    model,
    levels=8,
    x=None,
    percentile=99.9,
    initial_threshold=1.0,
    batch_size=256,
    fold_batch_norm=True,
    per_channel=True,
):
    """A copy of a trained model with every ReLU replaced by a `QuantizedReLU`.

    Conversion-aware training (QCFS, Bu et al., ICLR 2022): fine-tune the copy
    with `compile` and `fit` as usual, then convert it with
    `swap_activations={QuantizedReLU: "spiking_relu"}`; each neuron's threshold
    is then its layer's learned threshold, and the spiking network reaches the
    fine-tuned network's accuracy in about `levels` steps (docs/latency.md).

    Every form of ReLU that `convert` recognises is replaced: a layer's
    `activation="relu"` (or `keras.activations.relu`, `tf.nn.relu`, ...)
    becomes the layer without its activation followed by a `QuantizedReLU`
    named `{layer}_qrelu`; an `Activation("relu")` or plain `ReLU()` layer,
    or an `ops.relu(x)` call, becomes a `QuantizedReLU` of the same name.
    A `SimpleRNN(activation="relu")` of a temporal model (`convert(...,
    temporal=True)`) becomes a `keras.layers.RNN` of the same name around a
    `QuantizedSimpleRNNCell` (its ReLU quantized inside the recurrence); the gates
    of a `GRU` or `LSTM` are left as they are.
    Every other layer is copied with its config and weights (other
    `keras.ops` calls apply as they are); nested models are copied the same
    way. The original model is not changed.

    Args:
        model: A trained functional or Sequential Keras model (not converted).
        levels: Quantization levels `L` of every `QuantizedReLU`, an integer
            `>= 1`: about the number of steps the spiking network will need.
            Defaults to `8`.
        x: Example inputs (as `calibrate` takes them) to start each threshold
            at the `percentile` of its layer's activations. Defaults to `None`
            (every threshold starts at `initial_threshold`).
        percentile: See `x`. Defaults to `99.9` (a threshold that clips few
            activations; training then moves it).
        initial_threshold: The starting threshold without `x`, `> 0`.
            Defaults to `1.0`.
        batch_size: Batch size for arrays in `x`. Defaults to `256`.
        fold_batch_norm: Fold each BatchNormalization that follows a convolution
            or Dense layer into it first (`fold_batch_norm`), so fine-tuning has
            no moving statistics to settle and the network has fewer layers to
            run per step. Defaults to `True`.
        per_channel: One learned threshold per channel (`QuantizedReLU(per_channel=True)`)
            instead of one per layer; with `x`, each starts at its channel's
            `percentile`. Channels' ranges differ several-fold (more so with
            BatchNormalization folded), and one threshold per layer leaves the
            small channels one or two of the `levels`. Defaults to `True`
            (docs/latency.md: measured against one per layer).

    Returns:
        A functional `keras.Model` (not compiled), with the original's inputs
        and outputs.

    Example:

    ```python
    q = keras_spiking_conv.quantize_activations(model, levels=8, x=x_train[:2000])
    q.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    q.fit(x_train, y_train, epochs=2)
    snn = keras_spiking_conv.convert(
        q, swap_activations={QuantizedReLU: "spiking_relu"}, readout="mean"
    )
    ```
    """
    owner = "quantize_activations()"
    levels = check_levels(levels, owner=owner)
    check_original(
        model, owner, "Quantize the original Keras model, fine-tune it, then convert it."
    )
    initial_threshold = check_number(
        "initial_threshold", initial_threshold, owner=owner, positive=True
    )
    per_channel = check_bool("per_channel", per_channel, owner=owner)
    if fold_batch_norm:
        model = folding.fold_batch_norm(model)
    thresholds = {}
    if x is not None:
        thresholds = activation_percentiles(
            model, x, percentile, per_channel=per_channel, batch_size=batch_size, owner=owner
        )
    else:
        neuron_sites(Plan(model), owner)  # a model with no ReLU is an error
    return _Quantizer(levels, thresholds, initial_threshold, per_channel).model(model)
