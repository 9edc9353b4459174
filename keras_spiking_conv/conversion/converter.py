"""`convert()`: a functional or Sequential Keras model to a time-distributed spiking model.

The converter is a short sequence of steps (numbered in `Converter`):
1. check the model and every layer it contains, before any work;
2. normalise the options (`swap_activations`, `scale_firing_rates`,
   `synapse`, `activity_regularizer`, `encoder`, ...) into typed values;
3. replay the model's graph on inputs with a time axis (each through an
   encoder if one is asked for)
   (`keras.models.clone_model` with a `call_function`), converting each layer
   call with the rule registered for its class (`keras.ops` calls and layers
   without a rule by the generic rules), copying weights as it goes;
4. add the readout and return a `SpikingModel` (wrapped to hold constant
   inputs when asked), with a report.
"""

import dataclasses
import functools
import numbers
import warnings

import keras
import numpy as np

from keras_spiking_conv._validation import (
    check_bool,
    check_initial_voltage,
    check_integer,
    check_number,
    check_positive_values,
    check_seed,
)
from keras_spiking_conv.conversion import temporal
from keras_spiking_conv.conversion.activations import NEURON_KEYS, activation_key
from keras_spiking_conv.conversion.cloning import LayerCloner, as_functional
from keras_spiking_conv.conversion.errors import ConversionError, check_model
from keras_spiking_conv.conversion.generic import generic_rule, operation_rule
from keras_spiking_conv.conversion.registry import get_rule
from keras_spiking_conv.conversion.report import ConversionReport
from keras_spiking_conv.conversion.rules import NEURONS, block_layers, block_scales
from keras_spiking_conv.layers import (
    LIF,
    AccumulatedMaxPooling,
    AlphaSynapse,
    LIFCell,
    LowpassSynapse,
    PoissonEncoder,
    RateScale,
    RegularEncoder,
    SpikingActivation,
    SpikingActivationCell,
    SpikingReLU,
    SpikingReLUCell,
    TimeFold,
    TimeReadout,
)
from keras_spiking_conv.layers.encoders import Encoder
from keras_spiking_conv.layers.readout import check_readout
from keras_spiking_conv.layers.temporal import FrameRecurrence, FrameSteps
from keras_spiking_conv.runtime.model import SpikingModel, constant_input_model
from keras_spiking_conv.runtime.plan import (
    inputs_struct,
    is_converted,
    outputs_struct,
    producer_name,
)

# Neuron blocks compute in float32 under any global policy: a voltage integrated in
# float16/bfloat16 drifts, `n * amplitude / dt` stops being whole spikes, and scaled
# rates overflow float16.
NEURON_DTYPE = "float32"

# Converted spiking neurons start mid-threshold: spike counts are rates x time, rounded.
INITIAL_VOLTAGE = 0.5

# convert's `max_pooling` values.
MAX_POOLING_OPTIONS = ("auto", "accumulated", "per_step")

# Converted spiking neurons integrate their signed input (`SpikingReLU(rectify_input=False)`):
# spike counts then follow the ReLU of the mean input, so a network converges to the
# original as time goes on even when neurons feed spikes to neurons (docs/latency.md).
# In a temporal model each frame starts them afresh (`engine.start_frame`), so a frame's
# negative input does not hold back the next frame's spikes (docs/temporal.md).
RECTIFY_INPUT = False


@dataclasses.dataclass(frozen=True)
class PerLayer:
    """An option given once for every layer, or per original layer (by name).

    Attributes:
        value: The value for every layer (when `table` is None).
        table: Dict layer name -> value, or None.
        default: The value of a layer `table` does not name.
    """

    value: object = None
    table: dict = None
    default: object = None


@dataclasses.dataclass(frozen=True)
class Swap:
    """What `swap_activations` turns one activation into."""

    activation: object  # as the user gave it (for messages)
    spiking: bool
    config: dict  # the neuron's arguments from a configured neuron
    kind: str = "relu"  # a key of NEURON_CLASSES


class Options:
    """Normalised conversion options, looked up per source layer name."""

    def __init__(
        self,
        swap_activations,
        scale_firing_rates,
        synapse,
        activity_regularizer,
        dt,
        seed,
        initial_voltage,
        encoder=None,
        max_pooling="auto",
        temporal=False,
        steps_per_frame=1,
    ):
        self.dt = check_number("dt", dt, owner="convert()", positive=True)
        self.temporal = check_bool("temporal", temporal, owner="convert()")
        self.steps_per_frame = check_integer(
            "steps_per_frame", steps_per_frame, owner="convert()", minimum=1
        )
        if self.steps_per_frame > 1 and not self.temporal:
            raise ValueError(
                "convert(): `steps_per_frame` is for temporal models (temporal=True), whose "
                "input's axis 1 is time; a model of still inputs takes its steps from the "
                f"input's time axis. Received: steps_per_frame={steps_per_frame!r}"
            )
        if max_pooling not in MAX_POOLING_OPTIONS:
            raise ValueError(
                f"convert(): `max_pooling` must be one of {MAX_POOLING_OPTIONS}: 'accumulated' "
                "pools the inputs accumulated over time (max pooling of firing rates), "
                "'per_step' each step's values, 'auto' the first when a neuron spikes. "
                f"Received: max_pooling={max_pooling!r}"
            )
        self.max_pooling = max_pooling
        self.seed = check_seed("seed", seed, owner="convert()")
        self.encoder = self._encoder(encoder)
        self.initial_voltage = self._per_layer(
            "initial_voltage", initial_voltage, INITIAL_VOLTAGE, check=check_initial_voltage
        )
        self.swap = self._swap(swap_activations)
        self.scale = self._per_layer(
            "scale_firing_rates",
            scale_firing_rates,
            1.0,
            check=functools.partial(check_positive_values, "scale_firing_rates"),
        )
        self.synapse = self._per_layer("synapse", synapse, None, check=_synapse_template)
        self.regularizer = self._per_layer("activity_regularizer", activity_regularizer, None)
        self.used_swap_keys = set()
        self.used_layer_keys = set()
        self.generic_classes = set()

    def accumulated_max_pooling(self):
        """Whether max pooling pools the accumulated inputs (`AccumulatedMaxPooling`)."""
        if self.max_pooling == "auto":
            return any(neuron.spiking for neuron in self.swap.values())
        return self.max_pooling == "accumulated"

    def _encoder(self, encoder):
        """`encoder` as a function `(index, name) -> new encoder layer`, or None."""
        if encoder is None:
            return None
        if encoder == "regular":
            return lambda i, name: RegularEncoder(1.0 / self.dt, self.dt, name=name)
        if encoder == "poisson":
            if self.seed is None:
                raise ValueError(
                    "convert(): `encoder='poisson'` needs `seed` (an integer), so that its "
                    "spikes can be reproduced. Pass e.g. convert(model, encoder='poisson', "
                    "seed=0)."
                )
            return lambda i, name: PoissonEncoder(
                1.0 / self.dt, self.dt, seed=self.seed + i, name=name
            )
        if isinstance(encoder, Encoder):
            config = encoder.get_config()

            def make(i, name):
                layer_config = {**config, "name": name}
                if "seed" in layer_config:  # one stream per input
                    layer_config["seed"] += i
                return type(encoder).from_config(layer_config)

            return make
        raise ValueError(
            "convert(): `encoder` must be None, 'regular', 'poisson' or a configured "
            "keras_spiking_conv.layers.RegularEncoder or PoissonEncoder (e.g. "
            "PoissonEncoder(max_rate=1000, max_value=255, seed=0) for raw pixels). "
            f"Received: encoder={encoder!r}"
        )

    @staticmethod
    def _swap(swap_activations):
        """Dict activation key -> `Swap`."""
        if swap_activations is None:
            return {}
        if not isinstance(swap_activations, dict):
            raise TypeError(
                "convert(): `swap_activations` must be a dict mapping activations to "
                "neurons, e.g. {'relu': 'spiking_relu'}. Received: "
                f"swap_activations={swap_activations!r}"
            )
        swap = {}
        for activation, neuron in swap_activations.items():
            key = activation_key(activation)
            if key is None:
                raise ValueError(
                    f"convert(): cannot recognise the activation {activation!r} in "
                    "`swap_activations`. Use a name ('relu'), an activation function "
                    "(keras.activations.relu, tf.nn.relu) or an activation layer class "
                    "(keras.layers.ReLU)."
                )
            swap[key] = Swap(activation, *_neuron_template(activation, key, neuron))
        return swap

    @staticmethod
    def _per_layer(name, value, default, check=None):
        """`value` (one for all, or a dict by layer) as a `PerLayer`; `check(v, owner=...)`
        validates and normalises each given value."""

        def check_value(v, where):
            if v is None or check is None:
                return v
            return check(v, owner=f"convert(){where}")

        if isinstance(value, dict):
            table = {}
            for layer, v in value.items():
                layer_name = layer.name if isinstance(layer, keras.layers.Layer) else layer
                if not isinstance(layer_name, str):
                    raise TypeError(
                        f"convert(): keys of `{name}` must be layers or layer names. "
                        f"Received key: {layer!r}"
                    )
                table[layer_name] = check_value(v, f" (layer '{layer_name}')")
            return PerLayer(table=table, default=default)
        return PerLayer(value=check_value(value, "") if value is not None else default)

    def lookup(self, option, source):
        """The value of a `PerLayer` option for the original layer named `source`."""
        if option.table is None:
            return option.value
        if source in option.table:
            self.used_layer_keys.add(source)
            return option.table[source]
        return option.default

    def warn_unused(self):
        unused = [str(s.activation) for k, s in self.swap.items() if k not in self.used_swap_keys]
        if unused:
            warnings.warn(
                f"convert(): swap_activations keys matched no layer: {', '.join(unused)}. "
                "Check the activation names used by the model (see the conversion report).",
                stacklevel=3,
            )
        for name, option in (
            ("scale_firing_rates", self.scale),
            ("synapse", self.synapse),
            ("activity_regularizer", self.regularizer),
            ("initial_voltage", self.initial_voltage),
        ):
            if option.table is not None:
                missing = sorted(set(option.table) - self.used_layer_keys)
                if missing:
                    warnings.warn(
                        f"convert(): `{name}` names layers that have no neuron: "
                        f"{', '.join(missing)}. Only layers with a ReLU (or a swapped "
                        "activation) get neurons.",
                        stacklevel=3,
                    )


# The neuron classes of `swap_activations` values, by kind, and the arguments a
# configured neuron passes on (dt, seed, source and name are convert's).
NEURON_CLASSES = {"relu": SpikingReLU, "lif": LIF, "activation": SpikingActivation}
TEMPLATE_KEYS = {
    "relu": (
        "amplitude",
        "initial_voltage",
        "spiking_aware_training",
        "rectify_input",
        "max_spikes_per_step",
        "reset",
        "negative_spikes",
    ),
    "lif": (
        "tau_rc",
        "tau_ref",
        "amplitude",
        "min_voltage",
        "smoothing",
        "initial_voltage",
        "spiking_aware_training",
    ),
    "activation": (
        "activation",
        "amplitude",
        "mode",
        "initial_voltage",
        "spiking_aware_training",
    ),
}


def _neuron_template(activation, key, neuron):
    """The (spiking, config, kind) of the neuron an activation is swapped to."""
    if isinstance(neuron, str):
        if neuron in ("spiking_relu", "spikingrelu", "SpikingReLU"):
            return True, {}, "relu"
        if neuron == "relu":
            return False, {}, "relu"
        if neuron in ("lif", "LIF"):
            return True, {}, "lif"
        if neuron == "spiking":  # the spiking version of the activation itself
            if key == "relu":
                return True, {}, "relu"
            _check_spiking_version(activation, key)
            return True, {"activation": key}, "activation"
    configured = neuron_template(neuron)
    if configured is not None:
        return configured
    raise ValueError(
        f"convert(): `swap_activations[{activation!r}]` must be 'spiking_relu', 'relu', "
        "'lif' (Nengo's LIF), 'spiking' (the spiking version of the activation itself) or "
        "a configured SpikingReLU, LIF or SpikingActivation layer. Received: "
        f"{neuron!r}"
    )


def neuron_template(neuron):
    """The (spiking, config, kind) of a configured neuron layer or cell (the
    arguments it passes on: `TEMPLATE_KEYS`), or None for anything else."""
    for kind, cls in NEURON_CLASSES.items():
        cell_cls = {"relu": SpikingReLUCell, "lif": LIFCell, "activation": SpikingActivationCell}
        if isinstance(neuron, (cls, cell_cls[kind])):
            config = neuron.cell.get_config() if isinstance(neuron, cls) else neuron.get_config()
            # An unset value (None) takes the converter's (e.g. a signed input).
            template = {k: config[k] for k in TEMPLATE_KEYS[kind] if config[k] is not None}
            return bool(config["spiking"]), template, kind
    return None


def _check_spiking_version(activation, key):
    """Checks that `SpikingActivation` can compute the activation `key` elementwise."""
    try:
        keras.activations.get(key)
    except ValueError:
        raise ValueError(
            f"convert(): `swap_activations[{activation!r}] = 'spiking'` needs an elementwise "
            f"Keras activation to make spike, and {key!r} is none (a layer with weights or "
            "an axis, such as PReLU or Softmax). Swap it to 'lif', or keep it as a rate "
            "layer (leave it out of swap_activations)."
        ) from None


# What a configured `LowpassSynapse` or `AlphaSynapse` given as `synapse=` passes on (dt
# is convert's), and the synapse classes by the name the template records.
SYNAPSE_TEMPLATE_KEYS = ("tau", "trainable_tau", "per_channel")
SYNAPSE_CLASSES = {"lowpass": LowpassSynapse, "alpha": AlphaSynapse}


def _synapse_template(value, owner):
    """A `synapse` value as the arguments of each synapse built from it (with
    `"filter"`: `"alpha"` for an `AlphaSynapse`)."""
    if isinstance(value, LowpassSynapse):
        config = value.cell.get_config()
        template = {key: config[key] for key in SYNAPSE_TEMPLATE_KEYS}
        if isinstance(value, AlphaSynapse):
            template["filter"] = "alpha"
        return template
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return {"tau": check_number("synapse", value, owner=owner, positive=True)}
    raise TypeError(
        f"{owner}: `synapse` must be None, a time constant in seconds (> 0) or a configured "
        "LowpassSynapse or AlphaSynapse layer (e.g. LowpassSynapse(0.01, "
        "trainable_tau=True), AlphaSynapse(0.005)); or a dict mapping layers to those. "
        f"Received: synapse={value!r}"
    )


def _synapse_layer(template, **kwargs):
    """The synapse a template describes."""
    template = dict(template)
    cls = SYNAPSE_CLASSES[template.pop("filter", "lowpass")]
    return cls(**template, **kwargs)


class ConversionContext(LayerCloner):
    """What a conversion rule can use: cloning, folding, neuron blocks, the report."""

    def __init__(self, options, already_converted, report, rng):
        super().__init__()
        self.options = options
        self.already_converted = already_converted
        self.report = report
        self.rng = rng
        self.used_names = set()
        self.block_layers = set()
        self.block_scales = {}
        self._nested = {}
        self._wrappers = {}
        self.checked = set()  # ids of generic copies checked to work per sample
        # Temporal models: ids of the converted tensors whose axis 1 is the data's time
        # axis in the original (`conversion/temporal.py`).
        self.framed = set()

    # -- names ---------------------------------------------------------------
    def unique_name(self, base):
        name, i = base, 1
        while name in self.used_names:
            name, i = f"{base}_{i}", i + 1
        self.used_names.add(name)
        return name

    # -- layers --------------------------------------------------------------
    def keep(self, layer, args, kwargs):
        """Applies a copy of a layer that already runs over time (config and weights).

        A synapse or an encoder gets the conversion's `dt`: a `tau` or a `max_rate`
        stays in seconds or Hz (an encoder checks its rate against the new `dt`).
        """
        timed = isinstance(layer, (LowpassSynapse, Encoder))
        overrides = {"dt": self.options.dt} if timed else {}
        new_layer = self.clone(layer, **overrides)
        call_kwargs = {k: v for k, v in kwargs.items() if k == "training"}
        outputs = new_layer(args[0] if len(args) == 1 else list(args), **call_kwargs)
        self.copy_weights_once(new_layer, layer)
        return outputs

    def fold(self, new_layer, source_layer, args, kwargs):
        """Applies `new_layer` to every timestep at once; copies `source_layer`'s weights."""
        if id(new_layer) not in self._wrappers:
            self.used_names.add(new_layer.name)
            # The wrapper computes in the wrapped layer's own precision, whatever the
            # global policy is now (a float32 model converted under a mixed policy).
            self._wrappers[id(new_layer)] = TimeFold(
                new_layer,
                source=source_layer.name,
                name=new_layer.name,
                dtype=new_layer.dtype_policy,
                autocast=new_layer.autocast,
            )
        wrapper = self._wrappers[id(new_layer)]
        call_kwargs = {k: v for k, v in kwargs.items() if k == "training"}
        inputs = args[0] if len(args) == 1 else list(args)
        outputs = wrapper(inputs, **call_kwargs)
        self.copy_weights_once(new_layer, source_layer)
        return outputs

    def convert_call(self, layer, args, kwargs):
        """Converts one call of `layer` with the rule registered for its class (a
        `keras.ops` call, or a layer without a rule, with the generic rules); in a
        temporal model, a call on the data's time axis goes through
        `temporal.convert_call` first."""
        if (
            self.options.temporal
            and not self.already_converted
            and any(id(t) in self.framed for t in keras.tree.flatten((args, kwargs)))
        ):
            return temporal.convert_call(layer, args, kwargs, self, self._convert_by_rule)
        return self._convert_by_rule(layer, args, kwargs)

    def _convert_by_rule(self, layer, args, kwargs):
        if isinstance(layer, keras.Model):
            return self._convert_nested(layer, args)
        if not isinstance(layer, keras.layers.Layer):
            return operation_rule(layer, args, kwargs, self)
        rule = get_rule(layer)
        if rule is None:
            return generic_rule(layer, args, kwargs, self)
        before = len(self.report.rows)
        blocks = len(self.report.neuron_blocks(layer.name))
        outputs = rule(layer, args, kwargs, self)
        # The report lists every layer: one a registered rule did not record is listed
        # with the rule that converted it, as a neuron if the rule built a neuron block
        # for it (`neuron_block(layer.name, ...)`).
        recorded = any(row["layer"] == layer.name for row in self.report.rows[before:])
        if not recorded and not isinstance(layer, keras.layers.InputLayer):
            made_neuron = len(self.report.neuron_blocks(layer.name)) > blocks
            self.record(layer, kind="neuron" if made_neuron else "custom", rule=rule.__name__)
        return outputs

    def warn_generic(self, layer):
        """Warns, once per class and conversion, that a layer was converted generically."""
        cls = type(layer)
        if cls not in self.options.generic_classes:
            self.options.generic_classes.add(cls)
            warnings.warn(
                f"convert(): layer '{layer.name}' ({cls.__module__}.{cls.__name__}) has no "
                "conversion rule; layers of this class are applied at every timestep (time "
                "folded into the batch), after a check that they work per sample (see the "
                "report: 'generic'). Register a rule to say otherwise, or convert with "
                "strict=True to refuse layers without one.",
                stacklevel=2,
            )

    def _convert_nested(self, model, args):
        if id(model) not in self._nested:
            sub = _Conversion(model, self.options, self.already_converted, self.rng)
            self.report.nested[model.name] = sub.report
            self._nested[id(model)] = sub.model
            self.used_names.add(model.name)
        self.record(model, kind="nested")
        inputs = args[0] if len(args) == 1 else list(args)
        return self._nested[id(model)](inputs)

    # -- neurons -------------------------------------------------------------
    def wants_neuron(self, source, key):
        """Whether the activation `key` of layer `source` becomes a neuron block."""
        if key in self.options.swap:
            return True
        if key not in NEURON_KEYS:
            return False
        o = self.options
        return (
            o.lookup(o.scale, source) != 1.0
            or o.lookup(o.synapse, source) is not None
            or o.lookup(o.regularizer, source) is not None
        )

    def neuron_block(self, source, key, x, threshold=None, max_value=None, kind="relu", own=None):
        """`x` -> [RateScale(s)] -> neuron -> [RateScale(1/s)] -> [LowpassSynapse].

        With a `threshold` (a `QuantizedReLU`'s: one, or a tuple per channel), `s` is
        also multiplied by
        `1 / (threshold * dt)`: an input at the threshold fires one spike per step.
        `own` (a re-converted `LIF` or `SpikingActivation`) sets the kind and keeps
        its parameters (`neuron_template`), unless `swap_activations` makes it another
        kind of neuron; a configured swap value is the whole neuron (its own parameters,
        defaults included).
        With a `max_value` (a clipped ReLU's, in the original units: one, or one per
        channel), the neuron's mean output is clipped at it (`SpikingReLU(clip=...)`),
        spiking or rate. A threshold is also the clip (as the `QuantizedReLU` clips),
        except for a spiking neuron without negative spikes: with them the network
        computes its quantized ANN exactly at T = levels; without, the neurons get
        their spikes unevenly over time and the clip measured worse at T <= 4 on the
        tutorial net (docs/latency.md).
        """
        o = self.options
        own_template = {}
        if own is not None:  # a re-converted LIF or SpikingActivation
            _, own_template, kind = neuron_template(own)
        spiking, template, own_kind = False, {}, kind
        if key in o.swap:
            o.used_swap_keys.add(key)
            spiking, template, kind = o.swap[key].spiking, o.swap[key].config, o.swap[key].kind
        if kind == own_kind:  # a re-converted neuron keeps its own parameters
            template = {**own_template, **template}
        if kind != "relu":
            return self._other_neuron_block(source, key, x, spiking, template, kind)
        signed = template.get("negative_spikes", False)
        scale, clip = self._scale_and_clip(source, threshold, max_value, spiking, signed)
        synapse = o.lookup(o.synapse, source)
        regularizer = o.lookup(o.regularizer, source)
        if regularizer is not None:
            regularizer = _time_averaged(regularizer)
        if scale != 1.0:
            x = RateScale(
                scale, dtype=NEURON_DTYPE, source=source, name=self.unique_name(f"{source}_scale")
            )(x)
        # A configured SpikingReLU in `swap_activations` brings its own initial voltage.
        template = {
            "initial_voltage": o.lookup(o.initial_voltage, source),
            "rectify_input": RECTIFY_INPUT,
            **template,
        }
        neuron = SpikingReLU(
            **template,
            clip=clip,
            dt=o.dt,
            spiking=spiking,
            seed=int(self.rng.integers(0, 2**31 - 1)),
            activity_regularizer=regularizer,
            dtype=NEURON_DTYPE,
            source=source,
            name=self.unique_name(f"{source}_neuron"),
        )
        return self._after_neuron(source, neuron, x, scale, synapse, spiking)

    def _scale_and_clip(self, source, threshold, max_value, spiking, signed):
        """A ReLU neuron's firing-rate scale and clip (in spikes per step of the scaled
        neuron, or None): the layer's scale, times `1 / (threshold * dt)` for a spiking
        neuron with a `QuantizedReLU`'s threshold; the clip at `max_value`, or at the
        threshold unless the neuron spikes without negative spikes (`neuron_block`)."""
        o = self.options
        scale = o.lookup(o.scale, source)
        if threshold is not None and spiking:
            scale = _times(scale, 1.0 / (np.asarray(threshold) * o.dt))
        if threshold is not None and max_value is None:
            max_value = threshold if signed or not spiking else None
        if max_value is None:
            return scale, None
        clip = np.asarray(max_value, dtype="float64") * np.asarray(scale) * o.dt
        return scale, (clip if clip.ndim else float(clip))  # one, or one per channel

    def recurrent_neuron(self, source, key, own=None, threshold=None):
        """The neuron cell and scale a recurrent layer's activation `key` becomes (a
        `SimpleRNN` of a temporal model, `FrameRecurrence`), or `(None, 1.0)` when it
        stays as it is. `own` is a re-converted layer's neuron cell, kept (as a rate
        neuron) unless `swap_activations` says otherwise. A `threshold` (of a
        `QuantizedSimpleRNNCell`) sets the scale and clip of a spiking ReLU as
        `neuron_block` does."""
        o = self.options
        spiking, template, kind = False, {}, None
        if own is not None:
            _, template, kind = neuron_template(own)
        if key in o.swap:
            o.used_swap_keys.add(key)
            swap = o.swap[key]
            template = {**template, **swap.config} if swap.kind == kind else dict(swap.config)
            spiking, kind = swap.spiking, swap.kind
        if kind is None:
            return None, 1.0
        defaults = {"initial_voltage": o.lookup(o.initial_voltage, source)}
        if kind == "relu":
            defaults["rectify_input"] = RECTIFY_INPUT
        if kind == "activation":
            defaults["activation"] = key
        scale = o.lookup(o.scale, source)
        if kind == "relu" and threshold is not None:
            signed = template.get("negative_spikes", False)
            scale, clip = self._scale_and_clip(source, threshold, None, spiking, signed)
            if clip is not None:
                defaults["clip"] = clip
        cell_cls = {"relu": SpikingReLUCell, "lif": LIFCell, "activation": SpikingActivationCell}
        cell = cell_cls[kind](
            **{**defaults, **template},
            dt=o.dt,
            spiking=spiking,
            seed=int(self.rng.integers(0, 2**31 - 1)),
            dtype=NEURON_DTYPE,
            name=self.unique_name(f"{source}_neuron"),
        )
        return cell, scale

    def _after_neuron(self, source, neuron, x, scale, synapse, spiking):
        """The end of every neuron block: `neuron(x)` -> [RateScale(1/s)] -> [synapse],
        recorded in the report."""
        x = neuron(x)
        if scale != 1.0:
            x = RateScale(
                scale,
                inverse=True,
                dtype=NEURON_DTYPE,
                source=source,
                name=self.unique_name(f"{source}_unscale"),
            )(x)
        if synapse is not None:
            x = _synapse_layer(
                synapse,
                dt=self.options.dt,
                dtype=NEURON_DTYPE,
                source=source,
                name=self.unique_name(f"{source}_synapse"),
            )(x)
        self.report.add_block(
            source,
            spiking=spiking,
            scale=scale,
            synapse=synapse,
            neuron=neuron.name,
            kind=_neuron_kind(neuron),
        )
        return x

    def _other_neuron_block(self, source, key, x, spiking, template, kind):
        """`x` -> [RateScale(s)] -> LIF or SpikingActivation -> [RateScale(1/s)] ->
        [synapse]: NengoDL's `scale_firing_rates` (the input times `s`, the output over
        `s`), exact for a linear neuron only, so it warns for these."""
        o = self.options
        scale = o.lookup(o.scale, source)
        synapse = o.lookup(o.synapse, source)
        regularizer = o.lookup(o.regularizer, source)
        if regularizer is not None:
            regularizer = _time_averaged(regularizer)
        cls = NEURON_CLASSES[kind]
        if scale != 1.0:
            warnings.warn(
                f"convert(): `scale_firing_rates` of layer '{source}' multiplies the input "
                f"of its {cls.__name__} neuron by {scale} and divides its output by it, as "
                "NengoDL does: that keeps the rates of a linear neuron (ReLU) only; this "
                "neuron is not linear, so its rates change. Leave its scale at 1, or "
                "train with the neuron (swap_activations with spiking=False, then scale).",
                stacklevel=4,
            )
            x = RateScale(
                scale, dtype=NEURON_DTYPE, source=source, name=self.unique_name(f"{source}_scale")
            )(x)
        template = {"initial_voltage": o.lookup(o.initial_voltage, source), **template}
        if kind == "activation":
            template.setdefault("activation", key)
        neuron = cls(
            **template,
            dt=o.dt,
            spiking=spiking,
            seed=int(self.rng.integers(0, 2**31 - 1)),
            activity_regularizer=regularizer,
            dtype=NEURON_DTYPE,
            source=source,
            name=self.unique_name(f"{source}_neuron"),
        )
        return self._after_neuron(source, neuron, x, scale, synapse, spiking)

    def record(self, layer, **info):
        """Adds a row for `layer` to the conversion report.

        Args:
            layer: The original layer (or `keras.ops` operation).
            **info: `kind` (`"rate"`, `"neuron"`, `"generic"`, `"operation"`,
                `"nested"`, `"kept"`, `"dropped"`, `"readout"` or `"custom"`),
                and optionally `activation` (its activation key), `source` (the
                original layer's name, if different) and `rule` (a rule's name).
        """
        self.report.add_layer(layer, **info)


def _neuron_kind(neuron):
    """What the report calls a neuron: "ReLU", "LIF", "tanh", "sigmoid (poisson)", ..."""
    if isinstance(neuron, LIF):
        return "LIF"
    if isinstance(neuron, SpikingActivation):
        mode = "" if neuron.mode == "regular" else f" ({neuron.mode})"
        return f"{neuron.cell.activation_name}{mode}"
    return "ReLU"


def _times(scale, factor):
    """A scale (one, or a tuple per channel) times a factor (one, or an array per
    channel): one number, or a tuple per channel."""
    product = np.asarray(scale, dtype="float64") * factor
    return tuple(product.tolist()) if product.ndim else float(product)


def _time_averaged(regularizer):
    """A copy of a rate regularizer that averages over the time axis (axis 1)."""
    if hasattr(regularizer, "time_axis"):
        config = regularizer.get_config()
        config["time_axis"] = 1
        return type(regularizer).from_config(config)
    return regularizer


class _Conversion:
    """One conversion of one (possibly nested) model."""

    def __init__(self, model, options, already_converted, rng, n_steps=None):
        self.report = ConversionReport(model.name)
        self.context = ConversionContext(options, already_converted, self.report, rng)
        functional = as_functional(model)
        self.context.block_layers = block_layers(functional)
        self.context.block_scales = block_scales(functional)
        # Names stay taken, except those of neuron blocks being rebuilt.
        self.context.used_names.update(
            layer.name
            for layer in functional.layers
            if not isinstance(layer, (*NEURONS, AccumulatedMaxPooling, FrameRecurrence))
            and id(layer) not in self.context.block_layers
        )
        temporal_model = options.temporal and not already_converted
        if temporal_model:
            for x in functional.inputs:
                if len(x.shape) < 3:
                    raise ConversionError(
                        f"convert(temporal=True): input '{producer_name(x)}' of model "
                        f"'{model.name}' has shape {tuple(x.shape)}: a temporal model's "
                        "inputs are (batch, time, ...). Give the Input a time axis, e.g. "
                        "keras.Input((None, features)), or convert without temporal=True."
                    )
        inputs = [
            keras.Input(
                batch_shape=(
                    tuple(x.shape)
                    if already_converted or temporal_model
                    else (x.shape[0], n_steps, *x.shape[1:])
                ),
                dtype=x.dtype,
                name=producer_name(x),
            )
            for x in functional.inputs
        ]
        if temporal_model:
            self.context.framed.update(id(x) for x in inputs)
        input_struct = keras.tree.pack_sequence_as(inputs_struct(functional), inputs)
        # With an encoder, every layer reading an input reads its encoding instead.
        encoded = {}
        if temporal_model:  # marks the model temporal, with its steps per frame
            for x in inputs:
                name = self.context.unique_name(f"{x.name}_frame_steps")
                encoded[id(x)] = FrameSteps(options.steps_per_frame, name=name)(x)
                self.context.framed.add(id(encoded[id(x)]))
        if options.encoder is not None:
            for i, x in enumerate(inputs):
                name = self.context.unique_name(f"{x.name}_encoder")
                layer = options.encoder(i, name)
                encoded[id(x)] = layer(encoded.get(id(x), x))
                self.context.framed.add(id(encoded[id(x)]))
                self.report.add_layer(layer, kind="encoder")

        def call_function(layer, *args, **kwargs):
            if encoded:
                args, kwargs = keras.tree.map_structure(
                    lambda t: encoded.get(id(t), t), (args, kwargs)
                )
            return self.context.convert_call(layer, args, kwargs)

        self.model = keras.models.clone_model(
            functional,
            input_tensors=input_struct,
            clone_function=lambda layer: layer,
            call_function=call_function,
        )


class Converter:
    """Converts a Keras model to a time-distributed spiking model (NengoDL vocabulary).

    Takes the arguments of `convert` (see there for each) and keeps the report.

    Attributes:
        model: The converted `keras.Model` (a `SpikingModel`), as `convert` returns it.
        report: A `ConversionReport`: what each original layer became.
    """

    def __init__(
        self,
        model,
        *,
        swap_activations=None,
        scale_firing_rates=None,
        synapse=None,
        activity_regularizer=None,
        dt=0.001,
        n_steps=None,
        seed=None,
        initial_voltage=INITIAL_VOLTAGE,
        readout=None,
        strict=False,
        constant_input=False,
        encoder=None,
        max_pooling="auto",
        temporal=False,
        steps_per_frame=1,
    ):
        # 1. Check the model and every layer it contains, before any work.
        check_model(model, strict=bool(strict))
        # 2. Normalise the options.
        readout = check_readout(readout, owner="convert()")
        n_steps = _check_n_steps(n_steps)
        if constant_input and n_steps is None:
            raise ValueError(
                "convert(): `constant_input=True` runs a fixed number of steps on each "
                "input; give it with `n_steps`, e.g. convert(model, n_steps=30, "
                "constant_input=True). Received: n_steps=None"
            )
        options = Options(
            swap_activations,
            scale_firing_rates,
            synapse,
            activity_regularizer,
            dt,
            seed,
            initial_voltage,
            encoder,
            max_pooling,
            temporal,
            steps_per_frame,
        )
        options.readout = readout
        if temporal and constant_input:
            raise ValueError(
                "convert(): `temporal=True` steps through the input's own frames, and "
                "`constant_input=True` holds one input for every step: choose one."
            )
        if getattr(model, "constant_input", False):
            raise TypeError(
                f"convert(): model '{model.name}' is a constant-input model already. "
                "Re-convert its network with a time axis: convert(model.network, ..., "
                f"constant_input=True, n_steps={model.n_steps})."
            )
        already = is_converted(model)
        if already and n_steps is not None and not constant_input:
            warnings.warn(
                "convert(): `n_steps` is ignored when re-converting a converted model "
                "(its inputs keep their time axis).",
                stacklevel=2,
            )
        # 3. Replay the graph on inputs with a time axis, each call by its rule.
        rng = np.random.default_rng(options.seed)
        conversion = _Conversion(model, options, already, rng, n_steps)
        options.warn_unused()
        conversion.report.finalize()
        # 4. Add the readout and return a SpikingModel (or, for a constant input, a model
        # taking the original inputs), with the report.
        self.model = _spiking_model(conversion, readout, temporal and not already)
        if constant_input:
            self.model = constant_input_model(self.model, n_steps)
        self.report = conversion.report


def _check_n_steps(n_steps):
    if n_steps is not None and (
        isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1
    ):
        raise ValueError(
            f"convert(): `n_steps` must be None (any length) or a positive integer. "
            f"Received: n_steps={n_steps!r}"
        )
    return n_steps


def _spiking_model(conversion, readout, temporal=False):
    """The converted graph as a `SpikingModel`, each output read out over time if asked
    (and, in a temporal model, an output the original reduced over time at its last
    frame)."""
    graph, context = conversion.model, conversion.context
    outputs = outputs_struct(graph)
    if temporal and readout is None:
        outputs = keras.tree.map_structure(
            lambda y: (
                y
                if id(y) in context.framed
                else TimeReadout(
                    "last",
                    source=producer_name(y),
                    name=context.unique_name("last_frame_readout"),
                )(y)
            ),
            outputs,
        )
    elif readout is not None:
        outputs = keras.tree.map_structure(
            lambda y: TimeReadout(readout, name=context.unique_name(f"{readout}_readout"))(y),
            outputs,
        )
    return SpikingModel(inputs_struct(graph), outputs, name=graph.name)


def convert(
    model,
    *,
    swap_activations=None,
    scale_firing_rates=None,
    synapse=None,
    activity_regularizer=None,
    dt=0.001,
    n_steps=None,
    seed=None,
    initial_voltage=INITIAL_VOLTAGE,
    readout=None,
    strict=False,
    constant_input=False,
    encoder=None,
    max_pooling="auto",
    temporal=False,
    steps_per_frame=1,
):
    """Converts a Keras model into a time-distributed (spiking) Keras model.

    Each input of the result is `(batch, time, *input_shape)` and each output
    `(batch, time, *output_shape)`. By default the result is exactly the
    original model applied at every timestep (rate neurons). Options swap
    activations for spiking neurons, add low-pass synapses after neurons and
    scale firing rates, as NengoDL's Converter does. The original model is
    never changed; its weights are copied. Converting a converted model again
    re-configures its neurons and synapses and keeps its current weights.

    Args:
        model: A functional or built Sequential `keras.Model` (or a converted one).
        swap_activations: Dict mapping activations to neurons. Keys: a name
            (`"relu"`), a function (`keras.activations.relu`, `tf.nn.relu`) or
            a layer class (`keras.layers.ReLU`, `layers.QuantizedReLU` or its
            name `"quantized_relu"`). Values: `"spiking_relu"`, `"relu"`
            (rate) or a configured `SpikingReLU` (its `amplitude`,
            `initial_voltage`, `spiking_aware_training` and `rectify_input`
            are used; neurons from `"spiking_relu"` integrate signed input,
            `rectify_input=False`). A
            `QuantizedReLU` made spiking gets its learned threshold: its scale
            is `scale_firing_rates / (threshold * dt)`, one spike per step at
            the threshold. Defaults to `None` (every activation stays as it is).
        scale_firing_rates: A float `> 0` for every neuron, or a dict mapping
            original layers (objects or names) to floats or to per-channel
            sequences (as `calibrate` returns them): the neuron input is
            multiplied by it and its output divided by it. Defaults to `None` (1).
        synapse: `None`, a low-pass time constant in seconds for every neuron
            output, a configured `LowpassSynapse` (its `tau`, `trainable_tau`
            and `per_channel` are used; `dt` is `convert`'s), or a dict mapping
            layers (objects or names) to either. Defaults to `None`.
        activity_regularizer: A regularizer (e.g. `regularizers.TargetRate`)
            for every neuron's output (firing rates, averaged over time), or a
            dict mapping layers to regularizers. Defaults to `None`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        n_steps: Fix the time axis to this length. Defaults to `None` (any).
        seed: Seed of the neurons' random initial voltages (with
            `initial_voltage="random"`). Defaults to `None`.
        initial_voltage: Initial voltage of the spiking neurons built from
            `"spiking_relu"`: a constant in `[0, 1)`, `"random"` (uniform per
            neuron, as NengoDL), or a dict mapping layers to either. The default
            `0.5` (mid-threshold) makes each neuron's spike count its rate times
            the elapsed time *rounded* rather than randomly dithered: half the
            variance of the count error, and more accurate short simulations
            (docs/converter.md). A configured `SpikingReLU` in
            `swap_activations` keeps its own. Defaults to `0.5`.
        readout: `None` (every output is `(batch, time, ...)`), `"mean"` (the
            mean over time) or `"last"` (the last timestep): each output then
            is `(batch, ...)`, so `evaluate` and `fit` take the original
            model's labels. A `TimeReadout` layer does it; step-by-step runs
            (`Stream`, `process_chunk`, `export`'s `step` and `chunk`
            signatures) return every step's output before it. Re-converting
            applies the new `readout`. Defaults to `None`.
        constant_input: Return a model that takes the original inputs (no time
            axis) and holds each for `n_steps` steps (which must be given),
            without a `(batch, n_steps, ...)` copy: the layers before the first
            neuron or synapse run once, the rest in the step engine's loop. Its
            outputs are `(batch, n_steps, ...)`, or `(batch, ...)` with a
            `readout`. Defaults to `False`.
        encoder: Encode each input as spikes before the first layer: `None`
            (inputs as they are), `"regular"` (deterministic rate coding,
            `RegularEncoder`), `"poisson"` (seeded Poisson rate coding, needs
            `seed`; input `i` gets `seed + i`), both at one spike per step for
            an input of 1, or a configured `RegularEncoder`/`PoissonEncoder`
            (e.g. `max_value=255.0` for raw pixels), copied per input.
            Re-converting with an `encoder` replaces the model's encoders.
            Defaults to `None`.
        max_pooling: How max pooling layers (`MaxPooling1D/2D/3D`,
            `GlobalMaxPooling1D/2D/3D`) run: `"accumulated"` pools the inputs
            accumulated since the first step and outputs how much the pooled
            total grew (`layers.AccumulatedMaxPooling`), so the mean output
            over T steps is the max pooling of the mean inputs, the firing
            rates; `"per_step"` pools each step's values (the mean of
            per-step maxima, more than the largest rate when neurons of a
            window fire at different steps); `"auto"` is `"accumulated"` when
            `swap_activations` makes a neuron spike, else `"per_step"` (exact
            for a rate network on any input). Defaults to `"auto"`.
        temporal: The model's inputs are sequences, `(batch, time, ...)`, and their
            axis 1 is the simulation's time: the converted model takes the same
            inputs and runs one frame a step, its state carried from frame to frame.
            Layers that work per frame run per step; a causal `Conv1D` becomes a
            `CausalConv1D`, `SimpleRNN`/`GRU`/`LSTM` a `FrameRecurrence` (a
            `SimpleRNN`'s activation may be swapped for neurons),
            `GlobalAveragePooling1D`/`GlobalMaxPooling1D` a `RunningPooling`;
            other layers that work along time are refused with the reason. An
            output the original reduced over time is read out at the last frame
            (unless `readout` is given). Defaults to `False` (docs/temporal.md).
        steps_per_frame: With `temporal=True`, simulation steps per frame: each
            frame runs this many steps (a neuron codes its value in that many
            chances to spike) and the output of a frame is their mean; layers over
            time read the same step of earlier frames. Defaults to `1`.
        strict: Refuse layers that have no conversion rule. By default such a
            layer is applied at every timestep (time folded into the batch)
            once a check on random inputs shows it works per sample and keeps
            its variables; it is listed as `"generic"` in the report, with a
            warning per class. `keras.ops` calls in the graph convert the same
            way (listed as `"operation"`) whatever `strict` is. Defaults to
            `False`.

    Returns:
        The converted `keras.Model`. Use `Converter` to also get the report.

    Example:

    ```python
    snn = keras_spiking_conv.convert(
        model, swap_activations={"relu": "spiking_relu"}, synapse=0.01,
        scale_firing_rates=10,
    )
    y = snn.predict(np.repeat(x[:, None], 30, axis=1))  # (batch, 30, 10)
    ```
    """
    return Converter(
        model,
        swap_activations=swap_activations,
        scale_firing_rates=scale_firing_rates,
        synapse=synapse,
        activity_regularizer=activity_regularizer,
        dt=dt,
        n_steps=n_steps,
        seed=seed,
        initial_voltage=initial_voltage,
        readout=readout,
        strict=strict,
        constant_input=constant_input,
        encoder=encoder,
        max_pooling=max_pooling,
        temporal=temporal,
        steps_per_frame=steps_per_frame,
    ).model


__all__ = ["ConversionError", "Converter", "convert", "is_converted"]
