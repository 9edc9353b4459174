"""The runtime: one plan and one step engine under every execution path."""

import ast
import json
import pathlib
import pkgutil
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates
from keras_spiking_conv.layers.base import FeatureCell, FeatureSequence
from keras_spiking_conv.runtime.plan import plan_of
from tests.helpers import run_in_fresh_process

L = keras.layers
PACKAGE = pathlib.Path(ksc.__file__).parent
N_STEPS = 120  # a NaN goes in at step 40 (`_x`); tests/test_long_runs.py runs 10,000


def skip_net():
    """Convolutions with a skip connection, pooling and a dense readout."""
    inp = keras.Input((8, 8, 1), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_b")(a)
    h = L.AveragePooling2D(2, name="pool")(L.Add(name="skip")([a, b]))
    h = L.Dense(8, activation="relu", name="hidden")(L.Flatten(name="flat")(h))
    return keras.Model(inp, L.Dense(3, name="out")(h), name="skip_net")


def spiking_skip_net():
    return ksc.convert(
        skip_net(),
        swap_activations={"relu": "spiking_relu"},
        synapse={"conv_a": 0.005, "conv_b": 0.01, "hidden": 0.02},
        scale_firing_rates={"conv_a": 40.0, "conv_b": 60.0, "hidden": 80.0},
        seed=0,
    )


def _x(n=2, steps=N_STEPS, nan=False):
    x = np.random.default_rng(0).uniform(0, 1, (n, steps, 8, 8, 1)).astype("float32")
    if nan:
        x[0, 40, 3, 3, 0] = np.nan
    return x


def _streamed(snn, x, size):
    stream = ksc.Stream(snn)
    return np.concatenate([stream(x[:, t : t + size]) for t in range(0, x.shape[1], size)], axis=1)


@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
def test_every_execution_gives_the_same_spikes(nan):
    snn = spiking_skip_net()
    x = _x(nan=nan) * 4.0  # busy neurons in the steps run, whatever the backend's weights
    fused = snn.predict(x, verbose=0)
    assert np.count_nonzero(fused[np.isfinite(fused)]) > 0
    for name, other in [
        ("stream of 1", _streamed(snn, x, 1)),
        ("stream of 7", _streamed(snn, x, 7)),
        ("process_chunk", ksc.process_chunk(snn, x, ksc.initial_states(snn, 2))[0]),
        ("call", snn(x)),
    ]:
        np.testing.assert_array_equal(ops.convert_to_numpy(other), fused, err_msg=name)
    snn.execution = "layers"
    layerwise = snn.predict(x, verbose=0)
    np.testing.assert_array_equal(np.isnan(layerwise), np.isnan(fused))
    np.testing.assert_allclose(layerwise, fused, rtol=1e-5, atol=1e-4)
    if nan:  # from its step on, the NaN reaches every output of that sequence
        assert np.isnan(fused[0, 40:]).all() and np.isfinite(fused[0, :40]).all()
        assert np.isfinite(fused[1]).all()


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("nan", [False, True], ids=["finite", "nan"])
def test_exported_signatures_give_the_same_spikes(tmp_path, nan):
    import tensorflow as tf

    snn = spiking_skip_net()
    x = _x(nan=nan)
    fused = snn.predict(x, verbose=0)
    served = tf.saved_model.load(ksc.export(snn, tmp_path / "served"))
    (sequence,) = served.signatures["sequence"](image=tf.constant(x)).values()
    np.testing.assert_array_equal(sequence.numpy(), fused)
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    steps = []
    for t in range(N_STEPS):
        result = served.signatures["step"](image=tf.constant(x[:, t]), **state)
        steps.append(result.pop("out").numpy())
        state = result
    np.testing.assert_array_equal(np.stack(steps, axis=1), fused)


@pytest.mark.tensorflow_only
@pytest.mark.parametrize("batch_size", [1, 2])
def test_exported_signatures_run_in_tflite(tmp_path, batch_size):
    import tensorflow as tf

    snn = spiking_skip_net()
    steps = 20
    x = _x(batch_size, steps) * 50.0
    expected = snn.predict(x, verbose=0)
    path = ksc.export(snn, tmp_path / "served", batch_size=batch_size, n_steps=steps)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        path, signature_keys=["sequence", "step", "initial_state"]
    )
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    sequence = interpreter.get_signature_runner("sequence")(image=x)["out"]
    np.testing.assert_allclose(sequence, expected, rtol=1e-5, atol=1e-3)
    assert np.count_nonzero(expected) > 0
    step = interpreter.get_signature_runner("step")
    state = interpreter.get_signature_runner("initial_state")(batch_size=np.int32(batch_size))
    outputs = []
    for t in range(steps):
        result = step(image=x[:, t], **state)
        outputs.append(result.pop("out"))
        state = result
    np.testing.assert_allclose(np.stack(outputs, axis=1), expected, rtol=1e-5, atol=1e-3)


@keras.saving.register_keras_serializable(package="tests")
class LeakyCell(FeatureCell):
    """A leaky integrate-and-fire neuron: a new neuron type, defined here only."""

    def __init__(self, dt=0.001, decay=0.9, amplitude=1.0, **kwargs):
        super().__init__(**kwargs)
        self.dt, self.decay, self.amplitude = dt, decay, amplitude

    def call(self, inputs, states):
        voltage = self.decay * states[0] + ops.relu(inputs) * self.dt
        spikes = ops.floor(voltage)
        return spikes * self.amplitude / self.dt, [voltage - spikes]

    def get_config(self):
        return {**super().get_config(), "dt": self.dt, "decay": self.decay}


@keras.saving.register_keras_serializable(package="tests")
class Leaky(FeatureSequence):
    role = "neuron"
    state_kind = "voltage"

    def __init__(self, dt=0.001, decay=0.9, **kwargs):
        super().__init__(LeakyCell(dt=dt, decay=decay, dtype=kwargs.get("dtype")), **kwargs)

    amplitude = property(lambda self: self.cell.amplitude)

    def get_config(self):
        return {**super().get_config(), "dt": self.cell.dt, "decay": self.cell.decay}


class LeakyActivation(L.Layer):
    """What the original model marks as "becomes a leaky neuron"."""

    def call(self, x):
        return ops.relu(x)


def test_a_new_neuron_type_needs_its_layer_and_one_rule():
    @ksc.register_rule(LeakyActivation)
    def leaky_rule(layer, args, kwargs, context):
        context.record(layer, kind="kept")
        name = context.unique_name(f"{layer.name}_neuron")
        return Leaky(decay=0.8, source=layer.name, name=name)(args[0])

    try:
        inp = keras.Input((8, 8, 1))
        h = LeakyActivation(name="leaky")(
            L.Conv2D(4, 3, kernel_initializer="ones", name="conv")(inp)
        )
        model = keras.Model(inp, L.Dense(3, name="out")(L.Flatten()(h)))
        snn = ksc.convert(model)
    finally:
        from keras_spiking_conv.conversion import registry

        registry._RULES.pop(LeakyActivation)
    x = _x(2, 40) * 500.0
    assert list(ksc.state_layout(snn)) == ["state_leaky_neuron"]
    fused = snn.predict(x, verbose=0)
    np.testing.assert_array_equal(_streamed(snn, x, 7), fused)
    snn.execution = "layers"
    np.testing.assert_allclose(snn.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-3)
    rates = firing_rates(snn, x)
    assert list(rates) == ["leaky_neuron"] and rates["leaky_neuron"]["mean"] > 0
    _, spikes = ksc.probe(snn, ["leaky"]).predict(x, verbose=0)
    np.testing.assert_allclose(spikes * 0.001, np.round(spikes * 0.001), atol=1e-4)


def test_roles_are_recorded_not_read_from_names():
    # Neuron blocks whose layers have names unrelated to their source.
    inp = keras.Input((None, 6))
    h = ksc.TimeFold(L.Dense(5, name="hid"), source="hid", name="hid")(inp)
    h = ksc.RateScale(4.0, source="hid", name="alpha")(h)
    h = ksc.SpikingReLU(initial_voltage=0.5, rectify_input=False, source="hid", name="beta")(h)
    h = ksc.RateScale(4.0, inverse=True, source="hid", name="gamma")(h)
    h = ksc.LowpassSynapse(0.01, source="hid", name="delta")(h)
    h = ksc.LowpassSynapse(0.05, name="by_hand")(h)  # no source: kept on re-conversion
    snn = ksc.SpikingModel(inp, ksc.TimeFold(L.Dense(2, name="out"), name="out")(h))
    assert ksc.probe(snn, ["hid"]).outputs[1]._keras_history[0].name == "beta"
    again = ksc.Converter(snn, swap_activations={"relu": "spiking_relu"}, synapse=0.02)
    kinds = {row["layer"]: row["became"] for row in again.report.rows}
    assert kinds["alpha"] == kinds["gamma"] == kinds["delta"] == "rebuilt from the options"
    assert kinds["by_hand"] == "kept (runs over time)"
    layers = {type(layer).__name__ for layer in again.model.layers}
    assert "RateScale" not in layers  # scale 1 now: no scale layers
    synapses = [layer for layer in again.model.layers if isinstance(layer, ksc.LowpassSynapse)]
    assert sorted(s.source or "" for s in synapses) == ["", "hid"]
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(snn))
    assert {layer.name: layer.source for layer in restored.layers if hasattr(layer, "source")}[
        "gamma"
    ] == "hid"


def test_the_plan_is_the_one_walk_of_a_graph():
    snn = spiking_skip_net()
    plan = plan_of(snn)
    assert plan is plan_of(snn)
    roles = [site.role for site in plan.sites]
    assert roles.count("neuron") == 3 and roles.count("synapse") == 3
    assert roles.count("scale") == 6 and "other" not in roles
    assert [spec.key for spec in plan.states.values()] == list(ksc.state_layout(snn))
    # Keras' private graph attributes are read in runtime/plan.py only.
    private = ("_nodes_by_depth", "_keras_history", "_inputs_struct", "_outputs_struct")
    for path in PACKAGE.rglob("*.py"):
        if path.name == "plan.py" and path.parent.name == "runtime":
            continue
        text = path.read_text()
        assert not [name for name in private if name in text], path


def _module_imports(path):
    """`(module, names)` of the package imports at a module's top level."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE.name):
            yield node.module, [alias.name for alias in node.names]


def test_every_public_module_is_an_attribute_after_import():
    # As in Keras (`keras.callbacks.X` after `import keras`). In a fresh process: here,
    # tests have imported submodules already, which sets the attributes anyway.
    names = sorted(m.name for m in pkgutil.iter_modules([str(PACKAGE)]) if m.name[0] != "_")
    assert {"callbacks", "datasets", "regularizers", "latency", "runtime"} <= set(names)
    found = json.loads(
        run_in_fresh_process(
            f"""
            import json, types
            import keras_spiking_conv as ksc
            print(json.dumps({{n: isinstance(getattr(ksc, n, None), types.ModuleType)
                              for n in {names!r}}}))
            """
        ).splitlines()[-1]
    )
    # `export` is the function of the module of that name.
    assert found == {name: name != "export" for name in names}
    assert ksc.export.__module__ == "keras_spiking_conv.export"


def test_imports_flow_one_way_without_private_names():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        graph[name] = set()
        for module, names in _module_imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{name} imports private {private} from {module}"
            if module in modules:
                graph[name].add(module)
    # No cycle among top-level imports (a package's __init__ re-exporting its modules
    # is not a cycle through it: only module -> module edges outside __init__ count).
    edges = {
        m: {d for d in deps if not modules[d].name == "__init__.py"}
        for m, deps in graph.items()
        if modules[m].name != "__init__.py"
    }
    state = {}

    def visit(m, stack):
        state[m] = "active"
        for d in edges.get(m, ()):
            assert state.get(d) != "active", f"import cycle: {' -> '.join([*stack, m, d])}"
            if d not in state:
                visit(d, [*stack, m])
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m, [])
    # Layers import nothing above them; the runtime never imports the converter.
    for m, deps in graph.items():
        if m.startswith(f"{PACKAGE.name}.layers"):
            assert not [d for d in deps if ".runtime" in d or ".conversion" in d], m
        if m.startswith(f"{PACKAGE.name}.runtime"):
            assert not [d for d in deps if ".conversion" in d or ".export" in d], m


def test_register_rule_docstring_example_runs():
    doc = ksc.register_rule.__doc__
    code = textwrap.dedent(doc.split("```python")[1].split("```")[0])

    class MyLayer(L.Layer):
        def call(self, x):
            return x * 2.0 + 1.0

    namespace = {"keras_spiking_conv": ksc, "MyLayer": MyLayer}
    from keras_spiking_conv.conversion import registry

    try:
        exec(code, namespace)  # noqa: S102  (the docstring's own example)
        inp = keras.Input((4,))
        model = keras.Model(inp, MyLayer(name="mine")(inp))
        converter = ksc.Converter(model)
        assert converter.report.generic_layers == []  # the example rule converted it
        ksc.verify(model, converter.model, np.ones((2, 4), "float32"))
    finally:
        registry._RULES.pop(MyLayer, None)
