"""Converting Keras models to time-distributed spiking models."""

from keras_spiking_conv.conversion.converter import ConversionError, Converter, convert
from keras_spiking_conv.conversion.registry import register_rule
from keras_spiking_conv.conversion.report import ConversionReport
from keras_spiking_conv.conversion.rules import register_stateless
from keras_spiking_conv.conversion.verify import tile_time, verify

__all__ = [
    "ConversionError",
    "ConversionReport",
    "Converter",
    "convert",
    "register_rule",
    "register_stateless",
    "tile_time",
    "verify",
]
