"""`estimate_energy`: run a converted model, count its spikes and synaptic operations."""

import numpy as np

from keras_spiking_conv.conversion.verify import tile_time
from keras_spiking_conv.energy.counting import FanOut, recurrent_kind
from keras_spiking_conv.energy.report import EnergyReport, LayerEnergy
from keras_spiking_conv.layers.temporal import CausalConv1D, FrameRecurrence
from keras_spiking_conv.runtime.plan import inputs_struct, is_converted, plan_of
from keras_spiking_conv.runtime.probing import has_neurons, neuron_of, output_scale, rate_probe
from keras_spiking_conv.runtime.streaming import check_model, standardize_inputs

DEFAULT_BATCH_SIZE = 50


def check_converted(model, owner):
    """Raises unless `model` is a built model made by `convert`."""
    check_model(model, owner)
    if not is_converted(model):
        raise ValueError(
            f"{owner}: model '{model.name}' is not a converted (spiking) model: it has no "
            "neurons, synapses or time-folded layers, so it has no spikes to count. Convert "
            "it first, e.g. `snn = keras_spiking_conv.convert(model, swap_activations="
            "{'relu': 'spiking_relu'})`, and pass `snn` with inputs that have a time axis "
            "(`keras_spiking_conv.tile_time(x, n_steps)`)."
        )


def flat_inputs(model, x, owner):
    """`x` as a flat list of arrays in the order of `model.inputs`, each with a time axis."""
    flat = [np.asarray(v) for v in standardize_inputs(model, x, owner)]
    steps = {v.shape[1] for v in flat}
    sizes = {v.shape[0] for v in flat}
    if len(steps) != 1 or len(sizes) != 1 or 0 in steps or 0 in sizes:
        raise ValueError(
            f"{owner}: every input needs the same number (> 0) of examples and of timesteps. "
            f"Received shapes {[v.shape for v in flat]}."
        )
    return flat


class Activity:
    """Spike counts of a converted model's neurons, added up batch by batch.

    For each neuron: the spikes per position summed over examples, and the
    largest count any example reached, per neuron (for the maximum firing
    rate); with `per_step`, both for every prefix of the run (`(steps,
    *features)`: the first `t` steps' counts), so a report can be made for
    any shorter duration.

    Args:
        sites: The neuron `Site`s whose outputs `add` takes, in order.
        input_shapes: One step of each model input (no batch, no time axis).
        n_steps: Timesteps of the inputs (a temporal model's frames).
        per_step: Keep the counts step by step. Defaults to `False` (memory
            that does not grow with the number of steps).
        steps_per_frame: Simulation steps per input step (a temporal model's
            `steps_per_frame`): each output is the mean of that many steps, so its
            spikes are the output times it. Defaults to `1`.
    """

    def __init__(self, sites, input_shapes, n_steps, per_step=False, steps_per_frame=1):
        self.sites = list(sites)
        self.steps_per_frame = int(steps_per_frame)
        self.input_shapes = [tuple(shape) for shape in input_shapes]
        self.n_steps = int(n_steps)
        self.per_step = bool(per_step)
        self.by_step = [None] * len(self.sites)
        self.max_so_far = [None] * len(self.sites)
        self.n_examples = 0

    def add(self, activities):
        """Adds one batch: the neurons' outputs, `(batch, steps, *features)` each."""
        for k, (site, out) in enumerate(zip(self.sites, activities, strict=True)):
            # A negative spike (a signed neuron's) is a spike sent: counted as one.
            neuron = neuron_of(site)
            counts = np.abs(np.asarray(out, dtype="float64") * output_scale(site)) * (
                neuron.dt / neuron.amplitude * self.steps_per_frame
            )
            if self.per_step:
                summed = counts.sum(axis=0)
                peak = np.cumsum(counts, axis=1).max(axis=0)
            else:
                per_example = counts.sum(axis=1)
                summed, peak = per_example.sum(axis=0)[None], per_example.max(axis=0)[None]
            if self.by_step[k] is None:
                self.by_step[k], self.max_so_far[k] = summed, peak
            else:
                self.by_step[k] += summed
                np.maximum(self.max_so_far[k], peak, out=self.max_so_far[k])
        self.n_examples += len(activities[0]) if activities else 0


class EnergyEstimator:
    """Counts what an `EnergyReport` holds for one converted model (reusable).

    It builds the model's activity probe and its fan-out plan once; `measure`
    then runs any inputs, and `report` turns the counts into an `EnergyReport`
    for the first `n_steps` steps.

    Args:
        model: A model made by `keras_spiking_conv.convert`.
        owner: The caller's name, for error messages.
    """

    def __init__(self, model, owner="estimate_energy()"):
        check_converted(model, owner)
        self.model, self.owner = model, owner
        self.plan = plan_of(model)
        self.fanout = FanOut(self.plan)
        self._probe = None

    def probe(self):
        """`(probe model or None, neuron sites)`: the activity of every neuron (built once)."""
        if self._probe is None:
            self._probe = rate_probe(self.model)
            measured = {id(site) for site in self._probe[1]}
            missed = [s.name for s in self.plan.neurons() if id(s) not in measured]
            if missed:
                self.fanout.notes.append(
                    f"neurons not measured (their spikes are not counted): {missed}"
                )
        return self._probe

    def measure(self, x, batch_size=None):
        """Runs `x` (inputs with a time axis) and returns their `Activity`."""
        flat = flat_inputs(self.model, x, self.owner)
        batch_size = batch_size or DEFAULT_BATCH_SIZE
        probe, sites = self.probe()
        activity = Activity(
            sites,
            [v.shape[2:] for v in flat],
            flat[0].shape[1],
            steps_per_frame=self.plan.steps_per_frame,
        )
        if probe is None:
            activity.n_examples = len(flat[0])
            return activity
        struct = inputs_struct(self.model)
        for start in range(0, len(flat[0]), batch_size):
            batch = [v[start : start + batch_size] for v in flat]
            if isinstance(struct, dict):
                batch = dict(zip(struct, batch, strict=True))
            elif not isinstance(struct, (list, tuple)):
                batch = batch[0]
            outs = probe.predict_on_batch(batch)
            activity.add(outs if len(sites) > 1 else [outs])
        return activity

    def report(self, activity, n_steps=None):
        """The `EnergyReport` of `activity` over its first `n_steps` steps (all by default;
        a temporal model's: its first `n_steps` frames, each `steps_per_frame` steps)."""
        steps = activity.n_steps if n_steps is None else int(n_steps)
        if not 1 <= steps <= activity.n_steps or (
            steps != activity.n_steps and not activity.per_step
        ):
            raise ValueError(
                f"{self.owner}: `n_steps` must be between 1 and the {activity.n_steps} steps "
                "measured (and the whole run unless the activity was kept per step). "
                f"Received: n_steps={n_steps}"
            )
        n = max(activity.n_examples, 1)
        frames, steps = steps, steps * activity.steps_per_frame  # simulation steps
        # The original network's MACs: one pass, or for a temporal model one per frame.
        passes = frames if self.plan.temporal else 1
        spikes, rates = {}, {}
        stats = {}
        for k, site in enumerate(activity.sites):
            if activity.by_step[k] is None:
                continue
            last = frames - 1 if activity.per_step else 0
            total = activity.by_step[k][: last + 1].sum(axis=0) / n  # per example, per neuron
            neuron = neuron_of(site)
            if neuron.spiking:
                spikes[site.name] = total
            seconds = steps * neuron.dt
            rates[site.name] = (total / seconds).reshape(-1)
            stats[site.name] = (
                float(total.sum()) if neuron.spiking else 0.0,
                float(rates[site.name].mean()),
                float(activity.max_so_far[k][last].max() / seconds),
            )
        counts = self.fanout.count(
            {name: value.astype("float32") for name, value in spikes.items()},
            activity.input_shapes,
        )
        rows, synapse_updates = {}, 0
        for count in counts:
            site = count.site
            if site.role == "synapse":
                synapse_updates += count.size * steps
                continue
            key = "/".join((*site.path[:-1], site.source or site.path[-1]))
            if has_neurons(site):
                neuron = neuron_of(site)
                row = rows.setdefault(key, LayerEnergy(key, type(neuron).__name__))
                spiked, mean, peak = stats.get(site.name, (0.0, None, None))
                if mean is not None:
                    row.rate_mean = _weighted(row.rate_mean, row.neurons, mean, count.size)
                    row.rate_max = peak if row.rate_max is None else max(row.rate_max, peak)
                row.neurons += count.size
                row.spiking = row.spiking or neuron.spiking
                row.spikes += spiked
            if site.role != "neuron":
                inner = _layer_type(site.layer)
                row = rows.setdefault(key, LayerEnergy(key, inner))
                row.type = inner
                row.dense_macs += count.dense * steps
                row.macs += count.macs * passes
            row.synops += count.synops
        dts = {neuron_of(site).dt for site in activity.sites}
        return EnergyReport(
            rows.values(),
            n_steps=steps,
            n_examples=activity.n_examples,
            dt=dts.pop() if len(dts) == 1 else None,
            model_name=self.model.name,
            neuron_rates=rates,
            synapse_updates=synapse_updates,
            notes=self.fanout.notes,
        )


def _layer_type(layer):
    """The class of the original layer with weights a site computes: a time-folded
    layer's, `Conv1D` for a `CausalConv1D`, the recurrent layer of a `FrameRecurrence`."""
    if isinstance(layer, CausalConv1D):
        return "Conv1D"
    if isinstance(layer, FrameRecurrence):
        return recurrent_kind(layer.cell.cell)[0]
    return type(layer.layer).__name__


def _weighted(mean, count, new_mean, new_count):
    if mean is None or count == 0:
        return new_mean
    return (mean * count + new_mean * new_count) / (count + new_count)


def estimate_energy(snn, x, batch_size=None):
    """Spikes, synaptic operations, MACs and energy per example of a converted model.

    The model runs on `x`; each neuron's spikes are counted per position, and
    each spike times the connections it really reaches is one synaptic
    operation (synop) per connection: convolutions counted exactly at their
    edges and with strides, through pooling, `Add`, `Concatenate`, reshapes,
    synapses and nested models (see `docs/energy.md`). The model's inputs are
    not spikes: the first layer computes every connection it uses every step
    (its `dense_macs`). So are a spike encoder's outputs (`RegularEncoder`,
    `PoissonEncoder`): counted as the dense values they encode, an
    overestimate for spiking hardware. The original network's MACs (one pass) come with it.

    Args:
        snn: A model made by `keras_spiking_conv.convert`, inputs
            `(batch, time, ...)`, or a constant-input model
            (`convert(..., constant_input=True)`): its `network` is measured on
            its inputs held for its `n_steps` (a tiled copy of `x`, so keep `x`
            to the examples the estimate needs).
        x: Its inputs with a time axis (an array, or a list or dict of them),
            e.g. `keras_spiking_conv.tile_time(images, n_steps)`; for a
            constant-input model, its inputs as they are.
        batch_size: Examples per batch. Defaults to `50`.

    Returns:
        An `EnergyReport`: per-layer rows, `total_synops` (per example, whole
        run), `macs` (per example, one ANN pass), `energy(device)` and
        `ann_energy(device)` in joules per example, `summary()`, `to_dict()`,
        `to_dataframe()`.

    Example:

    >>> snn = keras_spiking_conv.convert(model, swap_activations={"relu": "spiking_relu"})
    >>> report = estimate_energy(snn, keras_spiking_conv.tile_time(images, 20))
    >>> report.energy("loihi") < report.ann_energy("gpu")
    True
    """
    if getattr(snn, "constant_input", False):
        x, snn = tile_time(x, snn.n_steps), snn.network
    estimator = EnergyEstimator(snn, owner="estimate_energy()")
    return estimator.report(estimator.measure(x, batch_size=batch_size))
