"""Constant-input models against tiled inputs: peak memory and time over T.

The tutorial convnet (untrained weights; memory and time do not depend on them),
converted with spiking neurons, synapse 0.01, scale 10 and the last step read out (the
tutorial's evaluation), evaluated on 2,000 images of the bundled MNIST test set
(`evaluate`, batch 100) in a fresh process per measurement: `tiled` builds the
`(2000, T, 28, 28, 1)` input with `tile_time`; `constant` feeds the images to
`convert(..., constant_input=True)`. Peak RSS is the worker's `ru_maxrss`; the time
includes building the input. Variants and step counts are interleaved in each round.

Usage: python benchmarks/constant_input.py --steps 60 600 --rounds 2
Run it alone: timing on shared cores is fragile.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench import environment  # noqa: E402


def worker(variant, steps):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import resource

    import keras

    import keras_spiking_conv as ksc
    from keras_spiking_conv import demo
    from keras_spiking_conv.datasets import load_bundled_mnist

    keras.utils.set_random_seed(0)
    _, (x, y) = load_bundled_mnist()
    x, y = demo.prepare(x[:2000]), y[:2000]
    options = dict(
        swap_activations={"relu": "spiking_relu"},
        synapse=0.01,
        scale_firing_rates=10,
        readout="last",
    )
    model = demo.build_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if variant == "constant":
        snn = ksc.convert(model, n_steps=steps, constant_input=True, **options)
        snn.compile(loss=loss, metrics=["accuracy"])
        start = time.perf_counter()
        snn.evaluate(x, y, batch_size=100, verbose=0)
    else:
        snn = ksc.convert(model, **options)
        snn.compile(loss=loss, metrics=["accuracy"])
        start = time.perf_counter()
        snn.evaluate(ksc.tile_time(x, steps), y, batch_size=100, verbose=0)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "RESULT "
        + json.dumps({"variant": variant, "steps": steps, "seconds": seconds, "peak_rss_mb": rss}),
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2)
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 600])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    results = []
    print(json.dumps(environment()), flush=True)
    for _ in range(args.rounds):
        for steps in args.steps:
            for variant in ("constant", "tiled"):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", variant, str(steps)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
                results.append(json.loads(line[7:]))
                print(results[-1], flush=True)
    for steps in args.steps:
        for variant in ("constant", "tiled"):
            rows = [r for r in results if r["steps"] == steps and r["variant"] == variant]
            print(
                variant,
                steps,
                "s",
                statistics.median(r["seconds"] for r in rows),
                "MB",
                statistics.median(r["peak_rss_mb"] for r in rows),
            )


if __name__ == "__main__":
    main()
