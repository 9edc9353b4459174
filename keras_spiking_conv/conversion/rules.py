"""Built-in conversion rules, registered in `registry`.

Stateless layers (those that treat each timestep independently) are applied
to every timestep at once with `TimeFold`; layers whose activation becomes a
neuron have it split out into a neuron block (see `ConversionContext`).
Max pooling follows `convert`'s `max_pooling` option: of the inputs accumulated
over time (`AccumulatedMaxPooling`, max pooling of firing rates; the default
when neurons spike) or of each timestep's values as they are (the max of the
instantaneous values, not of the rates; the default for rate networks, where
it is exact).
"""

import keras
import numpy as np

from keras_spiking_conv.conversion.activations import (
    activation_clip,
    activation_key,
    layer_activation_key,
)
from keras_spiking_conv.conversion.errors import ConversionError
from keras_spiking_conv.conversion.registry import register_rule
from keras_spiking_conv.layers import (
    LIF,
    AccumulatedMaxPooling,
    AlphaSynapse,
    LowpassSynapse,
    PoissonEncoder,
    QuantizedReLU,
    RateScale,
    RegularEncoder,
    SpikingActivation,
    SpikingReLU,
    TimeFold,
    TimeReadout,
)
from keras_spiking_conv.layers.max_pool import MAX_POOLING

L = keras.layers

# The neuron layers `convert` builds.
NEURONS = (SpikingReLU, LIF, SpikingActivation)

# Layers applied to each timestep independently. Inference-time identities
# (Dropout and friends) keep their training behaviour, per timestep.
STATELESS_LAYERS = (
    L.Dense,
    L.EinsumDense,
    L.Conv1D,
    L.Conv2D,
    L.Conv3D,
    L.Conv1DTranspose,
    L.Conv2DTranspose,
    L.Conv3DTranspose,
    L.DepthwiseConv1D,
    L.DepthwiseConv2D,
    L.SeparableConv1D,
    L.SeparableConv2D,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.BatchNormalization,
    L.LayerNormalization,
    L.Normalization,
    L.Rescaling,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianDropout,
    L.GaussianNoise,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Identity,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.RepeatVector,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.ZeroPadding3D,
    L.Cropping1D,
    L.Cropping2D,
    L.Cropping3D,
    L.UpSampling1D,
    L.UpSampling2D,
    L.UpSampling3D,
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Average,
    L.Maximum,
    L.Minimum,
    L.Concatenate,
    L.Activation,
    L.ReLU,
    L.LeakyReLU,
    L.PReLU,
    L.ELU,
    L.Softmax,
    QuantizedReLU,
)


@register_rule(*STATELESS_LAYERS)
def stateless_rule(layer, args, kwargs, context):
    """Folds time into the batch; splits out an activation that becomes a neuron."""
    key = layer_activation_key(layer)
    is_activation_layer = isinstance(
        layer, (L.Activation, L.ReLU, L.LeakyReLU, L.PReLU, L.ELU, L.Softmax)
    )
    if key is not None and context.wants_neuron(layer.name, key):
        if isinstance(layer, QuantizedReLU):
            # Its learned threshold becomes the neuron's: one spike per step at it (and,
            # see `neuron_block`, its clip).
            threshold = layer.threshold_value()
            context.record(layer, kind="neuron")
            return context.neuron_block(layer.name, key, args[0], threshold=threshold)
        max_value = activation_clip(layer)
        _check_spiking_activation_layer(layer, key, context)
        if is_activation_layer and not layer.weights:
            context.record(layer, kind="neuron")
            return context.neuron_block(layer.name, key, args[0], max_value=max_value)
        folded = context.fold(context.clone(layer, drop_activation=True), layer, args, kwargs)
        context.record(layer, kind="neuron")
        return context.neuron_block(layer.name, key, folded, max_value=max_value)
    context.record(layer, kind="rate", activation=key)
    return context.fold(context.clone(layer), layer, args, kwargs)


# Activation layers whose argument the activation function of their key has at a default.
_LAYER_DEFAULTS = {L.LeakyReLU: ("negative_slope", 0.2), L.ELU: ("alpha", 1.0)}


def _check_spiking_activation_layer(layer, key, context):
    """A `SpikingActivation` computes the Keras activation of `key` with its defaults:
    an activation layer with another argument (`LeakyReLU(0.3)`) cannot become one."""
    swap = context.options.swap.get(key)
    if swap is None or swap.kind != "activation" or type(layer) not in _LAYER_DEFAULTS:
        return
    name, default = _LAYER_DEFAULTS[type(layer)]
    value = float(getattr(layer, name))
    if value != default:
        raise ConversionError(
            f"Layer '{layer.name}' ({type(layer).__name__}) has {name}={value:g}, but the "
            f"spiking version of '{key}' (SpikingActivation('{key}')) computes "
            f"keras.activations.{key} with {name}={default:g}. Use "
            f"{type(layer).__name__}({name}={default:g}) in the model, or swap it to 'lif' "
            "or leave it as a rate layer."
        )


def register_stateless(*layer_classes, overwrite=False):
    """Registers layers that treat every timestep independently.

    Such a layer is applied to all timesteps at once (time folded into the
    batch), with its activation split out when it becomes a neuron.
    """
    return register_rule(*layer_classes, overwrite=overwrite)(stateless_rule)


@register_rule(*MAX_POOLING)
def max_pooling_rule(layer, args, kwargs, context):
    """Max pooling: of the accumulated inputs (`AccumulatedMaxPooling`: its mean output
    over T steps is the max pooling of the mean inputs, the firing rates) when the
    `max_pooling` option says so, else per step like any stateless layer."""
    if context.options.accumulated_max_pooling():
        pooling = AccumulatedMaxPooling(
            context.clone(layer),
            dtype=layer.dtype_policy,
            source=layer.name,
            name=context.unique_name(f"{layer.name}_accumulated"),
        )
        context.record(layer, kind="pooling")
        return pooling(args[0])
    return stateless_rule(layer, args, kwargs, context)


@register_rule(AccumulatedMaxPooling)
def accumulated_max_pooling_rule(layer, args, kwargs, context):
    """Re-converting: pool as the `max_pooling` option says now."""
    return max_pooling_rule(layer.pooling, args, kwargs, context)


@register_rule(L.InputLayer)
def input_rule(layer, args, kwargs, context):
    """Input layers become inputs with a time axis (handled by the converter)."""
    return args[0]


@register_rule(TimeFold)
def time_fold_rule(layer, args, kwargs, context):
    """Re-converting: convert the wrapped per-step layer again."""
    return context.convert_call(layer.layer, args, kwargs)


@register_rule(SpikingReLU)
def neuron_rule(layer, args, kwargs, context):
    """Re-converting: rebuild the neuron block from the current options."""
    source = source_of(layer)
    context.record(layer, kind="neuron", source=source)
    max_value = None
    if layer.clip is not None:  # back to the original units of the clipped ReLU
        scale = np.asarray(context.block_scales.get(source, 1.0), dtype="float64")
        max_value = np.asarray(layer.clip, dtype="float64") / (scale * layer.dt)
    return context.neuron_block(source, "relu", args[0], max_value=max_value)


@register_rule(LIF, SpikingActivation)
def other_neuron_rule(layer, args, kwargs, context):
    """Re-converting a `LIF` (its block's key is "lif" when `swap_activations` has
    that key, else "relu", the activation it usually replaced) or a
    `SpikingActivation` (the key of its activation): rebuilt from the current
    options, keeping its own parameters (tau_rc, amplitude, mode, ...); a key they do
    not swap keeps the neuron's type, as a rate neuron."""
    source = source_of(layer)
    context.record(layer, kind="neuron", source=source)
    if isinstance(layer, LIF):
        key = "lif" if "lif" in context.options.swap else "relu"
    else:
        key = activation_key(layer.activation) or "linear"
    return context.neuron_block(source, key, args[0], own=layer)


@register_rule(TimeReadout)
def readout_rule(layer, args, kwargs, context):
    """Re-converting: the readout is rebuilt from the `readout` option; a temporal
    model's last-frame readout of an output its original reduced over time (it has a
    `source`) is kept unless `readout` is given."""
    if layer.source is not None and context.options.readout is None:
        context.record(layer, kind="kept")
        return context.keep(layer, args, kwargs)
    context.record(layer, kind="readout")
    return args[0]


@register_rule(RegularEncoder, PoissonEncoder)
def encoder_rule(layer, args, kwargs, context):
    """Re-converting: an encoder is kept, unless the `encoder` option replaces it."""
    if context.options.encoder is not None:
        context.record(layer, kind="dropped", note="replaced by convert's `encoder` option")
        return args[0]
    context.record(layer, kind="encoder")
    return context.keep(layer, args, kwargs)


@register_rule(RateScale, LowpassSynapse, AlphaSynapse)
def rebuilt_rule(layer, args, kwargs, context):
    """Re-converting: a neuron block's scales and synapses are rebuilt with its
    neuron; ones added by hand are kept, with their weights."""
    if id(layer) in context.block_layers:
        context.record(layer, kind="dropped")
        return args[0]
    context.record(layer, kind="kept")
    return context.keep(layer, args, kwargs)


def block_scales(model):
    """Dict source -> the input scale of each of `model`'s neuron blocks (the clip of a
    clipped neuron is in those units)."""
    ids = block_layers(model)
    return {
        source_of(layer): layer.scale
        for layer in model.layers
        if isinstance(layer, RateScale) and not layer.inverse and id(layer) in ids
    }


def block_layers(model):
    """Ids of the scales and synapses `convert` made for `model`'s neuron blocks.

    Each records the original layer it belongs to (`source`, in its config);
    re-converting rebuilds it from the options. A `RateScale` or
    `LowpassSynapse` added by hand (no source) is kept with its weights. For
    layers saved before sources were recorded, a `{source}_scale`,
    `{source}_unscale` or `{source}_synapse` name (`_k` suffixes allowed) next to
    a neuron `{source}_neuron` says the same.
    """
    neurons = {source_of(layer) for layer in model.layers if isinstance(layer, NEURONS)}
    ids = set()
    for layer in model.layers:
        if isinstance(layer, (RateScale, LowpassSynapse)) and source_of(layer) in neurons:
            ids.add(id(layer))
    return ids


def source_of(layer):
    """The original layer a neuron, scale or synapse belongs to (its recorded `source`;
    read from its name for layers saved before sources were recorded; else None)."""
    if getattr(layer, "source", None) is not None:
        return layer.source
    if isinstance(layer, NEURONS):
        suffix = "neuron"
    elif isinstance(layer, LowpassSynapse):
        suffix = "synapse"
    elif isinstance(layer, RateScale):
        suffix = "unscale" if layer.inverse else "scale"
    else:
        return None
    head, sep, tail = layer.name.rpartition(f"_{suffix}")
    if sep and (tail == "" or tail.lstrip("_").isdigit()):
        return head
    return layer.name if suffix == "neuron" else None
