"""Firing-rate regularizers, usable as `activity_regularizer` on any Keras layer."""

import keras
from keras import ops

from keras_spiking_conv._validation import check_number

PACKAGE = "keras_spiking_conv"


@keras.saving.register_keras_serializable(package=PACKAGE)
class TargetRate(keras.regularizers.Regularizer):
    """Pulls firing rates towards a target rate, or into a `(low, high)` range.

    The penalty is `weight * mean(d ** 2)`, where `d` is the distance of each
    neuron's rate from `target` (or from the range `[low, high]`, zero
    inside it), averaged over neurons and batch items. Rates are averaged over
    time first when `time_axis` is set (the converter sets `time_axis=1` for
    the neurons it builds). Keras divides activity regularization by the
    batch size; this regularizer returns the batch sum so the result is the
    mean above, whatever the batch size. Used on a layer that returns
    sequences and states, Keras regularizes every returned tensor: regularize
    the sequence output only.

    Args:
        target: A rate (e.g. `250.0` Hz, with `amplitude=1` neurons outputting
            Hz), or a `(low, high)` pair.
        weight: Scale of the penalty. Defaults to `1e-3`.
        time_axis: Axis averaged before the penalty, or `None`. Defaults to
            `None`.

    Example:

    ```python
    keras.layers.Conv2D(32, 3, activation="relu",
                        activity_regularizer=TargetRate(250.0, weight=1e-3))
    ```
    """

    def __init__(self, target, weight=1e-3, time_axis=None):
        owner = "TargetRate"
        if isinstance(target, (list, tuple)):
            if len(target) != 2:
                raise ValueError(
                    f"{owner}: `target` must be a rate or a (low, high) pair. "
                    f"Received: target={target!r}"
                )
            low = check_number("target", target[0], owner=owner, non_negative=True)
            high = check_number("target", target[1], owner=owner, non_negative=True)
            if low > high:
                raise ValueError(
                    f"{owner}: `target` range must have low <= high. Received: target={target!r}"
                )
            self.target = (low, high)
        else:
            self.target = check_number("target", target, owner=owner, non_negative=True)
        self.weight = check_number("weight", weight, owner=owner, non_negative=True)
        if time_axis is not None and (
            isinstance(time_axis, bool) or not isinstance(time_axis, int)
        ):
            raise TypeError(
                f"{owner}: `time_axis` must be an int or None. Received: time_axis={time_axis!r}"
            )
        self.time_axis = time_axis

    def distance(self, rates):
        """Per-neuron distance of `rates` from the target (or range)."""
        if isinstance(self.target, tuple):
            low, high = self.target
            return ops.relu(low - rates) + ops.relu(rates - high)
        return rates - self.target

    def __call__(self, x):
        rates = ops.cast(x, "float32")
        if self.time_axis is not None and len(rates.shape) > self.time_axis:
            rates = ops.mean(rates, axis=self.time_axis)
        squared = ops.square(self.distance(rates))
        if len(squared.shape) == 0:
            return self.weight * squared
        per_item = ops.mean(ops.reshape(squared, (ops.shape(squared)[0], -1)), axis=1)
        return self.weight * ops.sum(per_item)

    def get_config(self):
        target = list(self.target) if isinstance(self.target, tuple) else self.target
        return {"target": target, "weight": self.weight, "time_axis": self.time_axis}
