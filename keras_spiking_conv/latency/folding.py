"""BatchNormalization folded into the convolution or Dense layer before it."""

import collections

import keras
import numpy as np

from keras_spiking_conv.conversion.cloning import ModelCopier, as_functional
from keras_spiking_conv.latency.calibration import check_original
from keras_spiking_conv.runtime.plan import Plan

L = keras.layers

# Layers whose kernel's last axis (after a reshape for depthwise kernels) is the
# output channels, so a per-channel BatchNormalization folds into kernel and bias.
FOLDABLE = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)


def _foldable_pairs(model):
    """Dict id(layer) -> the BatchNormalization layer that folds into it.

    A BatchNormalization folds when it normalizes the last axis and reads the
    output of a `FOLDABLE` layer without activation, in the same graph, where
    both are called once and nothing else reads that output.
    """
    plan = Plan(model)
    producer = {value: site for site in plan.calls for value in site.outputs}
    readers = collections.Counter(value for site in plan.calls for value in site.inputs)
    readers.update(plan.outputs)
    calls = collections.Counter(id(site.layer) for site in plan.calls)
    pairs = {}
    for site in plan.calls:
        bn = site.layer
        if not isinstance(bn, L.BatchNormalization) or len(site.inputs) != 1:
            continue
        before = producer.get(site.inputs[0])
        if before is None or before.path[:-1] != site.path[:-1]:
            continue
        layer = before.layer
        if (
            isinstance(layer, FOLDABLE)
            and getattr(layer, "activation", None) in (None, keras.activations.linear)
            and calls[id(layer)] == 1
            and calls[id(bn)] == 1
            and readers[site.inputs[0]] == 1
            and bn.axis in (-1, len(layer.output.shape) - 1)
        ):
            pairs[id(layer)] = bn
    return pairs


def _folded_weights(layer, bn):
    """`layer`'s (kernel, bias) with `bn` (inference statistics) folded in."""
    # `.numpy()`: `np.array` of a TensorFlow Variable warns (NumPy 2 `copy` keyword).
    kernel = layer.kernel.numpy().astype("float64")
    channels = bn.moving_mean.shape[-1]
    bias = layer.bias.numpy().astype("float64") if layer.use_bias else np.zeros(channels)
    gamma = bn.gamma.numpy() if bn.scale else np.ones(channels)
    beta = bn.beta.numpy() if bn.center else np.zeros(channels)
    factor = gamma / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        factor_k = factor.reshape(kernel.shape[-2:])  # (in, multiplier): channel i * m + j
    else:
        factor_k = factor
    kernel = kernel * factor_k
    bias = (bias - bn.moving_mean.numpy()) * factor + beta
    return kernel.astype(layer.kernel.dtype), bias.astype(layer.kernel.dtype)


class _Folder(ModelCopier):
    def __init__(self, pairs):
        super().__init__()
        self.pairs = pairs  # id(layer) -> its BatchNormalization
        self.folded = {id(bn) for bn in pairs.values()}

    def copy_call(self, layer, args, kwargs):
        if id(layer) in self.folded:  # folded into the layer before it
            return args[0]
        if id(layer) not in self.pairs:
            return super().copy_call(layer, args, kwargs)
        new = self.clone(layer, use_bias=True)
        outputs = new(*args, **kwargs)
        kernel, bias = _folded_weights(layer, self.pairs[id(layer)])
        new.kernel.assign(kernel)
        new.bias.assign(bias)
        return outputs


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
    return _Folder(_foldable_pairs(functional)).model(functional)
