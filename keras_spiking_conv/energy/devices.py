"""Energy per operation of the devices `EnergyReport.energy` prices a network on.

The numbers are those KerasSpiking's `ModelEnergy` cites, plus Horowitz's 45 nm
figures for 32-bit floating point:

- `cpu` (Intel i7-4960X), `gpu` (Nvidia GTX Titan Black), `arm` (ARM Cortex-A):
  Degnan, Marr and Hasler, "Assessing trends in performance per watt for signal
  processing applications", IEEE TVLSI 24(1), 2015. One synaptic operation,
  MAC or neuron update costs the same (the energy of one multiply-accumulate).
- `loihi`: Davies et al., "Loihi: a neuromorphic manycore processor with on-chip
  learning", IEEE Micro 38(1), 2018 (23.6 pJ per synaptic spike operation plus
  3.5 pJ per synaptic update; 81 pJ per neuron update).
- `spinnaker`, `spinnaker2`: Hoeppner et al., "Dynamic power management for
  neuromorphic many-core systems", IEEE TCAS-I 66(8), 2019.
- `horowitz_45nm`: Horowitz, "Computing's energy problem (and what we can do
  about it)", ISSCC 2014: a 32-bit float add 0.9 pJ, a multiply 3.7 pJ, so a
  MAC 4.6 pJ. A synaptic operation is an add; a neuron update is counted as one
  add (the voltage integrates its input; the threshold compare and reset are
  not counted).
"""

import dataclasses
import math
import numbers
import warnings


@dataclasses.dataclass(frozen=True)
class Device:
    """Energy per operation on one device, in joules.

    Attributes:
        name: The registry name, e.g. `"loihi"`.
        spiking: Whether the device is event-based: it computes a synaptic
            operation per spike that arrives (`energy_per_synop`), not every
            connection every timestep.
        energy_per_synop: One synaptic operation (a spike delivered along one
            connection).
        energy_per_neuron: One neuron update (one neuron, one timestep).
        energy_per_mac: One multiply-accumulate on non-spike values (a
            non-spiking device's every connection; a spiking device's first
            layer on the non-spike input).
        citation: Where the numbers come from.
    """

    name: str
    spiking: bool
    energy_per_synop: float
    energy_per_neuron: float
    energy_per_mac: float
    citation: str = ""


DEGNAN = "Degnan, Marr and Hasler, IEEE TVLSI 24(1), 2015"
DAVIES = "Davies et al., IEEE Micro 38(1), 2018"
HOEPPNER = "Hoeppner et al., IEEE TCAS-I 66(8), 2019"
HOROWITZ = "Horowitz, ISSCC 2014 (45 nm, 32-bit float)"

_DEVICES = {}


def _check_energy(name, value, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: Argument `{name}` must be a number of joules, not "
            f"{type(value).__name__}. Received: {name}={value!r}"
        )
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: Argument `{name}` must be a finite number of joules >= 0. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def register_device(
    name,
    *,
    energy_per_synop,
    energy_per_neuron,
    spiking,
    energy_per_mac=None,
    citation="",
):
    """Adds a device (or replaces one, with a warning) for `EnergyReport.energy`.

    Args:
        name: The name to price with, e.g. `"my-chip"` (case-insensitive).
        energy_per_synop: Joules per synaptic operation.
        energy_per_neuron: Joules per neuron update (one neuron, one timestep).
        spiking: Whether the device is event-based (computes only the
            connections of the spikes that arrive).
        energy_per_mac: Joules per multiply-accumulate on non-spike values.
            Defaults to `energy_per_synop`.
        citation: Where the numbers come from. Defaults to `""`.

    Returns:
        The registered `Device`.

    Example:

    >>> chip = register_device(
    ...     "my-chip", energy_per_synop=1e-12, energy_per_neuron=5e-12, spiking=True
    ... )
    >>> chip.energy_per_mac  # defaults to the synop's
    1e-12
    """
    owner = f"register_device({name!r})"
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_device(): `name` must be a non-empty str. Received: {name!r}")
    if not isinstance(spiking, bool):
        raise TypeError(f"{owner}: `spiking` must be True or False. Received: spiking={spiking!r}")
    synop = _check_energy("energy_per_synop", energy_per_synop, owner)
    device = Device(
        name=name.lower(),
        spiking=spiking,
        energy_per_synop=synop,
        energy_per_neuron=_check_energy("energy_per_neuron", energy_per_neuron, owner),
        energy_per_mac=synop
        if energy_per_mac is None
        else _check_energy("energy_per_mac", energy_per_mac, owner),
        citation=str(citation),
    )
    if device.name in _DEVICES and _DEVICES[device.name] != device:
        warnings.warn(f"Device '{device.name}' was already registered; replacing it.", stacklevel=2)
    _DEVICES[device.name] = device
    return device


def get_device(device, owner="energy()"):
    """The `Device` registered as `device` (a name, or a `Device` itself)."""
    if isinstance(device, Device):
        return device
    key = device.lower() if isinstance(device, str) else device
    if key not in _DEVICES:
        raise ValueError(
            f"{owner}: unknown device {device!r}. Known devices: {sorted(_DEVICES)}. "
            "Add one with keras_spiking_conv.register_device(name, energy_per_synop=..., "
            "energy_per_neuron=..., spiking=...)."
        )
    return _DEVICES[key]


def devices():
    """The registered devices, `{name: Device}`."""
    return dict(_DEVICES)


for _name, _spiking, _synop, _neuron, _mac, _cite in (
    ("cpu", False, 8.6e-9, 8.6e-9, None, DEGNAN),
    ("gpu", False, 0.3e-9, 0.3e-9, None, DEGNAN),
    ("arm", False, 0.9e-9, 0.9e-9, None, DEGNAN),
    ("loihi", True, (23.6 + 3.5) * 1e-12, 81e-12, None, DAVIES),
    ("spinnaker", True, 13.3e-9, 26e-9, None, HOEPPNER),
    ("spinnaker2", True, 450e-12, 2.19e-9, None, HOEPPNER),
    ("horowitz_45nm", True, 0.9e-12, 0.9e-12, 4.6e-12, HOROWITZ),
):
    register_device(
        _name,
        energy_per_synop=_synop,
        energy_per_neuron=_neuron,
        spiking=_spiking,
        energy_per_mac=_mac,
        citation=_cite,
    )
