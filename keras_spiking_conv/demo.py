"""The reference workflow (NengoDL's "Converting a Keras model to a spiking neural
network" tutorial) with standard Keras calls: train, convert, tune, regularize.

Run it with `python -m keras_spiking_conv demo` (or `keras-spiking-conv demo`).
"""

import time

import keras
import numpy as np

from keras_spiking_conv.callbacks import firing_rates
from keras_spiking_conv.conversion import convert, tile_time
from keras_spiking_conv.datasets import load_mnist, prepare_images
from keras_spiking_conv.latency import calibrate, quantize_activations
from keras_spiking_conv.layers import LIF, QuantizedReLU
from keras_spiking_conv.regularizers import TargetRate

# (label, tutorial %, NengoDL 3.6 on the bundled 10k MNIST %), as in the issue.
REFERENCE = {
    "rate": (98.25, 93.00),
    "spiking": (20.75, 17.75),
    "synapse 0.001": (23.00, 19.75),
    "synapse 0.005": (52.25, 25.75),
    "synapse 0.01": (71.75, 46.00),
    "synapse 0.01, scale 2": (80.25, 63.00),
    "synapse 0.01, scale 5": (96.00, 86.25),
    "synapse 0.01, scale 10": (98.25, 91.75),
    "scale 1000": (98.25, 92.75),
    "regularized, rate": (98.50, 92.25),
    "regularized, spiking, synapse 0.01": (98.25, 87.50),
}

# The tutorial's rows: (label, spiking, n_steps, synapse, scale, network); then the
# tutorial's regularized workflow with Nengo's LIF neurons (trained as `SoftLIFRate`,
# `LIF_RATE`); the last three are the low-latency rows (docs/latency.md): scales
# calibrated from 2,000 training images, and the quantization-aware fine-tuned network,
# both read out as the mean over time (the other rows read the last step).
ROWS = (
    ("rate", False, 10, None, 1.0, "base"),
    ("spiking", True, 30, None, 1.0, "base"),
    ("synapse 0.001", True, 60, 0.001, 1.0, "base"),
    ("synapse 0.005", True, 60, 0.005, 1.0, "base"),
    ("synapse 0.01", True, 60, 0.01, 1.0, "base"),
    ("synapse 0.01, scale 2", True, 30, 0.01, 2.0, "base"),
    ("synapse 0.01, scale 5", True, 30, 0.01, 5.0, "base"),
    ("synapse 0.01, scale 10", True, 30, 0.01, 10.0, "base"),
    ("scale 1000", True, 10, None, 1000.0, "base"),
    ("regularized, rate", False, 10, None, 1.0, "regularized"),
    ("regularized, spiking, synapse 0.01", True, 30, 0.01, 1.0, "regularized"),
    ("LIF, regularized, rate", False, 10, None, 1.0, "lif"),
    ("LIF, regularized, spiking", True, 30, None, 1.0, "lif"),
    ("LIF, regularized, spiking, synapse 0.01", True, 30, 0.01, 1.0, "lif"),
    ("calibrated, 4 steps, mean", True, 4, None, "calibrated", "base"),
    ("calibrated, 8 steps, mean", True, 8, None, "calibrated", "base"),
    ("quantization-aware L=8, 4 steps, mean", True, 4, None, 1.0, "quantized"),
)

# Images `calibrate` and `quantize_activations` see (from the training set).
CALIBRATION_IMAGES = 2000

# The neuron the LIF rows train with: Nengo's LIF as a rate (LIFRate) with NengoDL's
# SoftLIFRate smoothing, which gives it a gradient below the threshold.
LIF_RATE = LIF(spiking=False, smoothing=0.01)


def relu_function():
    """ReLU as a function, the way the tutorial writes it (`tf.nn.relu` on TensorFlow)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.nn.relu
    return keras.activations.relu


def build_model(seed=0):
    """The tutorial convnet: conv32 k3 relu, conv64 k3 s2 relu, flatten, dense10."""
    keras.utils.set_random_seed(seed)
    relu = relu_function()
    inp = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(32, 3, activation=relu, name="conv0")(inp)
    h = keras.layers.Conv2D(64, 3, strides=2, activation=relu, name="conv1")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    out = keras.layers.Dense(10, name="dense")(h)
    return keras.Model(inp, out, name="mnist_convnet")


def prepare(images):
    """uint8 `(n, 28, 28)` images to float32 `(n, 28, 28, 1)`, raw 0-255 as the tutorial."""
    return prepare_images(images)


def train_base(model, x, y, epochs=2, batch_size=200, verbose=1):
    """Trains the non-spiking network: Adam(0.001), cross-entropy from logits."""
    model.compile(
        optimizer=keras.optimizers.Adam(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)


def train_regularized(
    model,
    x,
    y,
    target=250.0,
    weight=1e-3,
    epochs=10,
    batch_size=200,
    verbose=1,
    neuron="relu",
):
    """Trains with firing rates pulled to `target` Hz: returns the converted rate model.

    The converted rate network (one timestep) is trained with RMSprop(0.001)
    and `TargetRate(target, weight)` on every neuron, starting from `model`'s
    weights; convert the result again to make it spiking. `neuron` is the rate
    neuron its ReLUs become: "relu", or a rate `LIF` such as `LIF_RATE`.
    """
    rate = convert(
        model,
        swap_activations={relu_function(): neuron},
        activity_regularizer=TargetRate(target, weight),
    )
    rate.compile(
        optimizer=keras.optimizers.RMSprop(0.001),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    rate.fit(tile_time(x, 1), y[:, None], epochs=epochs, batch_size=batch_size, verbose=verbose)
    return rate


def train_quantized(model, x, y, levels=8, epochs=2, batch_size=200, verbose=1):
    """Quantization-aware fine-tuning (QCFS): returns the fine-tuned copy of `model`.

    Every ReLU becomes a `QuantizedReLU(levels)` whose threshold starts at the
    99.9th percentile of its activations on the first `CALIBRATION_IMAGES`
    inputs; the copy trains with Adam(0.001), as the base network.
    """
    quantized = quantize_activations(model, levels=levels, x=x[:CALIBRATION_IMAGES])
    train_base(quantized, x, y, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return quantized


def run_network(
    model,
    x,
    y,
    *,
    spiking,
    n_steps,
    synapse=None,
    scale=1.0,
    seed=0,
    batch_size=100,
    rate_images=100,
    readout=None,
    swap=None,
):
    """Converts `model`, simulates `n_steps` and scores the output.

    The last timestep is scored, or with `readout` ("mean"/"last") the
    converted model's readout. `swap` replaces the default `swap_activations`
    (its ReLUs to spiking or rate ReLUs). Firing rates are measured on the first
    `rate_images` inputs.

    Returns:
        A dict with `accuracy` (%), the converted `model`, its `outputs`
        (`(n, n_steps, 10)`, or `(n, 10)` with a readout) and `rates` (per
        neuron layer statistics, Hz).
    """
    if swap is None:
        swap = {relu_function(): "spiking_relu" if spiking else "relu"}
    snn = convert(
        model,
        swap_activations=swap,
        synapse=synapse,
        scale_firing_rates=scale,
        seed=seed,
        readout=readout,
    )
    tiled = tile_time(x, n_steps)
    # A spiking model runs as one fused loop over time by itself (SpikingModel).
    outputs = snn.predict(tiled, batch_size=batch_size, verbose=0)
    scores = outputs if readout else outputs[:, -1]
    accuracy = 100.0 * float(np.mean(np.argmax(scores, axis=-1) == y))
    rates = firing_rates(snn, tiled[:rate_images], batch_size=batch_size)
    return {"accuracy": accuracy, "model": snn, "outputs": outputs, "rates": rates}


def run_workflow(
    n_train=8000,
    n_test=400,
    epochs=2,
    regularized_epochs=10,
    quantized_epochs=2,
    source="auto",
    seed=0,
    verbose=1,
    rows=ROWS,
):
    """Runs the whole workflow and returns the table rows (dicts)."""
    (x_train, y_train), (x_test, y_test) = load_mnist(source=source)
    x_train, y_train = prepare(x_train[:n_train]), np.asarray(y_train[:n_train])
    x_test, y_test = prepare(x_test[:n_test]), np.asarray(y_test[:n_test])
    networks = {"base": build_model(seed)}
    if verbose:
        print(f"Training the rate network on {len(x_train)} images, {epochs} epochs")
    train_base(networks["base"], x_train, y_train, epochs=epochs, verbose=verbose)
    if any(row[5] == "regularized" for row in rows):
        if verbose:
            print(f"Training with firing rates regularized to 250 Hz, {regularized_epochs} epochs")
        networks["regularized"] = train_regularized(
            networks["base"], x_train, y_train, epochs=regularized_epochs, verbose=verbose
        )
    if any(row[5] == "lif" for row in rows):
        if verbose:
            print(f"Training LIF neurons (SoftLIFRate) at 250 Hz, {regularized_epochs} epochs")
        networks["lif"] = train_regularized(
            networks["base"],
            x_train,
            y_train,
            epochs=regularized_epochs,
            verbose=verbose,
            neuron=LIF_RATE,
        )
    if any(row[5] == "quantized" for row in rows):
        if verbose:
            print(f"Quantization-aware fine-tuning (L=8), {quantized_epochs} epochs")
        networks["quantized"] = train_quantized(
            networks["base"], x_train, y_train, epochs=quantized_epochs, verbose=verbose
        )
    if any(row[4] == "calibrated" for row in rows):
        calibrated = calibrate(networks["base"], x_train[:CALIBRATION_IMAGES])
    results = []
    progress = keras.utils.Progbar(len(rows), verbose=verbose, unit_name="configuration")
    for label, spiking, n_steps, synapse, scale, network in rows:
        start = time.perf_counter()
        low_latency = scale == "calibrated" or network == "quantized"
        result = run_network(
            networks[network],
            x_test,
            y_test,
            spiking=spiking,
            n_steps=n_steps,
            synapse=synapse,
            scale=calibrated if scale == "calibrated" else scale,
            seed=seed,
            readout="mean" if low_latency else None,
            swap=_swap(network, spiking),
        )
        tutorial, nengo = REFERENCE.get(label, (None, None))
        results.append(
            {
                "configuration": label,
                "n_steps": n_steps,
                "accuracy": result["accuracy"],
                "tutorial": tutorial,
                "nengo_dl_10k": nengo,
                "rates": result["rates"],
                "seconds": time.perf_counter() - start,
            }
        )
        progress.add(1)
    return results


def _swap(network, spiking):
    """The `swap_activations` of a row's conversion (None: the ReLUs')."""
    if network == "quantized":
        return {QuantizedReLU: "spiking_relu"}
    if network == "lif":  # no key: the trained rate LIFs stay as they are
        return {"lif": "lif"} if spiking else {}
    return None


def rate_row(label):
    """The rate row a configuration is compared with: its own network's."""
    for prefix in ("LIF, regularized", "regularized"):
        if label.startswith(prefix):
            return f"{prefix}, rate"
    return "rate"


def summarize(runs):
    """Statistics over several runs of the workflow (one per seed).

    Args:
        runs: A list of `run_workflow` results, each a list of row dicts
            with the same configurations.

    Returns:
        A list of dicts, one per configuration: `configuration`, `n_steps`,
        `mean`, `min` and `max` accuracy (%), `below_rate` (mean points
        below the same network's rate row, per run; `None` for the rate rows
        themselves), `worst_below_rate`, `tutorial` and `nengo_dl_10k`.
    """
    if not runs:
        raise ValueError("summarize() needs at least one run of the workflow; got none.")
    labels = [r["configuration"] for r in runs[0]]
    for i, run in enumerate(runs):
        if [r["configuration"] for r in run] != labels:
            raise ValueError(
                f"summarize(): run {i} has configurations "
                f"{[r['configuration'] for r in run]}, run 0 has {labels}; "
                "pass runs of the same workflow rows."
            )
    summary = []
    for i, label in enumerate(labels):
        accuracy = np.array([run[i]["accuracy"] for run in runs])
        reference = rate_row(label)
        below = None
        if reference in labels and reference != label:
            j = labels.index(reference)
            below = np.array([run[j]["accuracy"] for run in runs]) - accuracy
        first = runs[0][i]
        summary.append(
            {
                "configuration": label,
                "n_steps": first["n_steps"],
                "mean": float(accuracy.mean()),
                "min": float(accuracy.min()),
                "max": float(accuracy.max()),
                "below_rate": None if below is None else float(below.mean()),
                "worst_below_rate": None if below is None else float(below.max()),
                "tutorial": first["tutorial"],
                "nengo_dl_10k": first["nengo_dl_10k"],
            }
        )
    return summary


def _fmt(value):
    return "" if value is None else f"{value:.2f}"


def format_summary(summary, n_runs):
    """`summarize`'s statistics as a markdown table."""
    lines = [
        f"| configuration | steps | mean accuracy % ({n_runs} seeds) | min - max % | "
        "points below its rate row, mean (worst) | tutorial % | NengoDL 10k % |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        below = ""
        if s["below_rate"] is not None:
            below = f"{s['below_rate']:.2f} ({s['worst_below_rate']:.2f})"
        lines.append(
            f"| {s['configuration']} | {s['n_steps']} | {s['mean']:.2f} | "
            f"{s['min']:.2f} - {s['max']:.2f} | {below} | "
            f"{_fmt(s['tutorial'])} | {_fmt(s['nengo_dl_10k'])} |"
        )
    return "\n".join(lines)


def format_table(results):
    """The results as a markdown table with firing rates."""
    lines = [
        "| configuration | steps | accuracy % | tutorial % | NengoDL 10k % | "
        "firing rates, mean / max Hz (per neuron layer) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        rates = "; ".join(
            f"{name.replace('_neuron', '')} {s['mean']:.1f} / {s['max']:.0f}"
            for name, s in r["rates"].items()
        )
        lines.append(
            f"| {r['configuration']} | {r['n_steps']} | {r['accuracy']:.2f} | "
            f"{_fmt(r['tutorial'])} | {_fmt(r['nengo_dl_10k'])} | {rates} |"
        )
    return "\n".join(lines)
