"""Speed and memory of converted spiking models against the plain Keras way.

Run from the repository root (any backend: set KERAS_BACKEND):

    python benchmarks/bench.py                 # the full set, 3 interleaved rounds
    python benchmarks/bench.py --quick         # a short smoke run

Each measurement runs in a fresh worker process (so peak memory is its own);
the variants are interleaved round by round and the medians reported. Results
go to benchmarks/results/<backend>.json and .md (copy the table to docs/).
Run it alone on a quiet machine: timing on shared cores is fragile.
"""

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def worker(args):
    """Times one variant and prints one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import resource

    import keras
    import numpy as np

    sys.path.insert(0, HERE)
    import networks

    import keras_spiking_conv as ksc

    keras.utils.set_random_seed(0)
    model = networks.NETWORKS[args.network]()
    n, batch, steps = args.images, args.batch, args.steps
    x = np.random.default_rng(0).uniform(0, 1, (n, *model.input_shape[1:])).astype("float32")
    jit = {"jit_compile": True} if args.jit else {}
    result = {"network": args.network, "variant": args.variant, "steps": steps, "batch": batch}

    def timed(fn, repeats=1, warm_up=True):
        if warm_up:
            fn()  # warm-up: tracing and compilation
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    if args.variant == "sinabs":
        seconds = _time_sinabs(x, steps, batch, timed)
    elif args.variant == "plain":
        model.compile(**jit)
        seconds = timed(lambda: model.predict(x, batch_size=batch, verbose=0), repeats=5)
    elif args.variant in ("converted", "layerwise", "td_rnn"):
        if args.variant in ("converted", "layerwise"):
            snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, n_steps=steps)
            if args.variant == "layerwise":
                snn.execution = "layers"  # the layer-by-layer execution, for comparison
        else:
            snn = networks.time_distributed_rnn(model, steps)
        snn.compile(**jit)
        tiled = np.repeat(x[:, None], steps, axis=1)
        seconds = timed(lambda: snn.predict(tiled, batch_size=batch, verbose=0))
    elif args.variant == "stream":
        # Streaming: chunks of 10 steps through a Stream; only the states persist.
        snn = ksc.convert(model, swap_activations={"relu": "spiking_relu"}, synapse=0.01)
        stream = ksc.Stream(snn)
        chunk = np.repeat(x[:batch, None], 10, axis=1)

        def run():
            stream.reset()
            for _ in range(steps // 10):
                stream(chunk)

        seconds = timed(run)
        n = batch
    elif args.variant == "fit":
        # One training epoch of the original and of the converted rate model (T = 1), timed
        # alternately in this one process (plain, converted, plain, ...): the machine's slow
        # and fast spells then hit both, and each pair gives a ratio.
        y = np.random.default_rng(1).integers(0, 10, (n,))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        converted = ksc.convert(model)
        fits = {}
        for name, net, data, labels in (
            ("fit_plain", model, x, y),
            ("fit_converted", converted, x[:, None], y[:, None]),
        ):
            net.compile(keras.optimizers.SGD(0.01), loss, **jit)
            fits[name] = functools.partial(
                net.fit, data, labels, batch_size=batch, epochs=1, verbose=0
            )
            fits[name]()  # warm-up: tracing and compilation
        times = {name: [] for name in fits}
        for _ in range(FIT_PAIRS):
            for name, fit in fits.items():
                times[name].append(timed(fit, warm_up=False))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        pairs = [c / p for p, c in zip(times["fit_plain"], times["fit_converted"], strict=True)]
        for name in fits:
            seconds = statistics.median(times[name])
            out = dict(result, variant=name, seconds=seconds, images_per_s=n / seconds)
            out.update(images=n, peak_rss_mb=rss, epoch_seconds=times[name])
            if name == "fit_converted":
                out["pair_ratios"] = pairs
            print("RESULT " + json.dumps(out), flush=True)
        return
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    result["seconds"] = seconds
    result["images_per_s"] = n / seconds
    result["images"] = n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def _time_sinabs(x, steps, batch, timed):
    """The tutorial convnet in sinabs 3 (PyTorch): `from_model`, IAF, time folded into batch."""
    import sinabs.from_torch
    import torch

    torch.manual_seed(0)
    net = torch_tutorial_convnet()
    snn = sinabs.from_torch.from_model(net, num_timesteps=steps).spiking_model
    images = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    def run():
        with torch.no_grad():
            for i in range(0, len(images), batch):
                chunk = images[i : i + batch]
                tiled = chunk[:, None].expand(-1, steps, -1, -1, -1).reshape(-1, *chunk.shape[1:])
                for module in snn.modules():
                    if hasattr(module, "reset_states"):
                        module.reset_states()
                snn(tiled)

    return timed(run)


def torch_tutorial_convnet():
    """The tutorial convnet's layers in PyTorch (for sinabs): conv32 k3, ReLU, conv64 k3 s2,
    ReLU, flatten, dense10."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(9216, 10),
    )


def run_worker(network, variant, steps, batch, images, jit):
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--network",
        network,
        "--variant",
        variant,
        "--steps",
        str(steps),
        "--batch",
        str(batch),
        "--images",
        str(images),
    ] + (["--jit"] if jit else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    results = [
        json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")
    ]
    if results:
        return results
    raise RuntimeError(f"worker failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")


# Epochs of each model per `fit` worker, alternating.
FIT_PAIRS = 3

# Images per measurement: fewer for long simulations, so each run takes seconds, not
# minutes, yet enough that Keras' per-call `predict` overhead (about 0.1-0.3 s, mostly
# turning a large NumPy input into a dataset) is amortized over many batches, as it is for
# plain predict.
IMAGES = {
    "tutorial_convnet": {1: 2000, 10: 1000, 60: 1000, 200: 300},
    "resnet_small": {1: 1000, 10: 200, 60: 100, 200: 40},
}


def plan(quick, image_factor=1):
    """(network, variant, steps, images) tuples to measure."""
    rows = []
    for network, images in IMAGES.items():
        images = {t: int(n * image_factor) for t, n in images.items()}
        if quick:
            images = {t: max(20, n // 5) for t, n in images.items()}
        rows.append((network, "plain", 1, images[1]))
        for steps in (10,) if quick else (10, 60, 200):
            rows.append((network, "converted", steps, images[steps]))
            rows.append((network, "layerwise", steps, images[steps]))
        td_steps = 10 if quick else 60
        rows.append((network, "td_rnn", td_steps, images[td_steps]))
        if network == "tutorial_convnet" and _has_sinabs():
            rows.append((network, "sinabs", td_steps, images[td_steps]))
        rows.append((network, "fit", 1, images[1]))
    for steps in (20, 200) if quick else (20, 2000):
        rows.append(("tutorial_convnet", "stream", steps, 100))
    return rows


def _has_sinabs():
    try:
        import sinabs  # noqa: F401
    except ImportError:
        return False
    return True


def environment():
    import keras

    info = {
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu_model"] = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    backend = info["backend"]
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    info[module] = __import__(module).__version__
    return info


def summarize(results, rounds):
    """Medians per (network, variant, steps) and ratios to T x plain predict."""
    keys = sorted({(r["network"], r["variant"], r["steps"]) for r in results})
    table = []
    for network, variant, steps in keys:
        runs = [
            r
            for r in results
            if (r["network"], r["variant"], r["steps"]) == (network, variant, steps)
        ]
        ips = statistics.median(r["images_per_s"] for r in runs)
        row = {
            "network": network,
            "variant": variant,
            "steps": steps,
            "images_per_s": ips,
            "runs": [round(r["images_per_s"], 2) for r in runs],
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        }
        plain = [r for r in results if r["network"] == network and r["variant"] == "plain"]
        if plain and variant in ("converted", "layerwise", "td_rnn", "sinabs", "stream"):
            plain_ips = statistics.median(r["images_per_s"] for r in plain)
            # Time of this variant / (T x time of plain predict), per image.
            row["ratio_to_T_plain"] = (1 / ips) / (steps / plain_ips)
        td = [
            r
            for r in results
            if (r["network"], r["variant"], r["steps"]) == (network, "td_rnn", steps)
        ]
        if td and variant in ("converted", "layerwise", "sinabs"):
            # Speed-up over TimeDistributed + RNN, paired round by round (both ran in the
            # same round, so a slow spell of the machine affects both), then the median.
            by_round = {r["round"]: r["images_per_s"] for r in td}
            pairs = [
                r["images_per_s"] / by_round[r["round"]] for r in runs if r["round"] in by_round
            ]
            row["speedup_vs_td_rnn"] = statistics.median(pairs)
            row["speedup_vs_td_rnn_runs"] = [round(v, 2) for v in pairs]
        if variant == "fit_converted":
            # Epoch time over the original's, paired within each worker, median of all pairs.
            pairs = [ratio for r in runs for ratio in r["pair_ratios"]]
            row["ratio_to_plain_fit"] = statistics.median(pairs)
            row["fit_pair_ratios"] = [round(v, 2) for v in pairs]
        table.append(row)
    return table


def environment_line(env, extra=""):
    """ "Backend tensorflow, Keras 3.15.1, tensorflow 2.21.0{extra}; AMD EPYC, 2 CPUs" for the
    results tables (`env` from `environment()`)."""
    versions = ", ".join(f"{k} {env[k]}" for k in ("tensorflow", "jax", "torch") if k in env)
    return (
        f"Backend {env['backend']}, Keras {env['keras']}, {versions}{extra}; "
        f"{env.get('cpu_model', env['processor'])}, {env['cpus']} CPUs"
    )


def markdown(table, env, args):
    lines = [
        environment_line(env)
        + f"; batch {args.batch}"
        + (", jit_compile=True" if args.jit else ", default compile")
        + f"; medians of {args.rounds} interleaved rounds.",
        "",
        "| network | variant | T | images/s (median) | runs | ratio | x TD+RNN (runs) "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        ratio = r.get("ratio_to_T_plain", r.get("ratio_to_plain_fit"))
        ratio = "" if ratio is None else f"{ratio:.2f}"
        speedup = ""
        if "speedup_vs_td_rnn" in r:
            runs = ", ".join(str(v) for v in r["speedup_vs_td_rnn_runs"])
            speedup = f"{r['speedup_vs_td_rnn']:.2f} ({runs})"
        lines.append(
            f"| {r['network']} | {r['variant']} | {r['steps']} | {r['images_per_s']:.1f} | "
            f"{', '.join(str(v) for v in r['runs'])} | {ratio} | {speedup} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "ratio: for the simulations, time per image / (T x time per image of plain predict) "
        "(below 1 is faster than T plain predicts); for `fit_converted`, epoch time / the "
        "original's `fit` epoch time. x TD+RNN: images/s over the TimeDistributed + RNN "
        "formulation's in the same round, median over rounds (runs in brackets).",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--network", default="tutorial_convnet")
    parser.add_argument("--variant", default="plain")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--jit", action="store_true", help="compile with jit_compile=True")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--image-factor",
        type=float,
        default=1.0,
        help="multiply the images per measurement (e.g. 20 on a GPU with --batch 1000)",
    )
    parser.add_argument("--only", help="comma-separated variants to run")
    parser.add_argument("--networks", help="comma-separated networks to run")
    parser.add_argument("--steps-only", help="comma-separated T values to run (plain: T=1)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    rows = plan(args.quick, args.image_factor)
    if args.only:
        keep = set(args.only.split(","))
        rows = [r for r in rows if r[1] in keep]
    if args.networks:
        keep = set(args.networks.split(","))
        rows = [r for r in rows if r[0] in keep]
    if args.steps_only:
        keep = {int(t) for t in args.steps_only.split(",")} | {1}
        rows = [r for r in rows if r[2] in keep]
    env = environment()
    results = []
    for round_index in range(args.rounds):
        for network, variant, steps, images in rows:
            batch = min(args.batch, images)
            for result in run_worker(network, variant, steps, batch, images, args.jit):
                result["round"] = round_index
                results.append(result)
                print(
                    f"round {round_index + 1}/{args.rounds} {network:17s} "
                    f"{result['variant']:14s} T={steps:<4d} {result['images_per_s']:10.1f} "
                    f"images/s  peak {result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
    table = summarize(results, args.rounds)
    os.makedirs(args.out, exist_ok=True)
    name = env["backend"] + ("_jit" if args.jit else "") + ("_quick" if args.quick else "")
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(
            {"environment": env, "args": vars(args), "results": results, "table": table},
            f,
            indent=1,
        )
    text = markdown(table, env, args)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write(text + "\n")
    print()
    print(text)


if __name__ == "__main__":
    main()
