"""Keras callbacks for spiking models: firing-rate monitoring and spiking evaluation.

`firing_rates` (from `runtime.probing`) is here too, as the monitor's one-off form.
"""

import keras
import numpy as np

from keras_spiking_conv.energy.estimate import EnergyEstimator
from keras_spiking_conv.runtime.probing import firing_rates, rate_probe, rate_statistics

__all__ = ["FiringRateMonitor", "SpikingEvaluation", "firing_rates"]


class FiringRateMonitor(keras.callbacks.Callback):
    """Records per-layer firing rates into `logs` at the end of each epoch.

    For each neuron layer `L` it adds `L_rate_mean`, `L_rate_max` (Hz) and
    `L_silent` (fraction of neurons that never fire on `x`) to the epoch's
    logs, so `History`, `CSVLogger` and `TensorBoard` record them. Put it
    before `CSVLogger`/`TensorBoard` in the `callbacks` list (Keras' own
    `History` and progress bar already come after user callbacks).

    With `synops=True` it also adds `total_synops`: the synaptic operations
    per example of the whole run on `x`, counted as `estimate_energy` counts
    them (every neuron of the model, whatever `layers` says).

    Args:
        x: A batch of inputs shaped like the model's inputs, `(batch, time, ...)`.
        layers: Neuron layers or names to monitor. Defaults to all `SpikingReLU`
            layers of the model being trained.
        synops: Also log `total_synops`. Defaults to `False`.
    """

    def __init__(self, x, layers=None, synops=False):
        super().__init__()
        self.x = x
        self.layers = layers
        self.synops = bool(synops)
        self._probe = (None, None)  # (model, rate_probe of it): built once per model
        self._estimator = (None, None)  # (model, its EnergyEstimator)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self._probe[0] is not self.model:
            self._probe = (self.model, rate_probe(self.model, self.layers))
        for name, stat in rate_statistics(self._probe[1], self.x).items():
            logs[f"{name}_rate_mean"] = stat["mean"]
            logs[f"{name}_rate_max"] = stat["max"]
            logs[f"{name}_silent"] = stat["silent"]
        if self.synops:
            if self._estimator[0] is not self.model:
                estimator = EnergyEstimator(self.model, owner="FiringRateMonitor(synops=True)")
                self._estimator = (self.model, estimator)
            estimator = self._estimator[1]
            logs["total_synops"] = estimator.report(estimator.measure(self.x)).total_synops


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
