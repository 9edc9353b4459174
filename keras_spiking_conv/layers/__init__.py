"""Stateful spiking layers, the QCFS activation, the time-folding wrapper, the readout and
the layer form of a `keras.ops` call."""

from keras_spiking_conv.layers.encoders import (
    PoissonEncoder,
    PoissonEncoderCell,
    RegularEncoder,
    RegularEncoderCell,
)
from keras_spiking_conv.layers.lif import LIF, LIFCell
from keras_spiking_conv.layers.lowpass import (
    AlphaSynapse,
    AlphaSynapseCell,
    LowpassSynapse,
    LowpassSynapseCell,
)
from keras_spiking_conv.layers.max_pool import AccumulatedMaxPoolCell, AccumulatedMaxPooling
from keras_spiking_conv.layers.operation import OperationLayer
from keras_spiking_conv.layers.quantized_relu import QuantizedReLU, QuantizedSimpleRNNCell
from keras_spiking_conv.layers.rate_scale import RateScale
from keras_spiking_conv.layers.readout import TimeReadout
from keras_spiking_conv.layers.spiking_activation import (
    SpikingActivation,
    SpikingActivationCell,
)
from keras_spiking_conv.layers.spiking_relu import SpikingReLU, SpikingReLUCell
from keras_spiking_conv.layers.temporal import (
    CausalConv1D,
    CausalConv1DCell,
    FrameRecurrence,
    FrameRecurrenceCell,
    FrameSteps,
    RunningPooling,
    RunningPoolingCell,
)
from keras_spiking_conv.layers.time_fold import TimeFold

__all__ = [
    "CausalConv1D",
    "CausalConv1DCell",
    "FrameRecurrence",
    "FrameRecurrenceCell",
    "FrameSteps",
    "RunningPooling",
    "RunningPoolingCell",
    "AccumulatedMaxPoolCell",
    "AccumulatedMaxPooling",
    "AlphaSynapse",
    "AlphaSynapseCell",
    "LIF",
    "LIFCell",
    "LowpassSynapse",
    "LowpassSynapseCell",
    "OperationLayer",
    "PoissonEncoder",
    "PoissonEncoderCell",
    "RegularEncoder",
    "RegularEncoderCell",
    "QuantizedReLU",
    "QuantizedSimpleRNNCell",
    "RateScale",
    "SpikingActivation",
    "SpikingActivationCell",
    "SpikingReLU",
    "SpikingReLUCell",
    "TimeFold",
    "TimeReadout",
]
