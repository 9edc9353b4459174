"""keras-spiking-conv: convert Keras networks to spiking neural networks."""

# Every public module is an attribute of the package, as in Keras (`keras.callbacks.X`
# after `import keras`); `export` is the function of the module of that name.
from keras_spiking_conv import (
    callbacks,
    conversion,
    datasets,
    demo,
    latency,
    layers,
    neurons,
    plotting,
    regularizers,
    runtime,
    saving,
)
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
    "callbacks",
    "conversion",
    "datasets",
    "demo",
    "latency",
    "layers",
    "neurons",
    "plotting",
    "regularizers",
    "runtime",
    "saving",
]
