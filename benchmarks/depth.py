"""Low-latency conversion of deeper networks: VGG, ResNet-20 and MobileNetV2 on Fashion-MNIST.

For each network and seed: train the ANN (Adam 1e-3, batch 128, sparse cross-entropy from
logits), then
- calibrated conversion, no training: `calibrate` on 2,000 training images, `convert` with
  those scales and the mean readout, one conversion per neuron variant (`--variants`),
  `latency_sweep` over T = 1, 2, 4, ... up to `--max-steps`;
- quantization-aware fine-tuning: `quantize_activations(levels=L)` (the package's defaults:
  BatchNormalization folded, one threshold per channel; `--per-layer-thresholds` for one per
  layer), `--qat-epochs` of Adam 1e-4, `convert(swap_activations={QuantizedReLU: neuron})`
  per variant, the same sweep; then, for the `--spread` variants (default `binary_signed`),
  each level spread over k = 2, 4, ... steps (`scale_firing_rates=1/k`) at T = k L;
- the original architecture trained as long (the ANN fine-tuned `--qat-epochs` more with
  Adam 1e-4, no quantization), a fair bar for the quantization-aware network's accuracy.
From each sweep: accuracy per T, the first T within 1.0 and 0.5 points of the reference
(the ANN for calibrated, the quantized ANN for quantization-aware, and the ANN for both),
spikes per neuron per step (the sweep's net mean; mean absolute and largest per step from a
probe on `--spike-images` test images) and the wall time of every phase. `--layer-errors`
adds, for the calibrated "default" and "signed" variants on the first seed, each neuron
layer's relative L2 error between its mean output over T steps and the ANN layer's
activation (and a plot); `--throughput` times `predict` at the smallest T within 1.0 point
against the ANN's (interleaved rounds, medians: run it alone, shared cores make it noisy).

Networks (functional Keras, inputs pixels / 255):
- `vgg`: six 3x3 convolutions (32, 32, 64, 64, 128, 128; Conv2D -> BatchNormalization ->
  ReLU), 2x2 average pooling after the 2nd and 4th, global average pooling, Dense(10);
- `resnet`: ResNet-20 (stem conv 16, three stages of `--blocks` basic blocks with 16, 32, 64
  channels, strided 1x1 convolution + BN projections), global average pooling, Dense(10);
- `mobilenet`: `keras.applications.MobileNetV2(alpha=0.35, weights=None)` on 32x32x1 (the
  28x28 images zero-padded by 2 pixels on each side), rebuilt from its config with every
  BatchNormalization's momentum `BN_MOMENTUM` (0.9, as in the other two networks: Keras'
  0.99 and MobileNetV2's 0.999 do not settle in the few epochs a 2-core run affords). Its
  ReLU6s stay ReLU6 if the installed converter makes clipped ReLUs neurons
  (`SpikingReLU(clip=...)`), else they become plain ReLUs (an older converter turns only
  plain ReLUs into neurons: a ReLU6 would stay a rate activation and `calibrate` would find
  nothing to calibrate); `--mobilenet-activation` chooses, the JSON records which ran.

Neuron variants (`VARIANTS`): "default" is `"spiking_relu"` (the converter's neuron: starts
at half the threshold, integrates its signed input); the others are configured
`SpikingReLU` templates (with the converter's `initial_voltage` and `rectify_input` given
explicitly too), so each differs from "default" only in what its name says:
"signed" (`negative_spikes=True`), "binary" (`max_spikes_per_step=1`), "binary_signed"
(both), "reset_zero" (`reset="zero"`, not run by default). A variant whose arguments the
installed package does not accept, or that `convert` does not pass on to its neurons, is
recorded with the error and skipped.

Usage (from the repository root):
    python benchmarks/depth.py                     # the full run: 3 networks x seeds 0 1 2
    python benchmarks/depth.py --quick             # under 10 minutes on 2 CPU cores
    python benchmarks/depth.py --networks vgg --seeds 0 --layer-errors --throughput
    python benchmarks/depth.py --summary-only      # rebuild summary.md from the JSON files
Smoke run: `--quick --networks vgg --train-images 1000 --test-images 100 --max-steps 4
--out /tmp/depth`.

Writes `{out}/{network}.json` (every run: all numbers, settings, versions, machine, the
command line, wall times), `{out}/summary.md` (means over seeds, from every `{network}.json`
in `{out}`) and, with `--layer-errors`, `{out}/{network}_layer_errors.png`. `{out}` is
benchmarks/results/depth (benchmarks/results/depth_quick with `--quick`) unless `--out`.

Data: Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset
for Benchmarking Machine Learning Algorithms"; Zalando Research, MIT license), read from
Debian's package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist) by
`keras_spiking_conv.datasets.load_fashion_mnist`; the first `--train-images` training and
`--test-images` test images.
"""

import argparse
import datetime
import json
import logging
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing warnings: many models

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402
from keras_spiking_conv import datasets  # noqa: E402
from keras_spiking_conv.conversion import converter  # noqa: E402
from keras_spiking_conv.runtime.plan import plan_of  # noqa: E402
from keras_spiking_conv.runtime.probing import rate_probe  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import latency  # noqa: E402

ROOT = HERE.parent
L = keras.layers

NETWORK_NAMES = ("vgg", "resnet", "mobilenet")

# The converter's neuron settings (what "spiking_relu" gets), given to every template.
CONVERTER_NEURON = {
    "initial_voltage": getattr(converter, "INITIAL_VOLTAGE", 0.5),
    "rectify_input": getattr(converter, "RECTIFY_INPUT", False),
}

# name: "spiking_relu", or the arguments of a SpikingReLU template (with CONVERTER_NEURON).
VARIANTS = {
    "default": "spiking_relu",
    "signed": {"negative_spikes": True},
    "binary": {"max_spikes_per_step": 1},
    "binary_signed": {"max_spikes_per_step": 1, "negative_spikes": True},
    "reset_zero": {"reset": "zero"},
}
DEFAULT_VARIANTS = ["default", "signed", "binary", "binary_signed"]

METHODS = ("calibrated", "fine_tuned", "from_scratch")

# The initial threshold of quantization-aware training from scratch: the pre-activations
# are BatchNormalization outputs, about unit variance at first, whose 99.9th percentile
# is about 3 (training then moves every threshold).
SCRATCH_THRESHOLD = 3.0

# "first T within" thresholds, in accuracy points.
WITHIN = (1.0, 0.5)

LEARNING_RATE = 1e-3
FINE_TUNE_LEARNING_RATE = 1e-4
BATCH_SIZE = 128
CALIBRATION_IMAGES = 2000

# Settings that depend on --quick (None on the command line: take these).
FULL = {
    "seeds": [0, 1, 2],
    "train_images": 60000,
    "test_images": 2000,
    "epochs": {"vgg": 4, "resnet": 4, "mobilenet": 6},
    "qat_epochs": 2,
    "levels": 4,
    "max_steps": 64,
    "blocks": 3,
    "variants": DEFAULT_VARIANTS,
}
QUICK = {
    "seeds": [0],
    "train_images": 10000,
    "test_images": 500,
    "epochs": {"vgg": 1, "resnet": 1, "mobilenet": 2},
    "qat_epochs": 1,
    "levels": 4,
    "max_steps": 16,
    "blocks": 1,
    "variants": ["default", "signed"],
}


# BatchNormalization momentum of all three networks: with the few epochs a 2-core run
# affords, Keras' 0.99 (MobileNetV2's 0.999) leaves the moving statistics unsettled (an
# ANN at chance after one epoch of 10,000 images); 0.9 settles in a few dozen steps.
BN_MOMENTUM = 0.9


def log(message):
    print(message, flush=True)


# ---------------------------------------------------------------------------- networks


def conv_bn_relu(x, filters, strides=1):
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = L.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return L.ReLU()(x)


def build_vgg():
    """Six 3x3 Conv-BN-ReLU (32, 32, 64, 64, 128, 128), average pooling after the 2nd and
    4th, global average pooling, Dense(10) logits."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for i, filters in enumerate((32, 32, 64, 64, 128, 128)):
        x = conv_bn_relu(x, filters)
        if i in (1, 3):
            x = L.AveragePooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(x), name="vgg")


def basic_block(x, filters, strides):
    y = conv_bn_relu(x, filters, strides)
    y = L.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = L.BatchNormalization(momentum=BN_MOMENTUM)(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = L.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = L.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
    return L.ReLU()(L.Add()([y, shortcut]))


def build_resnet(blocks=3):
    """ResNet-20 (blocks=3; 6 * blocks + 2 layers): stem conv 16, stages of 16, 32, 64
    channels, the first block of stages 2 and 3 strided with a 1x1 projection."""
    inputs = keras.Input((28, 28, 1))
    x = conv_bn_relu(inputs, 16)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(blocks):
            x = basic_block(x, filters, 2 if stage > 0 and block == 0 else 1)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(x), name=f"resnet{6 * blocks + 2}")


def converts_relu6():
    """Whether the installed converter makes a `ReLU(max_value=6)` a (clipped) neuron."""
    from keras_spiking_conv.conversion import activations

    return activations.relu_layer_key(L.ReLU(6.0)) in activations.NEURON_KEYS


def build_mobilenet(activation="relu", momentum=None):
    """MobileNetV2 (alpha 0.35, 32x32x1, 10 logits) rebuilt from its config with every BN's
    momentum `momentum` (default `BN_MOMENTUM`), and with `activation="relu"` every ReLU6 a
    plain ReLU."""
    momentum = BN_MOMENTUM if momentum is None else momentum
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 1),
        alpha=0.35,
        weights=None,
        classes=10,
        classifier_activation=None,
    )
    config = base.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = momentum
        elif layer["class_name"] == "ReLU" and activation == "relu":
            layer["config"]["max_value"] = None
    model = keras.Model.from_config(config)
    bns = [layer for layer in model.layers if isinstance(layer, L.BatchNormalization)]
    relus = [layer for layer in model.layers if isinstance(layer, L.ReLU)]
    assert bns and all(layer.momentum == momentum for layer in bns), "BN momentum not set"
    max_value = None if activation == "relu" else 6.0
    assert relus and all(layer.max_value == max_value for layer in relus), "ReLU not set"
    return model


def build(network, args):
    if network == "vgg":
        return build_vgg()
    if network == "resnet":
        return build_resnet(args.blocks)
    return build_mobilenet(args.mobilenet_activation)


def prepare(network, images):
    """uint8 (n, 28, 28) -> float32 (n, h, w, 1) pixels / 255 (MobileNet: padded to 32)."""
    x = images[..., None].astype("float32") / 255.0
    if network == "mobilenet":
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return x


# ---------------------------------------------------------------------------- data


def load_data(train_images, test_images, wait_seconds):
    """Fashion-MNIST's first `train_images` / `test_images` images, uint8, waiting up to
    `wait_seconds` for Debian's package to be installed."""
    deadline = time.monotonic() + wait_seconds
    last = os.path.join(datasets.FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz")
    while True:
        try:
            (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist()
            break
        except (FileNotFoundError, EOFError, ValueError) as error:  # missing or half-written
            if time.monotonic() > deadline:
                raise
            log(f"waiting for Fashion-MNIST ({type(error).__name__}: {error}; {last})")
            time.sleep(15)
    return (xtr[:train_images], np.asarray(ytr[:train_images], "int64")), (
        xte[:test_images],
        np.asarray(yte[:test_images], "int64"),
    )


# ---------------------------------------------------------------------------- training


def loss():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class EpochLog(keras.callbacks.Callback):
    def __init__(self, label):
        super().__init__()
        self.label = label

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        log(
            f"  {self.label} epoch {epoch + 1}: loss {logs.get('loss', float('nan')):.4f}, "
            f"accuracy {100 * logs.get('accuracy', float('nan')):.2f} % "
            f"({time.perf_counter() - self.start:.0f} s)"
        )


def train(model, x, y, epochs, learning_rate, label):
    model.compile(keras.optimizers.Adam(learning_rate), loss(), metrics=["accuracy"])
    if epochs > 0:
        model.fit(
            x, y, batch_size=BATCH_SIZE, epochs=epochs, verbose=0, callbacks=[EpochLog(label)]
        )
    return model


def accuracy(model, x, y):
    """Accuracy in %, computed as `latency_sweep` does (so "within" compares like with like)."""
    correct = int(np.sum(model.predict(x, batch_size=256, verbose=0).argmax(-1) == y))
    return 100.0 * correct / len(y)


class Timer:
    """Wall seconds of named phases: `with timer("phase"): ...`."""

    def __init__(self):
        self.seconds = {}

    def __call__(self, name):
        timer = self

        class Phase:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] = timer.seconds.get(name, 0.0) + (
                    time.perf_counter() - self.start
                )

        return Phase()


# ---------------------------------------------------------------------------- conversion


def make_neuron(variant):
    """(`swap_activations` value, the template's arguments or None)."""
    spec = VARIANTS[variant]
    if isinstance(spec, str):
        return spec, None
    kwargs = {**CONVERTER_NEURON, **spec}
    return ksc.SpikingReLU(**kwargs), kwargs


def unapplied(snn, kwargs):
    """The template arguments that `convert` did not give the converted neurons."""
    if not kwargs:
        return []
    missing = []
    for site in plan_of(snn).neurons():
        config = site.layer.get_config()
        for key, value in kwargs.items():
            actual = config.get(key, getattr(site.layer.cell, key, "<absent>"))
            if actual != value:
                missing.append(f"{site.name}.{key}={actual!r} (template {value!r})")
    return missing


def convert_variant(model, variant, **options):
    """`(snn, error)`: the conversion with the variant's neuron, or None and why not."""
    try:
        neuron, kwargs = make_neuron(variant)
    except (TypeError, ValueError) as error:
        return None, f"SpikingReLU({VARIANTS[variant]}): {type(error).__name__}: {error}"
    key = options.pop("key")
    try:
        snn = ksc.convert(model, swap_activations={key: neuron}, readout="mean", **options)
    except (TypeError, ValueError) as error:
        return None, f"convert(): {type(error).__name__}: {error}"
    missing = unapplied(snn, kwargs)
    if missing:
        return None, (
            f"convert() did not pass the template's arguments on to {len(missing)} neuron "
            f"settings, e.g. {missing[:3]}"
        )
    return snn, None


def neuron_dt(snn):
    sites = plan_of(snn).neurons()
    return sites[0].layer.dt if sites else 0.001


def sweep_record(snn, x, y, steps, references, sweep_batch):
    """The sweep of `snn` as a dict: rows, accuracy per T, the first T within each
    threshold of each reference, the net spikes per neuron per step."""
    sweep = ksc.latency_sweep(snn, x, y, steps, readout="mean", batch_size=sweep_batch, verbose=0)
    dt = neuron_dt(snn)
    within = {}
    for ref_name, ref in references.items():
        within[ref_name] = {f"{points:g}": sweep.steps_within(ref, points) for points in WITHIN} | {
            f"stays_{points:g}": latency.stays_within(sweep, ref, points) for points in WITHIN
        }
    return {
        **sweep.to_dict(),
        "accuracy": {str(r["n_steps"]): r["accuracy"] for r in sweep.rows},
        # The sweep's rate is the mean of every neuron's output / amplitude: net spikes
        # (a negative spike cancels a positive one).
        "net_spikes_per_neuron_per_step": {str(r["n_steps"]): r["rate"] * dt for r in sweep.rows},
        "within": within,
    }


def spike_stats(snn, x, steps, batch=10):
    """Spike counts per neuron per step on `x` over `max(steps)` steps: for each T, the
    mean absolute count (events) and net count over all neurons, the largest absolute
    count of any neuron in any step up to T, and the fraction of spike events that are
    negative; per layer at the longest T, the mean absolute and largest count."""
    probed, sites = rate_probe(snn)
    n_steps = max(steps)
    if probed is None:
        return {}
    abs_sum = np.zeros(n_steps)
    net_sum = np.zeros(n_steps)
    neg_sum = np.zeros(n_steps)
    max_abs = np.zeros(n_steps)
    layers = {s.name: {"neurons": 0, "abs": 0.0, "max": 0.0} for s in sites}
    n_images = 0
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        outs = probed.predict_on_batch(ksc.tile_time(xb, n_steps))
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for site, out in zip(sites, outs, strict=True):
            counts = np.rint(np.asarray(out) * (site.layer.dt / site.layer.amplitude))
            counts = counts.reshape(len(xb), n_steps, -1)
            layers[site.name]["neurons"] = counts.shape[-1]
            absolute = np.abs(counts)
            abs_sum += absolute.sum(axis=(0, 2))
            net_sum += counts.sum(axis=(0, 2))
            neg_sum += -np.minimum(counts, 0).sum(axis=(0, 2))
            step_max = absolute.max(axis=(0, 2))
            max_abs = np.maximum(max_abs, step_max)
            layers[site.name]["abs"] += float(absolute.sum())
            layers[site.name]["max"] = max(layers[site.name]["max"], float(step_max.max()))
        n_images += len(xb)
    n_neurons = sum(v["neurons"] for v in layers.values())
    cum_abs, cum_net, cum_neg = np.cumsum(abs_sum), np.cumsum(net_sum), np.cumsum(neg_sum)
    running_max = np.maximum.accumulate(max_abs)
    per_t = {}
    for t in steps:
        per_t[str(t)] = {
            "mean_abs": float(cum_abs[t - 1] / (n_images * n_neurons * t)),
            "mean_net": float(cum_net[t - 1] / (n_images * n_neurons * t)),
            "max": float(running_max[t - 1]),
            "negative_fraction": float(cum_neg[t - 1] / max(cum_abs[t - 1], 1.0)),
        }
    per_layer = {
        name: {
            "neurons": v["neurons"],
            "mean_abs": v["abs"] / (n_images * v["neurons"] * n_steps),
            "max": v["max"],
        }
        for name, v in layers.items()
    }
    return {"images": n_images, "neurons": n_neurons, "per_t": per_t, "per_layer": per_layer}


def method_variants(label, model, variants, data, steps, references, args, **options):
    """Convert `model` with every variant, sweep it and count spikes: `(records, snns)`."""
    (_, _), (xte, yte) = data
    records, snns = {}, {}
    for variant in variants:
        start = time.perf_counter()
        snn, error = convert_variant(model, variant, **dict(options))
        if error:
            log(f"  {label} {variant}: skipped: {error}")
            records[variant] = {"error": error}
            continue
        convert_seconds = time.perf_counter() - start
        start = time.perf_counter()
        record = sweep_record(snn, xte, yte, steps, references, args.sweep_batch)
        record["seconds"] = {"convert": convert_seconds, "sweep": time.perf_counter() - start}
        if args.spike_images > 0:
            start = time.perf_counter()
            record["spikes"] = spike_stats(snn, xte[: args.spike_images], steps)
            record["seconds"]["spike_stats"] = time.perf_counter() - start
        _, kwargs = make_neuron(variant)
        record["neuron"] = kwargs or VARIANTS[variant]
        records[variant] = record
        snns[variant] = snn
        ref_name = next(iter(references))
        accs = ", ".join(f"{record['accuracy'][str(t)]:.2f}" for t in steps)
        spikes = record.get("spikes", {}).get("per_t", {}).get(str(steps[-1]), {})
        log(
            f"  {label} {variant}: {accs} | within 1.0 of {ref_name}: "
            f"T={record['within'][ref_name]['1']}, 0.5: T={record['within'][ref_name]['0.5']}"
            + (
                f" | spikes/neuron/step at T={steps[-1]}: mean |n| {spikes['mean_abs']:.3f}, "
                f"max {spikes['max']:.0f}"
                if spikes
                else ""
            )
            + f" ({sum(record['seconds'].values()):.0f} s)"
        )
    return records, snns


def quantize_options(args):
    """`quantize_activations` options that differ from the package's defaults."""
    if args.per_channel_thresholds is None:
        return {}
    return {"per_channel": args.per_channel_thresholds}


def spread_variants(label, quantized, args, data, q_ann):
    """Each quantization level spread over `k` steps (`scale_firing_rates=1 / k`), run at
    `T = k L` for k = 2, 4, ... while `k L <= --max-steps`: per `--spread` variant, the
    accuracy at each such T (the mean output at T = k L is again the quantized ANN's for
    neurons with negative spikes; binary spikes get k steps per level to follow)."""
    (_, _), (xte, yte) = data
    records = {}
    for variant in args.spread:
        records[variant] = {}
        k = 2
        while k * args.levels <= args.max_steps:
            t = k * args.levels
            start = time.perf_counter()
            snn, error = convert_variant(
                quantized, variant, key=ksc.QuantizedReLU, scale_firing_rates=1.0 / k
            )
            if error:
                records[variant] = {"error": error}
                log(f"  {label} {variant} spread: skipped: {error}")
                break
            sweep = ksc.latency_sweep(
                snn, xte, yte, [t], readout="mean", batch_size=args.sweep_batch, verbose=0
            )
            acc = sweep.rows[0]["accuracy"]
            records[variant][str(k)] = {
                "steps": t,
                "accuracy": acc,
                "seconds": time.perf_counter() - start,
            }
            log(
                f"  {label} {variant}, each level over k={k} steps: T={t} {acc:.2f} "
                f"(quantized ANN {q_ann:.2f}; {time.perf_counter() - start:.0f} s)"
            )
            k *= 2
    return records


# ---------------------------------------------------------------------------- layer errors


def layer_errors(model, snn, x, y, steps, batch=10):
    """Per neuron layer: the relative L2 error `||mean_T(snn) - ann|| / ||ann||` (over all
    images and neurons of the layer) of the layer's output in the original units averaged
    over the first T steps, for each T in `steps`: `latency_sweep(..., reference=model)`."""
    sweep = ksc.latency_sweep(snn, x, y, steps=steps, reference=model, batch_size=batch, verbose=0)
    return {"steps": list(steps), "images": len(x), "layers": sweep.layer_errors}


def plot_layer_errors(errors, path, title):
    """One panel per variant, one line per layer (coloured by depth): error against T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(errors), figsize=(6 * len(errors), 4.5), squeeze=False, sharey=True
    )
    for ax, (variant, result) in zip(axes[0], errors.items(), strict=True):
        steps = result["steps"]
        names = list(result["layers"])
        colours = plt.cm.viridis(np.linspace(0, 0.95, len(names)))
        for colour, name in zip(colours, names, strict=True):
            values = np.maximum(result["layers"][name], 1e-6)
            ax.plot(steps, values, marker=".", color=colour, label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(steps, [str(t) for t in steps])
        ax.set_xlabel("timesteps T")
        ax.set_ylabel("relative L2 error of the mean output")
        ax.set_title(f"calibrated, {variant}")
        ax.grid(True, alpha=0.3)
        if len(names) <= 14:
            ax.legend(fontsize=7)
        else:  # too many layers for a legend: first (dark) to last (yellow)
            ax.text(
                0.02,
                0.02,
                f"{len(names)} layers, dark = first, yellow = last",
                transform=ax.transAxes,
                fontsize=8,
            )
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- throughput


def throughput(ann, configs, x, rounds, batch):
    """Images/s of `ann.predict(x)` and of each `snn.predict(tile_time(x, T))`, after one
    warm-up each, interleaved over `rounds`: medians and per-round ANN/SNN ratios."""
    variants = {"ANN": (ann, None)} | configs
    tiled = {t: ksc.tile_time(x, t) for _, t in configs.values()}
    for net, t in variants.values():  # warm-up: tracing
        net.predict(x if t is None else tiled[t], batch_size=batch, verbose=0)
    times = {label: [] for label in variants}
    for _ in range(rounds):
        for label, (net, t) in variants.items():
            start = time.perf_counter()
            net.predict(x if t is None else tiled[t], batch_size=batch, verbose=0)
            times[label].append(time.perf_counter() - start)
    ips = {label: [len(x) / s for s in v] for label, v in times.items()}
    result = {}
    for label, (_, t) in variants.items():
        result[label] = {"steps": t, "images_per_s": float(np.median(ips[label]))}
        result[label]["runs"] = ips[label]
        if t is not None:
            result[label]["ann_over_snn"] = float(
                np.median(np.array(ips["ANN"]) / np.array(ips[label]))
            )
    return result


# ---------------------------------------------------------------------------- one run


def quantized_method(label, quantized, q_ann, args, data, steps, timer, phase, references):
    """Sweep every variant of a quantization-aware network and spread its levels:
    `(records, snns, spread)`; `q_ann` is `(name, accuracy)` of its quantized ANN."""
    name, value = q_ann
    with timer(f"{phase}_variants"):
        records, snns = method_variants(
            label,
            quantized,
            args.variants,
            data,
            steps,
            {name: value, **references},
            args,
            key=ksc.QuantizedReLU,
        )
    spread = {}
    if args.spread:
        with timer(f"{phase}_spread"):
            spread = spread_variants(label, quantized, args, data, value)
    return records, snns, spread


def fine_tuned(model, seed, tag, args, data, steps, timer, ann, ann_long):
    """Quantization-aware fine-tuning of the trained ANN (`quantize_activations` with the
    package's defaults, `--qat-epochs` at the fine-tuning rate), converted and swept."""
    (xtr, ytr), (xte, yte) = data
    with timer("quantize_and_fine_tune"):
        # Reseeded: the fine-tuning does not depend on what ran before (the variants).
        keras.utils.set_random_seed(seed + 1000)
        quantized = ksc.quantize_activations(
            model, levels=args.levels, x=xtr[:CALIBRATION_IMAGES], **quantize_options(args)
        )
        train(quantized, xtr, ytr, args.qat_epochs, FINE_TUNE_LEARNING_RATE, f"{tag} QAT")
        q_ann = accuracy(quantized, xte, yte)
    log(f"{tag} quantized ANN (L={args.levels}): {q_ann:.2f} %")
    records, snns, spread = quantized_method(
        f"{tag} QAT L={args.levels}",
        quantized,
        ("quantized_ann", q_ann),
        args,
        data,
        steps,
        timer,
        "quantized",
        {"ann": ann, "ann_trained_as_long": ann_long},
    )
    return records, snns, spread, {"quantized_ann": q_ann}


def from_scratch(network, seed, tag, args, data, steps, timer, ann, ann_long):
    """Quantization-aware training from the start: `quantize_activations` of the untrained
    network with its BatchNormalization kept (`fold_batch_norm=False`, thresholds from
    `--scratch-threshold`), trained on the ANN's schedule and then as long as the ANN
    trained as long (`epochs` at the ANN's rate, `--qat-epochs` at the fine-tuning rate),
    BatchNormalization folded (`fold_batch_norm`), converted and swept."""
    (xtr, ytr), (xte, yte) = data
    with timer("train_from_scratch"):
        keras.utils.set_random_seed(seed + 2000)
        quantized = ksc.quantize_activations(
            build(network, args),
            levels=args.levels,
            initial_threshold=args.scratch_threshold,
            fold_batch_norm=False,
            **quantize_options(args),
        )
        label = f"{tag} QAT from scratch"
        train(quantized, xtr, ytr, args.epochs[network], LEARNING_RATE, label)
        train(quantized, xtr, ytr, args.qat_epochs, FINE_TUNE_LEARNING_RATE, f"{label} longer")
        trained = accuracy(quantized, xte, yte)
        quantized = ksc.fold_batch_norm(quantized)
        q_ann = accuracy(quantized, xte, yte)
    log(
        f"{tag} quantized ANN trained from scratch (L={args.levels}): {q_ann:.2f} % "
        f"({trained:.2f} % before folding BatchNormalization)"
    )
    records, snns, spread = quantized_method(
        f"{tag} QAT from scratch L={args.levels}",
        quantized,
        ("quantized_ann_from_scratch", q_ann),
        args,
        data,
        steps,
        timer,
        "from_scratch",
        {"ann": ann, "ann_trained_as_long": ann_long},
    )
    accuracies = {"quantized_ann_from_scratch": q_ann, "quantized_ann_from_scratch_bn": trained}
    return records, snns, spread, accuracies


def run_seed(network, seed, args, data):
    (xtr_raw, ytr), (xte_raw, yte) = data
    xtr, xte = prepare(network, xtr_raw), prepare(network, xte_raw)
    prepared = ((xtr, ytr), (xte, yte))
    steps = [2**k for k in range(int(np.log2(args.max_steps)) + 1)]
    epochs = args.epochs[network]
    timer = Timer()
    seed_start = time.perf_counter()
    tag = f"[{network} seed {seed}]"
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    model = build(network, args)
    log(f"{tag} {model.name}: {model.count_params():,} parameters; training {epochs} epochs")
    with timer("train_ann"):
        train(model, xtr, ytr, epochs, LEARNING_RATE, f"{tag} ANN")
    with timer("evaluate_ann"):
        ann = accuracy(model, xte, yte)
    log(f"{tag} ANN {ann:.2f} % ({timer.seconds['train_ann']:.0f} s)")

    # The original architecture trained as long as the quantization-aware network.
    with timer("train_ann_as_long"):
        longer = keras.models.clone_model(model)
        longer.set_weights(model.get_weights())
        train(longer, xtr, ytr, args.qat_epochs, FINE_TUNE_LEARNING_RATE, f"{tag} ANN longer")
        ann_long = accuracy(longer, xte, yte)
    del longer
    log(f"{tag} ANN trained {args.qat_epochs} epochs more: {ann_long:.2f} %")

    methods, references, quantized_anns, spread = {}, {}, {}, {}
    calibrated, calibrated_snns, qat, qat_snns = {}, {}, {}, {}
    if "calibrated" in args.methods:
        with timer("calibrate"):
            scales = ksc.calibrate(model, xtr[:CALIBRATION_IMAGES])
        with timer("calibrated_variants"):
            calibrated, calibrated_snns = method_variants(
                f"{tag} calibrated",
                model,
                args.variants,
                prepared,
                steps,
                {"ann": ann},
                args,
                key="relu",
                scale_firing_rates=scales,
            )
        methods["calibrated"], references["calibrated"] = calibrated, "ann"

    if "fine_tuned" in args.methods:
        qat, qat_snns, spread[f"quantization_aware_L{args.levels}"], q_ann = fine_tuned(
            model, seed, tag, args, prepared, steps, timer, ann, ann_long
        )
        quantized_anns.update(q_ann)
        methods[f"quantization_aware_L{args.levels}"] = qat
        references[f"quantization_aware_L{args.levels}"] = "quantized_ann"

    if "from_scratch" in args.methods:
        method = f"quantization_aware_from_scratch_L{args.levels}"
        records, _, spread[method], q_ann = from_scratch(
            network, seed, tag, args, prepared, steps, timer, ann, ann_long
        )
        quantized_anns.update(q_ann)
        methods[method], references[method] = records, "quantized_ann_from_scratch"

    run = {
        "seed": seed,
        "model": model.name,
        "parameters": model.count_params(),
        "epochs": epochs,
        "ann": ann,
        "ann_trained_as_long": ann_long,
        **quantized_anns,
        "steps": steps,
        "methods": methods,
        "method_references": references,
    }
    spread = {k: v for k, v in spread.items() if v}
    if spread:
        run["spread"] = spread
    if args.layer_errors and seed == args.seeds[0] and "calibrated" in args.methods:
        with timer("layer_errors"):
            run["layer_errors"] = {}
            for variant in ("default", "signed"):
                if variant not in calibrated_snns:  # not among --variants: convert it
                    snn, error = convert_variant(
                        model, variant, key="relu", scale_firing_rates=scales
                    )
                    if error:
                        run["layer_errors"][variant] = {"error": error}
                        log(f"{tag} layer errors {variant}: skipped: {error}")
                        continue
                    calibrated_snns[variant] = snn
                n = args.layer_error_images
                run["layer_errors"][variant] = layer_errors(
                    model, calibrated_snns[variant], xte[:n], yte[:n], steps
                )
                last = {k: v[-1] for k, v in run["layer_errors"][variant]["layers"].items()}
                log(
                    f"{tag} layer errors {variant} at T={steps[-1]}: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in last.items())
                )
        plottable = {k: v for k, v in run["layer_errors"].items() if "error" not in v}
        if plottable:
            path = plot_layer_errors(
                plottable,
                args.out / f"{network}_layer_errors.png",
                f"{model.name} on Fashion-MNIST, seed {seed}: per-layer error of the calibrated "
                f"spiking network ({args.layer_error_images} test images)",
            )
            log(f"{tag} wrote {path}")
    if args.throughput:
        with timer("throughput"):
            configs = {}
            for method, records, snns, ref in (
                ("calibrated", calibrated, calibrated_snns, "ann"),
                (f"quantization_aware_L{args.levels}", qat, qat_snns, "quantized_ann"),
            ):
                for variant, snn in snns.items():
                    t = records[variant]["within"][ref]["1"]
                    if t is not None:
                        configs[f"{method} {variant}"] = (snn, t)
            run["throughput"] = throughput(model, configs, xte, args.rounds, args.predict_batch)
            for label, r in run["throughput"].items():
                log(
                    f"{tag} {label}"
                    + (f" T={r['steps']}" if r["steps"] else "")
                    + f": {r['images_per_s']:.0f} images/s"
                    + (f" (ANN {r['ann_over_snn']:.1f}x)" if "ann_over_snn" in r else "")
                )
    run["seconds"] = {**timer.seconds, "total": time.perf_counter() - seed_start}
    log(f"{tag} done in {run['seconds']['total']:.0f} s")
    return run


# ---------------------------------------------------------------------------- output


def git_state():
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.split("\n")
        state = {"commit": commit, "modified": [line[3:] for line in dirty if line.strip()]}
    except OSError:
        state = {}
    # The package that ran: this checkout's, or an installed copy (which may differ).
    state["package_path"] = str(pathlib.Path(ksc.__file__).parent)
    state["package_is_this_checkout"] = pathlib.Path(ksc.__file__).parent == ROOT / (
        "keras_spiking_conv"
    )
    return state


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def first_within(steps, accuracies, reference, points):
    """The first T whose accuracy is within `points` of `reference` (means over seeds: a
    rounding tolerance of 1e-9 points), or None."""
    for t, a in zip(steps, accuracies, strict=True):
        if a >= reference - points - 1e-9:
            return t
    return None


def every_seed(records, ref, key):
    """The largest per-seed first T (the T from which every seed was within), or None."""
    values = [r["within"][ref][key] for r in records]
    return None if any(v is None for v in values) else max(values)


SECONDS, TOTAL = "seconds", "total"

# Reference accuracies of a run, and how the summary names them.
REFERENCES = {
    "ann": "ANN",
    "ann_trained_as_long": "ANN trained as long",
    "quantized_ann": "quantized ANN (fine-tuned)",
    "quantized_ann_from_scratch": "quantized ANN trained from scratch",
}


def network_summary(document):
    runs = document["runs"]
    steps = runs[0]["steps"]
    settings = document["settings"]
    env = document["environment"]
    means = {
        k: float(np.mean([r[k] for r in runs])) for k in REFERENCES if all(k in r for r in runs)
    }
    lines = [
        f"## {document['network']} ({runs[0]['model']}, {runs[0]['parameters']:,} parameters)",
        "",
        "; ".join(f"`{c}`" for c in document.get("commands", [document["command"]])),
        "",
        f"Seeds {[r['seed'] for r in runs]}; {settings['train_images']:,} training images, "
        f"{runs[0]['epochs']} epochs; {settings['test_images']:,} test images; L = "
        f"{settings['levels']}, {settings['qat_epochs']} fine-tuning epochs; "
        f"{env['backend']} ({env.get('tensorflow', env.get('jax', env.get('torch', '')))}), "
        f"Keras {env['keras']}, {env.get('cpu_model', env['processor'])}, {env['cpus']} CPUs; "
        + (
            f"activations {settings.get('mobilenet_activation')}; "
            if document["network"] == "mobilenet"
            else ""
        )
        + f"{sum(r[SECONDS][TOTAL] for r in runs) / 60:.1f} minutes "
        f"({', '.join(f'{r[SECONDS][TOTAL] / 60:.1f}' for r in runs)} per seed).",
        "",
        ", ".join(f"{REFERENCES[k]} {v:.2f} %" for k, v in means.items()) + " (means over seeds).",
        "",
        "| method | variant | "
        + " | ".join(f"T={t}" for t in steps)
        + " | first T within 1.0 / 0.5 of ref (mean; every seed) | within 1.0 / 0.5 of ANN "
        f"| spikes/neuron/step at T={steps[-1]}: mean abs (net) | max per step |",
        "|---|---|" + "---|" * (len(steps) + 4),
    ]
    notes = []
    methods = list(runs[0]["methods"])
    for method in methods:
        ref = reference_of(runs[0], method)
        for variant in runs[0]["methods"][method]:
            records = [r["methods"][method][variant] for r in runs]
            errors = [rec["error"] for rec in records if "error" in rec]
            if errors:
                lines.append(
                    f"| {method} | {variant} | " + " | ".join("-" for _ in steps) + " | "
                    "skipped (see below) | | | |"
                )
                notes.append(f"- {method} {variant}: {errors[0]}")
                continue
            acc = np.mean([[rec["accuracy"][str(t)] for t in steps] for rec in records], axis=0)
            ref_mean = float(np.mean([r[ref] for r in runs]))
            within_ref = [first_within(steps, acc, ref_mean, p) for p in WITHIN]
            within_ann = [first_within(steps, acc, means["ann"], p) for p in WITHIN]
            seeds_ref = [every_seed(records, ref, f"{p:g}") for p in WITHIN]
            cells = [f"{a:.2f}" for a in acc]
            spikes = [rec.get("spikes", {}).get("per_t", {}).get(str(steps[-1])) for rec in records]
            if all(spikes):
                mean_abs = np.mean([s["mean_abs"] for s in spikes])
                mean_net = np.mean([s["mean_net"] for s in spikes])
                spike_cells = [
                    f"{mean_abs:.3f} ({mean_net:.3f})",
                    f"{max(s['max'] for s in spikes):.0f}",
                ]
            else:
                spike_cells = ["", ""]
            lines.append(
                f"| {method} | {variant} | "
                + " | ".join(cells)
                + f" | {' / '.join(str(v or '-') for v in within_ref)} "
                f"({' / '.join(str(v or '-') for v in seeds_ref)}) "
                f"| {' / '.join(str(v or '-') for v in within_ann)} | "
                + " | ".join(spike_cells)
                + " |"
            )
    spread_rows = spread_summary(runs, steps, means)
    if notes:
        lines += ["", "Skipped variants:", "", *notes]
    if spread_rows:
        lines += [
            "",
            "Each quantization level spread over k steps (`scale_firing_rates=1/k`), run at "
            "T = k L (mean over seeds; the reference is the quantized ANN it was converted "
            "from):",
            "",
            "| method | variant | k | T | accuracy | below the reference | below the ANN |",
            "|---|---|---|---|---|---|---|",
            *spread_rows,
        ]
    throughput_runs = [r["throughput"] for r in runs if "throughput" in r]
    if throughput_runs:
        lines += [
            "",
            "Time to accuracy (`--throughput`, smallest T within 1.0 point of the method's "
            "reference; median images/s over rounds, then the mean over seeds):",
            "",
            "| configuration | T (per seed) | images/s | ANN images/s over it |",
            "|---|---|---|---|",
        ]
        for label in throughput_runs[0]:
            found = [t[label] for t in throughput_runs if label in t]
            lines.append(
                f"| {label} | {', '.join(str(f['steps'] or '-') for f in found)} "
                f"| {np.mean([f['images_per_s'] for f in found]):.0f} | "
                + (
                    f"{np.mean([f['ann_over_snn'] for f in found]):.2f}"
                    if all("ann_over_snn" in f for f in found)
                    else ""
                )
                + " |"
            )
    return "\n".join(lines)


def reference_of(run, method):
    """The reference accuracy's key of a method (runs before `method_references`: the ANN
    for calibrated conversion, the quantized ANN for quantization-aware)."""
    if method in run.get("method_references", {}):
        return run["method_references"][method]
    return "ann" if method == "calibrated" else "quantized_ann"


def spreads_of(run):
    """`{method: {variant: {k: record}}}` (runs before `method_references` kept one
    method's `{variant: ...}`: the fine-tuned quantization-aware network's)."""
    spread = run.get("spread", {})
    if "method_references" in run:
        return spread
    method = next((m for m in run["methods"] if m.startswith("quantization_aware")), None)
    return {method: spread} if spread and method else {}


def spread_summary(runs, steps, means):
    """Table rows of the runs' `spread` records (means over seeds)."""
    spreads = [spreads_of(r) for r in runs]
    rows = []
    for method, by_variant in spreads[0].items():
        if not all(method in s for s in spreads):
            continue
        ref = means[reference_of(runs[0], method)]
        for variant, by_k in by_variant.items():
            if "error" in by_k:
                rows.append(f"| {method} | {variant} | - | - | skipped: {by_k['error']} | | |")
                continue
            for k, record in by_k.items():
                acc = float(np.mean([s[method][variant][k]["accuracy"] for s in spreads]))
                rows.append(
                    f"| {method} | {variant} | {k} | {record['steps']} | {acc:.2f} | "
                    f"{ref - acc:.2f} | {means['ann'] - acc:.2f} |"
                )
    return rows


def write_summary(out):
    documents = [
        json.loads((out / f"{name}.json").read_text())
        for name in NETWORK_NAMES
        if (out / f"{name}.json").exists()
    ]
    text = "\n\n".join(
        [
            "# Low-latency conversion of deeper networks (Fashion-MNIST)",
            "Written by `benchmarks/depth.py` (see its docstring). Accuracies in %, means over "
            "seeds. ref: the ANN for calibrated conversion, the quantized ANN for "
            "quantization-aware (fine-tuned or trained from scratch). First T within: on the "
            "mean accuracy against the mean reference; in brackets the T from which every seed "
            "was within (the largest "
            "per-seed first T). Spikes: per neuron per step on the first test images "
            "(`--spike-images`), mean absolute count (events) with the net count in brackets, "
            "and the largest count of any neuron in any step.",
            *(network_summary(d) for d in documents),
        ]
    )
    (out / "summary.md").write_text(text + "\n")
    return text


# ---------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", choices=NETWORK_NAMES, default=list(NETWORK_NAMES))
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--train-images", type=int)
    parser.add_argument("--test-images", type=int)
    parser.add_argument(
        "--epochs", type=int, help="ANN epochs for every network (default 4, mobilenet 6)"
    )
    parser.add_argument("--qat-epochs", type=int)
    parser.add_argument("--levels", type=int, help="QuantizedReLU levels L (default 4)")
    parser.add_argument("--max-steps", type=int, help="sweep T = 1, 2, 4, ... up to this (64)")
    parser.add_argument("--blocks", type=int, help="resnet: basic blocks per stage (default 3)")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS))
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=list(METHODS),
        help="calibrated conversion, quantization-aware fine-tuning of the ANN, "
        "quantization-aware training from scratch (default: all three)",
    )
    parser.add_argument(
        "--scratch-threshold",
        type=float,
        default=SCRATCH_THRESHOLD,
        help="from_scratch: every QuantizedReLU's initial threshold (default %(default)s)",
    )
    parser.add_argument(
        "--spread",
        nargs="*",
        choices=tuple(VARIANTS),
        help="quantization-aware variants also run with each level over k steps "
        "(scale_firing_rates=1/k) at T = k L (default: binary_signed; none: --spread)",
    )
    thresholds = parser.add_mutually_exclusive_group()
    thresholds.add_argument(
        "--per-layer-thresholds",
        dest="per_channel_thresholds",
        action="store_false",
        default=None,
        help="quantize_activations(per_channel=False): one threshold per layer",
    )
    thresholds.add_argument(
        "--per-channel-thresholds",
        dest="per_channel_thresholds",
        action="store_true",
        help="quantize_activations(per_channel=True) (the package's default where it has one)",
    )
    parser.add_argument(
        "--mobilenet-activation",
        choices=("auto", "relu6", "relu"),
        default="auto",
        help="mobilenet: keep ReLU6 (needs a converter that clips neurons) or use plain ReLU; "
        "auto: relu6 if the installed converter makes ReLU6 neurons, else relu",
    )
    parser.add_argument(
        "--sweep-batch",
        type=int,
        default=25,
        help="latency_sweep batch size (it holds every neuron's activity over all T steps)",
    )
    parser.add_argument(
        "--spike-images",
        type=int,
        default=200,
        help="test images for the spike statistics (0: none)",
    )
    parser.add_argument(
        "--layer-errors",
        action="store_true",
        help="per-layer error of the calibrated default and signed variants (first seed)",
    )
    parser.add_argument("--layer-error-images", type=int, default=200)
    parser.add_argument(
        "--throughput", action="store_true", help="time predict at the smallest T within 1.0"
    )
    parser.add_argument("--rounds", type=int, default=3, help="--throughput rounds")
    parser.add_argument("--predict-batch", type=int, default=200, help="--throughput batch")
    parser.add_argument("--quick", action="store_true", help="a reduced run (under 10 minutes)")
    parser.add_argument("--wait-data", type=float, default=600, help="seconds to wait for data")
    parser.add_argument("--out", type=pathlib.Path, help="results folder")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs of other seeds already in {out}/{network}.json (same settings)",
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="only rebuild summary.md in --out"
    )
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.spread is None:
        args.spread = [v for v in ("binary_signed",) if v in VARIANTS]
    if isinstance(args.epochs, int):
        args.epochs = dict.fromkeys(NETWORK_NAMES, args.epochs)
    if args.mobilenet_activation == "auto":
        args.mobilenet_activation = "relu6" if converts_relu6() else "relu"
    if args.out is None:
        args.out = HERE / "results" / ("depth_quick" if args.quick else "depth")
    if args.max_steps < 1:
        parser.error("--max-steps must be >= 1")
    return args


# Settings that may differ between runs merged into one file (--merge).
MERGEABLE = ("seeds", "networks", "merge", "out", "throughput", "layer_errors")


def merged_runs(path, settings, args):
    """The runs and commands already in `path` for seeds this run does not repeat, when
    its settings match this run's in everything but `MERGEABLE` (else an error)."""
    if not path.exists():
        return [], []
    document = json.loads(path.read_text())
    old = {k: v for k, v in document["settings"].items() if k not in MERGEABLE}
    new = {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in MERGEABLE}
    if old != new:
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise SystemExit(
            f"--merge: {path} was written with other settings ({', '.join(differ)}); "
            "run without --merge to replace it, or with --out to write elsewhere"
        )
    kept = [r for r in document["runs"] if r["seed"] not in args.seeds]
    return kept, document.get("commands", [document["command"]])


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        print(write_summary(args.out))
        return
    start = time.perf_counter()
    log(
        f"depth benchmark: networks {args.networks}, seeds {args.seeds}, "
        f"{args.train_images} training / {args.test_images} test images, variants "
        f"{args.variants}, T up to {args.max_steps}; results in {args.out}"
    )
    data = load_data(args.train_images, args.test_images, args.wait_data)
    env = bench.environment()
    versions = {"keras_spiking_conv": ksc.__version__, "numpy": np.__version__, **git_state()}
    settings = {
        k: (str(v) if isinstance(v, pathlib.Path) else v)
        for k, v in vars(args).items()
        if k not in ("summary_only",)
    }
    settings.update(
        learning_rate=LEARNING_RATE,
        fine_tune_learning_rate=FINE_TUNE_LEARNING_RATE,
        batch_size=BATCH_SIZE,
        calibration_images=CALIBRATION_IMAGES,
        variant_specs={v: VARIANTS[v] for v in args.variants},
        converter_neuron=CONVERTER_NEURON,
        inputs="pixels / 255; mobilenet: zero-padded to 32x32",
        mobilenet_activation=args.mobilenet_activation,
        data="Fashion-MNIST (Xiao, Rasul and Vollgraf 2017; Zalando, MIT), Debian "
        "dataset-fashion-mnist, first train_images / test_images images",
    )
    command = "python " + " ".join(sys.argv)
    for network in args.networks:
        path = args.out / f"{network}.json"
        kept, commands = merged_runs(path, settings, args) if args.merge else ([], [])
        network_start = time.perf_counter()
        load_before = os.getloadavg()
        runs = []
        for seed in args.seeds:
            runs.append(run_seed(network, seed, args, data))
            # Written after every seed, so a stopped run keeps what it finished.
            document = {
                "network": network,
                "command": command,
                "commands": [*commands, command],
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "environment": env,
                "versions": versions,
                "settings": {**settings, "seeds": [r["seed"] for r in kept + runs]},
                "load_average_before": load_before,
                "load_average_after": os.getloadavg(),
                "wall_seconds": time.perf_counter() - network_start,
                "runs": sorted(kept + runs, key=lambda r: r["seed"]),
            }
            path.write_text(json.dumps(document, indent=1))
        log(f"[{network}] wrote {path} ({document['wall_seconds']:.0f} s)")
    text = write_summary(args.out)
    log(f"\ntotal {time.perf_counter() - start:.0f} s; wrote {args.out / 'summary.md'}\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
