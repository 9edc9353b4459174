"""Checking a converted model against its original."""

import keras
import numpy as np


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
        rtol: Relative tolerance, as in `numpy.allclose`. Defaults to `1e-5`.
        atol: Absolute tolerance, as in `numpy.allclose`. Defaults to `1e-5`.

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
