"""Temporal models on real sequential data: Fashion-MNIST read one row per frame.

Each image is a sequence of 28 frames of 28 features (its rows, scaled to [0, 1]).
Three Keras models are trained on all 60,000 training images (Debian's
`dataset-fashion-mnist`, `keras_spiking_conv.datasets.load_fashion_mnist`):

- `conv1d`: causal dilated Conv1D (ReLU) x 3, global average pooling over time, Dense;
- `simple_rnn`: Dense (ReLU), SimpleRNN (ReLU), Dense on its last frame;
- `gru`: Dense (ReLU), GRU (its gates and tanh stay rate: the spiking Dense feeds a
  rate GRU), Dense on its last frame.

Each is converted with `convert(model, temporal=True)` (checked equal to the ANN on the
test images: the rate row), then made spiking (every ReLU, the SimpleRNN's included, a
spiking ReLU) with `calibrate`'s scales (the 99th percentile of each channel's
activations over images and frames: one spike per step there), at `steps_per_frame` k
= 1, 2, 4, 8 (28 k simulation steps per image, every one counted). Accuracy on the
first `--test-images` test images; the streaming cost is the time of one frame through
`Stream` for a batch of 100, median of 20 frames (after a warm-up frame).

Quantization-aware rows: `quantize_activations(model, levels)` for `--qat-levels`
(the SimpleRNN's ReLU quantized inside its recurrence), fine-tuned `--qat-epochs`
epochs, converted with spiking ReLUs with negative spikes at each k <= levels
(`scale_firing_rates=levels / k`: at most levels / k spikes a step); the quantized
ANN's accuracy beside them, and each spiking layer's mean net spikes per neuron per step
(`firing_rates` on 500 test sequences).

    python benchmarks/temporal.py                 # about 30 minutes on 2 cores
    python benchmarks/temporal.py --quick         # a smoke run

Results: benchmarks/results/temporal/ (JSON and markdown) and docs/temporal.md.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras_spiking_conv as ksc  # noqa: E402
from keras_spiking_conv import datasets  # noqa: E402
from keras_spiking_conv.callbacks import firing_rates  # noqa: E402

L = keras.layers


def build(name):
    inp = keras.Input((None, 28), name="rows")
    if name == "conv1d":
        h = inp
        for i, dilation in enumerate((1, 2, 4)):
            h = L.Conv1D(
                64, 3, padding="causal", dilation_rate=dilation, activation="relu", name=f"c{i}"
            )(h)
        h = L.GlobalAveragePooling1D(name="gap")(h)
    elif name == "simple_rnn":
        h = L.Dense(64, activation="relu", name="embed")(inp)
        h = L.SimpleRNN(128, activation="relu", name="rnn")(h)
    elif name == "gru":
        h = L.Dense(64, activation="relu", name="embed")(inp)
        h = L.GRU(128, name="gru")(h)
    else:
        raise ValueError(name)
    return keras.Model(inp, L.Dense(10, name="out")(h), name=name)


def accuracy(model, x, y, batch_size=250):
    out = model.predict(x, batch_size=batch_size, verbose=0)
    return 100.0 * float(np.mean(np.argmax(out, axis=-1) == y))


def frame_cost(snn, x, frames=20):
    """Median seconds of one frame through a `Stream`, batch `len(x)`."""
    stream = ksc.Stream(snn)
    stream(x[:, :1])  # warm-up
    times = []
    for t in range(1, frames + 1):
        start = time.perf_counter()
        stream(x[:, t % 28 : t % 28 + 1])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantization_aware(model, levels, xtr, ytr, xte, yte, args):
    """`quantize_activations(levels)` (the SimpleRNN's ReLU quantized inside its
    recurrence), fine-tuned for `args.qat_epochs`; then spiking ReLUs with negative
    spikes (clipped at the learned threshold, as the QuantizedReLU is) at each
    `steps_per_frame` k <= levels of `args.steps`, `scale_firing_rates=levels / k`: at
    most `levels / k` spikes a step, `levels` a frame, so each frame computes the
    quantized ANN's levels. Returns the quantized ANN's accuracy, the spiking model's
    at each k, and each spiking layer's mean (net) spikes per neuron per step."""
    keras.utils.set_random_seed(args.seed)
    q = ksc.quantize_activations(model, levels=levels, x=xtr[:2000])
    q.compile(
        optimizer=keras.optimizers.Adam(args.qat_lr, clipnorm=args.qat_clipnorm),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    history = q.fit(
        xtr,
        ytr,
        epochs=args.qat_epochs,
        batch_size=128,
        verbose=2,
        validation_data=(xte, yte),
    )
    result = {
        "quantized_ann": accuracy(q, xte, yte),
        "fine_tune_seconds": time.perf_counter() - start,
        "test_accuracy_per_epoch": [100 * a for a in history.history["val_accuracy"]],
        "spiking": {},
        "spikes_per_step": {},
    }
    for k in [k for k in args.steps if k <= levels]:
        snn = ksc.convert(
            q,
            temporal=True,
            steps_per_frame=k,
            swap_activations={ksc.QuantizedReLU: ksc.SpikingReLU(negative_spikes=True)},
            scale_firing_rates=levels / k,
        )
        result["spiking"][k] = accuracy(snn, xte, yte)
        rates = firing_rates(snn, xte[:500])
        result["spikes_per_step"][k] = {name: r["mean"] * 0.001 for name, r in rates.items()}
    print(model.name, "qat levels", levels, json.dumps(result), flush=True)
    return result


def markdown(results, steps):
    """The results as markdown tables: calibrated, then quantization-aware."""
    lines = [
        "| network | ANN | rate conversion | "
        + " | ".join(f"spiking, k = {k} ({28 * k} steps)" for k in steps)
        + " | ms per frame (batch 100), k = "
        + "/".join(str(k) for k in steps)
        + " |",
        "|---|---|---|" + "---|" * len(steps) + "---|",
    ]
    for r in results:
        lines.append(
            f"| {r['network']} | {r['ann']:.2f} | {r['rate']:.2f} | "
            + " | ".join(f"{r['spiking'][k]:.2f}" for k in steps)
            + " | "
            + " / ".join(f"{r['frame_ms'][k]:.1f}" for k in steps)
            + " |"
        )
    lines += [
        "",
        "| network | ANN | levels | quantized ANN | "
        + " | ".join(f"spiking, k = {k}" for k in steps)
        + " | mean spikes per neuron per step (per spiking layer), k = "
        + "/".join(str(k) for k in steps)
        + " |",
        "|---|---|---|---|" + "---|" * len(steps) + "---|",
    ]
    for r in results:
        for levels, qat in r["qat"].items():
            spikes = "; ".join(
                f"k={k}: " + ", ".join(f"{v:.3f}" for v in per_layer.values())
                for k, per_layer in qat["spikes_per_step"].items()
            )
            lines.append(
                f"| {r['network']} | {r['ann']:.2f} | {levels} | {qat['quantized_ann']:.2f} | "
                + " | ".join(
                    f"{qat['spiking'][k]:.2f}" if k in qat["spiking"] else "-" for k in steps
                )
                + f" | {spikes} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--networks", nargs="+", default=["conv1d", "simple_rnn", "gru"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=60000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--qat-levels", type=int, nargs="*", default=[4, 8])
    parser.add_argument("--qat-epochs", type=int, default=8)
    parser.add_argument("--qat-lr", type=float, default=5e-4)
    parser.add_argument(
        "--qat-clipnorm", type=float, default=None, help="gradient norm clip of fine-tuning"
    )
    parser.add_argument("--out", default="benchmarks/results/temporal")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.train_images, args.test_images, args.steps = 1, 3000, 200, [1, 4]
        args.qat_levels, args.qat_epochs = [4], 1
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist()
    xtr = (xtr[: args.train_images] / 255.0).astype("float32")
    ytr = ytr[: args.train_images].astype("int64")
    xte = (xte[: args.test_images] / 255.0).astype("float32")
    yte = yte[: args.test_images].astype("int64")
    results = []
    for name in args.networks:
        keras.utils.set_random_seed(args.seed)
        model = build(name)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        start = time.perf_counter()
        model.fit(xtr, ytr, epochs=args.epochs, batch_size=128, verbose=2)
        train_seconds = time.perf_counter() - start
        ann = accuracy(model, xte, yte)
        rate = ksc.convert(model, temporal=True)
        row = {
            "network": name,
            "ann": ann,
            "rate": accuracy(rate, xte, yte),
            "train_seconds": train_seconds,
            "spiking": {},
            "frame_ms": {},
        }
        scales = ksc.calibrate(model, xtr[:2000])
        for k in args.steps:
            snn = ksc.convert(
                model,
                temporal=True,
                steps_per_frame=k,
                swap_activations={"relu": "spiking_relu"},
                scale_firing_rates=scales,
            )
            row["spiking"][k] = accuracy(snn, xte, yte)
            row["frame_ms"][k] = 1000 * frame_cost(snn, xte[:100])
            print(name, "k", k, row["spiking"][k], f"{row['frame_ms'][k]:.2f} ms/frame", flush=True)
        row["calibrated_layers"] = sorted(scales)
        row["qat"] = {}
        for levels in args.qat_levels:
            row["qat"][levels] = quantization_aware(model, levels, xtr, ytr, xte, yte, args)
        print(json.dumps(row), flush=True)
        results.append(row)
    os.makedirs(args.out, exist_ok=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "args": vars(args),
    }
    suffix = ("_quick" if args.quick else "") + (f"_seed{args.seed}" if args.seed else "")
    with open(Path(args.out) / f"fashion_rows{suffix}.json", "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    table = markdown(results, args.steps)
    print(table)
    with open(Path(args.out) / f"fashion_rows{suffix}.md", "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    main()
