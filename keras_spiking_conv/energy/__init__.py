"""Activity and energy: spikes, synaptic operations, MACs and energy per device.

`estimate_energy(snn, x)` runs a converted model and returns an
`EnergyReport`; `register_device` adds a device to price it on.
"""

from keras_spiking_conv.energy.devices import Device, devices, get_device, register_device
from keras_spiking_conv.energy.estimate import EnergyEstimator, estimate_energy
from keras_spiking_conv.energy.report import EnergyReport, LayerEnergy

__all__ = [
    "Device",
    "EnergyEstimator",
    "EnergyReport",
    "LayerEnergy",
    "devices",
    "estimate_energy",
    "get_device",
    "register_device",
]
