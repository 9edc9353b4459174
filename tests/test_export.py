"""Serving: SavedModel export with sequence and streaming signatures, Python streaming,
`.keras` round trips of converted models, and the errors on the way."""

import json
import os
import sys

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv import LowpassSynapse, SpikingReLU
from tests import models
from tests.helpers import run_in_fresh_process

# `keras_spiking_conv.export` is the function; the module is reached through sys.modules.
export_module = sys.modules["keras_spiking_conv.export"]

N_STEPS = 12
SCALE = 5000.0  # firing-rate scale of `_spiking_net`
DT = 0.001


def _assert_same_spikes(actual, expected):
    """Equal spike counts at every step; values equal up to float rounding (a graph may
    divide by the rate scale as a multiplication by its reciprocal)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    np.testing.assert_array_equal(np.round(actual * DT * SCALE), np.round(expected * DT * SCALE))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0)


def _spiking_net():
    """The tutorial convnet with a ReLU on its output, converted with spiking neurons, a
    synapse per hidden layer (different taus), no synapse on the output neurons (so the
    outputs are spikes) and a firing-rate scale."""
    base = models.tutorial_convnet()
    conv1, conv2 = base.layers[1], base.layers[2]
    model = keras.Model(base.input, keras.layers.ReLU(name="out_relu")(base.output))
    return ksc.convert(
        model,
        swap_activations={"relu": "spiking_relu"},
        synapse={conv1: 0.002, conv2: 0.004},
        scale_firing_rates=SCALE,
        initial_voltage="random",
        seed=3,
    )


def _run(model, x):
    """The Keras model's outputs as NumPy. (Called directly rather than with `predict`,
    which compiles with XLA on TensorFlow: XLA divides by the rate scale as a
    multiplication by its reciprocal, one float rounding away.)"""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, model(x, training=False))


def _data(n=2, steps=N_STEPS, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, steps, 28, 28, 1)).astype("float32")


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(0)  # the same weights whatever tests ran before


@pytest.fixture(scope="module")
def spiking_net():
    keras.utils.set_random_seed(1)
    return _spiking_net()


@pytest.fixture(scope="module")
def exported(spiking_net, tmp_path_factory):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs the TensorFlow backend")
    path = tmp_path_factory.mktemp("export") / "snn"
    ksc.export(spiking_net, path)
    return path


# -- the state layout -----------------------------------------------------------------


def test_state_layout_names_every_neuron_and_synapse(spiking_net):
    layout = ksc.state_layout(spiking_net)
    kinds = {key: (spec.layer, spec.kind, spec.shape) for key, spec in layout.items()}
    names = {layer.name: layer for layer in spiking_net.layers}
    expected = {}
    for name, layer in names.items():
        if isinstance(layer, (SpikingReLU, LowpassSynapse)):
            kind = "voltage" if isinstance(layer, SpikingReLU) else "filter"
            shape = (None, *layer.cell.feature_shape)
            expected[f"state_{name}"] = (name, kind, shape)
    assert kinds == expected
    assert sum(spec.kind == "voltage" for spec in layout.values()) == 3
    assert sum(spec.kind == "filter" for spec in layout.values()) == 2

    states = ksc.initial_states(spiking_net, 3)
    assert set(states) == set(layout)
    for key, value in states.items():
        layer = names[layout[key].layer]
        value = keras.ops.convert_to_numpy(value)
        assert value.shape == (3, *layout[key].shape[1:])
        if layout[key].kind == "filter":
            assert not value.any()
        else:  # each neuron's fixed random initial voltage, the same for every sequence
            voltage0 = layer.cell.voltage0.numpy()
            np.testing.assert_array_equal(value, np.broadcast_to(voltage0, value.shape))


def test_rate_neurons_have_no_state():
    snn = ksc.convert(models.tutorial_convnet(), scale_firing_rates=5)  # rate neurons
    assert any(isinstance(layer, SpikingReLU) for layer in snn.layers)
    assert ksc.state_layout(snn) == {}


# -- SavedModel -----------------------------------------------------------------------


@pytest.mark.tensorflow_only
def test_signatures_and_state_layout(spiking_net, exported):
    import tensorflow as tf

    served = tf.saved_model.load(str(exported))
    assert {"serving_default", "sequence", "chunk", "step", "initial_state"} <= set(
        served.signatures
    )
    layout = ksc.state_layout(spiking_net)
    name = spiking_net.inputs[0].name
    out = spiking_net.output_names[0]

    _, step_inputs = served.signatures["step"].structured_input_signature
    assert set(step_inputs) == {name, *layout}
    assert tuple(step_inputs[name].shape) == (None, 28, 28, 1)
    for key, spec in layout.items():
        assert tuple(step_inputs[key].shape) == spec.shape
    step_outputs = served.signatures["step"].structured_outputs
    assert set(step_outputs) == {out, *layout}
    assert tuple(step_outputs[out].shape) == (None, 10)

    _, seq_inputs = served.signatures["serving_default"].structured_input_signature
    assert tuple(seq_inputs[name].shape) == (None, None, 28, 28, 1)

    states = served.signatures["initial_state"](batch_size=tf.constant(2))
    expected = ksc.initial_states(spiking_net, 2)
    assert set(states) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(
            states[key].numpy(), keras.ops.convert_to_numpy(expected[key])
        )


@pytest.mark.tensorflow_only
def test_step_signature_for_t_steps_reproduces_the_sequence_signature(spiking_net, exported):
    import tensorflow as tf

    served = tf.saved_model.load(str(exported))
    name, out = spiking_net.inputs[0].name, spiking_net.output_names[0]
    x = _data()
    sequence = served.signatures["sequence"](**{name: tf.constant(x)})[out].numpy()
    _assert_same_spikes(sequence, _run(spiking_net, x))

    # The outputs are spikes (multiples of amplitude / dt / scale), and there are some.
    spikes = sequence * DT * SCALE
    np.testing.assert_allclose(spikes, np.round(spikes), atol=1e-4)
    assert np.count_nonzero(sequence) > 10

    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    steps = []
    for t in range(N_STEPS):
        result = served.signatures["step"](**{name: tf.constant(x[:, t])}, **state)
        steps.append(result[out].numpy())
        state = {k: v for k, v in result.items() if k != out}
    _assert_same_spikes(np.stack(steps, axis=1), sequence)

    # Chunks of any length continue from the state they are given.
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    chunks = []
    for a, b in [(0, 5), (5, 6), (6, N_STEPS)]:
        result = served.signatures["chunk"](**{name: tf.constant(x[:, a:b])}, **state)
        chunks.append(result[out].numpy())
        state = {k: v for k, v in result.items() if k != out}
    _assert_same_spikes(np.concatenate(chunks, axis=1), sequence)


@pytest.mark.tensorflow_only
def test_savedmodel_serves_with_tensorflow_alone(spiking_net, exported, tmp_path):
    x = _data(n=3, seed=1)
    np.save(tmp_path / "x.npy", x)
    name, out = spiking_net.inputs[0].name, spiking_net.output_names[0]
    # A fresh interpreter in which keras_spiking_conv cannot be imported. (`import
    # tensorflow` itself imports Keras when it is installed, so Keras is not blocked.)
    run_in_fresh_process(
        f"""
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "keras_spiking_conv":
                    raise ImportError(f"blocked: {{name}}")

        sys.meta_path.insert(0, Block())
        import numpy as np
        import tensorflow as tf

        served = tf.saved_model.load(r"{exported}")
        x = tf.constant(np.load(r"{tmp_path / "x.npy"}"))
        np.save(r"{tmp_path / "seq.npy"}", served.signatures["sequence"]({name}=x)["{out}"])
        state = served.signatures["initial_state"](batch_size=tf.constant(3))
        steps = []
        for t in range(x.shape[1]):
            result = served.signatures["step"]({name}=x[:, t], **state)
            steps.append(result.pop("{out}").numpy())
            state = result
        np.save(r"{tmp_path / "step.npy"}", np.stack(steps, axis=1))
        try:
            import keras_spiking_conv  # noqa: F401
        except ImportError:
            pass
        else:
            raise AssertionError("keras_spiking_conv was importable")
        assert not [m for m in sys.modules if m.split(".")[0] == "keras_spiking_conv"]
        """,
        cwd=str(tmp_path),
    )
    expected = _run(spiking_net, x)
    assert np.count_nonzero(expected) > 0
    sequence = np.load(tmp_path / "seq.npy")
    _assert_same_spikes(sequence, expected)
    _assert_same_spikes(np.load(tmp_path / "step.npy"), sequence)


@pytest.mark.tensorflow_only
def test_multi_io_nested_model_exports(tmp_path):
    import tensorflow as tf

    snn = ksc.convert(
        models.nested_shared_multi_io(),
        swap_activations={"relu": "spiking_relu"},
        synapse=0.002,
        scale_firing_rates=2000,
    )
    ksc.export(snn, tmp_path / "nested")
    served = tf.saved_model.load(str(tmp_path / "nested"))
    rng = np.random.default_rng(6)
    xs = {name: rng.uniform(0, 1, (2, 8, 8)).astype("float32") for name in ("x1", "x2")}
    expected = _run(snn, [xs["x1"], xs["x2"]])
    sequence = served.signatures["sequence"](**xs)
    assert set(sequence) == {"seq", "out2"}
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    assert set(state) == set(ksc.state_layout(snn))
    steps = {"seq": [], "out2": []}
    for t in range(8):
        result = served.signatures["step"](**{k: v[:, t] for k, v in xs.items()}, **state)
        for k in steps:
            steps[k].append(result.pop(k).numpy())
        state = result
    for k, e in zip(("seq", "out2"), expected, strict=True):
        assert np.count_nonzero(e) > 0
        np.testing.assert_allclose(sequence[k].numpy(), e, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.stack(steps[k], axis=1), e, rtol=1e-5, atol=1e-6)


@pytest.mark.tensorflow_only
def test_batch_size_and_n_steps_fix_the_signatures(tmp_path):
    import tensorflow as tf

    snn = ksc.convert(models.tutorial_convnet(), swap_activations={"relu": "spiking_relu"})
    ksc.export(snn, tmp_path / "fixed", batch_size=2, n_steps=4)
    served = tf.saved_model.load(str(tmp_path / "fixed"))
    name = snn.inputs[0].name
    _, seq = served.signatures["sequence"].structured_input_signature
    _, step = served.signatures["step"].structured_input_signature
    assert tuple(seq[name].shape) == (2, 4, 28, 28, 1)
    assert tuple(step[name].shape) == (2, 28, 28, 1)
    assert all(spec.shape[0] == 2 for key, spec in step.items() if key != name)


@pytest.mark.tensorflow_only
def test_model_without_state_exports_empty_states(tmp_path):
    import tensorflow as tf

    snn = ksc.convert(models.tutorial_convnet())  # rate mode: no state at all
    ksc.export(snn, tmp_path / "rate")
    served = tf.saved_model.load(str(tmp_path / "rate"))
    x = _data(n=1, steps=3)
    name, out = snn.inputs[0].name, snn.output_names[0]
    assert served.signatures["initial_state"](batch_size=tf.constant(1)) == {}
    step = served.signatures["step"](**{name: tf.constant(x[:, 0])})
    np.testing.assert_allclose(step[out].numpy(), _run(snn, x)[:, 0], atol=1e-5)


# -- export errors --------------------------------------------------------------------


def test_export_on_another_backend_says_what_to_do(spiking_net, tmp_path, monkeypatch):
    backend = keras.backend.backend()
    if backend == "tensorflow":  # the JAX and PyTorch sessions check the real thing
        backend = "jax"
        monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    with pytest.raises(RuntimeError, match=f"'{backend}' backend") as info:
        ksc.export(spiking_net, tmp_path / "m")
    assert "KERAS_BACKEND=tensorflow" in str(info.value)
    assert "model.save" in str(info.value)
    assert not (tmp_path / "m").exists()


@pytest.mark.tensorflow_only
def test_existing_path_is_kept_unless_overwrite(tmp_path):
    snn = ksc.convert(models.tutorial_convnet())
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ksc.export(snn, target)
    assert (target / "keep.txt").read_text() == "mine"

    ksc.export(snn, target, overwrite=True)
    assert not (target / "keep.txt").exists()
    assert (target / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary directories left


@pytest.mark.tensorflow_only
def test_failed_export_leaves_the_existing_directory_intact(tmp_path, monkeypatch):
    import tensorflow as tf

    snn = ksc.convert(models.tutorial_convnet())
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")

    def failing_save(obj, export_dir, *args, **kwargs):
        with open(os.path.join(export_dir, "saved_model.pb"), "w") as f:
            f.write("half written")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        ksc.export(snn, target, overwrite=True)
    assert sorted(os.listdir(target)) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_unconverted_model_error_says_to_add_a_time_axis(tmp_path):
    model = models.tutorial_convnet()  # inputs (batch, 28, 28, 1): no time axis
    with pytest.raises(ValueError, match="time axis") as info:
        ksc.export(model, tmp_path / "m")
    assert "keras_spiking_conv.convert" in str(info.value)
    assert not (tmp_path / "m").exists()


def test_input_without_time_axis_says_to_add_one(spiking_net):
    x = _data(n=1)[:, 0]  # (batch, 28, 28, 1)
    with pytest.raises(ValueError, match="no time axis: add one"):
        ksc.Stream(spiking_net)(x)
    with pytest.raises(ValueError, match="no time axis: add one"):
        ksc.process_chunk(spiking_net, x, ksc.initial_states(spiking_net, 1))


# -- streaming in Python --------------------------------------------------------------


def test_stream_in_chunks_equals_the_whole_sequence(spiking_net):
    x = _data(n=2, steps=15, seed=2)
    expected = _run(spiking_net, x)
    assert np.count_nonzero(expected) > 10
    stream = ksc.Stream(spiking_net)
    chunks = [stream(x[:, a:b]) for a, b in [(0, 1), (1, 4), (4, 5), (5, 11), (11, 15)]]
    _assert_same_spikes(np.concatenate(chunks, axis=1), expected)

    # reset() starts a new sequence (here with another batch size).
    stream.reset()
    _assert_same_spikes(stream(x[:1, :6]), expected[:1, :6])
    with pytest.raises(ValueError, match="reset"):
        stream(x[:, 6:8])

    # The functional form, one step at a time.
    states = ksc.initial_states(spiking_net, 2)
    steps = []
    for t in range(4):
        y, states = ksc.process_chunk(spiking_net, x[:, t : t + 1], states)
        steps.append(keras.ops.convert_to_numpy(y))
    _assert_same_spikes(np.concatenate(steps, axis=1), expected[:, :4])


def test_stream_handles_nested_models_and_shared_calls():
    snn = ksc.convert(
        models.nested_shared_multi_io(),
        swap_activations={"relu": "spiking_relu"},
        synapse=0.002,
        scale_firing_rates=2000,
    )
    layout = ksc.state_layout(snn)
    # The nested model 'block' is called twice: its neuron has one state per call.
    nested = [spec.path for spec in layout.values() if spec.path[0].startswith("block")]
    assert {path[0] for path in nested} == {"block", "block_call1"}
    rng = np.random.default_rng(3)
    xs = [rng.uniform(0, 1, (2, 10, 8)).astype("float32") for _ in range(2)]
    expected = _run(snn, xs)
    assert all(np.count_nonzero(e) > 0 for e in expected)
    stream = ksc.Stream(snn)
    first = stream([x[:, :3] for x in xs])
    second = stream({"x1": xs[0][:, 3:], "x2": xs[1][:, 3:]})
    for a, b, e in zip(first, second, expected, strict=True):
        np.testing.assert_allclose(np.concatenate([a, b], axis=1), e, rtol=1e-5, atol=1e-6)


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def test_stream_memory_does_not_grow_with_chunks():
    snn = ksc.convert(
        models.tutorial_convnet(), swap_activations={"relu": "spiking_relu"}, synapse=0.01
    )
    stream = ksc.Stream(snn)
    rng = np.random.default_rng(4)
    lengths = rng.integers(1, 4, size=200)
    x = rng.uniform(0, 1, (1, 4, 28, 28, 1)).astype("float32")
    for n in lengths[:40]:  # warm up: traces, allocator pools
        stream(x[:, :n])
    before = _rss_mb() if os.path.exists("/proc/self/status") else None
    for n in lengths[40:]:
        stream(x[:, :n])
    assert {tuple(v.shape) for v in stream.states.values()} == {
        (1, *spec.shape[1:]) for spec in stream.layout.values()
    }
    if keras.backend.backend() == "tensorflow":
        assert stream._fn.experimental_get_tracing_count() <= 4
    if before is not None:
        # (A state holding the history of every chunk, e.g. an autograd graph, grows by
        # more than 50 MB here.)
        assert _rss_mb() - before < 30, "memory grew while streaming"


# -- .keras round trip ----------------------------------------------------------------


def test_keras_file_round_trip_with_every_option(tmp_path):
    base = models.tutorial_convnet()
    conv1, conv2 = base.layers[1], base.layers[2]
    neuron = SpikingReLU(amplitude=0.5, initial_voltage=0.25, spiking_aware_training=False)
    snn = ksc.convert(
        base,
        swap_activations={"relu": neuron},
        synapse={conv1: 0.004, conv2.name: 0.02},
        scale_firing_rates={conv1: 2000.0, conv2.name: 4000.0},
        activity_regularizer=keras.regularizers.L2(1e-4),
        dt=0.002,
        seed=7,
    )
    # A trainable per-channel synapse on the outputs, with a tau moved off its initial value.
    out = LowpassSynapse(tau=[0.01] * 10, trainable_tau=True, name="readout_synapse")(snn.output)
    model = keras.Model(snn.input, out, name="snn_with_readout")
    readout = model.get_layer("readout_synapse")
    readout.cell.tau_weight.assign(np.linspace(0.005, 0.05, 10).astype("float32"))

    x = _data(n=2, steps=8, seed=5)
    expected = keras.ops.convert_to_numpy(model(x))
    assert np.count_nonzero(expected) > 0
    model.save(tmp_path / "snn.keras")
    loaded = keras.saving.load_model(tmp_path / "snn.keras")

    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), expected)
    for a, b in zip(model.layers, loaded.layers, strict=True):
        assert type(a) is type(b) and a.name == b.name
        assert json.dumps(a.get_config(), sort_keys=True) == json.dumps(
            b.get_config(), sort_keys=True
        ), a.name
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)

    neurons = [layer for layer in loaded.layers if isinstance(layer, SpikingReLU)]
    assert len(neurons) == 2
    for layer in neurons:
        assert (layer.amplitude, layer.initial_voltage, layer.dt) == (0.5, 0.25, 0.002)
        assert layer.spiking and not layer.spiking_aware_training
        assert isinstance(layer.activity_regularizer, keras.regularizers.L2)
    taus = {layer.name: layer.tau for layer in loaded.layers if isinstance(layer, LowpassSynapse)}
    assert taus == {
        f"{conv1.name}_synapse": 0.004,
        f"{conv2.name}_synapse": 0.02,
        "readout_synapse": (0.01,) * 10,
    }
    scales = sorted(
        (layer.scale, layer.inverse) for layer in loaded.layers if isinstance(layer, ksc.RateScale)
    )
    assert scales == [(2000.0, False), (2000.0, True), (4000.0, False), (4000.0, True)]
    loaded_readout = loaded.get_layer("readout_synapse")
    assert loaded_readout.trainable_tau
    assert [w.name for w in loaded_readout.trainable_weights] == ["tau"]


@pytest.mark.tensorflow_only
def test_readout_model_exports_the_readout_and_steps(spiking_net, tmp_path):
    """`sequence` applies the readout; `step` returns each step's output before it."""
    import tensorflow as tf

    snn = ksc.convert(spiking_net, swap_activations={"relu": "spiking_relu"}, readout="mean")
    ksc.export(snn, tmp_path / "snn")
    served = tf.saved_model.load(str(tmp_path / "snn"))
    name, out = snn.inputs[0].name, snn.output_names[0]
    x = _data()
    sequence = served.signatures["sequence"](**{name: tf.constant(x)})[out].numpy()
    assert sequence.shape == (2, 10)
    np.testing.assert_allclose(sequence, _run(snn, x), rtol=1e-5, atol=1e-6)
    state = served.signatures["initial_state"](batch_size=tf.constant(2))
    steps = []
    for t in range(N_STEPS):
        result = served.signatures["step"](**{name: tf.constant(x[:, t])}, **state)
        steps.append(result.pop(out).numpy())
        state = result
    np.testing.assert_allclose(np.mean(steps, axis=0), sequence, rtol=1e-5, atol=1e-5)
