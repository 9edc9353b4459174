"""Synaptic operations, from a converted model's plan: each spike times its real fan-out.

A spike delivered along one connection is one synaptic operation (synop). The
count is exact for the graph the spikes travel through: each neuron's spike
counts (per position, summed over time) are pushed forward through the layers
between it and the next layers with weights, with every layer replaced by its
connection pattern (which outputs each input position reaches, each with
weight one), and a layer with weights, with every weight one and no bias, then
sums to the number of connections the arriving events use. So a convolution's
fan-out is exact at its edges (padding) and with strides; pooling passes a
spike on to every window it falls in (a sum over the window, as sinabs counts
the events a sum pooling emits); `Add`, `Concatenate`, `Flatten`, `Reshape`,
synapses, rate scales and dropout route it without changing the count.

Non-spike values (the model's inputs, rate neurons, a layer with weights whose
output reaches another without a neuron between) make a second pass: a layer
they reach computes every connection they use every timestep (MACs, counted
as connections: multiplications by padding zeros are not).
"""

import functools
import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_spiking_conv.layers import AccumulatedMaxPooling, QuantizedReLU
from keras_spiking_conv.layers.temporal import CausalConv1D, FrameRecurrence, RunningPooling

L = keras.layers

TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
KERNEL = (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)
WEIGHTED = (*TRANSPOSED, *SEPARABLE, *KERNEL, L.EinsumDense)
POOLING = (
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.AveragePooling3D,
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
)
GLOBAL_POOLING = (
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
)
# Layers whose every output is one input value (or zero): they are their own pattern.
REARRANGING = (
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
    L.Concatenate,
)
# Elementwise merges: an input position reaches the same output position.
MERGING = (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum)
# Elementwise layers (per-channel affine maps fold into the next layer's weights).
ELEMENTWISE = (
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.GaussianDropout,
    L.GaussianNoise,
    L.AlphaDropout,
    L.ActivityRegularization,
    L.Identity,
    L.BatchNormalization,
    L.Normalization,
    L.Rescaling,
    L.ReLU,
    L.LeakyReLU,
    L.PReLU,
    L.ELU,
    QuantizedReLU,
)
# Layers that mix every input into every output: their output is non-spike values.
MIXING = (L.Softmax, L.LayerNormalization)
# Roles of the package's own layers that act elementwise on one timestep (a temporal
# model's `FrameSteps` repeats each frame).
ELEMENTWISE_ROLES = ("scale", "synapse", "readout", "state", "frames")
# The recurrent cells of a `FrameRecurrence`: the layer each comes from, and its weight
# matrices (gates).
RECURRENT_CELLS = (
    (L.GRUCell, "GRU", 3),
    (L.LSTMCell, "LSTM", 4),
    (L.SimpleRNNCell, "SimpleRNN", 1),
)


def recurrent_kind(cell):
    """`(layer class name, gates)` of a `FrameRecurrence`'s Keras cell."""
    return next((name, gates) for cls, name, gates in RECURRENT_CELLS if isinstance(cell, cls))


class SiteCount:
    """What one call site adds up to.

    Attributes:
        site: The plan's `Site`.
        synops: Synaptic operations from the spike counts given (weights, or a
            neuron receiving spikes directly).
        dense: Connections it computes each timestep on non-spike values.
        macs: For a layer with weights, the MACs of one pass of the ANN (the
            usual count: output positions times kernel size, padding included).
        size: Values it outputs per timestep (a neuron's or synapse's count).
    """

    def __init__(self, site, synops=0.0, dense=0.0, macs=0, size=0):
        self.site, self.synops, self.dense, self.macs, self.size = site, synops, dense, macs, size


class FanOut:
    """A converted model's plan, ready to count synops for any spike counts.

    Args:
        plan: The model's `Plan` (`plan_of(model)`).
    """

    def __init__(self, plan):
        self.plan = plan
        self._copies = {}
        self.notes = []
        self._noted = set()

    def count(self, spikes, input_shapes):
        """Synops and dense connections of every site, per example.

        Args:
            spikes: Dict `{neuron site name: counts}`, each count array shaped like
                one step of the neuron's output (no batch, no time axis): the
                spikes of each neuron (per example, summed over time). Neurons
                missing from it send none.
            input_shapes: The shape of one step of each model input (no batch,
                no time axis), in the order of the plan's inputs.

        Returns:
            A list of `SiteCount`, one per site with weights, neuron or synapse.
        """
        spike_values, dense_values = {}, {}
        for i, shape in zip(self.plan.inputs, input_shapes, strict=True):
            spike_values[i] = ops.zeros((1, *shape))
            dense_values[i] = ops.ones((1, *shape))
        counts = []
        for site in self.plan.sites:
            ins = site.fill(spike_values)[0][0]
            dense_ins = site.fill(dense_values)[0][0]
            outs, dense_outs, count = self._route(site, ins, dense_ins, spikes)
            if count is not None:
                counts.append(count)
            outs, dense_outs = _as_list(outs), _as_list(dense_outs)
            for i, y, d in zip(site.outputs, outs, dense_outs, strict=True):
                spike_values[i] = y
                dense_values[i] = ops.cast(ops.greater(d, 0), "float32")
        return counts

    def _route(self, site, ins, dense_ins, spikes):
        """`(spike outputs, dense outputs, SiteCount or None)` of one site."""
        if site.role == "neuron":
            size = math.prod(dense_ins.shape[1:])
            count = SiteCount(site, synops=_total(ins), size=size)
            if site.layer.spiking:
                counts = spikes.get(site.name)
                out = ops.zeros(dense_ins.shape) if counts is None else counts[None]
                return ops.cast(out, "float32"), ops.zeros(dense_ins.shape), count
            return ops.zeros(dense_ins.shape), ops.ones(dense_ins.shape), count
        if isinstance(site.layer, CausalConv1D):
            return self._causal_conv(site, ins, dense_ins)
        if isinstance(site.layer, FrameRecurrence):
            return self._recurrence(site, ins, dense_ins, spikes)
        if isinstance(site.layer, RunningPooling):
            # The mean (maximum) of the frames so far: non-spike values every step.
            return self._mixing(dense_ins)
        if isinstance(site.layer, AccumulatedMaxPooling):
            # Its outputs over T steps sum to its pooling of the summed spikes: counted as
            # that pooling of each step's spikes (the same positions, the same totals at
            # the window's busiest neuron).
            return self._per_step(site, site.layer.pooling, ins, dense_ins)
        if site.role in ELEMENTWISE_ROLES:
            size = math.prod(dense_ins.shape[1:]) if site.role == "synapse" else 0
            count = SiteCount(site, size=size) if site.role == "synapse" else None
            return ins, dense_ins, count
        if site.role == "stateless":
            return self._per_step(site, site.layer.layer, ins, dense_ins)
        return self._unknown(site, site.layer, ins, dense_ins, time_axis=True)

    def _per_step(self, site, layer, ins, dense_ins):
        if isinstance(layer, WEIGHTED):
            copy = self._ones_copy(site, layer, tuple(dense_ins.shape))
            dense_out = copy(dense_ins)
            count = SiteCount(
                site,
                synops=_total(copy(ins)),
                dense=_total(dense_out),
                macs=_standard_macs(copy, dense_ins.shape, dense_out.shape, _total(dense_out)),
            )
            # Its output is a current: non-spike values, every step.
            return ops.zeros(dense_out.shape), ops.ones(dense_out.shape), count
        if isinstance(layer, POOLING):
            return _window_sum(ins, layer), _window_sum(dense_ins, layer), None
        if isinstance(layer, GLOBAL_POOLING):
            return _global_sum(ins, layer), _global_sum(dense_ins, layer), None
        if isinstance(layer, REARRANGING):
            return layer(ins), layer(dense_ins), None
        if isinstance(layer, MERGING):
            return _sum(ins), _sum(dense_ins), None
        if isinstance(layer, L.Activation):
            if layer.activation in (keras.activations.softmax, keras.activations.log_softmax):
                return self._mixing(layer(dense_ins))
            return ins, dense_ins, None
        if isinstance(layer, ELEMENTWISE):
            return ins, dense_ins, None
        if isinstance(layer, MIXING):
            return self._mixing(layer(dense_ins))
        return self._unknown(site, layer, ins, dense_ins, time_axis=False)

    @staticmethod
    def _causal_conv(site, ins, dense_ins):
        """A `CausalConv1D`: each input value is used by `kernel_size` later steps (one
        tap each, `dilation` steps apart), every filter. A spike counts all its taps,
        those that would fall after the run's end included."""
        cell = site.layer.cell
        taps, features = cell.kernel.shape[0], cell.kernel.shape[1]
        fan_out = taps * cell.filters
        count = SiteCount(
            site,
            synops=_total(ins) * fan_out,
            dense=_total(dense_ins) * fan_out,
            macs=taps * features * cell.filters,  # one frame
        )
        return ops.zeros((1, cell.filters)), ops.ones((1, cell.filters)), count

    @staticmethod
    def _recurrence(site, ins, dense_ins, spikes):
        """A `FrameRecurrence`: each input value reaches every unit of every gate; the
        previous output does too (the recurrent weights). With a spiking neuron (a
        `SimpleRNN`'s units) its own spikes are the recurrent input and its output;
        otherwise both are non-spike values every step."""
        layer = site.layer
        units, features = layer.cell.units, dense_ins.shape[-1]
        _, gates = recurrent_kind(layer.cell.cell)
        synops, dense = _total(ins) * units * gates, _total(dense_ins) * units * gates
        spiking = layer.neuron is not None and layer.neuron.spiking
        if spiking:
            counts = spikes.get(site.name)
            out = ops.zeros((1, units)) if counts is None else ops.cast(counts[None], "float32")
            synops += _total(out) * units
            dense_out = ops.zeros((1, units))
        else:
            dense += units * units * gates
            out, dense_out = ops.zeros((1, units)), ops.ones((1, units))
        count = SiteCount(
            site,
            synops=synops,
            dense=dense,
            macs=gates * (features + units) * units,  # one frame
            size=units if layer.neuron is not None else 0,
        )
        return out, dense_out, count

    @staticmethod
    def _mixing(dense_out):
        return ops.zeros(dense_out.shape), ops.ones(dense_out.shape), None

    def _unknown(self, site, layer, ins, dense_ins, time_axis):
        """A layer without a counting rule: elementwise if it keeps its one input's
        shape, else its output counts as non-spike values (noted either way)."""
        try:
            if time_axis:
                out = keras.tree.map_structure(lambda y: y[:, 0], layer(_add_time(dense_ins)))
            else:
                out = layer(dense_ins)
        except Exception as error:  # noqa: BLE001 - reported with the layer named
            raise ValueError(
                f"estimate_energy(): cannot count the connections of layer '{site.name}' "
                f"({type(layer).__name__}): calling it on one step failed with: {error}"
            ) from error
        flat = keras.tree.flatten(out)
        single = not isinstance(ins, (list, tuple, dict))
        if single and len(flat) == 1 and tuple(flat[0].shape) == tuple(dense_ins.shape):
            self._note(layer, f"'{site.name}' ({type(layer).__name__}) counted as elementwise")
            return ins, dense_ins, None
        self._note(
            layer,
            f"'{site.name}' ({type(layer).__name__}) has no counting rule: spikes into it "
            "are not counted as synops and its output counts as non-spike values",
        )
        zeros = [ops.zeros(y.shape) for y in flat]
        ones = [ops.ones(y.shape) for y in flat]
        return zeros, ones, None

    def _note(self, layer, note):
        if note not in self._noted:
            self._noted.add(note)
            self.notes.append(note)
            warnings.warn(f"estimate_energy(): {note}.", stacklevel=4)

    def _ones_copy(self, site, layer, input_shape):
        """The layer with every weight one, no bias and no activation (cached per site)."""
        key = (id(site), input_shape)
        if key not in self._copies:
            config = dict(layer.get_config())
            config.update(activation=None, dtype="float32", name=f"{layer.name}_ones")
            for option, value in (("use_bias", False), ("bias_axes", None)):
                if option in config:
                    config[option] = value
            for option in list(config):
                if option.endswith(("_regularizer", "_constraint")) or option in (
                    "quantization_config",
                    "lora_rank",
                ):
                    config[option] = None
            copy = type(layer).from_config(config)
            copy.build(input_shape)
            for weight in copy.weights:
                weight.assign(ops.ones(weight.shape, dtype=weight.dtype))
            self._copies[key] = copy
        return self._copies[key]


def _as_list(values):
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _total(x):
    """The sum of every value (in float64, exact for counts)."""
    return float(np.sum(ops.convert_to_numpy(x), dtype="float64"))


def _sum(values):
    return functools.reduce(ops.add, values)


def _add_time(x):
    return keras.tree.map_structure(lambda y: y[:, None], x)


def _spatial(shape, layer):
    """The spatial axes of a per-step shape `(batch, ...)`, for the layer's data format."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return tuple(shape[2:])
    return tuple(shape[1:-1])


def _standard_macs(copy, in_shape, out_shape, connections):
    """MACs of one ANN pass, as usually counted: output positions times kernel size
    (transposed convolutions: input positions), multiplications by padding included."""
    if isinstance(copy, TRANSPOSED):
        return math.prod(_spatial(in_shape, copy)) * math.prod(copy.kernel.shape)
    positions = math.prod(_spatial(out_shape, copy))
    if isinstance(copy, SEPARABLE):
        return positions * (
            math.prod(copy.depthwise_kernel.shape) + math.prod(copy.pointwise_kernel.shape)
        )
    if isinstance(copy, KERNEL):
        return positions * math.prod(copy.kernel.shape)
    return int(round(connections))  # EinsumDense: every connection once


def _window_sum(x, layer):
    """Sum pooling with the pooling layer's windows, strides and padding: each input
    position reaches every window it is in."""
    rank = len(x.shape) - 2
    channels_first = layer.data_format == "channels_first"
    if not channels_first:
        x = ops.moveaxis(x, -1, 1)
    batch, channels, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
    y = ops.reshape(x, (batch * channels, *spatial, 1))
    kernel = ops.ones((*layer.pool_size, 1, 1))
    y = ops.conv(y, kernel, strides=layer.strides, padding=layer.padding)
    y = ops.reshape(y, (batch, channels, *y.shape[1 : 1 + rank]))
    return y if channels_first else ops.moveaxis(y, 1, -1)


def _global_sum(x, layer):
    axes = tuple(range(2, len(x.shape))) if layer.data_format == "channels_first" else None
    axes = axes or tuple(range(1, len(x.shape) - 1))
    return ops.sum(x, axis=axes, keepdims=layer.keepdims)
