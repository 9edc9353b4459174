"""The runtime plan: a model's graph walked once into an explicit list of call sites.

Every execution path reads this plan: the step engine (fused loop, `Stream`,
`process_chunk`, every `export` signature), probing, firing-rate analysis and
calibration. This module is the only code that reads Keras' private graph
attributes (`_nodes_by_depth`, node arguments, `_outputs_struct`).

Naming, one scheme for everything. A site's path is the names of the nested
models around it and its own name, outermost first; a layer (or a nested
model) called more than once gets `"_call1"`, `"_call2"`, ... after its name
for each call after the first, in graph order. Probes and firing rates name a
site by its path joined with `"/"` (`"block/dense_neuron"`); state keys (and
so `Stream`, `process_chunk` and `export` signature arguments) are
`"state_"` + the path joined with `"__"`, with characters other than letters,
digits and `_` replaced by `_` (`"state_block__dense_neuron"`).

Roles are recorded, not parsed from names: each of the package's layers
declares its `role` (`"stateless"` for `TimeFold`, `"neuron"`, `"synapse"`,
`"scale"`, `"readout"`) and, when `convert` made it, the original layer it
came from (`source`, kept in its config).
"""

import collections
import dataclasses

import keras
from keras import tree

from keras_spiking_conv.layers.base import FeatureSequence

STATE_PREFIX = "state_"
PATH_SEPARATOR = "__"


class StateSpec(
    collections.namedtuple("StateSpec", ["key", "layer", "path", "kind", "shape", "dtype"])
):
    """One state of a converted model (see `state_layout`).

    Attributes:
        key: The state's key, e.g. `"state_conv2d_neuron"`.
        layer: Name of the layer that owns the state.
        path: Names of the nested models and the layer, outermost first (calls
            after the first have `"_call<k>"` appended).
        kind: `"voltage"` (a `SpikingReLU`), `"filter"` (a `LowpassSynapse`) or
            `"state"` (another `FeatureSequence` layer).
        shape: Shape of the state, `(None, *features)` (batch first).
        dtype: The state's dtype, e.g. `"float32"`.
    """

    __slots__ = ()


def sanitize(name):
    """A name made of letters, digits and `_`, starting with a letter (TensorFlow's rule)."""
    name = "".join(c if c.isalnum() else "_" for c in str(name))
    return name if name[:1].isalpha() else f"arg_{name}"


def unique_keys(names):
    """`sanitize`d names, made unique with `_1`, `_2`, ... suffixes."""
    keys, seen = [], set()
    for name in names:
        key, i = sanitize(name), 1
        while key in seen:
            key, i = f"{sanitize(name)}_{i}", i + 1
        seen.add(key)
        keys.append(key)
    return keys


def state_key(path):
    """The state key of a site at `path`: `"state_"` + the path joined with `__`, sanitized."""
    return STATE_PREFIX + sanitize(PATH_SEPARATOR.join(path))


def split_call(segment):
    """`("dense", 1)` for `"dense_call1"`; `("dense", None)` for `"dense"`."""
    head, sep, tail = segment.rpartition("_call")
    if sep and tail.isdigit():
        return head, int(tail)
    return segment, None


def graph_of(model):
    """The functional graph of `model` (a Sequential model's inner functional model)."""
    if hasattr(model, "_run_through_graph"):
        return model
    functional = getattr(model, "_functional", None)
    if functional is not None:
        return functional
    raise TypeError(
        f"Model '{model.name}' ({type(model).__name__}) has no layer graph to run step by "
        "step (a subclassed model?). Build it with the functional API or keras.Sequential."
    )


def role_of(layer):
    """A layer's recorded role: `"stateless"`, `"neuron"`, `"synapse"`, `"scale"`,
    `"readout"`, `"state"` (another sequence layer with a state) or `"other"`."""
    if isinstance(layer, keras.Model):
        return "nested"
    return getattr(layer, "role", "other")


# Roles of the layers only `convert` makes: a model holding one is a converted model.
CONVERTED_ROLES = frozenset({"stateless", "neuron", "synapse", "scale", "readout", "state"})


def is_converted(model):
    """Whether `model` was made by `convert` (its inputs already have a time axis)."""
    return any(site.role in CONVERTED_ROLES for site in Plan(model).sites)


def readout_of(tensor):
    """The readout layer that made a model output, or None."""
    layer = tensor._keras_history[0]
    return layer if role_of(layer) == "readout" else None


def producer_name(tensor):
    """The name of the layer (or `Input`) that made a symbolic tensor, or None."""
    history = getattr(tensor, "_keras_history", None)
    return history[0].name if history else None


def inputs_struct(model):
    """The structure of `model`'s inputs (a tensor, a list or a dict of them)."""
    return graph_of(model)._inputs_struct


def outputs_struct(model):
    """The structure of `model`'s outputs."""
    return graph_of(model)._outputs_struct


def pack_outputs(model, flat):
    """Flat outputs structured as calling `model` returns them: as its outputs, except that
    one output in a list (a Sequential model's) comes alone, as in Keras' functional call."""
    outputs = tree.pack_sequence_as(outputs_struct(model), tree.flatten(flat))
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        return outputs[0]
    return outputs


class _Ref:
    """A tensor slot in a site's arguments: the id of the value it takes."""

    __slots__ = ("id",)

    def __init__(self, id_):
        self.id = id_


@dataclasses.dataclass(eq=False)
class Site:
    """One call of a layer in a model (nested models flattened).

    Attributes:
        path: Names of the nested models and the layer, outermost first.
        layer: The layer called.
        role: See `role_of`.
        source: Name of the original layer it was converted from, or None.
        state: Its `StateSpec` if it carries a state from step to step, else None.
        args, kwargs: The call's arguments, tensors as slots (see `fill`).
        inputs: Ids of the values it reads, in order.
        outputs: Ids of the values it writes, in order.
        tensors: Its symbolic outputs in the model's own graph, if it is a call of
            the model's own graph (not inside a nested model), else None.
        call: Which call of the layer this is in its graph (0 for the first).
    """

    path: tuple
    layer: object
    role: str
    source: object
    state: object
    args: tuple
    kwargs: dict
    inputs: tuple
    outputs: tuple
    tensors: object
    call: int

    @property
    def name(self):
        """The path joined with `/` (how probes and firing rates name it)."""
        return "/".join(self.path)

    @property
    def key(self):
        """The state key: `"state_"` + the path joined with `__`, sanitized."""
        return state_key(self.path)

    def fill(self, values):
        """`(args, kwargs)` with every tensor slot replaced by its value in `values`."""

        def fill(v):
            return values[v.id] if isinstance(v, _Ref) else v

        return tree.map_structure(fill, self.args), tree.map_structure(fill, self.kwargs)


class Plan:
    """A model walked once: its call sites in execution order and its states.

    Attributes:
        model: The model.
        sites: Every layer call (nested models' layers included), in an order
            in which each site's inputs are computed before it: what runs.
        calls: The model's inputs, `sites` and the calls of nested models (after
            their layers), in graph order: what can be probed.
        inputs: Ids of the model's inputs (flat, in the order of `model.inputs`).
        outputs: Ids of the model's outputs (flat).
        states: Dict state key -> `StateSpec`, in graph order.
        temporal: Whether the model is temporal (`convert(..., temporal=True)`:
            its inputs' axis 1 is the data's time; it has `FrameSteps`).
        steps_per_frame: Simulation steps per input step (a temporal model's
            `FrameSteps`), 1 for any other model.
        input_keys, output_keys: The model's input and output names, sanitized
            and unique (export signature keys).
    """

    def __init__(self, model):
        if getattr(model, "constant_input", False):
            raise TypeError(
                f"Model '{model.name}' is a constant-input model (convert(..., "
                "constant_input=True)): it takes inputs without a time axis and works with "
                "fit, evaluate and predict. For tools that work on time steps, use its "
                f"converted network with a time axis: `model.network`, fed with "
                f"keras_spiking_conv.tile_time(x, {model.n_steps})."
            )
        self.model = model
        self.graph = graph_of(model)
        self.sites = []
        self._next = 0
        self.inputs = [self._new_id() for _ in self.graph.inputs]
        # Every call that has an activity to probe: the inputs, the layer calls and the
        # nested model calls (after their layers), in graph order.
        self.calls = [
            Site(
                path=(producer_name(x),),
                layer=x._keras_history[0],
                role="input",
                source=None,
                state=None,
                args=(),
                kwargs={},
                inputs=(),
                outputs=(i,),
                tensors=[x],
                call=0,
            )
            for x, i in zip(self.graph.inputs, self.inputs, strict=True)
        ]
        self.outputs = self._walk(self.graph, self.inputs, ())
        self.states = {}
        for site in self.sites:
            if site.state is not None:
                if site.state.key in self.states:
                    raise ValueError(
                        f"Two states of model '{model.name}' get the same key "
                        f"'{site.state.key}' (from {self.states[site.state.key].path} and "
                        f"{site.path}). Rename one of the layers."
                    )
                self.states[site.state.key] = site.state
        # A temporal model (it has `FrameSteps`) and its simulation steps per frame.
        frames = [site.layer.steps for site in self.sites if site.role == "frames"]
        self.temporal = bool(frames)
        self.steps_per_frame = max(frames, default=1)
        self.input_keys = unique_keys(x.name for x in self.graph.inputs)
        self.output_keys = unique_keys(getattr(model, "output_names", None) or [])

    def _new_id(self):
        self._next += 1
        return self._next - 1

    def _walk(self, graph, input_ids, prefix):
        local = {id(x): i for x, i in zip(graph.inputs, input_ids, strict=True)}
        calls = collections.Counter()
        for depth in sorted(graph._nodes_by_depth, reverse=True):
            for node in graph._nodes_by_depth[depth]:
                layer = node.operation
                if not layer or node.is_input:
                    continue
                if any(id(x) not in local for x in node.input_tensors):
                    continue  # a node of another graph sharing this layer
                k = calls[id(layer)]
                calls[id(layer)] += 1
                path = (*prefix, layer.name if k == 0 else f"{layer.name}_call{k}")

                def slot(v):
                    return _Ref(local[id(v)]) if isinstance(v, keras.KerasTensor) else v

                args = tree.map_structure(slot, tuple(node.arguments.args))
                kwargs = tree.map_structure(slot, dict(node.arguments.kwargs))
                inputs = tuple(v.id for v in tree.flatten((args, kwargs)) if isinstance(v, _Ref))
                nested = isinstance(layer, keras.Model)
                if nested:
                    outputs = self._walk(graph_of(layer), list(inputs), path)
                else:
                    outputs = [self._new_id() for _ in node.outputs]
                site = Site(
                    path=path,
                    layer=layer,
                    role=role_of(layer),
                    source=getattr(layer, "source", None),
                    state=None if nested else _state_spec(layer, path),
                    args=args,
                    kwargs=kwargs,
                    inputs=inputs,
                    outputs=tuple(outputs),
                    tensors=None if prefix else list(node.outputs),
                    call=k,
                )
                if not nested:
                    self.sites.append(site)
                self.calls.append(site)
                for x, i in zip(node.outputs, outputs, strict=True):
                    local[id(x)] = i
        return [local[id(x)] for x in graph.outputs]

    # -- finding sites -------------------------------------------------------
    def neurons(self):
        """The neuron sites."""
        return [site for site in self.sites if site.role == "neuron"]

    def site(self, name):
        """The call whose `name` (path joined with `/`) is `name`, or None."""
        return next((s for s in self.calls if s.name == name), None)

    def find(self, layer, owner):
        """The site of one original layer (object, name or path): its neuron's if it has
        one. Raises if there is none, or several (a layer that runs more than once)."""
        name = layer if isinstance(layer, str) else layer.name
        found = self._lookup(name)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ValueError(
                f"{owner}: no layer '{name}' (or its neuron '{name}_neuron') in "
                f"'{self.model.name}' or its nested models. Layers: "
                f"{[s.name for s in self.calls]}"
            )
        paths = [s.name for s in found]
        # Offer `{name}_call0` only where it resolves to the first of these calls.
        first = self._lookup(f"{name}_call0")
        alias = (
            f" (or `{name}_call0`, `{name}_call1`, ... in this order)"
            if len(first) == 1 and first[0] is found[0]
            else ""
        )
        raise ValueError(
            f"{owner}: '{name}' matches {len(found)} layer calls in '{self.model.name}' (a "
            "shared layer, a nested model called more than once, or layers of that name in "
            f"different nested models): {paths}. Each has its own activity: pass the path of "
            f"the one you want{alias}."
        )

    def _lookup(self, name):
        """The sites `name` (a layer name, `{name}_call<k>` or a path) may mean."""
        segments = name.split("/")
        base, k = split_call(segments[-1])
        if len(segments) == 1 and k is None:
            return self._named(name)
        found = self._at_path(segments)
        if not found and len(segments) == 1:
            # `{name}_call<k>` for a layer that runs inside a nested model called several
            # times: the k-th of the calls `{name}` matches, when they are all one layer's.
            calls = self._named(base)
            if k < len(calls) and len({id(s.layer) for s in calls}) == 1:
                found = [calls[k]]
        return found

    def _named(self, name):
        """Every call of the original layer `name` (its neurons' if it has any), in graph
        order, at any depth."""
        found = [s for s in self.neurons() if _source(s) == name]
        return found or [s for s in self.calls if split_call(s.path[-1])[0] == name]

    def _at_path(self, segments):
        """Sites at an exact path (`_call0` accepted for a first call): the neuron of the
        k-th call of a layer, or the call itself."""
        prefix = tuple(seg.removesuffix("_call0") for seg in segments[:-1])
        base, k = split_call(segments[-1])
        neurons = [s for s in self.neurons() if s.path[:-1] == prefix and _source(s) == base]
        if neurons and (k or 0) < len(neurons):
            return [neurons[k or 0]]
        last = base if not k else segments[-1]
        return [s for s in self.calls if s.path == (*prefix, last)]


def _source(site):
    """The original layer a site was converted from; for layers saved before sources were
    recorded, read from the `{source}_neuron[_k]` name `convert` gave them."""
    if site.source is not None:
        return site.source
    head, sep, tail = site.path[-1].rpartition("_neuron")
    if site.role == "neuron" and sep and (tail == "" or tail.lstrip("_").isdigit()):
        return head
    return None


def _state_spec(layer, path):
    if not (isinstance(layer, FeatureSequence) and layer.has_state):
        return None
    shape = (None, *layer.cell.state_shape)
    return StateSpec(
        state_key(path), layer.name, path, layer.state_kind, shape, layer.compute_dtype
    )


def plan_of(model):
    """The `Plan` of `model`, built once per model (kept on the model, outside Keras'
    attribute tracking, so it goes when the model goes)."""
    plan = vars(model).get("_ksc_plan")
    if plan is None:
        plan = Plan(model)
        object.__setattr__(model, "_ksc_plan", plan)
    return plan
