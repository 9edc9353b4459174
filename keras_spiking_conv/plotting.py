"""Plots of the reference workflow: input, first-layer activity, predictions over time."""

import numpy as np


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
