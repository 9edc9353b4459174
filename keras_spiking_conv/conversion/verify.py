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


def probe_layer_name(converted, layer_name):
    """The converted layer whose output is the activity of original layer `layer_name`."""
    names = {layer.name for layer in converted.layers}
    for candidate in (f"{layer_name}_{SUFFIXES[1]}", layer_name):
        if candidate in names:
            return candidate
    for layer in converted.layers:
        if isinstance(layer, keras.Model):
            inner = {sub.name for sub in layer.layers}
            if layer_name in inner or f"{layer_name}_{SUFFIXES[1]}" in inner:
                raise ValueError(
                    f"probe(): '{layer_name}' is inside the nested model '{layer.name}' of "
                    f"'{converted.name}'; probe() sees top-level layers only. Fix: probe "
                    f"'{layer.name}' (its output), or build the model without nesting."
                )
    raise ValueError(
        f"probe(): no layer '{layer_name}' (or its neuron '{layer_name}_neuron') in the "
        f"converted model '{converted.name}'. Available layers: {sorted(names)}"
    )


def probe(converted, layers):
    """A model that also returns the activity of chosen original layers.

    For a layer whose activation became a neuron, the activity is the neuron's
    output (spikes or rates, in Hz when `amplitude=1`); otherwise the layer's
    output. Both models share their layers and weights, so training one trains
    the other.

    Args:
        converted: A model made by `convert`.
        layers: Original layers (objects or names) to probe.

    Returns:
        A `keras.Model` with outputs `[*converted.outputs, *activities]`.
    """
    names = [layer if isinstance(layer, str) else layer.name for layer in layers]
    probes = [converted.get_layer(probe_layer_name(converted, n)).output for n in names]
    return keras.Model(
        converted.inputs, [*converted.outputs, *probes], name=f"{converted.name}_probed"
    )
