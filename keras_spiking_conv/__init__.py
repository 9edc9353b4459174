"""keras-spiking-conv: convert Keras networks to spiking neural networks."""

from keras_spiking_conv import layers, neurons
from keras_spiking_conv.conversion import (
    ConversionError,
    ConversionReport,
    Converter,
    convert,
    register_rule,
    register_stateless,
    tile_time,
    verify,
)
from keras_spiking_conv.energy import (
    Device,
    EnergyReport,
    LayerEnergy,
    estimate_energy,
    register_device,
)
from keras_spiking_conv.export import export
from keras_spiking_conv.latency import (
    LatencySweep,
    calibrate,
    latency_sweep,
    plot_latency,
    quantize_activations,
)
from keras_spiking_conv.layers import (
    LowpassSynapse,
    LowpassSynapseCell,
    OperationLayer,
    QuantizedReLU,
    RateScale,
    SpikingReLU,
    SpikingReLUCell,
    TimeFold,
    TimeReadout,
)
from keras_spiking_conv.runtime import (
    FusedNetwork,
    NetworkCell,
    SpikingModel,
    StateSpec,
    Stream,
    fuse,
    initial_states,
    probe,
    process_chunk,
    state_layout,
)
from keras_spiking_conv.saving import save

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
    "calibrate",
    "quantize_activations",
    "latency_sweep",
    "plot_latency",
    "LatencySweep",
    "export",
    "estimate_energy",
    "register_device",
    "EnergyReport",
    "LayerEnergy",
    "Device",
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
    "OperationLayer",
    "TimeReadout",
    "QuantizedReLU",
    "layers",
    "neurons",
]
