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
            A temporal model (`convert(..., temporal=True)`) runs on `x` itself and
            is compared frame by frame.
        n_steps: Timesteps to simulate (not for a temporal model). Defaults to `3`.
        rtol: Relative tolerance, as in `numpy.allclose`. Defaults to `1e-5`.
        atol: Absolute tolerance, as in `numpy.allclose`. Defaults to `1e-5`.

    Returns:
        The largest absolute difference found.

    Raises:
        AssertionError: naming the output, the step and the largest difference,
            if the models differ.
    """
    expected = keras.tree.flatten(original.predict(x, verbose=0))
    first = np.asarray(keras.tree.flatten(x)[0])
    if len(keras.tree.flatten(converted.inputs)[0].shape) == first.ndim:
        # A temporal model (convert(..., temporal=True)) takes the sequences themselves.
        actual = keras.tree.flatten(converted.predict(x, verbose=0))
        return _compare(expected, actual, rtol, atol, per_step=False)
    actual = keras.tree.flatten(converted.predict(tile_time(x, n_steps), verbose=0))
    return _compare(expected, actual, rtol, atol, per_step=True)


def _compare(expected, actual, rtol, atol, per_step):
    if len(expected) != len(actual):
        raise AssertionError(
            f"verify(): the original has {len(expected)} outputs, the converted model "
            f"{len(actual)}."
        )
    largest = 0.0
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        # Every step against the original; a temporal model's frames (or last-frame
        # readout) against the original's.
        pairs = [(f" at step {t}", a[:, t]) for t in range(a.shape[1])] if per_step else [("", a)]
        for where, value in pairs:
            diff = np.abs(value.astype("float64") - e.astype("float64"))
            largest = max(largest, float(diff.max(initial=0.0)))
            if not np.allclose(value, e, rtol=rtol, atol=atol):
                raise AssertionError(
                    f"verify(): output {i} differs from the original{where}: largest "
                    f"absolute difference {diff.max():.3g} (rtol={rtol}, atol={atol}). Is "
                    "the converted model in rate mode (no spiking neurons, no synapse)?"
                )
    return largest
