"""Checking a converted model against its original, and probing layer activity."""

import keras
import numpy as np

from keras_spiking_conv.conversion.converter import SUFFIXES


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


def locate(model, layer_name):
    """Where original layer `layer_name`'s activity is in a converted model.

    Returns:
        `(path, name)`: the nested models leading to it (outermost first, empty
        for a top-level layer) and the converted layer's name in the innermost
        (its neuron `{layer_name}_neuron` if it has one, else the layer itself);
        `None` if it is nowhere.
    """
    names = {layer.name for layer in model.layers}
    for candidate in (f"{layer_name}_{SUFFIXES[1]}", layer_name):
        if candidate in names:
            return [], candidate
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found = locate(layer, layer_name)
            if found is not None:
                return [layer, *found[0]], found[1]
    return None


def _layer_paths(model, prefix=""):
    for layer in model.layers:
        yield f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            yield from _layer_paths(layer, f"{prefix}{layer.name}/")


def resolve(model, layers, owner):
    """`locate` for each of `layers` (objects or names); raises naming a missing one."""
    found = []
    for layer in layers:
        name = layer if isinstance(layer, str) else layer.name
        where = locate(model, name)
        if where is None:
            raise ValueError(
                f"{owner}: no layer '{name}' (or its neuron '{name}_neuron') in "
                f"'{model.name}' or its nested models. Layers: {list(_layer_paths(model))}"
            )
        found.append(where)
    return found


def _calls(model, layer):
    """The nodes (calls) of `layer` in `model`'s own graph.

    Not `layer._inbound_nodes`: a layer also keeps the nodes of every other
    graph it was called in (a probe model built earlier, for one).
    """
    nodes = (node for depth in model._nodes_by_depth.values() for node in depth)
    return [node for node in nodes if node.operation is layer]


def layer_output(model, layer):
    """The output tensor(s) of `layer`'s one call in `model`'s graph."""
    _called_once(layer, model)
    tensors = _calls(model, layer)[0].output_tensors
    return tensors[0] if len(tensors) == 1 else list(tensors)


def _called_once(layer, outer, inside=None):
    calls = len(_calls(outer, layer))
    if calls != 1:
        what = f"a layer inside it ('{inside}')" if inside else "it"
        raise ValueError(
            f"Cannot probe {type(layer).__name__} '{layer.name}': it is called {calls} times "
            f"in '{outer.name}', so {what} has {calls} activities, and a probe returns one. "
            "Fix: probe a layer that is called once, or build the model with one call of it."
        )


def with_activities(model, wanted):
    """`model`'s output tensors, rebuilt on new inputs, and the activities in `wanted`.

    Args:
        model: A functional model.
        wanted: `(path, name)` pairs from `locate` on `model`.

    Returns:
        `(inputs, outputs, activities)`: input tensors, the model's outputs
        (flat list) and one activity tensor per `wanted` entry, all in one graph
        of `model`'s own layers (so weights are shared). With nothing inside a
        nested model these are `model`'s own tensors; otherwise the graph is
        rebuilt on new inputs.
    """
    top, inner = {}, {}
    for index, (path, name) in enumerate(wanted):
        if path:
            _called_once(path[0], model, inside=name)
            inner.setdefault(id(path[0]), []).append((index, path[1:], name))
        else:
            _called_once(model.get_layer(name), model)
            top.setdefault(name, []).append(index)
    if not inner:  # all in `model`'s own graph: no rebuild needed
        activities = [layer_output(model, model.get_layer(name)) for _, name in wanted]
        return model.inputs, model.outputs, activities
    activities = [None] * len(wanted)

    def call_function(layer, *args, **kwargs):
        if id(layer) in inner:
            entries = inner[id(layer)]
            sub_inputs, sub_outputs, sub_activities = with_activities(
                layer, [(path, name) for _, path, name in entries]
            )
            probed = keras.Model(sub_inputs, [*sub_outputs, *sub_activities])
            values = probed(args[0] if len(args) == 1 else list(args))
            n = len(sub_outputs)
            for (index, _, _), value in zip(entries, values[n:], strict=True):
                activities[index] = value
            return keras.tree.pack_sequence_as(layer._outputs_struct, values[:n])
        outputs = layer(*args, **kwargs)
        for index in top.get(layer.name, ()):
            activities[index] = outputs
        return outputs

    functional = keras.Model(model.inputs, model.outputs, name=model.name)
    inputs = [
        keras.Input(batch_shape=tuple(x.shape), dtype=x.dtype, name=x._keras_history[0].name)
        for x in functional.inputs
    ]
    rebuilt = keras.models.clone_model(
        functional,
        input_tensors=keras.tree.pack_sequence_as(functional._inputs_struct, inputs),
        clone_function=lambda layer: layer,
        call_function=call_function,
    )
    return rebuilt.inputs, rebuilt.outputs, activities


def probe(converted, layers):
    """A model that also returns the activity of chosen original layers.

    For a layer whose activation became a neuron, the activity is the neuron's
    output (spikes or rates, in Hz when `amplitude=1`); otherwise the layer's
    output. Layers inside nested models are found too (a nested model called
    more than once cannot be probed inside). Both models share their layers
    and weights, so training one trains the other.

    Args:
        converted: A model made by `convert`.
        layers: Original layers (objects or names) to probe.

    Returns:
        A `keras.Model` with outputs `[*converted.outputs, *activities]`.
    """
    wanted = resolve(converted, layers, owner="probe()")
    inputs, outputs, activities = with_activities(converted, wanted)
    return keras.Model(inputs, [*outputs, *activities], name=f"{converted.name}_probed")
