"""Running converted models: the plan, the step engine, the model class, streaming and probing.

Modules, in import order: `plan` (the one walk of a model's graph), `engine`
(one timestep of a network, and the loop over time), `model` (`SpikingModel`,
`fuse`), `streaming` (`Stream`, `process_chunk`, state layout), `probing`
(`probe`, `firing_rates`). Each imports only those before it and `layers`.
"""

from keras_spiking_conv.runtime.engine import FusedNetwork, NetworkCell
from keras_spiking_conv.runtime.model import SpikingModel, fuse
from keras_spiking_conv.runtime.plan import Plan, Site, StateSpec, plan_of
from keras_spiking_conv.runtime.probing import firing_rates, probe
from keras_spiking_conv.runtime.streaming import (
    Stream,
    initial_states,
    process_chunk,
    state_layout,
)

__all__ = [
    "FusedNetwork",
    "NetworkCell",
    "Plan",
    "Site",
    "SpikingModel",
    "StateSpec",
    "Stream",
    "firing_rates",
    "fuse",
    "initial_states",
    "plan_of",
    "probe",
    "process_chunk",
    "state_layout",
]
