"""Checking a converted model against its original, and probing layer activity."""

import collections

import keras
import numpy as np

from keras_spiking_conv.conversion.converter import SUFFIXES, ConversionContext
from keras_spiking_conv.layers import SpikingReLU
from keras_spiking_conv.streaming import _graph, _walk


def tile_time(x, n_steps):
    """Repeats each input `n_steps` times along a new time axis 1.

    Args:
        x: An array, or a list/dict of arrays (several inputs).
        n_steps: Number of timesteps.

    Returns:
        The same structure with arrays of shape `(batch, n_steps, ...)`.
    """
    return keras.tree.map_structure(lambda a: np.repeat(np.asarray(a)[:, None], n_steps, axis=1), x)


def verify(original, converted, x, n_steps=3, rtol=1e-5, atol=1e-5):
    """Checks that `converted` equals `original` at every timestep (rate mode).

    Args:
        original: The original Keras model.
        converted: Its conversion (with rate neurons: no spiking, no synapse).
        x: Original-shaped input data (array, or list/dict for several inputs).
        n_steps: Timesteps to simulate. Defaults to `3`.
        rtol, atol: Tolerances of `numpy.allclose`.

    Returns:
        The largest absolute difference found.

    Raises:
        AssertionError: naming the output, the step and the largest difference,
            if the models differ.
    """
    expected = keras.tree.flatten(original.predict(x, verbose=0))
    actual = keras.tree.flatten(converted.predict(tile_time(x, n_steps), verbose=0))
    if len(expected) != len(actual):
        raise AssertionError(
            f"verify(): the original has {len(expected)} outputs, the converted model "
            f"{len(actual)}."
        )
    largest = 0.0
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        for t in range(a.shape[1]):
            diff = np.abs(a[:, t].astype("float64") - e.astype("float64"))
            largest = max(largest, float(diff.max(initial=0.0)))
            if not np.allclose(a[:, t], e, rtol=rtol, atol=atol):
                raise AssertionError(
                    f"verify(): output {i} differs from the original at step {t}: largest "
                    f"absolute difference {diff.max():.3g} (rtol={rtol}, atol={atol}). Is "
                    "the converted model in rate mode (no spiking neurons, no synapse)?"
                )
    return largest


def _call_suffix_free(segment):
    """A path segment without the `_callK` suffix of a layer's K-th extra call."""
    head, sep, tail = segment.rpartition("_call")
    return head if sep and tail.isdigit() else segment


class Trace:
    """Every layer call of a model, run symbolically on fresh inputs.

    Attributes:
        inputs: The new input tensors (flat).
        outputs: The model's outputs on them (flat).
        calls: Dict path -> `(layer, output)` in graph order. A path is the
            names of the nested models and the layer, joined by `/`; a call
            after a layer's first gets `_call1`, `_call2`, ... after its name
            (as in streaming). The model's own inputs are there by name.
    """

    def __init__(self, model):
        graph = _graph(model)
        self.inputs = [
            keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=x._keras_history[0].name)
            for x in graph.inputs
        ]
        self.calls = {
            x._keras_history[0].name: (x._keras_history[0], new)
            for x, new in zip(graph.inputs, self.inputs, strict=True)
        }

        def visit(layer, args, kwargs, path):
            outputs = layer(*args, **kwargs)
            self.calls["/".join(path)] = (layer, outputs)
            return outputs

        def visit_model(layer, outputs, path):
            flat = keras.tree.flatten(outputs)  # as `_own_outputs` gives them
            self.calls["/".join(path)] = (layer, flat[0] if len(flat) == 1 else flat)

        self.model = model
        self.outputs = keras.tree.flatten(_walk(model, self.inputs, visit, visit_model=visit_model))

    def find(self, layer, owner):
        """The path of one original layer (object or name, or a path): its neuron's if it
        has one. Raises if there is none, or several (a layer that runs more than once)."""
        name = layer if isinstance(layer, str) else layer.name
        segments = name.split("/")
        if len(segments) > 1 or _call_suffix_free(segments[-1]) != segments[-1]:
            # A path: exact, with `_call0` accepted for a first call.
            path = "/".join(seg.removesuffix("_call0") for seg in segments)
            found = [p for p in (f"{path}_{SUFFIXES[1]}", path) if p in self.calls][:1]
        else:
            found = self._search(name)
            if not found:
                found = [p for p in (f"{name}_{SUFFIXES[1]}", name) if p in self.calls][:1]
        if len(found) == 1:
            return found[0]
        if not found:
            raise ValueError(
                f"{owner}: no layer '{name}' (or its neuron '{name}_neuron') in "
                f"'{self.model.name}' or its nested models. Layers: {list(self.calls)}"
            )
        raise ValueError(
            f"{owner}: '{name}' matches {len(found)} layer calls in '{self.model.name}' (a "
            "shared layer, a nested model called more than once, or layers of that name in "
            f"different nested models): {found}. Each has its own activity: pass the path of "
            f"the one you want (a first call is also `{name}_call0`)."
        )

    def _search(self, name):
        neurons, plain = [], []
        for path, (layer, _) in self.calls.items():
            segment = path.rpartition("/")[2]
            if isinstance(layer, SpikingReLU) and (
                ConversionContext.source_name(_call_suffix_free(segment), SUFFIXES[1]) == name
            ):
                neurons.append(path)
            elif _call_suffix_free(segment) == name:
                plain.append(path)
        return neurons or plain

    def neurons(self):
        """Paths of every neuron call."""
        return [p for p, (layer, _) in self.calls.items() if isinstance(layer, SpikingReLU)]

    def probe_model(self, paths, with_outputs=True, name=None):
        """A `keras.Model` returning (the model's outputs and) the activity at `paths`.

        Layers of the model's own graph called once are read from it as they
        are; anything else runs the model again around the same layers, with
        nested models flattened into one graph.
        """
        own = _own_outputs(self.model)
        if all(path in own for path in paths):
            graph = _graph(self.model)
            inputs, outputs = graph.inputs, graph.outputs
            activities = [own[path] for path in paths]
        else:
            self._check_unique_names(paths)
            inputs, outputs = self.inputs, self.outputs
            activities = [self.calls[path][1] for path in paths]
        if with_outputs:
            activities = [*outputs, *activities]
        # Inputs structured as the model's (dict keys, not Input names, address them).
        inputs = keras.tree.pack_sequence_as(_graph(self.model)._inputs_struct, inputs)
        return keras.Model(inputs, activities, name=name)

    def _check_unique_names(self, paths):
        """A flat graph of all the layers (nested ones too) needs one name per layer."""
        layers = collections.defaultdict(set)
        for layer, _ in self.calls.values():
            layers[layer.name].add(id(layer))
        clashes = sorted(name for name, ids in layers.items() if len(ids) > 1)
        if clashes:
            raise DuplicateNamesError(
                f"Cannot probe {paths} in '{self.model.name}': a layer inside a nested model "
                "is probed by running the model again as one graph, and there its layers "
                f"need unique names, but several layers are named {clashes}. Fix: give the "
                "layers of the nested models unique names."
            )


class DuplicateNamesError(ValueError):
    """A flattened probe graph would hold two layers of one name (from nested models)."""


def _own_outputs(model):
    """Name -> output of every layer called once in `model`'s own graph, and its inputs."""
    graph = _graph(model)
    nodes = [node for depth in graph._nodes_by_depth.values() for node in depth]
    calls = collections.Counter(id(node.operation) for node in nodes)
    own = {x._keras_history[0].name: x for x in graph.inputs}
    for node in nodes:
        layer = node.operation
        if calls[id(layer)] == 1 and not isinstance(layer, keras.layers.InputLayer):
            tensors = node.output_tensors
            own[layer.name] = tensors[0] if len(tensors) == 1 else list(tensors)
    return own


def probe(converted, layers):
    """A model that also returns the activity of chosen original layers.

    For a layer whose activation became a neuron, the activity is the neuron's
    output (spikes or rates, in Hz when `amplitude=1`); otherwise the layer's
    output. Layers inside nested models are found too. A layer that runs more
    than once (shared, or inside a nested model called more than once) has one
    activity per call: name the call by its path, e.g. `"block_call1/dense"`
    (the error lists them). Both models share their layers and weights, so
    training one trains the other.

    Args:
        converted: A model made by `convert`.
        layers: Original layers (objects or names) or paths to probe.

    Returns:
        A `keras.Model` with outputs `[*converted.outputs, *activities]`.
    """
    trace = Trace(converted)
    paths = [trace.find(layer, "probe()") for layer in layers]
    return trace.probe_model(paths, name=f"{converted.name}_probed")
