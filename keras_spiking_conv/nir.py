"""Export to and import from the Neuromorphic Intermediate Representation (NIR).

`export_nir` walks a converted model through its `runtime.plan` (roles recorded, not
parsed from names) and writes the graph the neuromorphic toolchain reads: weighted layers
become `Conv1d`, `Conv2d` and `Affine` nodes, integrate-and-fire neurons `IF` nodes. What
NIR has no node for, or what its readers drop, is folded into the neighbouring weights:
BatchNormalization, rate scales, the amplitude and `dt` of the spikes, average pooling
before a convolution or a Dense layer. An `Add` becomes several edges into one node (NIR
sums a node's incoming edges).

The graph runs in steps: an `IF` node with `r = 1` and `v_threshold = 1` adds its summed
input to its voltage once a step and emits 1 for a spike, so a reader imports it with
`dt = 1` (SpikingJelly requires `r = 1 / dt`; Norse ignores `r` and `dt` for `IF`). The
package's `dt` goes in the graph's metadata, with the readout.

`import_nir` reads such a graph (or one written by the PyTorch libraries) back into a
converted Keras model.
"""

import collections
import dataclasses
import warnings

import keras
import numpy as np

from keras_spiking_conv.conversion import convert
from keras_spiking_conv.layers import (
    LIF,
    LowpassSynapse,
    RateScale,
    SpikingReLU,
    TimeFold,
)
from keras_spiking_conv.runtime.plan import plan_of

L = keras.layers

INSTALL_HINT = "NIR support needs the `nir` package: pip install 'keras-spiking-conv[nir]'"


def _nir():
    try:
        import nir
    except ImportError as error:  # pragma: no cover - nir is in the test extra
        raise ImportError(INSTALL_HINT) from error
    return nir


class NIRExportError(ValueError):
    """A model, or one of its layers, that NIR cannot express as it runs here."""


def _refuse(layer, why, fix):
    name = getattr(layer, "name", str(layer))
    raise NIRExportError(f"export_nir(): layer '{name}' ({type(layer).__name__}) {why}. {fix}")


# -- the linear algebra between NIR nodes --------------------------------------------------


@dataclasses.dataclass
class _Part:
    """One summand of a value: the output of an emitted NIR node `src`, scaled per channel
    (`scale`), maybe average-pooled (`pool`) or flattened (`flat`: the Keras shape it had),
    then maybe through a weighted layer not emitted yet (`weight`), scaled per output
    channel (`out_scale`)."""

    src: object  # a node key, or a tuple of keys whose outputs are summed
    scale: object = 1.0
    pool: object = None
    flat: object = None
    weight: object = None
    out_scale: object = 1.0
    # (offset, total): the part is channels offset.. of a concatenation of `total` channels
    # (zero elsewhere); only for a part without `weight`.
    embed: object = None
    # Zeros around the map, per spatial axis (a ZeroPadding before a convolution).
    pad: object = None


@dataclasses.dataclass
class _Value:
    """A tensor of the Keras graph (one timestep, channels last), as a sum of parts plus a
    constant `bias` (broadcastable to `shape`)."""

    parts: list
    shape: tuple
    bias: object = 0.0


@dataclasses.dataclass
class _Weight:
    """A weighted layer to emit: its Keras layer, its kernel (Keras layout, with the scales
    and pooling before it folded in), stride and padding (ints, NIR's)."""

    layer: object
    kind: str  # "dense", "conv1d", "conv2d"
    kernel: np.ndarray
    stride: tuple = (1,)
    padding: tuple = (0,)
    dilation: tuple = (1,)
    input_shape: tuple = ()


def _is_one(x):
    return np.all(np.asarray(x) == 1.0)


def _channel_vector(x, channels, layer, what):
    """`x` (a scalar or broadcastable array) as one value per channel (the last axis)."""
    x = np.asarray(x, dtype="float64")
    if x.ndim <= 1:
        return np.broadcast_to(x, (channels,)).copy()
    flat = x.reshape(-1, x.shape[-1])
    if not np.all(flat == flat[:1]):
        _refuse(
            layer,
            f"needs a {what} that varies across positions, which no NIR node holds",
            "Use scales and biases that are one per channel.",
        )
    return np.broadcast_to(flat[0], (channels,)).copy()


class _Exporter:
    def __init__(self, snn, approximate):
        self.nir = _nir()
        self.approximate = approximate
        self.plan = plan_of(snn)
        self.model = snn
        self.nodes = {}
        self.shapes = {}  # node key -> the Keras (channels-last) shape of its output
        self.edges = []
        self.names = collections.Counter()
        self.dt = None
        self.readouts = []
        self.neuron_kinds = set()
        self.approximations = []

    # -- nodes ---------------------------------------------------------------
    def add_node(self, name, node):
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        k = self.names[base]
        self.names[base] += 1
        key = base if k == 0 else f"{base}_{k}"
        while key in self.nodes:
            k += 1
            key = f"{base}_{k}"
        self.nodes[key] = node
        return key

    def edge(self, src, dst):
        if (src, dst) in self.edges:
            raise NIRExportError(
                f"export_nir(): two paths from '{src}' to '{dst}' with the same weights: NIR "
                "keeps one edge per pair of nodes. Scale one of them differently."
            )
        self.edges.append((src, dst))

    def edges_from(self, src, dst):
        for key in _keys(src):
            self.edge(key, dst)

    def approximation(self, layer, what):
        if not self.approximate:
            _refuse(
                layer,
                f"{what}",
                "Fix it in the conversion (see docs/nir.md, 'A model that travels exactly'), "
                "or pass approximate=True to export it anyway with a warning.",
            )
        message = f"layer '{layer.name}' ({type(layer).__name__}): {what}"
        self.approximations.append(message)
        warnings.warn(f"export_nir(approximate=True): {message}; the export differs.", stacklevel=4)

    # -- the walk ------------------------------------------------------------
    def run(self):
        nir = self.nir
        values = {}
        inputs = self.plan.graph.inputs
        if len(inputs) != 1 or len(self.plan.outputs) != 1:
            raise NIRExportError(
                f"export_nir(): model '{self.model.name}' has {len(inputs)} inputs and "
                f"{len(self.plan.outputs)} outputs; this export writes one of each. Export a "
                "model with one input and one output."
            )
        shape = tuple(inputs[0].shape[2:])
        if any(d is None for d in shape):
            raise NIRExportError(
                f"export_nir(): the input of '{self.model.name}' has shape {shape} (per step) "
                "with an unknown size; NIR graphs have fixed shapes. Build the model with a "
                "fixed input shape."
            )
        key = self.add_node("input", nir.Input(input_type={"input": np.array(_cf(shape))}))
        self.shapes[key] = shape
        values[self.plan.inputs[0]] = _Value([_Part(key)], shape)
        for site in self.plan.sites:
            if site.tensors is None:
                _refuse(
                    site.layer,
                    f"runs inside the nested model '{site.path[0]}'",
                    "Export a model without nested models (build it from their layers).",
                )
            args = [values[i] for i in site.inputs]
            out_shape = tuple(site.tensors[0].shape[2:]) if site.tensors else None
            values[site.outputs[0]] = self.site(site, args, out_shape)
        out = values[self.plan.outputs[0]]
        key = self.add_node("output", nir.Output(output_type={"output": np.array(_cf(out.shape))}))
        self.materialize(out, key, None, single=True)
        metadata = {
            "source": "keras_spiking_conv",
            "dt": float(self.dt if self.dt is not None else 0.001),
            "time_unit": "step",
            "reader_dt": 1.0,
            "readout": self.readouts[-1] if self.readouts else "none",
            "layout": "channels_first",
            "exact": int(not self.approximations),
        }
        if self.approximations:
            metadata["approximations"] = "; ".join(self.approximations)
        return nir.NIRGraph(nodes=self.nodes, edges=_ordered(self.edges), metadata=metadata)

    def site(self, site, args, out_shape):
        layer = site.layer
        if site.role == "readout":
            self.readouts.append(layer.mode)
            return args[0]
        if isinstance(layer, RateScale):
            scale = np.asarray(layer.scale, dtype="float64")
            return self.scaled(args[0], 1.0 / scale if layer.inverse else scale, 0.0)
        if isinstance(layer, SpikingReLU):
            return self.spiking_relu(layer, args[0])
        if isinstance(layer, LIF):
            return self.lif(layer, args[0])
        if isinstance(layer, LowpassSynapse):
            return self.lowpass(layer, args[0])
        if isinstance(layer, TimeFold):
            return self.stateless(layer.layer, args, out_shape)
        _refuse(
            layer,
            f"(role '{site.role}') has no NIR node",
            "Export a model made of Conv1D, Conv2D, Dense, Flatten, AveragePooling, Add, "
            "BatchNormalization, rate scales and spiking neurons (see docs/nir.md).",
        )

    def stateless(self, layer, args, out_shape):
        if isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D)):
            return self.weighted(layer, args[0], out_shape)
        if isinstance(layer, L.BatchNormalization):
            if layer.axis not in (-1, len(args[0].shape)):
                _refuse(layer, "normalizes an axis other than the channels", "Use axis=-1.")
            gamma = layer.gamma.numpy() if layer.scale else 1.0
            beta = layer.beta.numpy() if layer.center else 0.0
            factor = gamma / np.sqrt(layer.moving_variance.numpy() + layer.epsilon)
            return self.scaled(args[0], factor, beta - layer.moving_mean.numpy() * factor)
        if isinstance(layer, L.Add):
            return _Value([p for a in args for p in a.parts], out_shape, _bias_sum(args))
        if isinstance(layer, L.Flatten):
            return self.flatten(layer, args[0], out_shape)
        if isinstance(layer, L.Concatenate):
            return self.concatenate(layer, args, out_shape)
        if isinstance(layer, (L.ZeroPadding1D, L.ZeroPadding2D)):
            return self.zero_pad(layer, args[0], out_shape)
        if isinstance(layer, (L.AveragePooling2D,)):
            return self.avg_pool(layer, args[0], out_shape)
        if isinstance(layer, (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)):
            return self.global_pool(layer, args[0], out_shape)
        if (
            isinstance(layer, (L.Dropout, L.InputLayer))
            or type(layer) is L.Activation
            and (layer.activation is keras.activations.linear)
        ):
            return args[0]
        if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv2D)):
            _refuse(
                layer,
                "is a depthwise (grouped) convolution, which fails NIR's own shape check and "
                "no reader imports",
                "Use an ordinary Conv2D (or Conv1D), or export the network up to it.",
            )
        _refuse(
            layer,
            "has no NIR node",
            "Export a model made of Conv1D, Conv2D, Dense, Flatten, AveragePooling2D, "
            "GlobalAveragePooling, Add, BatchNormalization, rate scales and spiking neurons "
            "(see docs/nir.md).",
        )

    # -- linear pieces -------------------------------------------------------
    def embedded(self, scale, part):
        """A per-channel `scale` of a concatenation, for the channels of `part`."""
        scale = np.asarray(scale, dtype="float64")
        if part.embed is None or scale.ndim == 0 or scale.shape[-1] == 1:
            return scale
        offset, _ = part.embed
        n = self.shapes[_keys(part.src)[0]][-1]
        return scale[..., offset : offset + n]

    def scaled(self, value, scale, shift):
        parts = []
        for p in value.parts:
            if p.weight is not None:
                parts.append(dataclasses.replace(p, out_scale=p.out_scale * scale))
            else:
                parts.append(dataclasses.replace(p, scale=p.scale * self.embedded(scale, p)))
        return _Value(parts, value.shape, value.bias * scale + shift)

    def flatten(self, layer, value, out_shape):
        parts = []
        for p in value.parts:
            if p.weight is not None or p.flat is not None or p.pad:
                p = _Part(self.emit(p, 0.0))
            parts.append(dataclasses.replace(p, flat=value.shape))
        bias = np.broadcast_to(np.asarray(value.bias), value.shape).reshape(-1)
        return _Value(parts, out_shape, bias)

    def avg_pool(self, layer, value, out_shape):
        pool, strides = tuple(layer.pool_size), tuple(layer.strides)
        if pool != strides or layer.padding != "valid" or layer.data_format != "channels_last":
            _refuse(
                layer,
                f"pools with pool_size={pool}, strides={strides}, padding='{layer.padding}'; "
                "only non-overlapping pooling (strides = pool_size, 'valid') folds into the "
                "next layer's weights",
                "Use AveragePooling2D(pool_size) with the default strides and padding.",
            )
        parts = []
        for p in value.parts:
            if p.weight is not None or p.pool is not None or p.flat is not None or p.pad:
                p = _Part(self.emit(p, 0.0))
            parts.append(dataclasses.replace(p, pool=pool))
        return _Value(parts, out_shape, value.bias)

    def zero_pad(self, layer, value, out_shape):
        """Zeros around a map: the next convolution's padding, where it pads both sides alike."""
        padding = np.asarray(layer.padding).reshape(len(value.shape) - 1, 2)
        if (
            np.any(padding[:, 0] != padding[:, 1])
            or getattr(layer, "data_format", "channels_last") != "channels_last"
        ):
            _refuse(
                layer,
                f"pads {padding.tolist()}, not both sides alike (NIR pads both sides alike)",
                "Pad both sides alike, or use padding='same' with an odd kernel and stride 1.",
            )
        if np.any(np.asarray(value.bias) != 0):
            _refuse(
                layer,
                "pads a map with a constant offset (a BatchNormalization shift before it)",
                "Fold the BatchNormalization into the layer before it.",
            )
        parts = []
        for p in value.parts:
            if p.weight is not None or p.pool is not None or p.flat is not None or p.embed:
                p = _Part(self.emit(p, 0.0))
            pad = tuple(int(x) for x in padding[:, 0])
            if p.pad is not None:
                pad = tuple(a + b for a, b in zip(p.pad, pad, strict=True))
            parts.append(dataclasses.replace(p, pad=pad))
        return _Value(parts, out_shape, 0.0)

    def concatenate(self, layer, values, out_shape):
        """Channels side by side: each part gives its channels of the result, zero elsewhere
        (a pending weighted layer gets zero output channels; the next weighted layer reads a
        neuron's output with the rows of its channels). Then the parts are summed."""
        if layer.axis not in (-1, len(out_shape)):
            _refuse(
                layer,
                f"concatenates axis {layer.axis}; only the channels (the last axis) map to NIR",
                "Concatenate channels (axis=-1).",
            )
        total = out_shape[-1]
        parts, biases, offset = [], [], 0
        for value in values:
            n = value.shape[-1]
            for p in value.parts:
                if p.weight is None and (p.embed is not None or p.flat is not None or p.pad):
                    p = _Part(self.emit(p, 0.0))
                if p.weight is None:
                    parts.append(dataclasses.replace(p, embed=(offset, total)))
                    continue
                kernel = p.weight.kernel
                wide = np.zeros((*kernel.shape[:-1], total))
                wide[..., offset : offset + n] = kernel * _channel_vector(
                    p.out_scale, n, layer, "scale"
                )
                weight = dataclasses.replace(p.weight, kernel=wide)
                parts.append(dataclasses.replace(p, weight=weight, out_scale=1.0))
            biases.append(np.broadcast_to(np.asarray(value.bias, dtype="float64"), value.shape))
            offset += n
        return _Value(parts, out_shape, np.concatenate(biases, axis=-1))

    def global_pool(self, layer, value, out_shape):
        """Global average pooling: an average pooling over the whole map, then a flatten
        (of a `(1, 1, C)` map: the same order in Keras and NIR), for a Dense layer to read."""
        if layer.data_format != "channels_last" or layer.keepdims:
            _refuse(
                layer,
                "keeps its pooled axes or pools channels-first maps",
                "Use keepdims=False on channels-last maps, followed by a Dense layer.",
            )
        pool = tuple(value.shape[:-1])
        parts = []
        for p in value.parts:
            if p.weight is not None or p.pool is not None or p.flat is not None or p.pad:
                p = _Part(self.emit(p, 0.0))
            parts.append(
                dataclasses.replace(p, pool=pool, flat=(1,) * len(pool) + value.shape[-1:])
            )
        bias = np.broadcast_to(np.asarray(value.bias, dtype="float64"), value.shape)
        return _Value(parts, out_shape, bias.reshape(-1, value.shape[-1]).mean(0))

    def weighted(self, layer, value, out_shape):
        if getattr(layer, "activation", None) not in (None, keras.activations.linear):
            _refuse(
                layer,
                "keeps an activation that was not made a neuron",
                "Convert it with swap_activations that make every activation a neuron.",
            )
        kind = (
            "dense"
            if isinstance(layer, L.Dense)
            else "conv1d"
            if isinstance(layer, L.Conv1D)
            else "conv2d"
        )
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            _refuse(layer, "works on channels-first maps", "Use data_format='channels_last'.")
        if kind == "dense" and len(value.shape) > 1:
            _refuse(
                layer,
                f"applies to every position of a {value.shape} map, which NIR's Affine does not",
                "Use a 1x1 Conv2D (or Conv1D), or a Flatten before the Dense layer.",
            )
        kernel = layer.kernel.numpy().astype("float64")
        groups = getattr(layer, "groups", 1)
        if groups != 1:
            _refuse(
                layer,
                f"is a grouped convolution (groups={groups}), which fails NIR's shape check",
                "Use groups=1.",
            )
        bias = layer.bias.numpy().astype("float64") if layer.use_bias else 0.0
        # The constant part of the input, through the layer: a bias if it is the same at
        # every position (always for Dense and 'valid' convolutions).
        const = np.broadcast_to(np.asarray(value.bias, dtype="float32"), value.shape)
        if np.any(const != 0):
            numpy = keras.ops.convert_to_numpy
            through = numpy(layer(const[None])) - numpy(layer(np.zeros_like(const)[None]))
            bias = bias + _channel_vector(through[0], kernel.shape[-1], layer, "bias")
        parts = []
        for p in _merged(value.parts):
            if p.weight is not None:
                p = _Part(self.emit(p, 0.0))
            parts.append(
                dataclasses.replace(
                    p, weight=self.compose(layer, kind, kernel, p, value.shape), out_scale=1.0
                )
            )
        if not parts:
            _refuse(layer, "reads no input", "Export a model whose layers read its input.")
        return _Value(parts, out_shape, bias)

    def compose(self, layer, kind, kernel, part, in_shape):
        """The kernel on `part.src`'s output: the part's scale and pooling folded in."""
        if part.embed is not None:
            offset, total = part.embed
            n = self.shapes[_keys(part.src)[0]][-1]
            if part.flat is not None:
                rows = kernel.reshape(*part.flat, kernel.shape[-1])[..., offset : offset + n, :]
                part = dataclasses.replace(part, flat=(*part.flat[:-1], n))
                kernel = rows.reshape(-1, kernel.shape[-1])
            else:
                kernel = kernel[..., offset : offset + n, :]
        channels = kernel.shape[-2]
        if kind == "dense":
            if part.flat is not None:
                # Rows over the (H, W, C) map before the Flatten (and before the pooling).
                w = kernel.reshape(*part.flat, kernel.shape[-1])
                if part.pool is not None:
                    w = _pad_to(_unpool_dense(w, part.pool), self.shapes[_keys(part.src)[0]])
                scale = _channel_vector(part.scale, w.shape[-2], layer, "scale")
                return _Weight(layer, "dense", w * scale[:, None], input_shape=w.shape[:-1])
            if part.pool is not None:
                _refuse(layer, "reads a pooled map without a Flatten", "Add a Flatten.")
            scale = np.broadcast_to(np.asarray(part.scale, dtype="float64"), (channels,))
            return _Weight(layer, "dense", kernel * scale[:, None], input_shape=(channels,))
        if part.flat is not None:
            _refuse(layer, "reads a flattened input", "Use a Dense layer after a Flatten.")
        rank = 1 if kind == "conv1d" else 2
        if part.pad is not None:
            padded = self.compose(
                layer, kind, kernel, dataclasses.replace(part, pad=None), in_shape
            )
            padded.padding = tuple(a + b for a, b in zip(padded.padding, part.pad, strict=True))
            padded.input_shape = tuple(self.shapes[_keys(part.src)[0]][:rank])
            return padded
        stride = tuple(layer.strides)
        dilation = tuple(layer.dilation_rate)
        spatial = tuple(in_shape[:rank])
        padding = _padding(layer, spatial, kernel.shape[:rank], stride, dilation)
        scale = _channel_vector(part.scale, channels, layer, "scale")
        kernel = kernel * scale[:, None]
        if part.pool is not None:
            pool = tuple(part.pool)
            if any(d != 1 for d in dilation):
                _refuse(layer, "is dilated after an average pooling", "Use dilation_rate=1.")
            full = self.shapes[_keys(part.src)[0]]
            if any(pd != 0 for pd in padding) and any(
                f != s * p for f, s, p in zip(full[:rank], spatial, pool, strict=True)
            ):
                _refuse(
                    layer,
                    "pads an average-pooled map whose size was not a multiple of the pool",
                    "Use padding='valid', or an input size that the pooling divides.",
                )
            kernel = _unpool_kernel(kernel, pool)
            stride = tuple(s * p for s, p in zip(stride, pool, strict=True))
            padding = tuple(pd * p for pd, p in zip(padding, pool, strict=True))
            spatial = full[:rank]
        return _Weight(layer, kind, kernel, stride, padding, dilation, spatial)

    # -- emitting --------------------------------------------------------------
    def emit(self, part, bias):
        """Emits `part` as NIR nodes; returns the key of the last one."""
        nir = self.nir
        src = part.src
        if part.weight is None and part.pad is not None:
            raise NIRExportError(
                "export_nir(): a ZeroPadding is read by something other than a convolution; "
                "NIR pads only in its Conv nodes. Put the convolution right after the padding."
            )
        if part.weight is None:
            if part.pool is not None:
                shape = self.shapes[_keys(src)[0]]
                pooled = tuple(s // p for s, p in zip(shape, part.pool, strict=False))
                src = self.add_node(
                    f"{_keys(src)[0]}_pool",
                    nir.AvgPool2d(
                        kernel_size=np.array(part.pool),
                        stride=np.array(part.pool),
                        padding=np.array([0, 0]),
                    ),
                )
                self.edges_from(part.src, src)
                self.shapes[src] = (*pooled, shape[-1])
            if not _is_one(part.scale) or np.any(np.asarray(bias) != 0) or part.embed:
                shape = self.shapes[_keys(src)[0]]
                identity = np.eye(shape[-1])
                if part.embed is not None:
                    offset, total = part.embed
                    identity = np.zeros((shape[-1], total))
                    identity[:, offset : offset + shape[-1]] = np.eye(shape[-1])
                if len(shape) == 3:
                    w = _Weight(None, "conv2d", identity[None, None], (1, 1), (0, 0), (1, 1))
                    w.input_shape = shape[:2]
                elif len(shape) == 2:
                    w = _Weight(None, "conv1d", identity[None], (1,), (0,), (1,))
                    w.input_shape = shape[:1]
                else:
                    w = _Weight(None, "dense", identity, input_shape=shape)
                scale = _channel_vector(part.scale, shape[-1], src, "scale")
                w.kernel = w.kernel * scale[:, None]
                return self.emit(_Part(src, weight=w), bias)
            return src
        weight = part.weight
        kernel = weight.kernel
        out = kernel.shape[-1]
        out_scale = _channel_vector(part.out_scale, out, weight.layer, "scale")
        b = np.broadcast_to(np.asarray(bias, dtype="float64"), (out,))
        name = weight.layer.name if weight.layer is not None else f"{_keys(src)[0]}_scale"
        if part.flat is not None:
            full = kernel.shape[:-1]  # (H, W, C) of the source
            flat = self.add_node(
                f"{name}_flatten",
                nir.Flatten(input_type={"input": np.array(_cf(full))}, start_dim=0),
            )
            self.edges_from(src, flat)
            src = flat
            # Keras flattens (H, W, C); NIR (C, H, W): rows in NIR's order.
            kernel = np.moveaxis(kernel, -2, 0).reshape(-1, out)
        if weight.kind == "dense":
            node = nir.Affine(
                weight=(kernel * out_scale).T.astype("float32"),
                bias=b.astype("float32"),
            )
            shape = (out,)
        else:
            rank = 1 if weight.kind == "conv1d" else 2
            w = np.moveaxis(kernel * out_scale, [-1, -2], [0, 1]).astype("float32")
            cls = nir.Conv1d if rank == 1 else nir.Conv2d
            shape_in = weight.input_shape[0] if rank == 1 else tuple(weight.input_shape)
            node = cls(
                input_shape=shape_in,
                weight=w,
                stride=weight.stride[0] if rank == 1 else weight.stride,
                padding=weight.padding[0] if rank == 1 else weight.padding,
                dilation=weight.dilation[0] if rank == 1 else weight.dilation,
                groups=1,
                bias=b.astype("float32"),
            )
            spatial = [
                (n + 2 * p - d * (k - 1) - 1) // s + 1
                for n, p, d, k, s in zip(
                    weight.input_shape,
                    weight.padding,
                    weight.dilation,
                    kernel.shape[:rank],
                    weight.stride,
                    strict=True,
                )
            ]
            shape = (*spatial, out)
        key = self.add_node(name, node)
        self.edges_from(src, key)
        self.shapes[key] = shape
        return key

    def materialize(self, value, target, layer, gain=1.0, single=False):
        """Edges into `target` that sum to `value` times `gain` (one edge with `single`:
        nirtorch returns the inputs of an Output node as a tuple instead of their sum)."""
        value = self.scaled(value, gain, 0.0) if gain != 1.0 else value
        bias = np.asarray(value.bias, dtype="float64")
        channels = value.shape[-1]
        bias = _channel_vector(bias, channels, layer or target, "bias") if bias.ndim else bias
        placed = not np.any(bias != 0)
        # The bias goes into a weighted part, if there is one.
        keys = []
        for p in sorted(_merged(value.parts), key=lambda p: p.weight is None):
            if p.flat is not None and p.weight is None:
                _refuse(
                    layer or self.model,
                    "reads a Flatten that no Dense layer reads first; NIR flattens channels "
                    "first, Keras channels last, so only a Dense after it can restore the order",
                    "Put a Dense layer after the Flatten.",
                )
            keys.extend(_keys(self.emit(p, 0.0 if placed else bias)))
            placed = True
        if single and len(keys) > 1:
            # Their sum through an identity layer (exact, and every reader has one).
            keys = [self.emit(_Part(tuple(keys), scale=np.ones(channels) * 2), 0.0)]
            sum_node = self.nodes[keys[0]]
            weight = sum_node.weight
            sum_node.weight = (weight / 2).astype(weight.dtype)
        for key in keys:
            self.edge(key, target)

    # -- neurons ---------------------------------------------------------------
    def neuron_dt(self, layer):
        if self.dt is not None and layer.dt != self.dt:
            _refuse(
                layer,
                f"has dt={layer.dt}, another neuron dt={self.dt}",
                "Convert with one dt for the whole model.",
            )
        self.dt = layer.dt

    def spiking_relu(self, layer, value):
        self.neuron_dt(layer)
        if not layer.spiking:
            _refuse(layer, "is a rate neuron (spiking=False)", "Convert with spiking neurons.")
        if layer.reset != "zero":
            _refuse(
                layer,
                f"resets by subtraction (reset='{layer.reset}'); NIR's IF resets to v_reset",
                'Convert with swap_activations={"relu": ksc.SpikingReLU(reset="zero", '
                "max_spikes_per_step=1)}",
            )
        if layer.max_spikes_per_step != 1:
            _refuse(
                layer,
                f"emits several spikes a step (max_spikes_per_step={layer.max_spikes_per_step}); "
                "NIR's IF emits at most one",
                'Convert with swap_activations={"relu": ksc.SpikingReLU(reset="zero", '
                "max_spikes_per_step=1)}",
            )
        if layer.negative_spikes or layer.clip is not None:
            _refuse(
                layer,
                "uses negative_spikes or clip, which NIR's IF has no field for",
                "Convert without them (negative_spikes=False, clip=None).",
            )
        if layer.rectify_input:
            self.approximation(
                layer, "rectifies its input (rectify_input=True), which NIR's IF does not"
            )
        if layer.initial_voltage != 0.0:
            self.approximation(
                layer,
                f"starts at initial_voltage={layer.initial_voltage!r}; NIR readers start at 0 "
                "(fix: convert(..., initial_voltage=0.0))",
            )
        shape = value.shape
        key = self.add_node(
            layer.name,
            self.nir.IF(
                r=np.ones(_cf(shape), "float32"),
                v_threshold=np.ones(_cf(shape), "float32"),
                v_reset=np.zeros(_cf(shape), "float32"),
            ),
        )
        self.shapes[key] = shape
        # v += x * dt here; v += input in the graph (r = 1, one step): the input times dt.
        self.materialize(value, key, layer, gain=layer.dt)
        # A spike here is amplitude / dt; 1 in the graph.
        return _Value([_Part(key, scale=layer.amplitude / layer.dt)], shape)

    def lif(self, layer, value):
        self.neuron_dt(layer)
        self.approximation(
            layer,
            "is Nengo's LIF (exact zero-order hold, refractory period "
            f"tau_ref={layer.cell.tau_ref}, voltage floor min_voltage={layer.cell.min_voltage}); "
            "NIR's LIF has no refractory period or floor and readers integrate it by Euler steps",
        )
        shape = value.shape
        ones = np.ones(_cf(shape), "float32")
        key = self.add_node(
            layer.name,
            self.nir.LIF(
                tau=ones * float(layer.cell.tau_rc / layer.cell.dt),
                r=ones,
                v_leak=ones * 0.0,
                v_threshold=ones,
                v_reset=ones * 0.0,
            ),
        )
        self.shapes[key] = shape
        self.materialize(value, key, layer)
        return _Value([_Part(key, scale=layer.cell.amplitude / layer.cell.dt)], shape)

    def lowpass(self, layer, value):
        tau = np.asarray(layer.cell.tau, dtype="float64")
        dt = layer.cell.dt
        self.approximation(
            layer,
            "is a zero-order-hold low-pass (y = a y + (1 - a) x, a = exp(-dt / tau)); NIR's LI "
            "is continuous and readers integrate it by Euler steps (a = 1 - dt / tau)",
        )
        shape = value.shape
        ones = np.ones(_cf(shape), "float32")
        tau_steps = np.moveaxis(np.broadcast_to(tau / dt, shape), -1, 0)
        key = self.add_node(
            layer.name,
            self.nir.LI(tau=(ones * tau_steps).astype("float32"), r=ones, v_leak=0 * ones),
        )
        self.shapes[key] = shape
        self.materialize(value, key, layer)
        return _Value([_Part(key)], shape)


def _ordered(edges):
    """The edges, each node's outgoing ones longest path first.

    Norse 1.1.0 imports with nirtorch's deprecated executor, which runs the nodes in
    depth-first order from the input, children in edge order, and reads an input not yet
    computed from the previous step. With the longest branch first, a node that sums a
    neuron's output and a later layer's (a skip connection) runs after both.
    """
    children = collections.defaultdict(list)
    for src, dst in edges:
        children[src].append(dst)
    depth = {}

    def longest(node):
        if node not in depth:
            depth[node] = 1 + max((longest(c) for c in children[node]), default=0)
        return depth[node]

    index = {}
    for src, _ in edges:
        index.setdefault(src, len(index))
    return sorted(edges, key=lambda e: (index[e[0]], -longest(e[1])))


def _keys(src):
    return src if isinstance(src, tuple) else (src,)


def _merged(parts):
    """Parts that read the same nodes the same way, as one part reading their sum (NIR sums
    a node's incoming edges): an `Add` of neuron outputs becomes edges into one node."""
    same_src = {}
    for p in parts:
        if p.weight is not None:
            same_src[id(p)] = p
            continue
        key = (_keys(p.src), p.pool, p.flat, p.embed, p.pad)
        if key in same_src:
            q = same_src[key]
            same_src[key] = dataclasses.replace(q, scale=np.asarray(q.scale) + p.scale)
        else:
            same_src[key] = p
    merged = {}
    for p in same_src.values():
        if p.weight is not None:
            merged[id(p)] = p
            continue
        key = (
            np.asarray(p.scale, dtype="float64").tobytes(),
            np.ndim(p.scale),
            p.pool,
            p.flat,
            p.embed,
            p.pad,
        )
        if key in merged and not set(_keys(merged[key].src)) & set(_keys(p.src)):
            q = merged[key]
            merged[key] = dataclasses.replace(q, src=_keys(q.src) + _keys(p.src))
        else:
            merged[key if key not in merged else id(p)] = p
    return list(merged.values())


def _cf(shape):
    """A channels-last shape, channels first."""
    shape = tuple(int(d) for d in shape)
    return shape if len(shape) <= 1 else (shape[-1], *shape[:-1])


def _bias_sum(values):
    total = 0.0
    for v in values:
        total = total + np.asarray(v.bias, dtype="float64")
    return total


def _padding(layer, spatial, kernel_size, stride, dilation):
    if layer.padding == "valid":
        return (0,) * len(spatial)
    if layer.padding == "causal":
        _refuse(layer, "pads causally (one side)", "Use padding='valid' or 'same'.")
    pads = []
    for n, k, s, d in zip(spatial, kernel_size, stride, dilation, strict=True):
        effective = (k - 1) * d + 1
        out = -(-n // s)
        total = max((out - 1) * s + effective - n, 0)
        if total % 2:
            _refuse(
                layer,
                f"pads 'same' unevenly (kernel {tuple(kernel_size)}, stride {tuple(stride)}, "
                f"input {tuple(spatial)}); NIR pads both sides alike",
                "Use an odd kernel with stride 1, or padding='valid' after a ZeroPadding.",
            )
        pads.append(total // 2)
    return tuple(pads)


def _unpool_kernel(kernel, pool):
    """A convolution after a non-overlapping average pooling, as one convolution."""
    rank = len(pool)
    out = kernel
    for axis, p in enumerate(pool):
        out = np.repeat(out, p, axis=axis)
    return out / float(np.prod(pool)) if rank else out


def _unpool_dense(w, pool):
    """Dense rows over a pooled (H', W', C) map, over the map before the pooling."""
    for axis, p in enumerate(pool):
        w = np.repeat(w, p, axis=axis)
    return w / float(np.prod(pool))


def _pad_to(w, shape):
    """Zero rows for the positions a 'valid' pooling dropped."""
    pad = [(0, s - n) for s, n in zip(shape, w.shape[:-1], strict=True)] + [(0, 0)]
    return np.pad(w, pad)


def export_nir(snn, path=None, *, approximate=False):
    """Exports a converted model as a NIR graph (the Neuromorphic Intermediate Representation).

    The graph is what Norse, SpikingJelly and the neuromorphic toolchain read: `Conv1d`,
    `Conv2d` and `Affine` nodes for the weighted layers, `IF` nodes for integrate-and-fire
    neurons (`SpikingReLU(reset="zero", max_spikes_per_step=1)`), channels first, without
    batch or time axis. BatchNormalization, rate scales, the spikes' amplitude and `dt`,
    and average pooling before a convolution or Dense layer are folded into the weights;
    an `Add` becomes several edges into one node. The graph runs one step per update
    (`r = 1`, `v_threshold = 1`): import it with `dt=1`. Its metadata holds the
    model's `dt` and readout.

    Args:
        snn: A converted model (`convert`'s result), one input and one output.
        path: If given, the graph is also written there (HDF5, `nir.write`).
            Defaults to `None`.
        approximate: Export what NIR can only approximate (an initial voltage other
            than 0, a rectified input, Nengo's LIF, a low-pass synapse) with a warning
            that says what differs, instead of refusing it. Defaults to `False`.

    Returns:
        The `nir.NIRGraph`.

    Raises:
        NIRExportError: A layer NIR cannot express as it runs here (a subtractive reset,
            several spikes a step, a depthwise convolution, a layer without a NIR node):
            the message names the layer and the fix.
    """
    exporter = _Exporter(snn, approximate)
    graph = exporter.run()
    if path is not None:
        exporter.nir.write(str(path), graph)
    return graph


# -- import ----------------------------------------------------------------------------------


def _uniform(array, what, node_name):
    values = np.unique(np.asarray(array, dtype="float64"))
    if values.size != 1:
        raise ValueError(
            f"import_nir(): node '{node_name}' has a {what} that varies between neurons; this "
            "import needs one value per node."
        )
    return float(values[0])


def import_nir(graph_or_path, *, dt=0.001, graph_dt=1.0, readout=None):
    """Imports a NIR graph as a converted (spiking) Keras model.

    The graph runs one step per update, as Norse and SpikingJelly run it with `dt=1`: an
    `IF` node (`r`, `v_threshold`, `v_reset = 0`) becomes `SpikingReLU(reset="zero",
    max_spikes_per_step=1, initial_voltage=0)`, its input multiplied by
    `r * graph_dt / v_threshold` (and by `1 / dt`, with `amplitude=dt`: its spikes are
    worth 1, as in the graph); `Conv1d`, `Conv2d`, `Affine`, `Linear` and
    `Flatten` become the Keras layers (channels last; a Dense after a Flatten gets its
    rows reordered from NIR's channels-first order), several edges into a node an `Add`,
    `AvgPool2d` and `SumPool2d` average pooling. The result is what `convert` returns, so
    `predict`, `Stream`, `export` and `estimate_energy` take it.

    Args:
        graph_or_path: A `nir.NIRGraph`, or the path of one written by `nir.write`.
        dt: The converted model's `dt` (seconds per step; the `dt` in the metadata of a
            graph `export_nir` wrote wins). The spikes are scaled so that one spike is 1
            whatever `dt` is. Defaults to `0.001`.
        graph_dt: One step in the graph's time unit: an `IF` node adds `r * graph_dt`
            times its input a step. What SpikingJelly's `import_from_nir(dt=...)` takes:
            its `export_to_nir(..., dt)` writes `r = 1 / dt`, so import such a graph
            with the same `graph_dt`. Defaults to `1.0` (`export_nir`'s graphs).
        readout: `None` (the output at every step), `"mean"` or `"last"`; `None` takes
            the graph's metadata `readout` if it has one. Defaults to `None`.

    Returns:
        A converted `keras.Model` (a `SpikingModel`).

    Raises:
        ValueError: A node this import does not read (`LIF`, `LI`, `CubaLIF`, `Scale`,
            ...), a recurrent graph, several inputs or outputs, an `IF` that resets to
            another voltage or whose parameters differ between neurons.
    """
    nir = _nir()
    graph = (
        nir.read(str(graph_or_path))
        if not isinstance(graph_or_path, nir.NIRGraph)
        else (graph_or_path)
    )
    meta = dict(graph.metadata or {})
    dt = float(meta.get("dt", dt))
    if readout is None:
        mode = meta.get("readout", "none")
        readout = None if mode in ("none", None) else str(mode)
    ann = _ann_of(graph, nir, dt, graph_dt)
    snn = convert(
        ann,
        swap_activations={"relu": SpikingReLU(reset="zero", max_spikes_per_step=1, amplitude=dt)},
        dt=dt,
        initial_voltage=0.0,
        readout=readout,
        strict=False,
    )
    return snn


def _ann_of(graph, nir, dt, graph_dt):
    nodes, edges = graph.nodes, graph.edges
    incoming = collections.defaultdict(list)
    for src, dst in edges:
        incoming[dst].append(src)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"import_nir(): the graph has {len(inputs)} Input and {len(outputs)} Output nodes; "
            "this import reads graphs with one of each."
        )
    in_type = np.asarray(nodes[inputs[0]].input_type["input"]).astype(int).tolist()
    # Norse writes the batch axis of its sample into the Input node ([1, 6] for 6 inputs):
    # the shape the nodes after it read, when they say it.
    for src, dst in edges:
        read = getattr(nodes[dst], "input_type", None) or {}
        read = read.get("input")
        if (
            src == inputs[0]
            and read is not None
            and list(np.asarray(read).astype(int)) == (in_type[1:])
            and in_type[:1] == [1]
        ):
            in_type = in_type[1:]
    x = keras.Input(tuple(_cl(in_type)), name=inputs[0])
    tensors = {inputs[0]: (x, tuple(in_type), "cf")}  # key -> (tensor, NIR shape, order)
    done = set(tensors)
    pending = [k for k in nodes if k not in done]
    while pending:
        progress = False
        for key in list(pending):
            if not all(src in done for src in incoming[key]):
                continue
            tensors[key] = _import_node(
                key, nodes[key], [tensors[s] for s in incoming[key]], nir, dt, graph_dt
            )
            done.add(key)
            pending.remove(key)
            progress = True
        if not progress:
            raise ValueError(
                f"import_nir(): nodes {pending} are in a cycle (a recurrent graph); this import "
                "reads feed-forward graphs."
            )
    return keras.Model(x, tensors[outputs[0]][0], name="nir")


def _cl(shape):
    shape = list(shape)
    return shape if len(shape) <= 1 else [*shape[1:], shape[0]]


def _summed(args, key):
    if len(args) == 1:
        return args[0]
    orders = {a[2] for a in args}
    shapes = {tuple(a[1]) for a in args}
    if len(orders) != 1 or len(shapes) != 1:
        raise ValueError(f"import_nir(): node '{key}' sums inputs of different shapes {shapes}.")
    return L.Add(name=f"{key}_sum")([a[0] for a in args]), args[0][1], args[0][2]


def _import_node(key, node, args, nir, dt, graph_dt):
    if isinstance(node, nir.Output):
        return _summed(args, key)
    x, shape, order = _summed(args, key)
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = np.asarray(node.weight, dtype="float32")  # (out, in)
        bias = np.asarray(node.bias, "float32") if isinstance(node, nir.Affine) else None
        kernel = weight.T
        if order != "cf":
            # Rows in NIR's flattened (C, H, W) order; Keras flattened (H, W, C).
            rows = kernel.reshape(*order, kernel.shape[-1])
            kernel = np.moveaxis(rows, 0, -2).reshape(-1, kernel.shape[-1])
        layer = L.Dense(kernel.shape[1], use_bias=bias is not None, name=key)
        y = layer(x)
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
        return y, (kernel.shape[1],), "cf"
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        rank = 1 if isinstance(node, nir.Conv1d) else 2
        if int(node.groups) != 1:
            raise ValueError(f"import_nir(): node '{key}' is a grouped convolution.")
        weight = np.asarray(node.weight, dtype="float32")  # (out, in, *k)
        kernel = np.moveaxis(weight, [0, 1], [-1, -2])
        pad = node.padding
        if isinstance(pad, str):
            padding, pads = pad, None
        else:
            pads = tuple(int(p) for p in np.broadcast_to(np.asarray(pad), (rank,)))
            padding = "valid"
        if pads and any(pads):
            pad_layer = (L.ZeroPadding1D if rank == 1 else L.ZeroPadding2D)(
                pads[0] if rank == 1 else pads, name=f"{key}_pad"
            )
            x = pad_layer(x)
        stride = tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride), (rank,)))
        dilation = tuple(int(s) for s in np.broadcast_to(np.asarray(node.dilation), (rank,)))
        cls = L.Conv1D if rank == 1 else L.Conv2D
        layer = cls(
            kernel.shape[-1],
            kernel.shape[:rank],
            strides=stride,
            padding=padding,
            dilation_rate=dilation,
            name=key,
        )
        y = layer(x)
        layer.set_weights([kernel, np.asarray(node.bias, "float32")])
        return y, tuple(_cf(y.shape[1:])), "cf"
    if isinstance(node, nir.Flatten):
        if int(node.start_dim) not in (0, -len(shape)) or int(node.end_dim) not in (
            -1,
            len(shape) - 1,
        ):
            raise ValueError(
                f"import_nir(): Flatten '{key}' flattens dims {node.start_dim}..{node.end_dim} "
                f"of {shape}; this import reads Flatten of the whole sample (start_dim=0)."
            )
        y = L.Flatten(name=key)(x)
        return y, (int(np.prod(shape)),), tuple(shape) if len(shape) >= 2 else "cf"
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        size = tuple(int(s) for s in np.broadcast_to(np.asarray(node.kernel_size), (2,)))
        stride = tuple(int(s) for s in np.broadcast_to(np.asarray(node.stride), (2,)))
        if np.any(np.asarray(node.padding) != 0):
            raise ValueError(f"import_nir(): pooling '{key}' pads; this import reads unpadded.")
        y = L.AveragePooling2D(size, stride, name=key)(x)
        if isinstance(node, nir.SumPool2d):
            y = L.Rescaling(float(np.prod(size)), name=f"{key}_sum")(y)
        return y, tuple(_cf(y.shape[1:])), "cf"
    if isinstance(node, nir.IF):
        r = _uniform(node.r, "r", key)
        threshold = _uniform(node.v_threshold, "v_threshold", key)
        if _uniform(node.v_reset, "v_reset", key) != 0.0:
            raise ValueError(
                f"import_nir(): IF '{key}' resets to {node.v_reset.flat[0]}; this import reads "
                "IF nodes that reset to 0."
            )
        # v += r * input; spike at v >= threshold; here v += x * dt, spike at 1.
        gain = r * graph_dt / threshold / dt
        if gain != 1.0:
            x = L.Rescaling(gain, name=f"{key}_gain")(x)
        y = L.ReLU(name=key)(x)
        return y, shape, "cf"
    raise ValueError(
        f"import_nir(): node '{key}' is a {type(node).__name__}, which this import does not "
        "read (it reads Input, Output, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, "
        "SumPool2d and IF)."
    )
