"""Probing layer activity and firing rates, from the plan.

`probe` returns a model whose outputs also include chosen layers' activity;
`firing_rates` measures every neuron. Both find layers through the plan (by
recorded source, name or path) and build their model from it: from the
model's own graph when every probed layer is called once in it, otherwise by
running the plan's sites again, layer by layer, as one flat graph.
"""

import collections
import warnings

import keras
import numpy as np
from keras import tree

from keras_spiking_conv.layers.temporal import FrameRecurrence
from keras_spiking_conv.runtime.model import fuse
from keras_spiking_conv.runtime.plan import inputs_struct, plan_of, producer_name


class DuplicateNamesError(ValueError):
    """A flattened probe graph would hold two layers of one name (from nested models)."""


def activity_model(model, sites, with_outputs=True, name=None):
    """A `keras.Model` returning (the model's outputs and) the outputs of `sites`.

    Sites of the model's own graph called once are read from it as they are;
    anything else runs the plan again around the same layers, with nested
    models flattened into one graph.
    """
    plan = plan_of(model)
    graph = plan.graph
    if all(site.tensors is not None and _called_once(plan, site) for site in sites):
        inputs, outputs = graph.inputs, graph.outputs
        activities = [t[0] if len(t) == 1 else list(t) for t in (s.tensors for s in sites)]
    else:
        _check_unique_names(plan, sites)
        inputs = [
            keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=producer_name(x))
            for x in graph.inputs
        ]
        values = dict(zip(plan.inputs, inputs, strict=True))
        for site in plan.sites:
            args, kwargs = site.fill(values)
            for i, y in zip(site.outputs, tree.flatten(site.layer(*args, **kwargs)), strict=True):
                values[i] = y
        outputs = [values[i] for i in plan.outputs]
        activities = [_site_value(site, values) for site in sites]
    if with_outputs:
        activities = [*outputs, *activities]
    # Inputs structured as the model's (dict keys, not Input names, address them).
    inputs = tree.pack_sequence_as(inputs_struct(model), inputs)
    return keras.Model(inputs, activities, name=name)


def _site_value(site, values):
    flat = [values[i] for i in site.outputs]
    return flat[0] if len(flat) == 1 else flat


def _called_once(plan, site):
    return site.call == 0 and not any(
        s.layer is site.layer and s is not site and len(s.path) == 1 for s in plan.calls
    )


def _check_unique_names(plan, sites):
    """A flat graph of all the layers (nested ones too) needs one name per layer."""
    layers = collections.defaultdict(set)
    for site in plan.sites:
        layers[site.layer.name].add(id(site.layer))
    clashes = sorted(name for name, ids in layers.items() if len(ids) > 1)
    if clashes:
        raise DuplicateNamesError(
            f"Cannot probe {[s.name for s in sites]} in '{plan.model.name}': a layer inside a "
            "nested model is probed by running the model again as one graph, and there its "
            f"layers need unique names, but several layers are named {clashes}. Fix: give the "
            "layers of the nested models unique names."
        )


def probe(converted, layers):
    """A model that also returns the activity of chosen original layers.

    For a layer whose activation became a neuron, the activity is the neuron's
    output (spikes or rates, in Hz when `amplitude=1`); otherwise the layer's
    output. Layers inside nested models are found too. A layer that runs more
    than once (shared, or inside a nested model called more than once) has one
    activity per call: name the call by its path, e.g. `"block_call1/dense"`
    (the error lists them), or, when every call is of one layer, by
    `"dense_call<k>"`, the k-th call in that list. Both models share their
    layers and weights, so training one trains the other.

    Args:
        converted: A model made by `convert`.
        layers: Original layers (objects or names) or paths to probe.

    Returns:
        A `keras.Model` with outputs `[*converted.outputs, *activities]`.
    """
    plan = plan_of(converted)
    sites = [plan.find(layer, "probe()") for layer in layers]
    return activity_model(converted, sites, name=f"{converted.name}_probed")


def firing_rates(model, x, layers=None, batch_size=None):
    """Per-layer firing-rate statistics of a converted model on inputs `x`.

    A neuron's rate is its output divided by its `amplitude` (so in Hz),
    averaged over time.

    Args:
        model: A converted model (inputs `(batch, time, ...)`).
        x: Its input data.
        layers: `SpikingReLU` layers or names, original layer names (their
            neurons) or paths, as `probe` takes them. Defaults to every neuron
            call, nested models' included.
        batch_size: Prediction batch size. Defaults to Keras' default.

    Returns:
        A dict `{layer_name: {"mean": Hz, "max": Hz, "silent": fraction}}`:
        the mean over neurons and inputs, the largest rate of any neuron on any
        input, and the fraction of neurons silent on every input. A neuron in
        a nested model is named with its path, e.g. `"block/dense_neuron"`, and
        a nested model's second call gets `_call1` (`"block_call1/..."`).
    """
    return rate_statistics(rate_probe(model, layers), x, batch_size=batch_size)


def rate_probe(model, layers=None):
    """A model returning the activity of `model`'s neuron layers, for `rate_statistics`.

    It shares `model`'s layers and weights, so one probe serves all the
    epochs of a training run. Arguments as in `firing_rates`.

    Returns:
        `(probe, sites)`: the (fused) probe model, or `None` if there are no
        neurons, and the neuron `Site` of each of its outputs.
    """
    plan = plan_of(model)
    neurons = [site for site in plan.sites if has_neurons(site)]
    if layers is None:
        sites = neurons
    else:
        sites = [plan.find(layer, "firing_rates()") for layer in layers]
    for site in sites:
        if not has_neurons(site):
            raise ValueError(
                f"firing_rates(): '{site.name}' in '{model.name}' is a "
                f"{type(site.layer).__name__}, not a neuron (SpikingReLU), so it has no "
                f"firing rate. Neurons: {[s.name for s in neurons]}"
            )
    if not sites:
        return None, []
    try:
        probed = activity_model(model, sites, with_outputs=False)
    except DuplicateNamesError as error:
        if layers is not None:
            raise
        # Every neuron was asked for by default: measure those the model's own graph has.
        sites = [s for s in sites if s.tensors is not None and _called_once(plan, s)]
        warnings.warn(
            f"firing_rates(): {error} Measuring only: {[s.name for s in sites]}.", stacklevel=3
        )
        if not sites:
            return None, []
        probed = activity_model(model, sites, with_outputs=False)
    return fuse(probed), sites


def has_neurons(site):
    """A neuron, or a recurrent layer whose units are neurons (a `FrameRecurrence` with a
    `neuron`: its output is the neuron's over its scale)."""
    if site.role == "neuron":
        return True
    return isinstance(site.layer, FrameRecurrence) and site.layer.neuron is not None


def neuron_of(site):
    """The neuron of a site `rate_probe` measures: the layer, or a recurrent layer's
    neuron cell."""
    return site.layer.neuron if isinstance(site.layer, FrameRecurrence) else site.layer


def output_scale(site):
    """What a measured site's output is multiplied by to give its neurons' output (a
    recurrent layer's output is its neurons' over its scale): 1, or one per unit."""
    if isinstance(site.layer, FrameRecurrence):
        return np.asarray(site.layer.scale, dtype="float64")
    return 1.0


def _rates(site, out):
    """A neuron's rates (over `amplitude`), averaged over time."""
    return out.mean(axis=1) * output_scale(site) / neuron_of(site).amplitude


def rate_statistics(probed, x, batch_size=None):
    """`firing_rates`' statistics from a `rate_probe` result on inputs `x`."""
    model, sites = probed
    if model is None:
        return {}
    outputs = model.predict(x, batch_size=batch_size, verbose=0)
    if len(sites) == 1:
        outputs = [outputs]
    stats = {}
    for site, out in zip(sites, outputs, strict=True):
        rates = _rates(site, out)
        stats[site.name] = {
            "mean": float(rates.mean()),
            "max": float(rates.max()),
            "silent": float(np.mean(np.all(rates.reshape(len(rates), -1) == 0, axis=0))),
        }
    return stats
