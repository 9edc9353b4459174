"""Property-based tests: random functional models from the supported layer set convert,
equal the original at every step, spike their way to the rate output at a high
firing-rate scale, survive a `.keras` round trip, and give the same spikes for the same
seed.

Each example is a *spec* (plain tuples, so Hypothesis prints and shrinks it) that
`build_model` turns into a small functional model with deterministic weights: an input
of Dense rank `(features,)`, Conv1D rank `(steps, channels)` or Conv2D rank
`(height, width, channels)`; one to four blocks (a layer with an activation in any of its
forms, a skip connection through `Add`, a branch joined by `Concatenate`, max or average
pooling, optional `BatchNormalization` before the activation); and a head.

CI runs a few examples per property (the `ci` Hypothesis profile in `tests/conftest.py`);
`KSC_HYPOTHESIS_EXAMPLES=200 python -m pytest tests/test_properties.py` runs more, with
fresh random examples each run.
"""

import warnings

import keras
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import keras_spiking_conv as ksc

L = keras.layers

# Input shape of each input rank (kept small: a few hundred features at most).
INPUT_SHAPES = {"dense": (6,), "conv1d": (8, 2), "conv2d": (6, 6, 2)}

# Activation forms. The ReLU forms all become spiking neurons under
# `swap_activations={"relu": "spiking_relu"}`; the others stay rate layers.
RELU_FORMS = ("relu", "relu_fn", "relu_layer", "activation_relu")
OTHER_ACTIVATIONS = ("tanh", "sigmoid", "activation_tanh", "linear")
HEADS = (None, "softmax", "sigmoid", "tanh", "softmax_layer", "activation_softmax", "relu_layer")

# Block kinds per input rank ("channels_dense" is a Dense on the last axis of a conv map).
LAYER_BLOCKS = ("layer", "add", "concat")
BLOCKS = {
    "dense": LAYER_BLOCKS,
    "conv1d": (*LAYER_BLOCKS, "channels_dense", "maxpool", "avgpool"),
    "conv2d": (*LAYER_BLOCKS, "channels_dense", "maxpool", "avgpool"),
}

SPIKING_SCALE = 1e4  # `scale_firing_rates` of the spiking property: 10 spikes/step per unit


@st.composite
def model_specs(draw):
    """A random model spec: `(rank, blocks, reduce, head, n_out, seed)`.

    Each block is `(kind, width, activation, batch_norm)`. The first block is a layer
    with a ReLU form, so every model has at least one neuron to make spike.
    """
    rank = draw(st.sampled_from(sorted(INPUT_SHAPES)))
    blocks = []
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(LAYER_BLOCKS if i == 0 else BLOCKS[rank]))
        width = draw(st.integers(1, 6))
        activation = draw(st.sampled_from(RELU_FORMS if i == 0 else RELU_FORMS + OTHER_ACTIVATIONS))
        blocks.append((kind, width, activation, draw(st.booleans())))
    reduce = "none" if rank == "dense" else draw(st.sampled_from(("flatten", "gap", "gmp")))
    head = draw(st.sampled_from(HEADS))
    n_out = draw(st.integers(2 if head and "softmax" in head else 1, 4))
    seed = draw(st.integers(0, 2**16))
    return rank, tuple(blocks), reduce, head, n_out, seed


def _layer(rank, width, activation=None):
    if rank == "dense":
        return L.Dense(width, activation=activation)
    conv = L.Conv1D if rank == "conv1d" else L.Conv2D
    return conv(width, 3, padding="same", activation=activation)


# Activations given as the layer's `activation` argument ...
INLINE = {"relu": "relu", "relu_fn": keras.activations.relu, "tanh": "tanh", "sigmoid": "sigmoid"}
# ... and as layers after it (also used for the inline forms when BN comes in between).
AFTER = {
    "relu": lambda: L.Activation("relu"),
    "relu_fn": lambda: L.Activation(keras.activations.relu),
    "relu_layer": L.ReLU,
    "activation_relu": lambda: L.Activation("relu"),
    "tanh": lambda: L.Activation("tanh"),
    "activation_tanh": lambda: L.Activation("tanh"),
    "sigmoid": lambda: L.Activation("sigmoid"),
}


def _activated(x, rank, width, activation, batch_norm):
    """A `rank` layer of `width` units on `x`, then `activation` in its form: inline, or
    after the layer (and after BatchNormalization if `batch_norm`)."""
    if activation in INLINE and not batch_norm:
        return _layer(rank, width, INLINE[activation])(x)
    h = _layer(rank, width)(x)
    if batch_norm:
        h = L.BatchNormalization()(h)
    return h if activation == "linear" else AFTER[activation]()(h)


def _head(h, head, n_out):
    if head in ("softmax_layer", "activation_softmax", "relu_layer"):
        h = L.Dense(n_out)(h)
        return {
            "softmax_layer": L.Softmax(),
            "activation_softmax": L.Activation("softmax"),
            "relu_layer": L.ReLU(),
        }[head](h)
    return L.Dense(n_out, activation=head)(h)


def _randomize_weights(model, seed):
    """Deterministic weights (Hypothesis replays an example exactly), He-scaled so that
    activations keep their size through the layers; BN statistics away from identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        if isinstance(layer, L.BatchNormalization):
            n = weights[0].shape
            new = [
                rng.uniform(0.5, 1.5, n),  # gamma
                rng.normal(0, 0.2, n),  # beta
                rng.normal(0, 0.2, n),  # moving mean
                rng.uniform(0.5, 2.0, n),  # moving variance
            ]
        else:
            new = [
                rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[:-1])), w.shape)
                if w.ndim > 1
                else rng.normal(0, 0.1, w.shape)
                for w in weights
            ]
        layer.set_weights([w.astype("float32") for w in new])


def build_model(spec):
    """The functional model described by a `model_specs` spec."""
    rank, blocks, reduce, head, n_out, seed = spec
    inp = keras.Input(INPUT_SHAPES[rank])
    h = inp
    for kind, width, activation, batch_norm in blocks:
        channels = h.shape[-1]
        if kind == "layer":
            h = _activated(h, rank, width, activation, batch_norm)
        elif kind == "channels_dense":  # a Dense on the last axis of a conv map
            h = _activated(h, "dense", width, activation, batch_norm)
        elif kind == "add":
            h = L.Add()([h, _activated(h, rank, channels, activation, batch_norm)])
        elif kind == "concat":
            h = L.Concatenate()([h, _activated(h, rank, width, activation, batch_norm)])
        elif min(h.shape[1:-1]) >= 2:  # pooling, where the map is large enough
            pool = {
                ("conv1d", "maxpool"): L.MaxPooling1D,
                ("conv1d", "avgpool"): L.AveragePooling1D,
                ("conv2d", "maxpool"): L.MaxPooling2D,
                ("conv2d", "avgpool"): L.AveragePooling2D,
            }[rank, kind]
            h = pool(2)(h)
    if rank != "dense":
        global_pool = {
            ("conv1d", "gap"): L.GlobalAveragePooling1D,
            ("conv1d", "gmp"): L.GlobalMaxPooling1D,
            ("conv2d", "gap"): L.GlobalAveragePooling2D,
            ("conv2d", "gmp"): L.GlobalMaxPooling2D,
        }
        h = L.Flatten()(h) if reduce == "flatten" else global_pool[rank, reduce]()(h)
    model = keras.Model(inp, _head(h, head, n_out))
    _randomize_weights(model, seed)
    return model


def _inputs(spec, n=3, high=1.0):
    rank, *_, seed = spec
    rng = np.random.default_rng(seed + 1)
    return rng.uniform(0, high, (n, *INPUT_SHAPES[rank])).astype("float32")


def _run(model, x):
    """Outputs as NumPy, from a direct call (no `predict` compilation: faster for one call
    of a small model, and the same kernels every time)."""
    return keras.ops.convert_to_numpy(model(x, training=False))


@given(spec=model_specs())
def test_default_conversion_equals_original_at_every_step(spec):
    model = build_model(spec)
    converted = ksc.convert(model)
    for original, new in zip(model.inputs, converted.inputs, strict=True):
        assert tuple(new.shape) == (None, None, *original.shape[1:])
    # Folding time into the batch may pick other kernels (blocked matmuls): rounding only.
    ksc.verify(model, converted, _inputs(spec), n_steps=3, rtol=1e-4, atol=1e-5)


@given(spec=model_specs())
def test_spiking_at_a_high_rate_scale_approaches_the_rate_output(spec):
    model = build_model(spec)
    x = _inputs(spec, high=20.0)  # sizeable activations: many spikes per step
    rate = _run(model, x)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*matched no layer")  # a neuron spikes
        converter = ksc.Converter(
            model,
            swap_activations={"relu": "spiking_relu"},
            scale_firing_rates=SPIKING_SCALE,
            seed=0,
        )
    assert converter.report.spiking_layers  # the property is about spiking neurons
    n_steps = 20
    out = _run(converter.model, ksc.tile_time(x, n_steps))
    assert np.all(np.isfinite(out))
    mean = out[:, n_steps // 2 :].mean(axis=1)
    # One spike is 1 / (dt * scale) = 0.1 activation units, against activations of ~10:
    # averaged over the later half, within half a spike plus 2% of the rate output. (In
    # 300 random models the largest error was under a quarter of this bound.)
    error, size = np.abs(mean - rate).max(), np.abs(rate).max()
    assert error <= 0.05 + 0.02 * size, f"error {error:.3g} for rate outputs up to {size:.3g}"


@given(spec=model_specs())
def test_keras_file_round_trip_keeps_spiking_outputs(spec, tmp_path_factory):
    model = build_model(spec)
    snn = ksc.convert(
        model,
        swap_activations={"relu": "spiking_relu"},
        scale_firing_rates=50.0,
        synapse=0.005,
        initial_voltage="random",
        seed=1,
    )
    x = ksc.tile_time(_inputs(spec, high=4.0), 6)
    expected = _run(snn, x)
    path = tmp_path_factory.mktemp("roundtrip") / "snn.keras"
    snn.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(_run(loaded, x), expected)


# -- determinism ------------------------------------------------------------------------

SPIKING_OPTIONS = dict(
    swap_activations={"relu": "spiking_relu"}, scale_firing_rates=10.0, synapse=0.005
)
# Seeds matter for random initial voltages (the converter's default is a constant 0.5).
RANDOM_OPTIONS = dict(SPIKING_OPTIONS, initial_voltage="random")


@given(spec=model_specs())
def test_the_same_seed_gives_the_same_spikes(spec):
    model = build_model(spec)
    x = ksc.tile_time(_inputs(spec, high=20.0), 8)
    first = _run(ksc.convert(model, seed=5, **RANDOM_OPTIONS), x)
    np.testing.assert_array_equal(_run(ksc.convert(model, seed=5, **RANDOM_OPTIONS), x), first)


def _voltages(snn):
    return np.concatenate(
        [
            keras.ops.convert_to_numpy(layer.cell.voltage0).ravel()
            for layer in snn.layers
            if isinstance(layer, ksc.SpikingReLU)
        ]
    )


def test_different_seeds_give_different_spikes_and_runs_repeat_exactly():
    spec = ("dense", (("layer", 6, "relu", False),), "none", None, 3, 0)
    model = build_model(spec)
    x = ksc.tile_time(_inputs(spec, n=4, high=20.0), 10)
    a, b = (ksc.convert(model, seed=seed, **RANDOM_OPTIONS) for seed in (1, 2))
    assert not np.array_equal(_voltages(a), _voltages(b))
    assert not np.array_equal(_run(a, x), _run(b, x))
    # No hidden randomness at inference: the same model and data give the same spikes.
    np.testing.assert_array_equal(_run(a, x), _run(a, x))
    # `seed=None` draws fresh voltages at each conversion.
    c, d = (ksc.convert(model, seed=None, **RANDOM_OPTIONS) for _ in range(2))
    assert not np.array_equal(_voltages(c), _voltages(d))
