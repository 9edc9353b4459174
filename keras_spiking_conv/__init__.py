"""keras-spiking-conv: convert Keras networks to spiking neural networks."""

from keras_spiking_conv import layers, neurons
from keras_spiking_conv.conversion import (
    ConversionError,
    ConversionReport,
    Converter,
    convert,
    probe,
    register_rule,
    register_stateless,
    tile_time,
    verify,
)
from keras_spiking_conv.layers import (
    LowpassSynapse,
    LowpassSynapseCell,
    RateScale,
    SpikingReLU,
    SpikingReLUCell,
    TimeFold,
)

__version__ = "0.1.0"

__all__ = [
    "ConversionError",
    "ConversionReport",
    "Converter",
    "convert",
    "probe",
    "register_rule",
    "register_stateless",
    "tile_time",
    "verify",
    "LowpassSynapse",
    "LowpassSynapseCell",
    "RateScale",
    "SpikingReLU",
    "SpikingReLUCell",
    "TimeFold",
    "layers",
    "neurons",
]
