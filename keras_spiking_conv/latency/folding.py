"""BatchNormalization folded into the convolution or Dense layer before it."""

import keras
import numpy as np

from keras_spiking_conv.conversion.cloning import LayerCloner
from keras_spiking_conv.conversion.converter import as_functional
from keras_spiking_conv.latency.calibration import check_original
from keras_spiking_conv.runtime.plan import Plan

L = keras.layers

# Layers whose kernel's last axis (after a reshape for depthwise kernels) is the
# output channels, so a per-channel BatchNormalization folds into kernel and bias.
FOLDABLE = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)


def _foldable_pairs(model):
    """Dict id(BatchNormalization layer) -> the layer it folds into.

    A BatchNormalization folds when it normalizes the last axis and reads the
    output of a `FOLDABLE` layer without activation that is called once, in the
    same graph, and whose output nothing else reads.
    """
    plan = Plan(model)
    producer = {}
    readers = {}
    for site in plan.calls:
        for value in site.outputs:
            producer[value] = site
        for value in site.inputs:
            readers[value] = readers.get(value, 0) + 1
    for value in plan.outputs:
        readers[value] = readers.get(value, 0) + 1
    calls = {}
    for site in plan.calls:
        calls[id(site.layer)] = calls.get(id(site.layer), 0) + 1
    pairs = {}
    for site in plan.calls:
        bn = site.layer
        if not isinstance(bn, L.BatchNormalization) or len(site.inputs) != 1:
            continue
        before = producer.get(site.inputs[0])
        if before is None or before.path[:-1] != site.path[:-1]:
            continue
        layer = before.layer
        rank = len(layer.output.shape) if calls.get(id(layer)) == 1 else None
        axis = bn.axis if isinstance(bn.axis, int) else None
        if (
            isinstance(layer, FOLDABLE)
            and getattr(layer, "activation", None) in (None, keras.activations.linear)
            and calls[id(layer)] == 1
            and calls[id(bn)] == 1
            and readers.get(site.inputs[0]) == 1
            and axis is not None
            and rank is not None
            and axis in (-1, rank - 1)
        ):
            pairs[id(bn)] = layer
    return pairs


def _numpy(variable):
    # `.numpy()`: `np.array` of a TensorFlow Variable warns (NumPy 2 `copy` keyword).
    return variable.numpy()


def _folded_weights(layer, bn):
    """`layer`'s (kernel, bias) with `bn` (inference statistics) folded in."""
    kernel = _numpy(layer.kernel).astype("float64")
    channels = bn.moving_mean.shape[-1]
    bias = _numpy(layer.bias).astype("float64") if layer.use_bias else np.zeros(channels)
    gamma = _numpy(bn.gamma) if bn.scale else np.ones(channels)
    beta = _numpy(bn.beta) if bn.center else np.zeros(channels)
    mean = _numpy(bn.moving_mean)
    variance = _numpy(bn.moving_variance)
    factor = gamma / np.sqrt(variance + bn.epsilon)
    shape = kernel.shape
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):  # (..., in, multiplier)
        factor_k = factor.reshape(shape[-2], shape[-1])
    else:
        factor_k = factor
    kernel = kernel * factor_k
    bias = (bias - mean) * factor + beta
    return kernel.astype(layer.kernel.dtype), bias.astype(layer.kernel.dtype)


class _Folder(LayerCloner):
    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs  # id(bn) -> layer
        self.folded = {id(layer): bn_id for bn_id, layer in pairs.items()}
        self.bns = {}
        self.nested = {}

    def call(self, layer, args, kwargs):
        if isinstance(layer, keras.Model):
            if id(layer) not in self.nested:
                self.nested[id(layer)] = self.model(layer)
            return self.nested[id(layer)](args[0] if len(args) == 1 else list(args))
        if not isinstance(layer, keras.layers.Layer):  # a keras.ops call
            return layer(*args, **kwargs)
        if id(layer) in self.pairs:  # folded into the layer before it
            return args[0]
        if id(layer) in self.folded:
            new = self.clone(layer, use_bias=True)
            outputs = new(*args, **kwargs)
            bn = self.bns[id(layer)]
            kernel, bias = _folded_weights(layer, bn)
            new.kernel.assign(kernel)
            new.bias.assign(bias)
            return outputs
        new = self.clone(layer)
        outputs = new(*args, **kwargs)
        self.copy_weights_once(new, layer)
        return outputs

    def model(self, model):
        return keras.models.clone_model(
            as_functional(model),
            clone_function=lambda layer: layer,
            call_function=lambda layer, *args, **kwargs: self.call(layer, args, kwargs),
        )


def fold_batch_norm(model):
    """A copy of a trained model with each BatchNormalization folded into the layer before it.

    A `BatchNormalization` (over the last axis) that reads the output of a `Dense`,
    convolution or depthwise convolution without activation, whose output nothing
    else reads, becomes part of that layer: with inference statistics `mean`,
    `variance` and `factor = gamma / sqrt(variance + epsilon)`, the kernel is
    multiplied by `factor` per output channel and the bias becomes
    `(bias - mean) * factor + beta`. The copy computes what the original computes
    in inference (to float rounding) with one layer fewer per pair, and has no
    moving statistics left to settle when it is fine-tuned (what
    `quantize_activations(fold_batch_norm=True)` relies on). Other
    BatchNormalization layers are kept; the original model is not changed.

    Args:
        model: A functional or Sequential Keras model (not converted).

    Returns:
        A functional `keras.Model` (not compiled).
    """
    check_original(model, "fold_batch_norm()", "Fold the original Keras model, then convert it.")
    functional = as_functional(model)
    pairs = _foldable_pairs(functional)
    folder = _Folder(pairs)
    for bn_id, layer in pairs.items():
        folder.bns[id(layer)] = next(lay for lay in _all_layers(functional) if id(lay) == bn_id)
    return folder.model(functional)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
