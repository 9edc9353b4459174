"""`latency_sweep()`: accuracy and firing rate against the number of timesteps.

One simulation of the longest duration gives every shorter one: a converted
model is causal (step `t` depends on steps `<= t` only), so the `"mean"`
readout after `T` steps is the mean of the first `T` outputs, and the `"last"`
readout the `T`-th output.
"""

import collections

import keras
import numpy as np

from keras_spiking_conv.conversion.verify import tile_time
from keras_spiking_conv.energy.estimate import Activity, EnergyEstimator, flat_inputs
from keras_spiking_conv.energy.report import DEFAULT_DEVICES
from keras_spiking_conv.latency.calibration import batches, check_original, iterate
from keras_spiking_conv.layers.readout import check_readout
from keras_spiking_conv.runtime.model import SpikingModel, fuse
from keras_spiking_conv.runtime.plan import Plan, plan_of, readout_of
from keras_spiking_conv.runtime.probing import activity_model
from keras_spiking_conv.runtime.streaming import check_model

DEFAULT_STEPS = (1, 2, 4, 8, 16, 32)


class LatencySweep:
    """The result of `latency_sweep`.

    Attributes:
        rows: One dict per duration: `n_steps`, `accuracy` (%) and `rate` (mean
            firing rate over all neurons and inputs, Hz; with `dt=0.001`,
            1000 Hz is one spike per step); with `energy=True` also `spikes` and
            `synops` (per example) and `energy` (`{device: J per example}`).
        readout: The readout the accuracies use.
        n_examples: How many examples were scored.
        reports: With `energy=True`, `{n_steps: EnergyReport}`; else empty.
        layer_errors: With a `reference`, `{layer: [error per duration]}` for
            every spiking neuron layer (named by its original layer, in graph
            order): the relative L2 error `||mean_T(snn) - ann|| / ||ann||` over
            the scored examples and the layer's units, between the layer's
            output (the neuron's spikes in the original units, before any
            synapse) averaged over the first `T` steps and the reference
            layer's activation. It shows where the error comes from: the layer
            where it first grows is the one that needs more steps or another
            threshold. Else empty.
    """

    def __init__(self, rows, readout, n_examples, reports=None, layer_errors=None):
        self.rows = rows
        self.readout = readout
        self.n_examples = n_examples
        self.reports = dict(reports or {})
        self.layer_errors = dict(layer_errors or {})

    def accuracy(self, n_steps):
        """The accuracy (%) after `n_steps`."""
        for row in self.rows:
            if row["n_steps"] == n_steps:
                return row["accuracy"]
        raise KeyError(f"LatencySweep: no row for n_steps={n_steps}; rows: {self.steps}")

    @property
    def steps(self):
        return [row["n_steps"] for row in self.rows]

    def steps_within(self, reference, points=0.5):
        """The smallest number of steps whose accuracy is within `points` of
        `reference` (%), or None.

        Compared with a tolerance of a thousandth of one test example, so a
        float32 reference from `evaluate` (84.75000262 for 84.75) does not put a
        sweep exactly `points` below it outside.
        """
        tolerance = 1e-3 * 100.0 / max(self.n_examples, 1)
        for row in self.rows:
            if row["accuracy"] >= float(reference) - points - tolerance:
                return row["n_steps"]
        return None

    def layer_error(self, layer, n_steps):
        """The relative error of `layer` (an original layer's name) after `n_steps`
        (see `layer_errors`)."""
        if layer not in self.layer_errors:
            raise KeyError(
                f"LatencySweep: no layer error for '{layer}'"
                + (
                    f"; layers: {list(self.layer_errors)}"
                    if self.layer_errors
                    else " (run latency_sweep with `reference=` the original model)"
                )
            )
        self.accuracy(n_steps)  # raises for a duration that was not swept
        return self.layer_errors[layer][self.steps.index(n_steps)]

    def to_dict(self):
        result = {"readout": self.readout, "n_examples": self.n_examples, "rows": self.rows}
        if self.layer_errors:
            result["layer_errors"] = self.layer_errors
        return result

    def layer_table(self):
        """The layer errors as a markdown table: one row per neuron layer, one column
        per duration (empty without a `reference`)."""
        if not self.layer_errors:
            return ""
        lines = [
            "| layer (relative error of its mean output) | "
            + " | ".join(f"T={t}" for t in self.steps)
            + " |",
            "|---" * (1 + len(self.steps)) + "|",
        ]
        for layer, errors in self.layer_errors.items():
            lines.append(f"| {layer} | " + " | ".join(f"{e:.3f}" for e in errors) + " |")
        return "\n".join(lines)

    def table(self):
        """The sweep as a markdown table (with synops and energy when measured)."""
        if not self.reports:
            lines = ["| steps | accuracy % | mean firing rate Hz |", "|---|---|---|"]
            for row in self.rows:
                lines.append(f"| {row['n_steps']} | {row['accuracy']:.2f} | {row['rate']:.1f} |")
            return "\n".join(lines)
        devices = list(self.rows[0]["energy"])
        lines = [
            "| steps | accuracy % | mean firing rate Hz | synops per example | "
            + " | ".join(f"J per example ({d})" for d in devices)
            + " |",
            "|---" * (4 + len(devices)) + "|",
        ]
        for row in self.rows:
            energies = " | ".join(f"{row['energy'][d]:.3g}" for d in devices)
            lines.append(
                f"| {row['n_steps']} | {row['accuracy']:.2f} | {row['rate']:.1f} | "
                f"{row['synops']:.4g} | {energies} |"
            )
        return "\n".join(lines)

    def __str__(self):
        return "\n\n".join(filter(None, [self.table(), self.layer_table()]))


def latency_sweep(
    model,
    x,
    y,
    steps=DEFAULT_STEPS,
    readout="mean",
    batch_size=100,
    verbose="auto",
    energy=False,
    reference=None,
):
    """Accuracy and mean firing rate of a converted classifier against timesteps.

    Each input is held constant for `max(steps)` steps (tiled one batch at a
    time, so the data is never copied whole); the accuracy after `T` steps
    reads the output out as `readout` does after `T` steps.

    Args:
        model: A converted model (from `convert`) with one output of class
            scores; with or without a `readout` of its own (the sweep reads
            out every duration itself).
        x: Inputs without a time axis (arrays, a `tf.data.Dataset` or a
            `keras.utils.PyDataset` of `(x, y)` batches: then `y` is `None`).
        y: Integer class labels `(n,)` (or one-hot `(n, classes)`), or `None`
            when `x` yields `(x, y)` batches.
        steps: Durations to score, increasing positive integers. Defaults to
            `(1, 2, 4, 8, 16, 32)`.
        readout: `"mean"` (the mean output over the steps) or `"last"` (the
            last step's output). Defaults to `"mean"`.
        batch_size: Batch size for arrays. Defaults to `100`.
        verbose: `"auto"`/`1` shows a Keras progress bar; `0` none.
        energy: Also count spikes and synaptic operations per duration (as
            `estimate_energy` does) and price them on the default devices;
            `reports` then holds an `EnergyReport` per duration. Defaults to
            `False`.
        reference: The Keras model `model` was converted from (the original,
            or the quantized one for quantization-aware conversion). With it,
            the sweep also measures each spiking layer's error against the
            reference's activations (`LatencySweep.layer_errors`,
            `layer_table()`; `ConversionReport.add_layer_errors` shows them in
            the conversion report). Defaults to `None`.

    Returns:
        A `LatencySweep` (rows, `table()`, `steps_within(...)`); plot one or
        several with `plot_latency`.
    """
    owner = "latency_sweep()"
    check_model(model, owner)
    readout = check_readout(readout, owner=owner)
    if readout is None:
        raise ValueError(f"{owner}: `readout` must be 'mean' or 'last'. Received: None")
    steps = sorted({int(t) for t in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"{owner}: `steps` must be positive integers. Received: {steps}")
    if len(model.outputs) != 1:
        raise ValueError(
            f"{owner}: model '{model.name}' has {len(model.outputs)} outputs; the sweep "
            "scores one output of class scores. Build a model with that output only."
        )
    # Every step's output: the model's, before its readout if it has one.
    output = model.outputs[0]
    if readout_of(output) is not None:
        output = readout_of(output).input
        model = SpikingModel(model.inputs, output, name=f"{model.name}_steps")
    plan = plan_of(model)
    neurons = [site for site in plan.neurons() if site.layer.spiking]
    probe = fuse(activity_model(model, neurons, with_outputs=True)) if neurons else model
    gaps = _LayerGaps(plan, neurons, reference, steps, owner) if reference is not None else None
    amplitudes = [site.layer.amplitude for site in neurons]
    dt = neurons[0].layer.dt if neurons else None
    n_steps = steps[-1]
    index = np.array(steps) - 1

    correct = np.zeros(len(steps))
    spikes = np.zeros(n_steps)  # spikes of all neurons and inputs, by step
    n_neurons = sum(int(np.prod(site.layer.cell.feature_shape)) for site in neurons)
    n_seen = 0
    estimator = EnergyEstimator(model, owner) if energy else None
    counted = None  # the neurons' spike counts (energy=True)
    source = _labelled(x, batch_size, owner) if y is None else _with_labels(x, y, batch_size, owner)
    progress = keras.utils.Progbar(None, verbose=1 if verbose == "auto" else verbose)
    for xb, yb in source:
        tiled = tile_time(xb, n_steps)
        outs = probe.predict_on_batch(tiled)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        if estimator is not None:
            if counted is None:
                shapes = [v.shape[2:] for v in flat_inputs(model, tiled, owner)]
                counted = Activity(neurons, shapes, n_steps, per_step=True)
            if neurons:
                counted.add(outs[1:])
            else:
                counted.n_examples += len(outs[0])
        scores = np.asarray(outs[0])
        if readout == "mean":
            scores = np.cumsum(scores, axis=1) / np.arange(1, n_steps + 1).reshape(
                (1, -1) + (1,) * (scores.ndim - 2)
            )
        labels = np.asarray(yb)
        labels = labels.argmax(-1) if labels.ndim > 1 else labels.reshape(-1)
        predicted = np.argmax(scores[:, index], axis=-1)
        correct += np.sum(predicted == labels[:, None], axis=0)
        if gaps is not None:
            gaps.add(xb, outs[1:])
        for activity, amplitude in zip(outs[1:], amplitudes, strict=True):
            activity = np.asarray(activity)
            counts = activity.reshape(*activity.shape[:2], -1) * (dt / amplitude)
            spikes += counts.sum(axis=(0, 2))
        n_seen += len(labels)
        progress.add(len(labels))
    if n_seen == 0:
        raise ValueError(f"{owner}: `x` holds no examples.")
    rows, reports = [], {}
    cumulative = np.cumsum(spikes)
    for i, t in enumerate(steps):
        rate = cumulative[t - 1] / (n_seen * max(n_neurons, 1) * t * dt) if neurons else 0.0
        rows.append({"n_steps": t, "accuracy": 100.0 * correct[i] / n_seen, "rate": float(rate)})
        if estimator is not None:
            report = reports[t] = estimator.report(counted, n_steps=t)
            rows[-1].update(
                spikes=report.total_spikes,
                synops=report.total_synops,
                energy={device: report.energy(device) for device in DEFAULT_DEVICES},
            )
    return LatencySweep(rows, readout, n_seen, reports, gaps.errors() if gaps else None)


class _LayerGaps:
    """Accumulates each spiking layer's squared error against the reference model's
    activation of the layer it was converted from (see `LatencySweep.layer_errors`)."""

    def __init__(self, plan, neurons, reference, steps, owner):
        check_original(reference, owner, "Pass the Keras model the converted one came from.")
        self.steps = np.asarray(steps)
        # The layer whose output is a neuron's in the original units: the RateScale
        # that divides its spikes by its scale, when it has one.
        self.readers = []
        for site in neurons:
            reader = None
            for other in plan.sites:
                if (
                    other.role == "scale"
                    and getattr(other.layer, "inverse", False)
                    and tuple(other.inputs) == tuple(site.outputs)
                ):
                    reader = other.layer
            self.readers.append(reader)
        # The k-th neuron converted from a layer is the k-th call of that layer.
        calls = collections.defaultdict(list)
        for site in Plan(reference).sites:
            calls[site.path].append(site)
        seen = collections.Counter()
        self.names, found = [], []
        for site in neurons:
            path = (*site.path[:-1], site.source)
            k = seen[path]
            seen[path] += 1
            if site.source is None or k >= len(calls[path]):
                raise ValueError(
                    f"{owner}: `reference` model '{reference.name}' has no layer "
                    f"'{'/'.join(map(str, path))}' (call {k}), which neuron '{site.name}' "
                    f"({type(site.layer).__name__}) was converted from. Pass the model "
                    "`model` was converted from (for quantization-aware conversion, the "
                    "quantized model)."
                )
            found.append(calls[path][k])
            self.names.append("/".join(path) + (f"_call{k}" if len(calls[path]) > 1 else ""))
        self.ann = activity_model(reference, found, with_outputs=False) if found else None
        self.squared = np.zeros((len(found), len(steps)))
        self.norms = np.zeros(len(found))

    def add(self, xb, activities):
        if self.ann is None:
            return
        anns = keras.tree.flatten(self.ann.predict_on_batch(xb))
        for i, (ann, spikes, reader) in enumerate(zip(anns, activities, self.readers, strict=True)):
            spikes = keras.ops.convert_to_numpy(spikes if reader is None else reader(spikes))
            spikes = spikes.reshape(*spikes.shape[:2], -1).astype("float64")
            ann = np.asarray(ann).reshape(len(ann), 1, -1).astype("float64")
            means = np.cumsum(spikes, axis=1)[:, self.steps - 1] / self.steps[None, :, None]
            self.squared[i] += np.sum((means - ann) ** 2, axis=(0, 2))
            self.norms[i] += np.sum(ann**2)

    def errors(self):
        relative = np.sqrt(self.squared / np.maximum(self.norms, 1e-30)[:, None])
        return {name: row.tolist() for name, row in zip(self.names, relative, strict=True)}


def _labelled(x, batch_size, owner):
    for batch in iterate(x, batch_size, owner):
        if not isinstance(batch, tuple) or len(batch) < 2:
            raise ValueError(
                f"{owner}: with `y=None`, `x` must yield `(x, y)` batches. Received a "
                f"batch of type {type(batch).__name__}. Pass the labels as `y`."
            )
        yield batch[0], batch[1]


def _with_labels(x, y, batch_size, owner):
    y = np.asarray(y)
    start = 0
    for xb in batches(x, batch_size, owner):
        n = len(keras.tree.flatten(xb)[0])
        yield xb, y[start : start + n]
        start += n


def plot_latency(sweeps, path, reference=None, title="Accuracy against timesteps", device="loihi"):
    """Saves accuracy and mean firing rate (and, for sweeps run with `energy=True`,
    synops and energy per example) against timesteps as a PNG.

    Args:
        sweeps: A dict `{label: LatencySweep}` (one curve each).
        path: The PNG file to write.
        reference: The original network's accuracy (%), drawn as a line. Optional.
        title: The figure title.
        device: The device whose energy is drawn (sweeps with energy only).
            Defaults to `"loihi"`.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with_energy = any(sweep.reports for sweep in sweeps.values())
    panels = 4 if with_energy else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4))
    acc_ax, rate_ax = axes[0], axes[1]
    for label, sweep in sweeps.items():
        t = [r["n_steps"] for r in sweep.rows]
        acc_ax.plot(t, [r["accuracy"] for r in sweep.rows], marker="o", label=label)
        rate_ax.plot(t, [r["rate"] for r in sweep.rows], marker="o", label=label)
        if sweep.reports:
            reports = [sweep.reports[n] for n in t]
            axes[2].plot(t, [r.total_synops for r in reports], marker="o", label=label)
            axes[3].plot(t, [r.energy(device) for r in reports], marker="o", label=label)
    if reference is not None:
        acc_ax.axhline(reference, color="black", linestyle="--", label="original network")
    if with_energy:
        axes[2].set_ylabel("synops per example")
        axes[3].set_ylabel(f"J per example ({device})")
    ticks = sorted({r["n_steps"] for sweep in sweeps.values() for r in sweep.rows})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("timesteps")
        ax.grid(True, alpha=0.3)
    acc_ax.set_ylabel("accuracy %")
    rate_ax.set_ylabel("mean firing rate (Hz)")
    acc_ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
