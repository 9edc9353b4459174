import csv
import json
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv import datasets, demo
from keras_spiking_conv.callbacks import FiringRateMonitor, SpikingEvaluation, firing_rates
from keras_spiking_conv.plotting import plot_activity
from keras_spiking_conv.regularizers import TargetRate


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(source="bundled")
    return (
        demo.prepare(x_train[:3000]),
        y_train[:3000],
        demo.prepare(x_test[:200]),
        y_test[:200],
    )


@pytest.fixture(scope="module")
def trained(mnist):
    x_train, y_train, _, _ = mnist
    model = demo.build_model(seed=0)
    demo.train_base(model, x_train, y_train, epochs=2, verbose=0)
    return model


def test_bundled_mnist_is_real_mnist_shaped():
    (x_train, y_train), (x_test, y_test) = datasets.load_bundled_mnist()
    assert x_train.shape == (8000, 28, 28) and x_test.shape == (2000, 28, 28)
    assert x_train.dtype == np.uint8 and set(np.unique(y_train)) == set(range(10))
    assert 20 < x_train.mean() < 60  # real digits: mostly dark background


def test_load_mnist_falls_back_with_warning_or_is_forbidden(monkeypatch):
    def offline():
        raise OSError("no network")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.warns(UserWarning, match="bundled real subset"):
        (x_train, _), _ = datasets.load_mnist()
    assert len(x_train) == 8000
    with pytest.raises(RuntimeError, match="could not be loaded.*bundled"):
        datasets.load_mnist(allow_fallback=False)
    monkeypatch.setenv(datasets.NO_FALLBACK_ENV, "1")
    with pytest.raises(RuntimeError):
        datasets.load_mnist()
    with pytest.raises(ValueError, match="source.*Received: source='web'"):
        datasets.load_mnist(source="web")


def test_target_rate_penalty_and_range():
    x = np.array([[[100.0, 300.0]], [[250.0, 250.0]]], dtype="float32")  # (2, 1, 2)
    point = TargetRate(250.0, weight=0.5, time_axis=1)
    # Keras divides by the batch size (2): mean over items of mean squared distance.
    expected = 0.5 * np.mean([(150**2 + 50**2) / 2, 0.0])
    assert float(point(x)) / 2 == pytest.approx(expected)
    ranged = TargetRate((200.0, 260.0), weight=1.0)
    assert float(ranged(x)) / 2 == pytest.approx(np.mean([(100**2 + 40**2) / 2, 0.0]))
    config = keras.saving.serialize_keras_object(ranged)
    assert keras.saving.deserialize_keras_object(config).get_config() == ranged.get_config()
    with pytest.raises(ValueError, match="low <= high"):
        TargetRate((300, 100))
    with pytest.raises(ValueError, match="weight.*Received: weight=-1"):
        TargetRate(10, weight=-1)


def test_target_rate_on_a_plain_keras_layer_pulls_rates():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (64, 4)).astype("float32")
    inp = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", activity_regularizer=TargetRate(5.0, 1.0))(inp)
    model = keras.Model(inp, keras.layers.Dense(1)(h))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    probe = keras.Model(inp, h)
    before = np.abs(probe.predict(x, verbose=0).mean() - 5.0)
    model.fit(x, np.zeros((64, 1)), epochs=40, verbose=0)
    after = np.abs(probe.predict(x, verbose=0).mean() - 5.0)
    assert after < before / 2


def test_callbacks_log_rates_into_history_and_csv(tmp_path, mnist, trained):
    x_train, y_train, x_test, y_test = mnist
    snn = ksc.convert(
        trained, swap_activations={"relu": "relu"}, activity_regularizer=TargetRate(250.0)
    )
    snn.compile("rmsprop", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = FiringRateMonitor(ksc.tile_time(x_test[:20], 1))
    spiking_eval = SpikingEvaluation(
        x_test[:50],
        y_test[:50],
        n_steps=10,
        swap_activations={"relu": "spiking_relu"},
        scale_firing_rates=100,
    )
    csv_path = tmp_path / "log.csv"
    history = snn.fit(
        ksc.tile_time(x_train[:400], 1),
        y_train[:400, None],
        epochs=2,
        batch_size=200,
        verbose=0,
        callbacks=[monitor, spiking_eval, keras.callbacks.CSVLogger(str(csv_path))],
    )
    for key in ("conv0_neuron_rate_mean", "conv0_neuron_rate_max", "conv1_neuron_silent"):
        assert len(history.history[key]) == 2
    assert 0 <= history.history["conv1_neuron_silent"][-1] <= 1
    assert (
        history.history["conv0_neuron_rate_max"][-1]
        >= history.history["conv0_neuron_rate_mean"][-1]
        > 0
    )
    # The monitor builds its probe once; each epoch it sees the weights as trained so far.
    final = firing_rates(snn, ksc.tile_time(x_test[:20], 1))
    assert history.history["conv0_neuron_rate_mean"][-1] == pytest.approx(
        final["conv0_neuron"]["mean"], rel=1e-5
    )
    assert (
        history.history["conv0_neuron_rate_mean"][0]
        != history.history["conv0_neuron_rate_mean"][-1]
    )
    assert history.history["spiking_accuracy"][-1] > 0.5
    with open(csv_path) as f:
        header = next(csv.reader(f))
    assert "conv0_neuron_rate_mean" in header and "spiking_accuracy" in header


# The three long workflows marked below run in the TensorFlow session only (CI time; see
# docs/backends.md). What they exercise is checked by shorter tests on every backend: the
# execution paths and options they simulate (tests/test_runtime.py, tests/test_convert.py),
# training with a TargetRate regularizer (test_target_rate_on_a_plain_keras_layer_pulls_rates),
# SoftLIF training and LIF spiking (tests/test_lif.py, tests/test_convert_neurons.py), and
# the trained tutorial net in `fit` with callbacks (above) and the low-latency workflow.
@pytest.mark.one_backend
def test_workflow_effects_hold(mnist, trained):
    """A short version of the tutorial: each effect goes the right way."""
    _, _, x_test, y_test = mnist

    def acc(**kwargs):
        return demo.run_network(trained, x_test, y_test, seed=0, **kwargs)

    rate = acc(spiking=False, n_steps=10)
    naive = acc(spiking=True, n_steps=30)
    smoothed = acc(spiking=True, n_steps=60, synapse=0.01)
    scaled = acc(spiking=True, n_steps=30, synapse=0.01, scale=10.0)
    huge = acc(spiking=True, n_steps=10, scale=1000.0)
    assert rate["accuracy"] > 80
    assert naive["accuracy"] < rate["accuracy"] - 30  # naive spiking fails
    assert smoothed["accuracy"] > naive["accuracy"] + 10  # the synapse helps
    assert scaled["accuracy"] > smoothed["accuracy"]  # scaling helps further
    assert scaled["accuracy"] > rate["accuracy"] - 10
    assert abs(huge["accuracy"] - rate["accuracy"]) <= 3  # scale 1000 ~ rate
    conv0 = "conv0_neuron"
    assert scaled["rates"][conv0]["mean"] == pytest.approx(
        10 * rate["rates"][conv0]["mean"], rel=0.1
    )


def test_low_latency_workflow(mnist, trained):
    """Calibrated scales and quantization-aware fine-tuning reach the rate network in a
    few steps, where the tutorial's hand tuning needs 30 (docs/latency.md)."""
    x_train, y_train, x_test, y_test = mnist
    rate = demo.run_network(trained, x_test, y_test, spiking=False, n_steps=1)["accuracy"]
    scales = ksc.calibrate(trained, x_train[:1000])
    relu = demo.relu_function()
    calibrated = ksc.convert(
        trained, swap_activations={relu: "spiking_relu"}, scale_firing_rates=scales
    )
    sweep = ksc.latency_sweep(calibrated, x_test, y_test, steps=(1, 8), verbose=0)
    assert sweep.accuracy(8) >= rate - 2
    assert sweep.accuracy(1) < sweep.accuracy(8)
    quantized = demo.train_quantized(trained, x_train, y_train, epochs=1, verbose=0)
    snn = ksc.convert(quantized, swap_activations={ksc.QuantizedReLU: "spiking_relu"})
    assert ksc.latency_sweep(snn, x_test, y_test, steps=(4,), verbose=0).accuracy(4) >= rate - 2


@pytest.mark.one_backend  # see test_workflow_effects_hold
def test_regularized_training_moves_rates_and_converts(mnist, trained):
    x_train, y_train, x_test, y_test = mnist
    before = firing_rates(
        ksc.convert(trained, swap_activations={"relu": "relu"}), ksc.tile_time(x_test, 1)
    )
    regularized = demo.train_regularized(trained, x_train, y_train, epochs=2, verbose=0)
    after = firing_rates(regularized, ksc.tile_time(x_test, 1))
    for layer in ("conv0_neuron", "conv1_neuron"):
        assert abs(after[layer]["mean"] - 250) < abs(before[layer]["mean"] - 250)
    # Converting the regularized network loses less than converting the base one.
    kwargs = dict(spiking=True, n_steps=30, synapse=0.01)
    spiking = demo.run_network(regularized, x_test, y_test, **kwargs)
    base = demo.run_network(trained, x_test, y_test, **kwargs)
    assert spiking["accuracy"] > base["accuracy"] + 5


@pytest.mark.one_backend  # see test_workflow_effects_hold
def test_lif_workflow_trains_soft_lif_rates_and_converts_to_spiking_lif(mnist, trained):
    # The tutorial's regularized workflow with Nengo's LIF: trained as SoftLIFRate with
    # rates pulled to 250 Hz, then the same trained neurons made spiking.
    x_train, y_train, x_test, y_test = mnist
    lif = demo.train_regularized(
        trained, x_train, y_train, epochs=2, verbose=0, neuron=demo.LIF_RATE
    )
    neurons = [layer for layer in lif.layers if isinstance(layer, ksc.LIF)]
    assert len(neurons) == 2 and all(not n.spiking and n.cell.smoothing == 0.01 for n in neurons)
    rate = demo.run_network(lif, x_test, y_test, spiking=False, n_steps=1, swap={})
    assert rate["accuracy"] > 80
    spiking = demo.run_network(
        lif, x_test, y_test, spiking=True, n_steps=30, synapse=0.01, swap={"lif": "lif"}
    )
    assert [
        type(n).__name__ for n in spiking["model"].layers if getattr(n, "role", "") == "neuron"
    ] == [
        "LIF",
        "LIF",
    ]
    assert all(n.spiking for n in spiking["model"].layers if isinstance(n, ksc.LIF))
    assert spiking["accuracy"] >= rate["accuracy"] - 3


def test_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    path = plot_activity(
        rng.uniform(0, 255, (2, 28, 28, 1)),
        rng.integers(0, 2, (2, 10, 26, 26, 8)) * 1000.0,
        rng.normal(size=(2, 10, 10)),
        tmp_path / "p.png",
        title="test",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.one_backend  # the command line; the workflow runs on every backend above
def test_demo_cli_prints_every_row(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_spiking_conv",
            "demo",
            "--data",
            "bundled",
            "--quiet",
            "--train-images",
            "500",
            "--epochs",
            "1",
            "--regularized-epochs",
            "1",
            "--quantized-epochs",
            "1",
            "--test-images",
            "20",
            "--seed",
            "0",
            "1",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for label, *_ in demo.ROWS:
        assert out.stdout.count(f"| {label} |") == 3  # two seeds and the summary
    assert "conv0" in out.stdout and "Hz" in out.stdout
    assert "Over seeds 0, 1" in out.stdout
    assert "retracing" not in out.stderr  # the demo's many models are expected
    with open(tmp_path / "r.json") as f:
        document = json.load(f)
    assert set(document["runs"]) == {"0", "1"}
    runs = [document["runs"]["0"], document["runs"]["1"]]
    mean = [(a["accuracy"] + b["accuracy"]) / 2 for a, b in zip(*runs, strict=True)]
    assert [s["mean"] for s in document["summary"]] == pytest.approx(mean)
    bad = subprocess.run(
        [sys.executable, "-m", "keras_spiking_conv", "demo", "--epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--epochs must be >= 1" in bad.stderr
    twice = subprocess.run(
        [sys.executable, "-m", "keras_spiking_conv", "demo", "--seed", "3", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert twice.returncode == 2 and "--seed values must differ" in twice.stderr


def _row(label, accuracy):
    return {
        "configuration": label,
        "n_steps": 30,
        "accuracy": accuracy,
        "tutorial": None,
        "nengo_dl_10k": None,
    }


def test_summary_over_seeds_compares_each_row_with_its_rate_row():
    labels = ("rate", "synapse 0.01, scale 10", "regularized, rate", "regularized, spiking")
    runs = [
        [_row(lab, acc) for lab, acc in zip(labels, (93.0, 91.0, 95.0, 94.0), strict=True)],
        [_row(lab, acc) for lab, acc in zip(labels, (92.0, 92.0, 90.0, 91.0), strict=True)],
    ]
    summary = {s["configuration"]: s for s in demo.summarize(runs)}
    scaled = summary["synapse 0.01, scale 10"]
    assert (scaled["mean"], scaled["min"], scaled["max"]) == (91.5, 91.0, 92.0)
    assert scaled["below_rate"] == 1.0 and scaled["worst_below_rate"] == 2.0
    assert summary["rate"]["below_rate"] is None  # as the table leaves it blank
    regularized = summary["regularized, spiking"]
    assert regularized["below_rate"] == 0.0 and regularized["worst_below_rate"] == 1.0
    table = demo.format_summary(demo.summarize(runs), 2)
    assert "| synapse 0.01, scale 10 | 30 | 91.50 | 91.00 - 92.00 | 1.00 (2.00) |" in table
    with pytest.raises(ValueError, match="run 1 has configurations"):
        demo.summarize([runs[0], runs[1][:2]])


def test_tutorial_script_and_notebook_are_in_sync():
    jupytext = pytest.importorskip("jupytext")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script = jupytext.read("tutorials/convert_keras_to_snn.py")
        notebook = jupytext.read("tutorials/convert_keras_to_snn.ipynb")
    assert [c.source for c in script.cells] == [c.source for c in notebook.cells]
