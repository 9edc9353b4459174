"""Low latency: calibrated scales, conversion-aware (quantized) training, latency sweeps."""

from keras_spiking_conv.latency.calibration import (
    DEFAULT_PER_CHANNEL,
    DEFAULT_PERCENTILE,
    activation_percentiles,
    calibrate,
)
from keras_spiking_conv.latency.folding import fold_batch_norm
from keras_spiking_conv.latency.quantization import quantize_activations
from keras_spiking_conv.latency.sweep import LatencySweep, latency_sweep, plot_latency

__all__ = [
    "DEFAULT_PER_CHANNEL",
    "DEFAULT_PERCENTILE",
    "LatencySweep",
    "activation_percentiles",
    "calibrate",
    "fold_batch_norm",
    "latency_sweep",
    "plot_latency",
    "quantize_activations",
]
