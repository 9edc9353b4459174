"""NIR export and import, checked by the tools that read NIR: Norse and SpikingJelly.

Each reader runs the exported graph step by step with `dt=1` (the graph's unit is one
step); their spike counts at every neuron and their outputs are compared with this
package's `predict` over 50 steps.
"""

import logging
import warnings

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.nir import NIRExportError, export_nir, import_nir
from keras_spiking_conv.runtime.plan import plan_of
from tests.models import tutorial_convnet

nir = pytest.importorskip("nir")
# The readers are PyTorch libraries. PyTorch and TensorFlow loaded in one process crashed
# TensorFlow (a segmentation fault in another test's predict, CI of 2026-12-02), so the
# tests that run a reader run in the JAX and PyTorch sessions; the others run everywhere.
READERS = keras.backend.backend() != "tensorflow"
if READERS:
    torch = pytest.importorskip("torch")
    norse_torch = pytest.importorskip("norse.torch")
    sj_nir = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
needs_readers = pytest.mark.skipif(
    not READERS, reason="the PyTorch readers run in the JAX and PyTorch sessions"
)

L = keras.layers
T = 50
SWAP = {"relu": ksc.SpikingReLU(reset="zero", max_spikes_per_step=1)}


def skip_net():
    """BatchNormalization, average pooling and an `Add` skip connection."""
    inp = keras.Input((12, 12, 2))
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(inp)
    h = L.AveragePooling2D(2, name="pool")(h)
    h = L.Conv2D(8, 3, padding="same", use_bias=False, name="c2")(h)
    h = L.BatchNormalization(name="bn")(h)
    h = L.ReLU(name="r2")(h)
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="c3")(h)
    s = L.Add(name="add")([h, a])
    s = L.Flatten(name="flat")(s)
    model = keras.Model(inp, L.Dense(4, name="out")(s), name="skip_net")
    rng = np.random.default_rng(3)
    model.get_layer("bn").set_weights(
        [
            rng.uniform(0.5, 2, 8),
            rng.normal(0, 0.3, 8),
            rng.normal(0, 0.3, 8),
            rng.uniform(0.5, 2, 8),
        ]
    )
    return model


def converted(build, seed, **extra):
    keras.utils.set_random_seed(seed)
    model = build()
    options = {"swap_activations": SWAP, "initial_voltage": 0.0, "scale_firing_rates": 300.0}
    return model, ksc.convert(model, **{**options, **extra})


def inputs(snn, batch=1, seed=2):
    shape = snn.input_shape[2:]
    return np.random.default_rng(seed).uniform(0, 1, (batch, T, *shape)).astype("float32")


def our_counts(snn, x):
    """Our outputs and each neuron's spike count per sample, by NIR node name."""
    neurons = plan_of(snn).neurons()
    probed = ksc.probe(snn, [site.source for site in neurons])
    outs = probed.predict(x, verbose=0)
    counts = {
        site.layer.name: np.round(np.asarray(o).sum(1) * site.layer.dt / site.layer.amplitude)
        for site, o in zip(neurons, outs[1:], strict=True)
    }
    return np.asarray(outs[0]), counts


def reader_counts(module, x, names):
    """A torch module imported from NIR, run step by step: outputs and spike counts."""
    counts = {name: 0.0 for name in names}
    hooks = []
    for name, sub in module.named_modules():
        if name in names:

            def hook(_, __, output, name=name):
                counts[name] = counts[name] + output[0].detach().numpy()

            hooks.append(sub.register_forward_hook(hook))
    xt = torch.from_numpy(np.moveaxis(x, -1, 2).copy())  # (batch, T, C, *spatial)
    state, outs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = module(xt[:, t], state)[:2]
            outs.append(out.numpy().reshape(x.shape[0], -1))
    for h in hooks:
        h.remove()
    return np.stack(outs, 1), {k: _channels_last(v, x.shape[0]) for k, v in counts.items()}


def _channels_last(count, batch):
    count = np.asarray(count)
    if count.ndim == 1:  # Norse, batch 1, after a Flatten that took the batch axis
        count = count[None]
    return np.moveaxis(count, 1, -1) if count.ndim >= 3 else count


def assert_same_spikes(ours, theirs):
    out, counts = ours
    their_out, their_counts = theirs
    assert counts.keys() == their_counts.keys()
    for name, count in counts.items():
        their = np.reshape(their_counts[name], count.shape)
        assert count.sum() > 0, f"{name} is silent: the test would show nothing"
        np.testing.assert_array_equal(their, count, err_msg=name)
    # Same spikes; the outputs differ by float rounding (the weights are folded).
    np.testing.assert_allclose(their_out, out.reshape(their_out.shape), rtol=1e-5, atol=1e-4)


@needs_readers
@pytest.mark.parametrize("build", [tutorial_convnet, skip_net], ids=["tutorial", "skip"])
def test_norse_and_spikingjelly_give_our_spike_counts(build, tmp_path):
    _, snn = converted(build, seed=0)
    graph = export_nir(snn, tmp_path / "net.nir")
    graph = nir.read(str(tmp_path / "net.nir"))  # the file reads back
    names = [site.layer.name for site in plan_of(snn).neurons()]
    assert {k for k, n in graph.nodes.items() if isinstance(n, nir.IF)} == set(names)
    assert graph.metadata["dt"] == pytest.approx(0.001)
    assert graph.metadata["exact"] == 1

    # Norse: its Flatten (start_dim=0 in the graph) flattens the batch too: batch 1.
    x = inputs(snn)
    logging.getLogger().setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        norse_net = norse_torch.from_nir(graph, dt=1.0)
    assert_same_spikes(our_counts(snn, x), reader_counts(norse_net, x, names))

    # SpikingJelly: a batch of 2.
    x = inputs(snn, batch=2)
    sj_net = sj_nir.import_from_nir(graph, dt=1)
    assert_same_spikes(our_counts(snn, x), reader_counts(sj_net, x, names))


@needs_readers
def test_calibrated_per_channel_scales_fold_exactly():
    # The recipe of docs/nir.md: one firing-rate scale per channel, from `calibrate`.
    keras.utils.set_random_seed(0)
    model = tutorial_convnet()
    x0 = np.random.default_rng(0).uniform(0, 1, (64, 28, 28, 1)).astype("float32")
    snn = ksc.convert(
        model,
        swap_activations=SWAP,
        initial_voltage=0.0,
        scale_firing_rates=ksc.calibrate(model, x0, per_channel=True),
    )
    graph = export_nir(snn)
    names = [site.layer.name for site in plan_of(snn).neurons()]
    x = inputs(snn, batch=2)
    theirs = reader_counts(sj_nir.import_from_nir(graph, dt=1), x, names)
    assert_same_spikes(our_counts(snn, x), theirs)


def extras_net():
    """A BatchNormalization after a neuron, average pooling into a neuron (an AvgPool2d
    node), global average pooling into a Dense layer."""
    inp = keras.Input((16, 16, 2))
    h = L.Conv2D(6, 3, activation="relu", name="c1")(inp)
    h = L.BatchNormalization(name="bn")(h)
    h = L.AveragePooling2D(2, name="pool")(h)
    h = L.ReLU(name="r2")(h)
    h = L.Conv2D(6, 3, padding="same", activation="relu", name="c3")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, L.Dense(3, name="out")(h), name="extras")
    rng = np.random.default_rng(4)
    model.get_layer("bn").set_weights(
        [
            rng.uniform(0.5, 2, 6),
            rng.normal(0, 0.3, 6),
            rng.normal(0, 0.3, 6),
            rng.uniform(0.5, 2, 6),
        ]
    )
    return model


def conv1d_net():
    inp = keras.Input((20, 3))
    h = L.Conv1D(4, 3, strides=2, activation="relu", name="c1")(inp)
    h = L.Conv1D(5, 3, padding="same", activation="relu", name="c2")(h)
    return keras.Model(inp, L.Dense(2, name="out")(L.Flatten()(h)), name="conv1d")


def pad_net():
    """ZeroPadding before convolutions: their padding in NIR."""
    inp = keras.Input((11, 11, 2))
    h = L.ZeroPadding2D(1, name="pad1")(inp)
    h = L.Conv2D(4, 3, strides=2, activation="relu", name="c1")(h)
    h = L.ZeroPadding2D(2, name="pad2")(h)
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="c2")(h)
    return keras.Model(inp, L.Dense(3, name="out")(L.Flatten()(h)), name="pad")


@pytest.mark.parametrize(
    "build", [extras_net, conv1d_net, pad_net], ids=["extras", "conv1d", "zero-padding"]
)
@needs_readers
def test_spikingjelly_gives_our_spikes_on_more_layers(build):
    # SpikingJelly only: Norse 1.1.0 imports neither AvgPool2d nor Conv1d (measured in
    # docs/nir.md: a KeyError for conv1d_net, the wrong output for extras_net).
    _, snn = converted(build, seed=0)
    graph = export_nir(snn)
    names = [site.layer.name for site in plan_of(snn).neurons()]
    x = inputs(snn, batch=2)
    theirs = reader_counts(sj_nir.import_from_nir(graph, dt=1), x, names)
    assert_same_spikes(our_counts(snn, x), theirs)


@pytest.mark.parametrize("build", [tutorial_convnet, skip_net], ids=["tutorial", "skip"])
def test_export_then_import_gives_the_same_outputs(build, tmp_path):
    check_round_trip(build, tmp_path)


def check_round_trip(build, tmp_path):
    _, snn = converted(build, seed=1)
    export_nir(snn, tmp_path / "net.nir")
    back = import_nir(tmp_path / "net.nir")
    x = inputs(snn, batch=2)
    ours, theirs = np.asarray(snn.predict(x, verbose=0)), np.asarray(back.predict(x, verbose=0))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-4)
    # The same spikes at every neuron (an IF node `name` imports as a ReLU `name`, whose
    # neuron `convert` names `name_neuron`).
    _, counts = our_counts(snn, x)
    _, back_counts = our_counts(back, x)
    for name, count in counts.items():
        np.testing.assert_array_equal(back_counts[f"{name}_neuron"], count, err_msg=name)


def test_imported_model_works_with_the_package_tools(tmp_path):
    _, snn = converted(tutorial_convnet, seed=1)
    back = import_nir(export_nir(snn))
    x = inputs(snn)
    whole = np.asarray(back.predict(x, verbose=0))
    stream = ksc.Stream(back)
    chunks = np.concatenate([np.asarray(stream(x[:, :20])), np.asarray(stream(x[:, 20:]))], 1)
    np.testing.assert_allclose(chunks, whole, rtol=1e-5, atol=1e-5)
    report = ksc.estimate_energy(back, x)
    assert report is not None


def test_the_readout_travels_in_the_metadata():
    _, snn = converted(tutorial_convnet, seed=1, readout="mean")
    graph = export_nir(snn)
    assert graph.metadata["readout"] == "mean"
    back = import_nir(graph)
    x = inputs(snn, batch=2)
    out = np.asarray(back.predict(x, verbose=0))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out, np.asarray(snn.predict(x, verbose=0)), rtol=1e-5, atol=1e-4)


@pytest.mark.tensorflow_only
def test_imported_model_exports_as_a_savedmodel(tmp_path):
    import tensorflow as tf

    _, snn = converted(tutorial_convnet, seed=1)
    back = import_nir(export_nir(snn))
    served = tf.saved_model.load(str(ksc.export(back, tmp_path / "served")))
    x = inputs(snn)
    (out,) = served.signatures["sequence"](**{back.inputs[0].name: tf.constant(x)}).values()
    np.testing.assert_allclose(out.numpy(), np.asarray(back.predict(x, verbose=0)), atol=1e-4)


@needs_readers
def test_a_spikingjelly_network_imports_with_its_outputs():
    from spikingjelly.activation_based import functional, layer, neuron

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1),
        neuron.IFNode(v_threshold=1.0, v_reset=0.0),
        layer.Conv2d(4, 6, 3, stride=2),
        neuron.IFNode(v_threshold=1.0, v_reset=0.0),
        layer.Flatten(),
        layer.Linear(6 * 4 * 4, 3),
    )
    x = np.random.default_rng(0).uniform(0, 2, (2, T, 10, 10, 2)).astype("float32")
    xt = torch.from_numpy(np.moveaxis(x, -1, 2).copy())
    graph = sj_nir.export_to_nir(net, xt[:, 0], dt=1e-4)  # r = 1 / dt = 1e4
    functional.reset_net(net)
    with torch.no_grad():
        theirs = np.stack([net(xt[:, t]).numpy() for t in range(T)], 1)
    back = import_nir(graph, graph_dt=1e-4)
    ours = np.asarray(back.predict(x, verbose=0))
    assert np.abs(theirs).sum() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


@needs_readers
def test_a_norse_network_imports_with_its_outputs():
    torch.manual_seed(0)
    net = norse_torch.SequentialState(
        torch.nn.Linear(6, 8),
        norse_torch.IAFCell(),
        torch.nn.Linear(8, 3),
    )
    graph = norse_torch.to_nir(net, torch.zeros(1, 6))
    x = np.random.default_rng(0).uniform(0, 1, (2, T, 6)).astype("float32")
    state, outs = None, []
    with torch.no_grad():
        for t in range(T):
            out, state = net(torch.from_numpy(x[:, t]), state)
            outs.append(out.numpy())
    theirs = np.stack(outs, 1)
    ours = np.asarray(import_nir(graph).predict(x, verbose=0))
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)


# -- refusals ------------------------------------------------------------------------------


def small(layer=None):
    inp = keras.Input((8, 8, 2))
    h = L.Conv2D(4, 3, activation="relu", name="conv")(inp)
    if layer is not None:
        h = layer(h)
    return keras.Model(inp, L.Dense(3, name="out")(L.Flatten()(h)))


@pytest.mark.parametrize(
    "neuron, match",
    [
        (ksc.SpikingReLU(max_spikes_per_step=1), r"'conv_neuron'.*subtraction.*reset=\"zero\""),
        (ksc.SpikingReLU(reset="zero"), r"'conv_neuron'.*several spikes.*max_spikes_per_step=1"),
    ],
    ids=["subtractive-reset", "multi-spike"],
)
def test_a_neuron_nir_cannot_express_is_refused_with_the_fix(neuron, match):
    snn = ksc.convert(small(), swap_activations={"relu": neuron}, initial_voltage=0.0)
    with pytest.raises(NIRExportError, match=match):
        export_nir(snn)


def test_depthwise_convolution_is_refused():
    snn = ksc.convert(
        small(L.DepthwiseConv2D(3, name="dw")), swap_activations=SWAP, initial_voltage=0.0
    )
    with pytest.raises(NIRExportError, match=r"'dw' \(DepthwiseConv2D\).*depthwise.*Conv2D"):
        export_nir(snn)


def test_a_layer_without_nir_node_is_refused():
    snn = ksc.convert(small(L.MaxPooling2D(name="mp")), swap_activations=SWAP, initial_voltage=0.0)
    with pytest.raises(NIRExportError, match=r"'mp.*no NIR node.*docs/nir.md"):
        export_nir(snn)


def test_an_initial_voltage_is_refused_or_approximated_with_a_warning():
    snn = ksc.convert(small(), swap_activations=SWAP)  # the converter's initial voltage 0.5
    with pytest.raises(NIRExportError, match=r"initial_voltage=0.5.*initial_voltage=0.0"):
        export_nir(snn)
    with pytest.warns(UserWarning, match="initial_voltage=0.5"):
        graph = export_nir(snn, approximate=True)
    assert graph.metadata["exact"] == 0 and "initial_voltage" in graph.metadata["approximations"]


def test_lif_and_lowpass_are_refused_or_approximated_with_a_warning():
    snn = ksc.convert(
        small(), swap_activations={"relu": ksc.LIF(initial_voltage=0.0)}, initial_voltage=0.0
    )
    with pytest.raises(NIRExportError, match=r"'conv_neuron' \(LIF\).*refractory.*approximate"):
        export_nir(snn)
    with pytest.warns(UserWarning, match="refractory"):
        graph = export_nir(snn, approximate=True)
    (lif,) = [node for node in graph.nodes.values() if isinstance(node, nir.LIF)]
    np.testing.assert_allclose(lif.tau, 0.02 / 0.001)  # tau_rc in steps

    snn = ksc.convert(small(), swap_activations=SWAP, initial_voltage=0.0, synapse=0.01)
    with pytest.raises(NIRExportError, match=r"LowpassSynapse.*exp\(-dt / tau\)"):
        export_nir(snn)
    with pytest.warns(UserWarning, match="Euler"):
        graph = export_nir(snn, approximate=True)
    assert any(isinstance(node, nir.LI) for node in graph.nodes.values())


def concat_net():
    """Concatenations: of two neurons' outputs into a convolution, of two convolutions
    into a neuron (with per-channel scales), and into a Dense layer after a Flatten."""
    inp = keras.Input((10, 10, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(inp)
    h = L.Concatenate(name="cat1")([a, b])
    c = L.Conv2D(5, 3, name="c")(h)
    d = L.Conv2D(2, 3, name="d")(h)
    h = L.ReLU(name="cd")(L.Concatenate(name="cat2")([c, d]))
    h = L.Concatenate(name="cat3")([h, L.Conv2D(3, 3, activation="relu", name="e")(a)])
    return keras.Model(inp, L.Dense(3, name="out")(L.Flatten()(h)), name="concat")


@needs_readers
def test_concatenate_folds_into_the_weights():
    keras.utils.set_random_seed(0)
    model = concat_net()
    x0 = np.random.default_rng(0).uniform(0, 1, (32, 10, 10, 2)).astype("float32")
    snn = ksc.convert(
        model,
        swap_activations=SWAP,
        initial_voltage=0.0,
        scale_firing_rates=ksc.calibrate(model, x0),
    )
    graph = export_nir(snn)
    assert not [n for n in graph.nodes.values() if type(n).__name__ == "Concatenate"]
    names = [site.layer.name for site in plan_of(snn).neurons()]
    x = inputs(snn, batch=2)
    theirs = reader_counts(sj_nir.import_from_nir(graph, dt=1), x, names)
    assert_same_spikes(our_counts(snn, x), theirs)


@pytest.mark.parametrize(
    "build",
    [extras_net, conv1d_net, concat_net, pad_net],
    ids=["extras", "conv1d", "concat", "zero-padding"],
)
def test_export_then_import_on_more_layers(build, tmp_path):
    check_round_trip(build, tmp_path)


@needs_readers
def test_a_hand_written_graph_imports_as_spikingjelly_runs_it():
    # SumPool2d, padding, a threshold other than 1: what the PyTorch libraries may write.
    rng = np.random.default_rng(0)
    nodes = {
        "input": nir.Input(input_type={"input": np.array([2, 8, 8])}),
        "conv": nir.Conv2d(
            input_shape=(8, 8),
            weight=rng.normal(0, 0.5, (4, 2, 3, 3)).astype("float32"),
            stride=1,
            padding=1,
            dilation=1,
            groups=1,
            bias=rng.normal(0, 0.1, 4).astype("float32"),
        ),
        "neuron": nir.IF(
            r=np.ones((4, 8, 8)), v_threshold=np.full((4, 8, 8), 0.7), v_reset=np.zeros((4, 8, 8))
        ),
        "pool": nir.SumPool2d(
            kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
        ),
        "flat": nir.Flatten(input_type={"input": np.array([4, 4, 4])}, start_dim=0),
        "fc": nir.Affine(
            weight=rng.normal(0, 0.3, (3, 64)).astype("float32"), bias=np.zeros(3, "float32")
        ),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    edges = [("input", "conv"), ("conv", "neuron"), ("neuron", "pool"), ("pool", "flat")]
    graph = nir.NIRGraph(nodes, [*edges, ("flat", "fc"), ("fc", "output")])
    x = np.random.default_rng(1).uniform(0, 1, (2, T, 8, 8, 2)).astype("float32")
    theirs, _ = reader_counts(sj_nir.import_from_nir(graph, dt=1), x, [])
    ours = np.asarray(import_nir(graph).predict(x, verbose=0))
    assert np.abs(theirs).sum() > 0
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4)
