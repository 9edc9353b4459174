"""Temporal models (`convert(..., temporal=True)`): the input's own axis 1 is time.

The converted model takes `(batch, time, ...)` as the original did and runs one frame a
step. A call whose input carries that time axis is converted here, before the rule of
its class (`ConversionContext.convert_call`):

- a layer that computes each frame from that frame alone (`Dense`, normalization over
  the last axis, element-wise layers and `keras.ops` calls, activations) goes to its
  rule as usual: it is folded over time, or becomes a neuron block;
- a layer that works along time becomes a layer with a state that streams: a causal
  `Conv1D` a `CausalConv1D`, `SimpleRNN` / `GRU` / `LSTM` a `FrameRecurrence` (a
  `SimpleRNN`'s activation may become a spiking neuron), `GlobalAveragePooling1D` /
  `GlobalMaxPooling1D` a `RunningPooling`;
- anything else is refused, with the reason: it needs frames that have not arrived yet
  (a non-causal convolution, `Bidirectional`, attention over time), or it mixes time
  with features (`Flatten`, `Reshape`).

A call that reduced time away in the original (pooling over time, a recurrent layer
without `return_sequences`) gives every frame's value so far here; the converted
model's output is read out at the last frame (`TimeReadout("last")`).
"""

import keras

from keras_spiking_conv.conversion.activations import layer_activation_key
from keras_spiking_conv.conversion.cloning import copy_weights
from keras_spiking_conv.conversion.errors import ConversionError
from keras_spiking_conv.conversion.registry import register_rule
from keras_spiking_conv.layers import (
    LIF,
    QuantizedReLU,
    QuantizedSimpleRNNCell,
    RateScale,
    SpikingActivation,
    SpikingReLU,
    TimeReadout,
)
from keras_spiking_conv.layers.temporal import (
    CausalConv1D,
    FrameRecurrence,
    FrameSteps,
    RunningPooling,
)

L = keras.layers

# Layers that compute each frame from that frame alone, whatever the input's rank (on
# the last axis, or element by element). Axis arguments are checked in `_axis_problem`.
PER_FRAME = (
    L.Dense,
    L.BatchNormalization,
    L.LayerNormalization,
    L.Rescaling,
    L.Dropout,
    L.GaussianDropout,
    L.GaussianNoise,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Identity,
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
    L.ELU,
    L.Softmax,
    QuantizedReLU,
    SpikingReLU,
    LIF,
    SpikingActivation,
    RateScale,
)

# `keras.ops` calls that work element by element (besides activations).
ELEMENTWISE_OPS = frozenset(
    {
        "Add",
        "Subtract",
        "Multiply",
        "Divide",
        "TrueDivide",
        "Negative",
        "Abs",
        "Absolute",
        "Square",
        "Sqrt",
        "Exp",
        "Log",
        "Log1p",
        "Maximum",
        "Minimum",
        "Clip",
        "Cast",
        "Power",
        "Sign",
    }
)

RECURRENT = (L.SimpleRNN, L.GRU, L.LSTM)
POOLING_OVER_TIME = {L.GlobalAveragePooling1D: "mean", L.GlobalMaxPooling1D: "max"}


def _is_recurrent(layer):
    """A `SimpleRNN`, `GRU` or `LSTM`, or a `keras.layers.RNN` of a
    `QuantizedSimpleRNNCell` (`quantize_activations`)."""
    return type(layer) in RECURRENT or (
        type(layer) is L.RNN and isinstance(layer.cell, QuantizedSimpleRNNCell)
    )


def _recurrent_activation(cell):
    """The activation key of a recurrent cell and its `QuantizedReLU`'s threshold (or
    None)."""
    if isinstance(cell, QuantizedSimpleRNNCell):
        return "quantized_relu", cell.quantizer.threshold_value()
    return (layer_activation_key(cell) if hasattr(cell, "activation") else None), None


def refuse(layer, why, fix):
    kind = type(layer).__name__
    raise ConversionError(
        f"convert(temporal=True): layer '{layer.name}' ({kind}) {why}, so it cannot run one "
        f"frame at a time as the frames arrive. {fix}"
    )


def _axis_problem(layer, rank):
    """Why `layer` (one of `PER_FRAME`) on an input of `rank` does not work per frame,
    or None."""
    last = (-1, rank - 1)
    if isinstance(layer, (L.BatchNormalization, L.Softmax, L.Concatenate)):
        axis = layer.axis
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not all(a in last for a in axes):
            return f"works along axis {axis}, not only the last (features) axis"
    if isinstance(layer, L.LayerNormalization):
        axes = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        if not all(a in last for a in axes):
            return f"normalizes over axes {layer.axis}, which include time"
    return None


def convert_call(layer, args, kwargs, context, convert_by_rule):
    """Converts one call whose input carries the data's time axis; returns the outputs
    and marks those that still carry it (`context.framed`)."""
    tensors = keras.tree.flatten((args, kwargs))
    rank = len(tensors[0].shape) if tensors else 3
    if isinstance(layer, keras.Model):
        refuse(
            layer,
            "is a nested model",
            "Build the temporal model flat (call the nested model's layers directly).",
        )
    if not isinstance(layer, keras.layers.Layer):  # a keras.ops call
        name = type(layer).__name__
        if layer_activation_key(layer) is None and name not in ELEMENTWISE_OPS:
            refuse(
                layer,
                f"is a keras.ops {name} call, which may work along time",
                "Use an element-wise operation or a layer that works per frame.",
            )
        return _framed(context, convert_by_rule(layer, args, kwargs))
    cls = type(layer)
    if cls is L.Conv1D:
        return _framed(context, _conv1d(layer, args, context))
    if _is_recurrent(layer):
        outputs = _recurrent(layer, args, context)
        return _framed(context, outputs) if layer.return_sequences else outputs
    if cls in POOLING_OVER_TIME:
        return _pooling(layer, args, context)
    if cls is TimeReadout:
        return convert_by_rule(layer, args, kwargs)
    if cls in (CausalConv1D, RunningPooling, FrameRecurrence, FrameSteps):
        return _framed(context, convert_by_rule(layer, args, kwargs))
    if cls in PER_FRAME:
        problem = _axis_problem(layer, rank)
        if problem:
            refuse(layer, problem, "Work on the last axis.")
        return _framed(context, convert_by_rule(layer, args, kwargs))
    if cls is L.Bidirectional:
        bidirectional_rule(layer, args, kwargs, context)
    refuse(
        layer,
        "is not known to compute each frame from that frame alone (its input's axis 1 "
        "is the data's time axis)",
        "Use layers that work per frame (Dense, normalization, activations), causal "
        "Conv1D, SimpleRNN/GRU/LSTM or global pooling over time; or convert without "
        "temporal=True to show the whole sequence at every step.",
    )


def _framed(context, outputs):
    context.framed.update(id(t) for t in keras.tree.flatten(outputs))
    return outputs


def _conv1d(layer, args, context):
    """A `Conv1D` over time: a `CausalConv1D`, or a `Dense` per frame for one frame."""
    (kernel_size,) = layer.kernel_size
    (strides,) = layer.strides
    (dilation,) = layer.dilation_rate
    if strides != 1:
        refuse(
            layer,
            f"has strides={strides}, which changes the frame rate",
            "Use strides=1 (subsample the data before the model instead).",
        )
    if layer.groups != 1:
        refuse(layer, f"has groups={layer.groups}", "Use groups=1.")
    if layer.data_format != "channels_last":
        refuse(layer, "is channels_first", "Use data_format='channels_last'.")
    if kernel_size > 1 and layer.padding != "causal":
        refuse(
            layer,
            f"has padding='{layer.padding}': its output at frame t needs frames after t",
            "Use padding='causal'.",
        )
    key = layer_activation_key(layer)
    neuron = key is not None and context.wants_neuron(layer.name, key)
    activation = None if neuron else layer.activation
    if kernel_size == 1:

        def per_frame():
            dense = L.Dense(
                layer.filters,
                use_bias=layer.use_bias,
                name=layer.name,  # as a clone keeps it
                dtype=layer.dtype_policy,
            )
            if activation is not None:
                dense.activation = activation
            return dense

        new = context.clone(layer, factory=per_frame)
        if not new.built:  # the kernel's one frame; weights copied here, not by `fold`
            new.build((None, layer.kernel.shape[1]))
            weights = layer.get_weights()
            new.set_weights([weights[0][0], *weights[1:]])
            context.mark_weights_copied(new)
        x = context.fold(new, layer, args, {})
    else:
        new = context.clone(
            layer,
            factory=lambda: CausalConv1D(
                layer.filters,
                kernel_size,
                dilation_rate=dilation * context.options.steps_per_frame,
                activation=None,
                use_bias=layer.use_bias,
                source=layer.name,
                name=layer.name,  # as a clone keeps it
                dtype=layer.dtype_policy,
            ),
        )
        if not neuron:
            new.cell.activation = layer.activation
        x = new(args[0])
        context.copy_weights_once(new, layer)
    context.record(layer, kind="neuron" if neuron else "temporal")
    if neuron:
        return context.neuron_block(layer.name, key, x)
    return x


def _recurrent(layer, args, context):
    """A `SimpleRNN`, `GRU` or `LSTM`: a `FrameRecurrence` (its last frame read out
    where the original returned only that)."""
    if layer.go_backwards:
        refuse(layer, "has go_backwards=True", "Use go_backwards=False.")
    if layer.return_state:
        refuse(layer, "returns its state", "Use return_state=False.")
    cell = layer.cell
    neuron, scale = None, 1.0
    key, threshold = _recurrent_activation(cell)
    note = None
    if isinstance(cell, L.SimpleRNNCell) and key is not None:
        if key in context.options.swap or context.wants_neuron(layer.name, key):
            neuron, scale = context.recurrent_neuron(layer.name, key, threshold=threshold)
    elif key is not None and key in context.options.swap:
        note = f"its gates stay rate ({type(layer).__name__} cells are not swapped)"
    new = context.clone(
        layer,
        factory=lambda: FrameRecurrence(
            keras.saving.serialize_keras_object(type(cell).from_config(cell.get_config())),
            neuron=neuron,
            scale=scale,
            delay=context.options.steps_per_frame,
            source=layer.name,
            name=layer.name,  # as a clone keeps it
        ),
    )
    outputs = new(args[0])
    if not context.weights_copied(new):
        copy_weights(new.cell.cell, cell)
        context.mark_weights_copied(new)
    if neuron is not None:
        spiking = "spiking" if neuron.spiking else "rate"
        note = f"{type(neuron).__name__[:-4]} neurons ({spiking}) in place of its {key}"
    context.record(layer, kind="temporal", activation=key, note=note)
    if neuron is not None and neuron.spiking:
        context.report.rows[-1]["spiking"] = True
    return outputs


def _pooling(layer, args, context):
    if getattr(layer, "keepdims", False) or layer.data_format != "channels_last":
        refuse(layer, "keeps the time axis or is channels_first", "Use the defaults.")
    new = context.clone(
        layer,
        factory=lambda: RunningPooling(
            POOLING_OVER_TIME[type(layer)],
            steps=context.options.steps_per_frame,
            source=layer.name,
            name=layer.name,  # as a clone keeps it
        ),
    )
    context.record(layer, kind="temporal")
    return new(args[0])


@register_rule(CausalConv1D, RunningPooling, FrameSteps)
def frame_layer_rule(layer, args, kwargs, context):
    """Re-converting: a layer over the frames is kept with its weights (and the steps
    per frame it was converted for)."""
    context.record(layer, kind="temporal")
    return context.keep(layer, args, kwargs)


@register_rule(FrameRecurrence)
def frame_recurrence_rule(layer, args, kwargs, context):
    """Re-converting: a recurrent layer keeps its cell and weights; its neuron (or the
    `SimpleRNN` activation it replaced) is rebuilt from the options."""
    cell = layer.cell.cell
    source = layer.source or layer.name
    neuron, scale = None, 1.0
    if isinstance(cell, L.SimpleRNNCell):
        key, threshold = _recurrent_activation(cell)
        own = layer.cell.neuron
        if own is not None or key in context.options.swap:
            neuron, scale = context.recurrent_neuron(source, key, own=own, threshold=threshold)
    new = FrameRecurrence(
        keras.saving.serialize_keras_object(type(cell).from_config(cell.get_config())),
        neuron=neuron,
        scale=scale,
        delay=layer.delay,
        source=source,
        name=context.unique_name(layer.name),
    )
    outputs = new(args[0])
    copy_weights(new.cell.cell, cell)
    context.record(layer, kind="temporal", note="rebuilt from the options")
    if neuron is not None and neuron.spiking:
        context.report.rows[-1]["spiking"] = True
    return outputs


@register_rule(*RECURRENT, L.RNN)
def recurrent_rule(layer, args, kwargs, context):
    """A recurrent layer outside a temporal model's time axis: refused with the fix."""
    raise ConversionError(
        f"Layer '{layer.name}' ({type(layer).__name__}) is a recurrent layer with its own "
        "time axis and state. Fix: if the model's input is a sequence whose axis 1 is "
        "time, convert with temporal=True (the recurrence then runs one frame a step); "
        "otherwise keep the recurrent part outside the converted model."
    )


@register_rule(L.Bidirectional)
def bidirectional_rule(layer, args, kwargs, context):
    """A `Bidirectional` layer reads its sequence from the end: refused."""
    refuse(
        layer,
        "reads the sequence backwards from its last frame (it needs the whole sequence "
        "before its first output)",
        "Use a one-directional recurrent layer with temporal=True.",
    )
