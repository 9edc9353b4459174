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
from keras_spiking_conv.export import export
from keras_spiking_conv.fused import FusedNetwork, NetworkCell, SpikingModel, fuse
from keras_spiking_conv.layers import (
    LowpassSynapse,
    LowpassSynapseCell,
    RateScale,
    SpikingReLU,
    SpikingReLUCell,
    TimeFold,
)
from keras_spiking_conv.saving import save
from keras_spiking_conv.streaming import (
    StateSpec,
    Stream,
    initial_states,
    process_chunk,
    state_layout,
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
    "export",
    "FusedNetwork",
    "NetworkCell",
    "fuse",
    "SpikingModel",
    "save",
    "StateSpec",
    "Stream",
    "initial_states",
    "process_chunk",
    "state_layout",
    "LowpassSynapse",
    "LowpassSynapseCell",
    "RateScale",
    "SpikingReLU",
    "SpikingReLUCell",
    "TimeFold",
    "layers",
    "neurons",
]
