"""`EnergyReport`: per-layer activity, synaptic operations and MACs, priced per device."""

import dataclasses

from keras_spiking_conv.energy.devices import get_device

DEFAULT_DEVICES = ("cpu", "gpu", "loihi", "spinnaker2")


@dataclasses.dataclass
class LayerEnergy:
    """One row of an `EnergyReport`: an original layer with weights and/or a neuron.

    Every count is per example; `spikes`, `synops` and `dense_macs` over the
    whole run, `macs` for one pass of the ANN.

    Attributes:
        name: The original layer (its path, inside nested models).
        type: Its class (the layer with weights', else the neuron's).
        neurons: How many neurons it has (0 if none).
        spiking: Whether its neurons spike.
        rate_mean: Mean firing rate of its neurons (Hz), over neurons and examples.
        rate_max: Largest rate of any of its neurons on any example (Hz).
        spikes: Spikes its neurons send.
        synops: Synaptic operations it receives: each spike that reaches it
            times the connections it uses.
        dense_macs: Connections it computes on non-spike input (every step).
        macs: MACs of the layer in one pass of the original (ANN) network.
    """

    name: str
    type: str
    neurons: int = 0
    spiking: bool = False
    rate_mean: float = None
    rate_max: float = None
    spikes: float = 0.0
    synops: float = 0.0
    dense_macs: float = 0.0
    macs: int = 0


class EnergyReport:
    """What `estimate_energy` measured: per-layer rows, totals and energy per device.

    Attributes:
        rows: `LayerEnergy` rows, in graph order.
        n_steps: Timesteps of the run.
        n_examples: How many examples were measured.
        dt: The neurons' timestep (s).
        model_name: The converted model's name.
        neuron_rates: `{neuron name: per-neuron mean rates (Hz), flat array}`.
        synapse_updates: Low-pass synapse state updates per example (whole run).
        notes: Assumptions made for layers without a counting rule.
    """

    def __init__(
        self,
        rows,
        *,
        n_steps,
        n_examples,
        dt,
        model_name,
        neuron_rates=None,
        synapse_updates=0,
        notes=(),
    ):
        self.rows = list(rows)
        self.n_steps = int(n_steps)
        self.n_examples = int(n_examples)
        self.dt = dt
        self.model_name = model_name
        self.neuron_rates = dict(neuron_rates or {})
        self.synapse_updates = synapse_updates
        self.notes = list(notes)

    # -- totals -------------------------------------------------------------------
    @property
    def total_synops(self):
        """Synaptic operations per example, over the whole run."""
        return sum(row.synops for row in self.rows)

    @property
    def total_spikes(self):
        """Spikes per example, over the whole run."""
        return sum(row.spikes for row in self.rows)

    @property
    def dense_macs(self):
        """MACs on non-spike values (e.g. the first layer's input) per example, whole run."""
        return sum(row.dense_macs for row in self.rows)

    @property
    def macs(self):
        """MACs of one pass of the original (ANN) network, per example."""
        return sum(row.macs for row in self.rows)

    @property
    def neurons(self):
        """How many neurons the network has."""
        return sum(row.neurons for row in self.rows)

    @property
    def neuron_updates(self):
        """Neuron updates per example over the whole run (every neuron, every step)."""
        return self.neurons * self.n_steps

    # -- energy -------------------------------------------------------------------
    def energy_parts(self, device):
        """The energy of the converted network per example on `device`, by part (J).

        On a spiking (event-based) device: each synop at `energy_per_synop`,
        each MAC on non-spike values at `energy_per_mac`, each neuron update and
        each synapse update at `energy_per_neuron`. On a non-spiking device the
        network is simulated step by step: every connection every step at
        `energy_per_mac`, and the same neuron and synapse updates.

        Returns:
            A dict with `synops`, `macs`, `neurons`, `synapses` and `total` (J).
        """
        spec = get_device(device, owner="EnergyReport.energy()")
        if spec.spiking:
            synops = self.total_synops * spec.energy_per_synop
            macs = self.dense_macs * spec.energy_per_mac
        else:
            synops, macs = 0.0, self.macs * self.n_steps * spec.energy_per_mac
        neurons = self.neuron_updates * spec.energy_per_neuron
        synapses = self.synapse_updates * spec.energy_per_neuron
        total = synops + macs + neurons + synapses
        return {
            "synops": synops,
            "macs": macs,
            "neurons": neurons,
            "synapses": synapses,
            "total": total,
        }

    def energy(self, device):
        """Joules per example of the converted network on `device` (see `energy_parts`).

        Args:
            device: A registered device name (`"cpu"`, `"gpu"`, `"arm"`,
                `"loihi"`, `"spinnaker"`, `"spinnaker2"`, `"horowitz_45nm"`, or
                one added with `register_device`).
        """
        return self.energy_parts(device)["total"]

    def ann_energy(self, device):
        """Joules per example of one pass of the original (ANN) network on `device`:
        its MACs at `energy_per_mac` and one update per neuron at `energy_per_neuron`.

        An event-based chip without a MAC price of its own (`loihi`, `spinnaker`,
        `spinnaker2`) prices the MACs as synops: a number to compare with care;
        `summary` leaves it out.
        """
        spec = get_device(device, owner="EnergyReport.ann_energy()")
        return self.macs * spec.energy_per_mac + self.neurons * spec.energy_per_neuron

    # -- output -------------------------------------------------------------------
    def to_dict(self, devices=DEFAULT_DEVICES):
        """The report as plain Python values (JSON-ready), energies for `devices`."""
        return {
            "model": self.model_name,
            "n_steps": self.n_steps,
            "n_examples": self.n_examples,
            "dt": self.dt,
            "rows": [dataclasses.asdict(row) for row in self.rows],
            "totals": {
                "neurons": self.neurons,
                "spikes": self.total_spikes,
                "synops": self.total_synops,
                "dense_macs": self.dense_macs,
                "neuron_updates": self.neuron_updates,
                "synapse_updates": self.synapse_updates,
                "macs": self.macs,
            },
            "energy": {name: self.energy(name) for name in devices},
            "ann_energy": {name: self.ann_energy(name) for name in devices},
            "notes": list(self.notes),
        }

    def to_dataframe(self):
        """The rows as a `pandas.DataFrame` (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as error:
            raise ImportError(
                "EnergyReport.to_dataframe() needs pandas, which is not installed. Install "
                "it (`pip install pandas`), or use `to_dict()['rows']`, a list of dicts."
            ) from error
        return pd.DataFrame([dataclasses.asdict(row) for row in self.rows])

    def summary(self, devices=DEFAULT_DEVICES):
        """The report as a text table, with energies per example for `devices`."""
        for name in devices:
            get_device(name, owner="EnergyReport.summary()")
        header = (
            "layer",
            "type",
            "neurons",
            "rate Hz",
            "max Hz",
            "spikes",
            "synops",
            "dense MACs",
            "ANN MACs",
        )
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    r.type,
                    f"{r.neurons:,}",
                    "" if r.rate_mean is None else f"{r.rate_mean:.1f}",
                    "" if r.rate_max is None else f"{r.rate_max:.0f}",
                    _num(r.spikes),
                    _num(r.synops),
                    _num(r.dense_macs),
                    _num(r.macs),
                )
            )
        lines.append(
            (
                "total",
                "",
                f"{self.neurons:,}",
                "",
                "",
                _num(self.total_spikes),
                _num(self.total_synops),
                _num(self.dense_macs),
                _num(self.macs),
            )
        )
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            f"Energy of '{self.model_name}': {self.n_steps} steps, per example "
            f"(mean of {self.n_examples})"
        ]
        for k, line in enumerate(lines):
            cells = [
                c.ljust(w) if i < 2 else c.rjust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            ]
            text.append("  ".join(cells).rstrip())
            if k == 0 or k == len(lines) - 2:
                text.append("  ".join("-" * w for w in widths))
        text.append("J per example: " + ", ".join(self._priced(name) for name in devices))
        text.extend(f"note: {note}" for note in self.notes)
        return "\n".join(text)

    def _priced(self, name):
        """`"loihi 0.000372"`; with the ANN's energy where the device has a MAC price."""
        spec = get_device(name, owner="EnergyReport.summary()")
        text = f"{name} {self.energy(spec):.3g}"
        if not spec.spiking or spec.energy_per_mac != spec.energy_per_synop:
            text += f" (ANN {self.ann_energy(spec):.3g})"
        return text

    def __str__(self):
        return self.summary()

    def __repr__(self):
        return (
            f"<EnergyReport '{self.model_name}': {self.n_steps} steps, "
            f"{self.total_synops:.4g} synops, {self.macs:,} ANN MACs per example>"
        )


def _num(value):
    """A count, compact: `1,234` below a million, else `1.23e+06`."""
    value = float(value)
    if value == int(value) and abs(value) < 1e6:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) >= 1e6 else f"{value:,.1f}"
