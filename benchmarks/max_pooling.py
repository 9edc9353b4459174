"""Max pooling in spiking networks: pooling each step's spikes against pooling the
accumulated inputs (`convert(max_pooling=...)`), on a VGG-style net with max pooling.

The network is `depth.py`'s VGG (six 3x3 Conv-BN-ReLU, 32-32-64-64-128-128) with 2x2
*max* pooling after the 2nd and 4th convolution and global *max* pooling before the
Dense(10). For each seed: train it (Adam 1e-3, batch 128), `calibrate` on 2,000 training
images, convert with the signed neuron (`SpikingReLU(negative_spikes=True)`, the
converter's other settings) once per `max_pooling` ("per_step", "accumulated"), and
sweep T = 1, 2, 4, ... `--max-steps` on the test images (mean readout). Then
quantization-aware: `quantize_activations(levels=4)`, `--qat-epochs` of Adam 1e-4, the
same two conversions of the quantized net (`swap_activations={QuantizedReLU: signed}`).

Usage (from the repository root):
    python benchmarks/max_pooling.py                 # 60,000 / 2,000 images, seed 0
    python benchmarks/max_pooling.py --train-images 10000 --epochs 1 --test-images 500
Writes benchmarks/results/max_pooling.json and .md (or `--out`).

Data: Fashion-MNIST (Xiao, Rasul and Vollgraf 2017; Zalando Research, MIT license), from
Debian's `dataset-fashion-mnist`, the first `--train-images` / `--test-images` images.
"""

import argparse
import json
import pathlib
import sys
import time

import keras
import numpy as np

import keras_spiking_conv as ksc

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402
import depth  # noqa: E402

L = keras.layers
POOLINGS = ("per_step", "accumulated")


def build_vgg_max():
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for i, filters in enumerate((32, 32, 64, 64, 128, 128)):
        x = depth.conv_bn_relu(x, filters)
        if i in (1, 3):
            x = L.MaxPooling2D(2)(x)
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, L.Dense(10)(x), name="vgg_max")


def sweeps(model, key, x, y, steps, **options):
    signed = ksc.SpikingReLU(negative_spikes=True)
    out = {}
    for pooling in POOLINGS:
        snn = ksc.convert(
            model, swap_activations={key: signed}, readout="mean", max_pooling=pooling, **options
        )
        sweep = ksc.latency_sweep(snn, x, y, steps, batch_size=100, verbose=0)
        out[pooling] = [row["accuracy"] for row in sweep.rows]
        depth.log(f"  {key} {pooling}: " + ", ".join(f"{a:.2f}" for a in out[pooling]))
    return out


def run_seed(seed, args, data):
    (xtr, ytr), (xte, yte) = data
    xtr, xte = depth.prepare("vgg", xtr), depth.prepare("vgg", xte)
    steps = [2**k for k in range(int(np.log2(args.max_steps)) + 1)]
    keras.utils.clear_session()
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    model = build_vgg_max()
    depth.train(model, xtr, ytr, args.epochs, depth.LEARNING_RATE, f"[seed {seed}] ANN")
    ann = depth.accuracy(model, xte, yte)
    depth.log(f"[seed {seed}] ANN {ann:.2f} %")
    scales = ksc.calibrate(model, xtr[: depth.CALIBRATION_IMAGES])
    calibrated = sweeps(model, "relu", xte, yte, steps, scale_firing_rates=scales)
    q = ksc.quantize_activations(model, levels=args.levels, x=xtr[: depth.CALIBRATION_IMAGES])
    depth.train(q, xtr, ytr, args.qat_epochs, depth.FINE_TUNE_LEARNING_RATE, f"[seed {seed}] QAT")
    q_ann = depth.accuracy(q, xte, yte)
    depth.log(f"[seed {seed}] quantized ANN {q_ann:.2f} %")
    quantized = sweeps(q, ksc.QuantizedReLU, xte, yte, steps)
    return {
        "seed": seed,
        "steps": steps,
        "ann": ann,
        "quantized_ann": q_ann,
        "calibrated": calibrated,
        f"quantization_aware_L{args.levels}": quantized,
        "seconds": time.perf_counter() - start,
    }


def summary(document):
    runs, settings = document["runs"], document["settings"]
    steps = runs[0]["steps"]
    ann = np.mean([r["ann"] for r in runs])
    q_ann = np.mean([r["quantized_ann"] for r in runs])
    qat = f"quantization_aware_L{settings['levels']}"
    lines = [
        "# Max pooling in spiking networks (VGG with max pooling, Fashion-MNIST)",
        "",
        f"`{document['command']}`; seeds {[r['seed'] for r in runs]}; "
        f"{settings['train_images']:,} training images, {settings['epochs']} epochs; "
        f"{settings['test_images']:,} test images; L = {settings['levels']}, "
        f"{settings['qat_epochs']} fine-tuning epochs; signed neurons; "
        f"{document['environment']['backend']}, Keras {document['environment']['keras']}, "
        f"{document['environment']['cpus']} CPUs; "
        f"{sum(r['seconds'] for r in runs) / 60:.1f} minutes. Means over seeds, %.",
        "",
        f"ANN {ann:.2f}, quantized ANN {q_ann:.2f}.",
        "",
        "| method | max pooling | " + " | ".join(f"T={t}" for t in steps) + " |",
        "|---|---|" + "---|" * len(steps),
    ]
    for method in ("calibrated", qat):
        for pooling in POOLINGS:
            accuracies = np.mean([r[method][pooling] for r in runs], axis=0)
            lines.append(
                f"| {method} | {pooling} | " + " | ".join(f"{a:.2f}" for a in accuracies) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-images", type=int, default=60000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--max-steps", type=int, default=32)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    args = parser.parse_args(argv)
    data = depth.load_data(args.train_images, args.test_images, 0)
    runs = [run_seed(seed, args, data) for seed in args.seeds]
    document = {
        "command": "python " + " ".join(sys.argv),
        "environment": bench.environment(),
        "settings": {k: str(v) if k == "out" else v for k, v in vars(args).items()},
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "max_pooling.json").write_text(json.dumps(document, indent=1))
    text = summary(document)
    (args.out / "max_pooling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
