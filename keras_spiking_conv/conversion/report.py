"""The conversion report: every original layer, what it became, and why."""

import re

from keras_spiking_conv.conversion.activations import CUSTOM_RELU_KEY


class ConversionReport:
    """What each layer of a model became in its converted model.

    Attributes:
        model_name: Name of the converted model.
        rows: One dict per layer call (or `keras.ops` call): `layer`, `class`,
            `kind`, `became`, `spiking`, `note`. `kind` is `"rate"` (folded over
            time by its rule), `"neuron"`, `"generic"` (no rule: folded over
            time after a per-sample check), `"operation"` (a `keras.ops` call),
            `"nested"`, `"kept"`, `"dropped"`, `"readout"`, `"encoder"` (a
            spike encoder, added by the `encoder` option or kept), `"pooling"` (max
            pooling of accumulated inputs, `convert`'s `max_pooling`) or `"custom"` (a
            registered rule that did not record the layer itself).
        nested: Reports of nested models, by name.
        layer_errors: `None`, or after `add_layer_errors(sweep)` the sweep's
            `{"steps": [...], "errors": {layer: [error per duration]}}`.
    """

    def __init__(self, model_name):
        self.model_name = model_name
        self.rows = []
        self.nested = {}
        self._blocks = {}
        self.layer_errors = None

    def add_layer_errors(self, sweep):
        """Shows a `latency_sweep(..., reference=...)`'s per-layer errors in the
        report: each neuron layer's row gets its relative error against the
        reference at every swept duration (`sweep.layer_errors`), so the layer
        where the error first grows stands out beside what it became.

        Args:
            sweep: A `LatencySweep` measured with a `reference` model.
        """
        errors = getattr(sweep, "layer_errors", None)
        if not errors:
            raise ValueError(
                "ConversionReport.add_layer_errors(): the sweep has no layer errors. Run "
                "latency_sweep(snn, x, y, reference=model) with the model `snn` was "
                "converted from."
            )
        self._set_layer_errors(list(sweep.steps), dict(errors))

    def _set_layer_errors(self, steps, errors):
        self.layer_errors = {"steps": steps, "errors": errors}
        for name, report in self.nested.items():
            # A nested model's layers are "name/layer" (its first call) or
            # "name_call<k>/layer" (its k-th): "layer" and "layer_call<k>" in its report.
            inner = {}
            for key, value in errors.items():
                match = re.fullmatch(rf"{re.escape(name)}(_call\d+)?/(.+)", key)
                if match:
                    inner[match[2] + (match[1] or "")] = value
            report._set_layer_errors(steps, inner)

    def add_block(self, source, spiking, scale, synapse, neuron, kind="ReLU"):
        """`synapse`: None or the synapse's arguments (`tau`, maybe `trainable_tau`, ...);
        `kind`: what the neuron computes ("ReLU", "LIF", "tanh", ...)."""
        self._blocks.setdefault(source, []).append(
            {
                "spiking": spiking,
                "scale": scale,
                "synapse": synapse,
                "neuron": neuron,
                "kind": kind,
            }
        )

    def neuron_blocks(self, source):
        """The neuron blocks built for the original layer `source` so far (dicts of
        `spiking`, `scale`, `synapse`, `neuron`)."""
        return list(self._blocks.get(source, []))

    def neuron_sources(self):
        """Names of the original layers that got a neuron block, nested models'
        included (the layers `calibrate` gives a scale)."""
        names = set(self._blocks)
        for report in self.nested.values():
            names |= report.neuron_sources()
        return names

    def add_layer(self, layer, kind, activation=None, source=None, rule=None, note=None):
        """Adds the row of one layer call (see `ConversionContext.record`)."""
        name = source or layer.name
        row = {"layer": layer.name, "class": type(layer).__name__, "kind": kind, "spiking": False}
        if kind == "operation":
            row["class"] = f"ops.{type(layer).__name__}"
        if kind == "neuron":
            row["became"] = "folded layer + neuron block"
            if rule is not None:
                row["became"] = f"neuron block (rule {rule})"
            row["pending_source"] = name
        elif kind == "nested":
            row["became"] = "converted nested model"
            row["note"] = "see report.nested"
        elif kind == "dropped":
            row["became"] = "rebuilt from the options"
            row["note"] = "scales and synapses are rebuilt with their neuron"
        elif kind == "encoder":
            row["became"] = "spike encoder (runs over time)"
            row["note"] = "encodes an input as spikes; the `encoder` option replaces it"
        elif kind == "readout":
            row["became"] = "rebuilt from the options"
            row["note"] = "the readout follows convert's `readout` option"
        elif kind == "custom":
            row["became"] = f"converted by the rule {rule}"
            row["note"] = "a registered rule (register_rule)"
        elif kind == "pooling":
            row["became"] = "max pooling of accumulated inputs"
            row["note"] = (
                "AccumulatedMaxPooling: its mean output over T steps is the max pooling of "
                "the firing rates (convert's max_pooling option)"
            )
        elif kind == "temporal":
            row["became"] = "a layer over the frames, with a state"
            row["note"] = "streams one frame at a time (convert(temporal=True))"
        elif kind == "kept":
            row["became"] = "kept (runs over time)"
            row["note"] = "not part of a neuron block: copied with its weights"
        else:
            row["became"] = "folded over time (TimeFold)"
            if kind == "generic":
                row["became"] = "generic: folded over time"
                row["note"] = (
                    "no conversion rule: checked to work per sample; register_rule "
                    "overrides, strict=True refuses"
                )
            elif kind == "operation":
                row["note"] = "keras.ops call, applied at every timestep"
            elif activation is None:
                row["note"] = "no neuron activation"
            elif activation == "relu":
                row["note"] = (
                    "ReLU kept as a rate neuron (default); swap it with "
                    "swap_activations={'relu': 'spiking_relu'}"
                )
            elif activation == CUSTOM_RELU_KEY:
                row["note"] = (
                    "ReLU with a negative slope or a threshold: no spiking neuron computes "
                    "it, so it stays a rate layer (a plain or clipped ReLU would become one)"
                )
            else:
                row["note"] = (
                    f"activation '{activation}' is not a ReLU: stays a rate layer unless "
                    "listed in swap_activations"
                )
        if note is not None:
            row["note"] = note
        self.rows.append(row)

    def finalize(self):
        for row in self.rows:
            source = row.pop("pending_source", None)
            if source is None:
                continue
            block = self._blocks[source][-1]
            row["spiking"] = block["spiking"]
            parts = [f"{'spiking' if block['spiking'] else 'rate'} {block['kind']}"]
            scale = block["scale"]
            if isinstance(scale, tuple):
                parts.append(f"scale {min(scale):g}-{max(scale):g} (per channel)")
            elif scale != 1.0:
                parts.append(f"scale {scale:g}")
            if block["synapse"] is not None:
                parts.append(_synapse_note(block["synapse"]))
            row["note"] = ", ".join(parts) + f" ({block['neuron']})"
        for report in self.nested.values():
            report.finalize()

    @property
    def generic_layers(self):
        """Names of the layers converted by the generic per-timestep rule (no rule of
        their own), nested models' included."""
        names = [row["layer"] for row in self.rows if row["kind"] == "generic"]
        for report in self.nested.values():
            names.extend(report.generic_layers)
        return names

    @property
    def spiking_layers(self):
        """Names of the original layers whose activation now spikes."""
        return [row["layer"] for row in self.rows if row["spiking"]]

    def __str__(self):
        lines = [f"Conversion report for '{self.model_name}'"]
        widths = (28, 24, 30)
        header = ("layer", "class", "became")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  note")
        for row in self.rows:
            cells = (row["layer"], row["class"], row["became"])
            lines.append(
                "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
                + "  "
                + row.get("note", "")
                + self._error_note(row["layer"])
            )
        for name, report in self.nested.items():
            lines.append("")
            lines.append(f"[nested model '{name}']")
            lines.append(str(report))
        return "\n".join(lines)

    def _error_note(self, layer):
        if self.layer_errors is None:
            return ""
        errors = self.layer_errors["errors"]
        names = [name for name in errors if re.fullmatch(rf"{re.escape(layer)}(_call\d+)?", name)]
        return "".join(
            f"; error vs reference ({name}): "
            + ", ".join(
                f"T={t} {e:.3f}"
                for t, e in zip(self.layer_errors["steps"], errors[name], strict=True)
            )
            for name in names
        )

    def print(self):
        """Prints the report as a table."""
        print(self)


def _synapse_note(synapse):
    tau = synapse["tau"]
    if isinstance(tau, (list, tuple)):
        note = f"synapse tau={min(tau):g}-{max(tau):g} s (per channel)"
    else:
        note = f"synapse tau={tau:g} s" + (" per channel" if synapse.get("per_channel") else "")
    if synapse.get("filter") == "alpha":
        note = "alpha " + note
    return note + (", learnable" if synapse.get("trainable_tau") else "")
