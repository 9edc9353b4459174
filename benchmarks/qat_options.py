"""Quantization-aware fine-tuning options on the depth benchmark's networks: one threshold per
layer or per channel, BatchNormalization folded before fine-tuning or kept (and folded after).

For one network of `benchmarks/depth.py` (its builders, data and training): train the ANN
(`--epochs`, Adam 1e-3, seed 0; the weights are cached in `--cache`), optionally the ANN
fine-tuned `--qat-epochs` more at 1e-4 (`--long`: the fair bar), then for each `--configs`
entry `{layer|channel}_{fold|bn}`: `quantize_activations(levels=L, x=2,000 training images,
per_channel=..., fold_batch_norm=...)`, `--qat-epochs` of Adam 1e-4 (reseeded with 1000),
`fold_batch_norm` after training for `_bn`, the quantized ANN's accuracy on the test images,
and `latency_sweep` on the first `--snn-images` test images of three conversions: signed
neurons (`negative_spikes=True`) and binary signed ones (`max_spikes_per_step=1` too) at
T = L/2, L, 2L, and the binary signed ones with each level over 2 steps
(`scale_firing_rates=1/2`) at T = L, 2L, 4L.

Usage (results as printed; benchmarks/results/qat_options/ keeps the logs):
    python benchmarks/qat_options.py --network vgg --epochs 2 --qat-epochs 1 --long
    python benchmarks/qat_options.py --network mobilenet --epochs 3 --qat-epochs 1 --long

Data: Fashion-MNIST (Xiao, Rasul and Vollgraf 2017; Zalando Research, MIT license), Debian's
`dataset-fashion-mnist`: all 60,000 training images, the first `--test` test images.
"""

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import depth  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", choices=depth.NETWORK_NAMES, default="vgg")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--qat-epochs", type=int, default=1)
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--train", type=int, default=60000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--configs", nargs="+", default=["layer_fold", "channel_fold", "channel_bn"])
    p.add_argument("--snn-images", type=int, default=500)
    p.add_argument("--blocks", type=int, default=3, help="resnet: blocks per stage")
    p.add_argument("--long", action="store_true", help="also the ANN trained as long")
    p.add_argument("--cache", default="/tmp", help="folder for the trained ANN's weights")
    a = p.parse_args(argv)
    options = argparse.Namespace(blocks=a.blocks, mobilenet_activation="relu6")
    (xtr, ytr), (xte, yte) = depth.load_data(a.train, a.test, 10)
    xtr, xte = depth.prepare(a.network, xtr), depth.prepare(a.network, xte)
    keras.utils.set_random_seed(0)
    model = depth.build(a.network, options)
    start = time.time()
    weights = os.path.join(a.cache, f"qat_options_{a.network}_{a.epochs}.weights.h5")
    if os.path.exists(weights):
        model.load_weights(weights)
    else:
        depth.train(model, xtr, ytr, a.epochs, depth.LEARNING_RATE, "ANN")
        model.save_weights(weights)
    print(f"ANN {depth.accuracy(model, xte, yte):.2f} ({time.time() - start:.0f}s)", flush=True)
    if a.long:
        longer = keras.models.clone_model(model)
        longer.set_weights(model.get_weights())
        depth.train(longer, xtr, ytr, a.qat_epochs, depth.FINE_TUNE_LEARNING_RATE, "long")
        print(f"ANN as long {depth.accuracy(longer, xte, yte):.2f}", flush=True)
    signed = ksc.SpikingReLU(negative_spikes=True)
    binary = ksc.SpikingReLU(negative_spikes=True, max_spikes_per_step=1)
    for config in a.configs:
        keras.utils.set_random_seed(1000)
        start = time.time()
        q = ksc.quantize_activations(
            model,
            levels=a.levels,
            x=xtr[: depth.CALIBRATION_IMAGES],
            per_channel=config.startswith("channel"),
            fold_batch_norm=config.endswith("fold"),
        )
        depth.train(q, xtr, ytr, a.qat_epochs, depth.FINE_TUNE_LEARNING_RATE, config)
        if config.endswith("bn"):
            q = ksc.fold_batch_norm(q)
        accuracy = depth.accuracy(q, xte, yte)
        print(f"{config}: quantized ANN {accuracy:.2f} ({time.time() - start:.0f}s)", flush=True)
        n = a.snn_images
        results = {}
        for name, neuron, k in (
            ("signed", signed, 1),
            ("binary_signed", binary, 1),
            ("binary_signed_k2", binary, 2),
        ):
            snn = ksc.convert(
                q,
                swap_activations={ksc.QuantizedReLU: neuron},
                readout="mean",
                scale_firing_rates=1.0 / k,
            )
            steps = [a.levels * k // 2, a.levels * k, 2 * a.levels * k]
            sweep = ksc.latency_sweep(
                snn, xte[:n], yte[:n], steps, readout="mean", batch_size=25, verbose=0
            )
            results[name] = {r["n_steps"]: round(float(r["accuracy"]), 2) for r in sweep.rows}
        print(
            f"  {config}: quantized ANN on {n}: {depth.accuracy(q, xte[:n], yte[:n]):.2f}; "
            f"{results}",
            flush=True,
        )


if __name__ == "__main__":
    main()
