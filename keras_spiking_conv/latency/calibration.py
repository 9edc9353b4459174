"""`calibrate()`: firing-rate scales from example data, for low-latency conversion.

An integrate-and-fire neuron that fires at most about one spike per step codes
its input in few steps when the input range it must code is known. For each
layer whose ReLU becomes a neuron, `calibrate` runs the *original* model on
example data (in batches, without time copies), takes a high percentile `p` of
the activations of each channel (or of the whole layer) and returns the scale
`1 / (p * dt)`: with it, an activation at `p` fires one spike per step (its
threshold is `p`), and the
converter's default initial voltage (half the threshold) rounds spike counts.
Each neuron block divides its output by the same scale, so every layer's
output stays in the units of the original network: branches that meet (Add,
Concatenate) stay consistent with no further normalisation.
"""

import numbers
import warnings

import keras
import numpy as np
from keras import ops

from keras_spiking_conv._validation import check_bool, check_number
from keras_spiking_conv.conversion.activations import NEURON_KEYS, layer_activation_key
from keras_spiking_conv.conversion.converter import Converter
from keras_spiking_conv.conversion.errors import check_model
from keras_spiking_conv.conversion.registry import has_registered_rule
from keras_spiking_conv.runtime.plan import Plan, is_converted
from keras_spiking_conv.runtime.probing import activity_model

# The percentile `calibrate` uses by default (docs/latency.md: how it was chosen).
DEFAULT_PERCENTILE = 99.0

# The threshold of a layer that never fires on the calibration data.
SILENT_THRESHOLD = 1.0

# Whether `calibrate` gives one scale per channel by default (docs/latency.md).
DEFAULT_PER_CHANNEL = True

# A channel's value is at least this fraction of its layer's (with `per_channel`).
MIN_CHANNEL_FRACTION = 0.01

# Activations kept per layer and batch to estimate a percentile (a random sample).
SAMPLES_PER_BATCH = 100_000


def check_percentile(percentile, *, owner):
    """Checks a percentile in (0, 100]."""
    value = check_number("percentile", percentile, owner=owner)
    if not 0 < value <= 100:
        raise ValueError(
            f"{owner}: Argument `percentile` must be in (0, 100] (100 is the maximum "
            f"activation; 99-99.99 is usual). Received: percentile={percentile!r}"
        )
    return value


def check_original(model, owner, fix):
    """Checks that `model` is a Keras model `convert` takes and not already converted."""
    check_model(model)
    if is_converted(model):
        raise ValueError(
            f"{owner}: model '{model.name}' is already converted (its inputs have a time "
            f"axis). {fix}"
        )


def neuron_sites(plan, owner):
    """The call sites of `plan` whose activation `convert` makes neurons (a ReLU), grouped
    by layer name (the key of `convert`'s per-layer options).

    A model with a layer converted by a user's rule (`register_rule`) is converted once
    with spiking ReLUs to see which layers that rule made neurons: the conversion report
    records every neuron block with the layer it came from.
    """
    made = None
    if any(has_registered_rule(site.layer) for site in plan.sites):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convert() itself warns the user again
            converter = Converter(plan.model, swap_activations={"relu": "spiking_relu"})
        made = converter.report.neuron_sources()
    sites = {}
    for site in plan.sites:
        if made is not None and site.layer.name in made:
            sites.setdefault(site.layer.name, []).append(site)
        elif made is None and layer_activation_key(site.layer) in NEURON_KEYS:
            sites.setdefault(site.layer.name, []).append(site)
    if not sites:
        raise ValueError(
            f"{owner}: model '{plan.model.name}' has no ReLU activation (in a layer's "
            "`activation`, an `Activation('relu')` or a `ReLU()` layer), so there is "
            "nothing to calibrate: its scales are for ReLU neurons (SpikingReLU), whose "
            "rates scale linearly. LIF and SpikingActivation neurons (swap_activations "
            "'lif' or 'spiking') are not linear, so a scale would change what they "
            "compute: convert them with scale_firing_rates=1 and set their rates by "
            "training (TargetRate) or by their `amplitude`."
        )
    return sites


def iterate(x, batch_size, owner):
    """Batches of `x` as they come: slices of arrays (one, a list or a dict), or the
    elements of a `tf.data.Dataset`, a `keras.utils.PyDataset` or any iterable."""
    if isinstance(x, keras.utils.PyDataset):
        for i in range(x.num_batches):
            yield x[i]
        return
    if hasattr(x, "as_numpy_iterator"):  # tf.data.Dataset
        yield from x.as_numpy_iterator()
        return
    if isinstance(x, (np.ndarray, dict, list)) or hasattr(x, "__array__"):
        n = len(keras.tree.flatten(x)[0])
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            yield keras.tree.map_structure(lambda a, part=part: np.asarray(a)[part], x)
        return
    if hasattr(x, "__iter__"):
        yield from x
        return
    raise TypeError(
        f"{owner}: `x` must be arrays (one, a list or a dict by input name), a "
        "tf.data.Dataset, a keras.utils.PyDataset or an iterable of batches. "
        f"Received: {type(x).__name__}"
    )


def batches(x, batch_size, owner):
    """The input batches of `x` (see `iterate`). A batch that is a tuple is
    `(x, y[, sample_weight])`, as `fit` takes it: its first item is used."""
    for batch in iterate(x, batch_size, owner):
        yield batch[0] if isinstance(batch, tuple) else batch


def activation_percentiles(
    model,
    x,
    percentile=DEFAULT_PERCENTILE,
    per_channel=False,
    batch_size=256,
    seed=0,
    verbose=0,
    owner=None,
):
    """The `percentile` of each ReLU layer's activations on inputs `x`.

    Args:
        model: The original (non-converted) functional or Sequential model.
        x: Example inputs without a time axis (see `calibrate`).
        percentile: In (0, 100]. Defaults to `DEFAULT_PERCENTILE`.
        per_channel: One value per channel (the last axis) instead of one per
            layer. Defaults to `False`.
        batch_size: Batch size for arrays. Defaults to `256`.
        seed: Seed of the sample of activations a percentile is estimated from.
        verbose: Show a progress bar (one step per batch). Defaults to `0`.
        owner: Name of the calling function, for errors.

    Returns:
        A dict `{layer_name: value}` (a float, or with `per_channel` a tuple of
        floats) in graph order, over every call of the layer (nested models'
        layers included). A layer that is zero on more than
        `percentile`% of its activations gets the percentile of its nonzero
        ones, and one silent on every input `SILENT_THRESHOLD`, with a warning.
    """
    owner = owner or "activation_percentiles()"
    percentile = check_percentile(percentile, owner=owner)
    check_original(model, owner, "Calibrate the original Keras model, then convert it.")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or batch_size < 1
    ):
        raise ValueError(
            f"{owner}: Argument `batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    plan = Plan(model)
    sites = neuron_sites(plan, owner)
    paths = [site.name for layer_sites in sites.values() for site in layer_sites]
    layers = {site.name: site.layer for layer_sites in sites.values() for site in layer_sites}
    probed, sequences = _probed_sites(
        plan, [site for layer_sites in sites.values() for site in layer_sites]
    )
    run = [s for s in probed if s is not None]
    probe = activity_model(model, run, with_outputs=False) if run else None
    rng = np.random.default_rng(seed)
    samples = {path: [] for path in paths}
    progress = keras.utils.Progbar(None, verbose=verbose, unit_name="batch")
    n_batches = 0
    for i, batch in enumerate(batches(x, batch_size, owner)):
        for a in keras.tree.flatten(batch):
            if not np.all(np.isfinite(a)):
                raise ValueError(
                    f"{owner}: batch {i} of `x` holds NaN or infinite values. Calibrating "
                    "on them would give meaningless thresholds: clean or drop those inputs "
                    "(e.g. `x[np.isfinite(x).all(axis=tuple(range(1, x.ndim)))]`)."
                )
        outputs = iter(
            keras.tree.flatten(probe.predict_on_batch(batch)) if probe else []  # NumPy
        )
        outputs = [
            next(outputs) if site is not None else keras.tree.flatten(batch)[0] for site in probed
        ]
        outputs = [
            out if sequence is None else ops.convert_to_numpy(sequence(out))
            for out, sequence in zip(outputs, sequences, strict=True)
        ]
        for path, values in zip(paths, outputs, strict=True):
            values = values.reshape(-1, values.shape[-1])  # (positions, channels)
            if not np.all(np.isfinite(values)):
                raise ValueError(
                    f"{owner}: layer '{path}' ({type(layers[path]).__name__}) of model "
                    f"'{model.name}' gives NaN or infinite activations on batch {i} of `x`. "
                    "Check the model's weights and the inputs' scale."
                )
            rows = max(1, SAMPLES_PER_BATCH // values.shape[1])
            if len(values) > rows:
                values = values[rng.choice(len(values), rows, replace=False)]
            samples[path].append(values.astype("float32"))
        n_batches += 1
        progress.update(n_batches)
    if n_batches == 0:
        raise ValueError(f"{owner}: `x` gave no batches. Pass at least one input.")
    values = {}
    for name, layer_sites in sites.items():
        pooled = np.concatenate([v for site in layer_sites for v in samples[site.name]])
        values[name] = _layer_percentile(pooled, percentile, name, model, owner)
        if per_channel:
            channels = np.percentile(pooled, percentile, axis=0)
            # A channel silent on more than `percentile`% of `x` takes the layer's value;
            # a nearly silent one at least MIN_CHANNEL_FRACTION of it (else its rare large
            # activations would fire hundreds of spikes per step).
            floor = MIN_CHANNEL_FRACTION * values[name]
            values[name] = tuple(max(float(c), floor) if c > 0 else values[name] for c in channels)
    return values


def _probed_sites(plan, sites):
    """What to probe for each site's activations: `(probed, sequences)`, one each per
    site. A recurrent layer that returns only its last frame (`return_sequences=False`)
    has activations at every frame: its input is probed (the site that makes it, or
    None for the model's first input) and `sequences` holds the layer's cell run over
    every frame of it; every other site is probed itself (its `sequences` entry None)."""
    producers = {value: site for site in plan.sites for value in site.outputs}
    probed, sequences = [], []
    for site in sites:
        layer = site.layer
        last_frame = isinstance(layer, keras.layers.RNN) and not layer.return_sequences
        producer = site
        if last_frame:
            producer = producers.get(site.inputs[0])
            if producer is None:  # the model's input, or one it cannot run again
                plain = site.inputs[0] == plan.inputs[0]
            else:
                plain = len(producer.outputs) == 1
            if not plain:  # its last frame only
                producer, last_frame = site, False
        probed.append(producer)
        sequences.append(
            keras.layers.RNN(layer.cell, return_sequences=True, go_backwards=layer.go_backwards)
            if last_frame
            else None
        )
    return probed, sequences


def _layer_percentile(pooled, percentile, name, model, owner):
    """The percentile of a layer's activations, with the sparse and silent fallbacks."""
    value = float(np.percentile(pooled, percentile))
    if value <= 0:
        positive = pooled[pooled > 0]
        if positive.size:
            warnings.warn(
                f"{owner}: layer '{name}' of model '{model.name}' is zero on more than "
                f"{percentile}% of its activations on `x`; using the {percentile}th percentile "
                f"of its nonzero activations ({positive.size} values) instead.",
                stacklevel=4,
            )
            value = float(np.percentile(positive, percentile))
        else:
            warnings.warn(
                f"{owner}: layer '{name}' of model '{model.name}' is silent on every input of "
                f"`x`; its threshold is set to {SILENT_THRESHOLD} (the original units). Give "
                "it a value by hand, or calibrate on inputs that make it fire.",
                stacklevel=4,
            )
            value = SILENT_THRESHOLD
    return value


def calibrate(
    model,
    x,
    percentile=DEFAULT_PERCENTILE,
    per_channel=DEFAULT_PER_CHANNEL,
    dt=0.001,
    batch_size=256,
    seed=0,
    verbose=0,
):
    """Firing-rate scales for every ReLU layer of `model`, from example data.

    For each layer whose ReLU `convert` turns into a neuron, the scale is
    `1 / (p * dt)`, where `p` is the `percentile` of the activations of each
    channel of the layer (or of the whole layer) on `x`: a neuron whose
    activation is `p` fires about one spike per step.
    Pass the result to `convert(..., scale_firing_rates=...)` as it is, with
    the same `dt`; with the converter's default initial voltage (half the
    threshold) the spiking network reaches the original's accuracy in a few
    steps (docs/latency.md). Every neuron block divides its output by its
    scale, so layers' outputs keep the original units and branches that meet
    (Add, Concatenate) stay consistent.

    Args:
        model: The original (non-converted) functional or Sequential Keras
            model; layers of nested models are calibrated too.
        x: Example inputs as the original model takes them (no time axis):
            arrays (one, a list or a dict by input name), a
            `tf.data.Dataset` or `keras.utils.PyDataset` of batches (a tuple
            batch is `(x, y, ...)` and its `x` is used), or an iterable of
            batches. A few thousand training examples are plenty.
        percentile: Percentile of the activations that fires one spike per
            step, in (0, 100]; `100` is the maximum. Defaults to `99`
            (chosen on MNIST and checked on Fashion-MNIST: docs/latency.md).
        per_channel: One scale per channel (the last axis: a Dense layer's
            units, a channels-last convolution's filters) instead of one per
            layer: each channel's activations are coded with the resolution
            its own range needs. A channel that is zero on more than
            `percentile`% of `x` gets the layer's scale, and no channel's
            threshold is below 1% of its layer's. Defaults to `True`.
        dt: The simulation timestep `convert` will use. Defaults to `0.001`.
        batch_size: Batch size for arrays. Defaults to `256`.
        seed: Seed of the random sample of activations a percentile is
            estimated from (at most 100,000 values per layer and batch).
            Defaults to `0`.
        verbose: `1` shows a Keras progress bar over the batches. Defaults to `0`.

    Returns:
        A dict `{layer_name: scale}` for every layer with a ReLU, in graph
        order (a layer called more than once gets one scale from all its
        calls); a scale is a tuple with one value per channel if `per_channel`.

    Raises:
        ValueError: `percentile` outside (0, 100], a model with no ReLU, an
            already converted model, or NaN/infinite values in `x` or in a
            layer's activations.

    A layer that is zero on more than `percentile`% of its activations is
    calibrated on its nonzero activations instead, and a layer silent on all
    of `x` gets threshold 1 (scale `1 / dt`); both with a warning.

    Example:

    ```python
    scales = keras_spiking_conv.calibrate(model, x_train[:2000])
    snn = keras_spiking_conv.convert(
        model, swap_activations={"relu": "spiking_relu"},
        scale_firing_rates=scales, readout="mean",
    )
    snn.evaluate(keras_spiking_conv.tile_time(x_test, 4), y_test)
    ```
    """
    dt = check_number("dt", dt, owner="calibrate()", positive=True)
    percentiles = activation_percentiles(
        model,
        x,
        percentile,
        per_channel=check_bool("per_channel", per_channel, owner="calibrate()"),
        batch_size=batch_size,
        seed=seed,
        verbose=verbose,
        owner="calibrate()",
    )
    return {
        name: tuple(1.0 / (v * dt) for v in value)
        if isinstance(value, tuple)
        else 1.0 / (value * dt)
        for name, value in percentiles.items()
    }
