"""Plots of activity: the reference workflow's panels, spike rasters, firing-rate histograms.

Every function writes a PNG file (matplotlib, `Agg` backend) and returns its path.
"""

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi=100):
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def spike_counts(activity, dt=0.001, amplitude=1.0):
    """Neuron outputs of one example, `(T, *features)`, as spike counts `(T, neurons)`."""
    activity = np.asarray(activity, dtype="float64")
    if activity.ndim < 2:
        raise ValueError(
            "Expected the neuron outputs of one example, shaped (time, *features). "
            f"Received shape {activity.shape}. Take one example of a probe's output, "
            "e.g. `spikes[0]`."
        )
    return activity.reshape(len(activity), -1) * (dt / amplitude)


def _raster(ax, counts, neurons, dt):
    times = np.arange(1, len(counts) + 1) * dt * 1000
    for row, neuron in enumerate(neurons):
        fired = counts[:, neuron] > 0
        ax.vlines(times[fired], row + 0.6, row + 1.4, color="black", linewidth=0.8)
    ax.set_ylim(0.4, len(neurons) + 0.6)
    ax.set_xlim(0, times[-1] + dt * 1000)
    ax.set_xlabel("time (ms)")
    if len(neurons) <= 20:
        ax.set_yticks(range(1, len(neurons) + 1), [str(n) for n in neurons])
        ax.set_ylabel("neuron")
    else:
        ax.set_ylabel("neuron (row, in index order)")


def _chosen(counts, neurons, max_neurons):
    if neurons is None:
        total = counts.sum(axis=0)
        return sorted(np.argsort(total, kind="stable")[-max_neurons:].tolist())
    neurons = [int(n) for n in np.ravel(neurons)]
    bad = [n for n in neurons if not 0 <= n < counts.shape[1]]
    if bad:
        raise ValueError(
            f"Neurons {bad} are out of range: the layer has {counts.shape[1]} neurons "
            "(indices into its flattened features, 0-based)."
        )
    return neurons


def plot_spike_raster(
    activity, path, *, neurons=None, dt=0.001, amplitude=1.0, max_neurons=50, title=""
):
    """Saves a spike raster (a tick per step in which a neuron fired) as a PNG.

    Args:
        activity: Neuron outputs of one example, `(T, *features)` (a probe's
            output for one input, e.g. `probe.predict(x)[1][0]`).
        path: PNG file to write.
        neurons: Indices into the flattened features to show. Defaults to the
            `max_neurons` most active, in index order.
        dt: Timestep in seconds. Defaults to `0.001`.
        amplitude: The neurons' amplitude (a spike is `amplitude / dt`).
            Defaults to `1.0`.
        max_neurons: How many neurons to show by default. Defaults to `50`.
        title: Figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    counts = spike_counts(activity, dt, amplitude)
    neurons = _chosen(counts, neurons, max_neurons)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.12 * len(neurons)))
    _raster(ax, counts, neurons, dt)
    ax.set_title(title or f"spikes of {len(neurons)} neurons")
    return _save(fig, path)


def plot_rate_histogram(rates, path, *, bins=40, title="Firing rates per layer"):
    """Saves a histogram of the neurons' firing rates, one panel per layer, as a PNG.

    Args:
        rates: An `EnergyReport` (its `neuron_rates`), or a dict
            `{layer name: per-neuron rates in Hz}`.
        path: PNG file to write.
        bins: Histogram bins. Defaults to `40`.
        title: Figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    rates = getattr(rates, "neuron_rates", rates)
    if not rates:
        raise ValueError("plot_rate_histogram(): no neuron rates to plot (no neurons).")
    fig, axes = plt.subplots(1, len(rates), figsize=(4 * len(rates), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], rates.items(), strict=True):
        values = np.ravel(values)
        ax.hist(values, bins=bins, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name}\nmean {values.mean():.1f} Hz, silent {np.mean(values == 0):.0%}")
        ax.set_xlabel("firing rate (Hz)")
    axes[0, 0].set_ylabel("neurons")
    fig.suptitle(title)
    return _save(fig, path)


def plot_output_over_time(
    image, activity, outputs, path, *, neurons=None, dt=0.001, amplitude=1.0, title=""
):
    """Saves the NengoDL tutorial's three panels for one example as a PNG: the input
    image, the spikes of some neurons, and the output over time.

    Args:
        image: The input, `(H, W)` or `(H, W, 1)` (or `(H, W, 3)`).
        activity: One layer's neuron outputs for this example, `(T, *features)`.
        outputs: The model's outputs for this example, `(T, classes)`.
        path: PNG file to write.
        neurons: Neurons to show (indices into the flattened features). Defaults
            to the 20 most active.
        dt: Timestep in seconds. Defaults to `0.001`.
        amplitude: The neurons' amplitude. Defaults to `1.0`.
        title: Figure title.

    Returns:
        `path`.
    """
    plt = _pyplot()
    counts = spike_counts(activity, dt, amplitude)
    neurons = _chosen(counts, neurons, 20)
    outputs = np.asarray(outputs)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].imshow(np.squeeze(image), cmap="gray")
    axes[0].set_title("input")
    axes[0].axis("off")
    _raster(axes[1], counts, neurons, dt)
    axes[1].set_title(f"spikes of {len(neurons)} neurons")
    times = np.arange(1, len(outputs) + 1) * dt * 1000
    axes[2].plot(times, outputs)
    axes[2].legend([str(c) for c in range(outputs.shape[-1])], fontsize="x-small", ncol=2)
    axes[2].set_title(f"output over time: class {int(np.argmax(outputs[-1]))} at the end")
    axes[2].set_xlabel("time (ms)")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_activity(images, activity, outputs, path, *, dt=0.001, title=""):
    """Saves a PNG with, per image: the input, the first layer's activity, predictions.

    Args:
        images: `(n, H, W[, 1])` input images.
        activity: `(n, T, ...)` neuron outputs of one layer (Hz with `amplitude=1`).
        outputs: `(n, T, classes)` model outputs over time.
        path: PNG file to write.
        dt: Timestep in seconds. Defaults to `0.001`.
        title: Figure title.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, steps = activity.shape[0], activity.shape[1]
    flat = activity.reshape(n, steps, -1)
    rates = flat.mean(axis=1)
    times = np.arange(1, steps + 1) * dt * 1000
    fig, axes = plt.subplots(n, 3, figsize=(12, 3 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(np.squeeze(images[i]), cmap="gray")
        axes[i, 0].set_title("input")
        axes[i, 0].axis("off")
        # The 64 most active neurons, as a raster: spikes per step over time.
        top = np.argsort(rates[i])[-64:]
        raster = axes[i, 1].imshow(
            (flat[i][:, top] * dt).T,
            aspect="auto",
            cmap="viridis",
            interpolation="nearest",
            extent=(times[0] - 0.5 * dt * 1000, times[-1] + 0.5 * dt * 1000, 64, 0),
        )
        fig.colorbar(raster, ax=axes[i, 1], label="spikes per step")
        axes[i, 1].set_title(
            f"first layer: mean {rates[i].mean():.1f} Hz, max {rates[i].max():.1f} Hz"
        )
        axes[i, 1].set_xlabel("time (ms)")
        axes[i, 1].set_ylabel("64 most active neurons")
        axes[i, 2].plot(times, outputs[i])
        axes[i, 2].legend([str(c) for c in range(outputs.shape[-1])], fontsize="x-small", ncol=2)
        axes[i, 2].set_title(f"predictions: {int(np.argmax(outputs[i, -1]))}")
        axes[i, 2].set_xlabel("time (ms)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
