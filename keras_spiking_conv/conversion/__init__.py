"""Converting Keras models to time-distributed spiking models."""

from keras_spiking_conv.conversion.converter import ConversionError, Converter, convert
from keras_spiking_conv.conversion.registry import register_rule, register_stateless
from keras_spiking_conv.conversion.report import ConversionReport
from keras_spiking_conv.conversion.verify import probe, tile_time, verify

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
]
