"""Keras callbacks for spiking models: firing-rate monitoring and spiking evaluation."""

import warnings

import keras
import numpy as np

from keras_spiking_conv.conversion.verify import DuplicateNamesError, Trace, _own_outputs
from keras_spiking_conv.layers import SpikingReLU


def firing_rates(model, x, layers=None, batch_size=None):
    """Per-layer firing-rate statistics of a converted model on inputs `x`.

    A neuron's rate is its output divided by its `amplitude` (so in Hz),
    averaged over time.

    Args:
        model: A converted model (inputs `(batch, time, ...)`).
        x: Its input data.
        layers: `SpikingReLU` layers or names, original layer names (their
            neurons) or paths, as `probe` takes them. Defaults to every neuron
            call, nested models' included.
        batch_size: Prediction batch size. Defaults to Keras' default.

    Returns:
        A dict `{layer_name: {"mean": Hz, "max": Hz, "silent": fraction}}`:
        the mean over neurons and inputs, the largest rate of any neuron on any
        input, and the fraction of neurons silent on every input. A neuron in
        a nested model is named with its path, e.g. `"block/dense_neuron"`, and
        a nested model's second call gets `_call1` (`"block_call1/..."`).
    """
    return rate_statistics(rate_probe(model, layers), x, batch_size=batch_size)


def rate_probe(model, layers=None):
    """A model returning the activity of `model`'s neuron layers, for `rate_statistics`.

    It shares `model`'s layers and weights, so one probe serves all the
    epochs of a training run. Arguments as in `firing_rates`.

    Returns:
        `(probe, targets)`: the (fused) probe model, or `None` if there are no
        neurons, and the `(path, layer)` of each of its outputs.
    """
    trace = Trace(model)
    if layers is None:
        paths = trace.neurons()
    else:
        paths = [trace.find(layer, "firing_rates()") for layer in layers]
    for path in paths:
        if not isinstance(trace.calls[path][0], SpikingReLU):
            raise ValueError(
                f"firing_rates(): '{path}' in '{model.name}' is a "
                f"{type(trace.calls[path][0]).__name__}, not a neuron (SpikingReLU), so it "
                f"has no firing rate. Neurons: {trace.neurons()}"
            )
    if not paths:
        return None, []
    from keras_spiking_conv.fused import fuse

    try:
        probe = trace.probe_model(paths, with_outputs=False)
    except DuplicateNamesError as error:
        if layers is not None:
            raise
        # Every neuron was asked for by default: measure those the model's own graph has.
        own = _own_outputs(model)
        paths = [path for path in paths if path in own]
        warnings.warn(f"firing_rates(): {error} Measuring only: {paths}.", stacklevel=3)
        if not paths:
            return None, []
        probe = trace.probe_model(paths, with_outputs=False)
    return fuse(probe), [(p, trace.calls[p][0]) for p in paths]


def rate_statistics(probed, x, batch_size=None):
    """`firing_rates`' statistics from a `rate_probe` result on inputs `x`."""
    probe, targets = probed
    if probe is None:
        return {}
    outputs = probe.predict(x, batch_size=batch_size, verbose=0)
    if len(targets) == 1:
        outputs = [outputs]
    stats = {}
    for (path, layer), out in zip(targets, outputs, strict=True):
        rates = out.mean(axis=1) / layer.amplitude
        stats[path] = {
            "mean": float(rates.mean()),
            "max": float(rates.max()),
            "silent": float(np.mean(np.all(rates.reshape(len(rates), -1) == 0, axis=0))),
        }
    return stats


class FiringRateMonitor(keras.callbacks.Callback):
    """Records per-layer firing rates into `logs` at the end of each epoch.

    For each neuron layer `L` it adds `L_rate_mean`, `L_rate_max` (Hz) and
    `L_silent` (fraction of neurons that never fire on `x`) to the epoch's
    logs, so `History`, `CSVLogger` and `TensorBoard` record them. Put it
    before `CSVLogger`/`TensorBoard` in the `callbacks` list (Keras' own
    `History` and progress bar already come after user callbacks).

    Args:
        x: A batch of inputs shaped like the model's inputs, `(batch, time, ...)`.
        layers: Neuron layers or names to monitor. Defaults to all `SpikingReLU`
            layers of the model being trained.
    """

    def __init__(self, x, layers=None):
        super().__init__()
        self.x = x
        self.layers = layers
        self._probe = (None, None)  # (model, rate_probe of it): built once per model

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._probe[0] is not self.model:
            self._probe = (self.model, rate_probe(self.model, self.layers))
        for name, stat in rate_statistics(self._probe[1], self.x).items():
            logs[f"{name}_rate_mean"] = stat["mean"]
            logs[f"{name}_rate_max"] = stat["max"]
            logs[f"{name}_silent"] = stat["silent"]


class SpikingEvaluation(keras.callbacks.Callback):
    """Converts the model being trained to spiking each epoch and logs its accuracy.

    Useful while training a rate network (with firing-rate regularization, say)
    to watch how well it will convert. Adds `spiking_accuracy` to the logs:
    classification accuracy at the last timestep.

    Args:
        x: Original-shaped inputs (no time axis); they are tiled over time.
        y: Integer labels.
        n_steps: Timesteps to simulate. Defaults to `30`.
        every: Evaluate every `every` epochs. Defaults to `1`.
        **convert_kwargs: Options of `keras_spiking_conv.convert`, e.g.
            `swap_activations={"relu": "spiking_relu"}, synapse=0.01`.
    """

    def __init__(self, x, y, n_steps=30, every=1, **convert_kwargs):
        super().__init__()
        self.x, self.y = x, np.asarray(y).reshape(-1)
        self.n_steps, self.every = n_steps, every
        self.convert_kwargs = convert_kwargs

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        from keras_spiking_conv.conversion import convert, tile_time

        snn = convert(self.model, **self.convert_kwargs)
        out = snn.predict(tile_time(self.x, self.n_steps), verbose=0)
        logs["spiking_accuracy"] = float(np.mean(np.argmax(out[:, -1], axis=-1) == self.y))
