"""Every `keras.applications` model, converted: exact in rate mode at every timestep?

For each model that Keras builds with `weights=None` at a small input (32x32x3, or
75x75x3 for Inception and Xception, which need at least 75 and 71), with 10 classes and logits out
(`classifier_activation=None`): convert it
(default options: rate neurons), time the conversion, run both on the same 2 random
images (pixels uniform in [0, 255], seed 1) for 3 timesteps, and record the largest
difference relative to the largest original logit, over every step. The reference is
the original model on the same 6 images the conversion folds its 2 x 3 steps into;
`batch_sensitivity` is how much the original itself moves between a batch of 2 and
of 6 (float rounding that a deep random network amplifies). Generic
conversions (layers without a rule) and `keras.ops` calls are counted from the report.

Usage:
    python benchmarks/applications.py                 # all, on the current backend
    python benchmarks/applications.py --models MobileNetV3Small ConvNeXtTiny  # rerun some

Writes benchmarks/results/applications/{backend}.json and .md; `--combined` prints
the table of docs/converter.md from all three backends' files. Conversion times
depend on the machine and its load; the errors do not (beyond float rounding).
"""

import argparse
import json
import os
import pathlib
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_spiking_conv as ksc  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEPS = 3
LIMIT = 1e-4
BACKENDS = ("tensorflow", "jax", "torch")


def input_size(name):
    return 75 if name.startswith(("Inception", "Xception")) else 32


def application_names():
    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def count(report, kind):
    rows = sum(1 for row in report.rows if row["kind"] == kind)
    return rows + sum(count(r, kind) for r in report.nested.values())


def measure(name):
    size = input_size(name)
    app = getattr(keras.applications, name)
    # Logits (no softmax), so the comparison sees every difference before squashing.
    model = app(weights=None, input_shape=(size, size, 3), classes=10, classifier_activation=None)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the generic-rule warnings
        converter = ksc.Converter(model)
    seconds = time.perf_counter() - start
    x = np.random.default_rng(1).uniform(0, 255, (2, size, size, 3)).astype("float32")

    # Eager calls: tracing a `predict` function of a 1,000-layer graph takes longer than
    # running it on 2 images. The converted model folds the 2 x 3 steps into a batch of 6,
    # so the reference is the original on those 6 images: some randomly initialised deep
    # models round differently at another batch size, and amplify it (`batch_sensitivity`).
    def numpy(y):
        return keras.ops.convert_to_numpy(y).astype("float64")

    actual = numpy(converter.model(ksc.tile_time(x, STEPS)))
    expected = numpy(model(np.repeat(x, STEPS, axis=0))).reshape(actual.shape)
    alone = numpy(model(x))
    scale = np.max(np.abs(expected))
    error = float(np.max(np.abs(actual - expected)) / scale)
    sensitivity = float(np.max(np.abs(expected - alone[:, None])) / scale)
    return {
        "name": name,
        "input": size,
        "layers": len(model.layers),
        "parameters": int(model.count_params()),
        "operations": count(converter.report, "operation"),
        "generic": count(converter.report, "generic"),
        "convert_s": round(seconds, 2),
        "relative_error": error,
        "batch_sensitivity": sensitivity,
        "exact": error < LIMIT,
    }


def table(rows):
    lines = [
        "| model | input | layers | parameters | keras.ops calls | generic layers "
        "| convert (s) | relative error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['input']} | | | | | | FAILED: {r['error']} |")
            continue
        lines.append(
            f"| {r['name']} | {r['input']} | {r['layers']} | {r['parameters'] / 1e6:.1f} M "
            f"| {r['operations']} | {r['generic']} | {r['convert_s']:.1f} "
            f"| {r['relative_error']:.1e} |"
        )
    return "\n".join(lines)


def combined_table():
    """One table from every backend's results (TensorFlow's conversion times)."""
    out = ROOT / "benchmarks" / "results" / "applications"
    results = {
        b: {r["name"]: r for r in json.loads((out / f"{b}.json").read_text())["rows"]}
        for b in BACKENDS
        if (out / f"{b}.json").exists()
    }
    first = results[BACKENDS[0]]
    lines = [
        "| model | input | layers | parameters | keras.ops calls | generic layers "
        "| convert (s) | " + " | ".join(f"relative error ({b})" for b in results) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(results),
    ]
    for name, r in first.items():
        errors = []
        for rows in results.values():
            row = rows.get(name, {})
            errors.append(f"{row['relative_error']:.1e}" if "relative_error" in row else "not run")
        lines.append(
            f"| {name} | {r['input']} | {r['layers']} | {r['parameters'] / 1e6:.1f} M "
            f"| {r['operations']} | {r['generic']} | {r['convert_s']:.1f} | "
            + " | ".join(errors)
            + " |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument(
        "--combined", action="store_true", help="print the docs table of all backends' results"
    )
    args = parser.parse_args()
    if args.combined:
        print(combined_table())
        return
    names = args.models or application_names()
    rows = []
    for name in names:
        try:
            row = measure(name)
        except Exception as error:  # noqa: BLE001  (a failure is a row of the table)
            row = {"name": name, "input": input_size(name), "error": f"{type(error).__name__}"}
            print(f"{name}: FAILED {type(error).__name__}: {str(error)[:300]}", flush=True)
        else:
            print(
                f"{name}: {row['layers']} layers, {row['operations']} ops, "
                f"{row['generic']} generic, convert {row['convert_s']:.1f} s, "
                f"relative error {row['relative_error']:.1e}",
                flush=True,
            )
        rows.append(row)
        keras.backend.clear_session()
    backend = keras.backend.backend()
    out = ROOT / "benchmarks" / "results" / "applications"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"backend": backend, "keras": keras.__version__, "steps": STEPS, "limit": LIMIT}
    path = out / f"{backend}.json"
    if args.models is not None and path.exists():  # replace those rows, keep the others
        fresh = {row["name"]: row for row in rows}
        old = json.loads(path.read_text())["rows"]
        rows = [fresh.pop(row["name"], row) for row in old] + list(fresh.values())
    path.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    (out / f"{backend}.md").write_text(table(rows) + "\n")
    print(table(rows))
    failed = [r["name"] for r in rows if not r.get("exact")]
    print(f"{len(rows) - len(failed)} of {len(rows)} exact (relative error < {LIMIT:g})")
    if failed:
        print("not exact or failed:", ", ".join(failed))


if __name__ == "__main__":
    main()
