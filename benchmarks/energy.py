"""Energy of the tutorial convnet: spikes, synops and joules per image against the ANN.

Trains the tutorial convnet once (seed 0, 2 epochs on the bundled 8,000 MNIST images,
raw pixels, as `demo`), then on the 2,000 bundled test images, for T = 1, 2, 4, 8, 16,
32 (one simulation of 32 steps scores every shorter run):
- the tutorial's configuration: synapse 0.01, scale 10, the last step read out,
- calibrated scales (`calibrate` on 2,000 training images; mean readout),
and counts spikes, synaptic operations and MACs with `latency_sweep(..., energy=True)`
(the counts of `estimate_energy`). The table: the tutorial configuration at 30 steps
(its own duration; 32 is the sweep's closest, and 30 is run separately), the calibrated
one at 4 and 8 steps, and the ANN.

Usage:
    python benchmarks/energy.py            # writes benchmarks/results/energy/mnist.{json,md}
                                           # and docs/energy_*.png

One seed on one machine: accuracies and spike counts move with the seed (see
docs/latency.md for the spread over seeds); the MACs and the fan-outs do not.
"""

import json
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402
from keras_spiking_conv import demo, plotting  # noqa: E402
from keras_spiking_conv.datasets import load_bundled_mnist  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "energy"
DOCS = ROOT / "docs"
STEPS = (1, 2, 4, 8, 16, 32)
DEVICES = ("loihi", "spinnaker2", "horowitz_45nm", "gpu", "cpu")


def load():
    (xtr, ytr), (xte, yte) = load_bundled_mnist()
    return (demo.prepare(xtr[:8000]), np.asarray(ytr[:8000])), (
        demo.prepare(xte[:2000]),
        np.asarray(yte[:2000]),
    )


def accuracy(snn, x, y, n_steps):
    out = snn.predict(ksc.tile_time(x, n_steps), batch_size=100, verbose=0)
    scores = out[:, -1] if out.ndim == 3 else out
    return 100 * float(np.mean(scores.argmax(-1) == y))


def row(label, n_steps, acc, report):
    return {
        "configuration": label,
        "n_steps": n_steps,
        "accuracy": acc,
        "spikes": report.total_spikes,
        "synops": report.total_synops,
        "dense_macs": report.dense_macs,
        "neuron_updates": report.neuron_updates,
        "synapse_updates": report.synapse_updates,
        "energy": {d: report.energy(d) for d in DEVICES},
    }


def table(rows, ann):
    lines = [
        "| configuration | steps | accuracy % | spikes | synops | MACs (dense) | "
        "neuron + synapse updates | " + " | ".join(f"µJ {d}" for d in DEVICES) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(DEVICES),
    ]
    for r in rows:
        energy = " | ".join(f"{1e6 * r['energy'][d]:.3g}" for d in DEVICES)
        lines.append(
            f"| {r['configuration']} | {r['n_steps']} | {r['accuracy']:.2f} | "
            f"{r['spikes']:,.0f} | {r['synops']:.3g} | {r['dense_macs']:.3g} | "
            f"{r['neuron_updates'] + r['synapse_updates']:.3g} | {energy} |"
        )
    # An ANN has no spikes to send: on the event-based chips it is not priced.
    energy = " | ".join(
        "-"
        if ksc.energy.get_device(d).spiking and d != "horowitz_45nm"
        else f"{1e6 * ann['energy'][d]:.3g}"
        for d in DEVICES
    )
    lines.append(
        f"| ANN (one pass) | 1 | {ann['accuracy']:.2f} | | | {ann['macs']:.3g} | "
        f"{ann['neurons']:.3g} | {energy} |"
    )
    return "\n".join(lines)


def main():
    start = time.perf_counter()
    (xtr, ytr), (xte, yte) = load()
    model = demo.build_model(0)
    demo.train_base(model, xtr, ytr, epochs=2, verbose=0)
    ann_accuracy = 100 * float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
    spiking = {demo.relu_function(): "spiking_relu"}
    tutorial = ksc.convert(model, swap_activations=spiking, synapse=0.01, scale_firing_rates=10)
    scales = ksc.calibrate(model, xtr[:2000])
    calibrated = ksc.convert(model, swap_activations=spiking, scale_firing_rates=scales)

    sweeps = {
        "tutorial (synapse 0.01, scale 10, last)": ksc.latency_sweep(
            tutorial, xte, yte, STEPS, readout="last", verbose=0, energy=True
        ),
        "calibrated (mean)": ksc.latency_sweep(calibrated, xte, yte, STEPS, verbose=0, energy=True),
    }
    tutorial_30 = ksc.estimate_energy(tutorial, ksc.tile_time(xte, 30))
    calibrated_sweep = sweeps["calibrated (mean)"]
    rows = [
        row(
            "tutorial: synapse 0.01, scale 10, last step",
            30,
            accuracy(tutorial, xte, yte, 30),
            tutorial_30,
        )
    ]
    for t in (4, 8):
        rows.append(
            row(
                "calibrated (99th percentile, per channel), mean over time",
                t,
                calibrated_sweep.accuracy(t),
                calibrated_sweep.reports[t],
            )
        )
    ann = {
        "accuracy": ann_accuracy,
        "macs": tutorial_30.macs,
        "neurons": tutorial_30.neurons,
        "energy": {d: tutorial_30.ann_energy(d) for d in DEVICES},
    }
    text = table(rows, ann)
    layers = tutorial_30.summary(devices=("loihi", "gpu"))
    results = {
        "backend": keras.backend.backend(),
        "seed": 0,
        "n_test": len(xte),
        "ann": ann,
        "rows": rows,
        "tutorial_30_layers": tutorial_30.to_dict(devices=DEVICES),
        "calibrated_8_layers": calibrated_sweep.reports[8].to_dict(devices=DEVICES),
        "sweeps": {
            label: {"rows": sweep.rows, "readout": sweep.readout} for label, sweep in sweeps.items()
        },
        "seconds": time.perf_counter() - start,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mnist.json").write_text(json.dumps(results, indent=1))
    sweep_tables = "\n\n".join(f"{label}\n\n{s.table()}" for label, s in sweeps.items())
    (OUT / "mnist.md").write_text(
        f"ANN accuracy {ann_accuracy:.2f} %; backend {keras.backend.backend()}; seed 0\n\n"
        f"{text}\n\nPer layer, tutorial configuration, 30 steps:\n\n```text\n{layers}\n```\n\n"
        f"Sweeps:\n\n{sweep_tables}\n"
    )
    print(text, "\n\n", layers, "\n\n", sweep_tables, sep="")

    # Plots: energy against timesteps, firing rates, and the tutorial's three panels.
    ksc.plot_latency(
        sweeps,
        DOCS / "energy_sweep.png",
        reference=ann_accuracy,
        title="MNIST convnet: accuracy, activity and energy (Loihi) against timesteps",
    )
    plotting.plot_rate_histogram(
        tutorial_30,
        DOCS / "energy_rates.png",
        title="Firing rates, tutorial configuration (30 steps, 2,000 test images)",
    )
    probed = ksc.probe(tutorial, ["conv0"])
    outputs, conv0 = probed.predict(ksc.tile_time(xte[:1], 30), verbose=0)
    plotting.plot_output_over_time(
        xte[0],
        conv0[0],
        outputs[0],
        DOCS / "energy_output.png",
        title="Tutorial configuration: input, spikes of 20 conv0 neurons, output",
    )
    plotting.plot_spike_raster(
        conv0[0],
        DOCS / "energy_raster.png",
        max_neurons=40,
        title="conv0: the 40 most active neurons, one test image, 30 steps",
    )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
