"""Stateful spiking layers and the time-folding wrapper."""

from keras_spiking_conv.layers.lowpass import LowpassSynapse, LowpassSynapseCell
from keras_spiking_conv.layers.rate_scale import RateScale
from keras_spiking_conv.layers.spiking_relu import SpikingReLU, SpikingReLUCell
from keras_spiking_conv.layers.time_fold import TimeFold

__all__ = [
    "LowpassSynapse",
    "LowpassSynapseCell",
    "RateScale",
    "SpikingReLU",
    "SpikingReLUCell",
    "TimeFold",
]
