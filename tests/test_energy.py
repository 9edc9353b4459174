"""Activity and energy: synops and MACs against hand-computed counts, devices, reports."""

import json
import re

import keras
import numpy as np
import pytest

import keras_spiking_conv as ksc
from keras_spiking_conv.energy import devices, get_device

L = keras.layers
SPIKING = {"relu": "spiking_relu"}
T = 4  # steps; an input of 250 * c Hz fires exactly c spikes in them (dt = 1 ms)


def spiking(model, **kwargs):
    return ksc.convert(model, swap_activations=SPIKING, **kwargs)


def drive(counts):
    """Inputs `(batch, T, ...)` that make a ReLU neuron on the input fire `counts` spikes.

    With the converter's initial voltage 0.5, a neuron fed `c / (T * dt)` Hz has
    voltage `0.5 + c` after `T` steps: exactly `c` spikes, whatever the rounding.
    """
    rates = np.asarray(counts, dtype="float32") / (T * 0.001)
    return ksc.tile_time(rates, T)


def row(report, name):
    return next(r for r in report.rows if r.name == name)


def by_hand(*per_axis):
    """The fan-out map of a convolution, the outer product of its per-axis fan-outs."""
    out = np.array(per_axis[0], dtype="float64")
    for axis in per_axis[1:]:
        out = np.multiply.outer(out, axis)
    return out


# -- synops and MACs, by hand ---------------------------------------------------------
def test_strided_conv_counts_each_spike_once_per_window_it_is_in():
    inp = keras.Input((5, 5, 1))
    h = L.ReLU(name="spikes")(inp)
    out = L.Conv2D(2, 3, strides=2, name="conv")(h)
    snn = spiking(keras.Model(inp, out))
    counts = np.ones((1, 5, 5, 1))
    counts[0, 2, 2, 0] = 3  # the centre is in all four windows
    report = ksc.estimate_energy(snn, drive(counts))
    # Windows start at 0 and 2 on each axis: positions 0..4 are in [1, 1, 2, 1, 1] of
    # them; each window feeds 2 output channels.
    fan_out = 2 * by_hand([1, 1, 2, 1, 1], [1, 1, 2, 1, 1])
    assert row(report, "conv").synops == pytest.approx(np.sum(fan_out * counts[0, ..., 0]))
    assert row(report, "conv").synops == 2 * (36 + 2 * 4)
    assert row(report, "conv").macs == 2 * 2 * (3 * 3 * 1 * 2)  # outputs x kernel
    assert row(report, "conv").dense_macs == 0  # the input goes to a neuron, not weights
    spikes = row(report, "spikes")
    assert (spikes.neurons, spikes.spikes) == (25, 27)
    assert spikes.rate_mean == pytest.approx(27 / 25 / (T * 0.001))
    assert spikes.rate_max == pytest.approx(3 / (T * 0.001))
    assert report.total_synops == 88 and report.macs == 72 and report.total_spikes == 27


def test_same_padding_counts_fewer_connections_at_the_edges():
    inp = keras.Input((4, 4, 1))
    h = L.ReLU(name="spikes")(inp)
    out = L.Conv2D(1, 3, padding="same", name="conv")(h)
    snn = spiking(keras.Model(inp, out))
    everywhere = np.ones((4, 4, 1))
    corner = np.zeros((4, 4, 1))
    corner[0, 0, 0] = 1
    report = ksc.estimate_energy(snn, drive(np.stack([everywhere, corner])))
    # Edge positions reach 2 outputs per axis, the rest 3: 10 x 10 in all; a corner 2 x 2.
    assert np.sum(by_hand([2, 3, 3, 2], [2, 3, 3, 2])) == 100
    assert row(report, "conv").synops == pytest.approx((100 + 4) / 2)  # mean of the two
    # The usual MAC count includes the products with padding: 16 outputs x 9.
    assert row(report, "conv").macs == 16 * 9


@pytest.mark.parametrize(
    "pool, fan_out",
    [
        (L.AveragePooling2D(2), 16 * 1),  # each position in one window
        (L.MaxPooling2D(2), 16 * 1),
        (L.AveragePooling2D(3, strides=1), 36),  # [1, 2, 2, 1] windows per axis
        (L.MaxPooling2D(2, strides=1, padding="same"), 36),  # [1, 2, 2, 2]: 7 x 7 - 13
    ],
)
def test_pooling_passes_each_spike_to_every_window_it_is_in(pool, fan_out):
    if isinstance(pool, L.MaxPooling2D) and pool.padding == "same":
        fan_out = 7 * 7  # same padding, stride 1: [1, 2, 2, 2] per axis
    inp = keras.Input((4, 4, 1))
    h = pool(L.ReLU(name="spikes")(inp))
    out = L.Dense(3, name="dense")(L.Flatten()(h))
    snn = spiking(keras.Model(inp, out))
    report = ksc.estimate_energy(snn, drive(np.ones((1, 4, 4, 1))))
    assert row(report, "dense").synops == 3 * fan_out


def test_add_and_a_skip_route_spikes_to_every_layer_they_reach():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    ra, rb = L.ReLU(name="ra")(a), L.ReLU(name="rb")(b)
    out = L.Dense(3, name="out")(L.Add()([ra, rb]))
    side = L.Dense(2, name="side")(ra)
    snn = spiking(keras.Model([a, b], [out, side]))
    ca, cb = np.array([[1, 0, 2, 1]]), np.array([[0, 3, 0, 1]])
    report = ksc.estimate_energy(snn, [drive(ca), drive(cb)])
    assert row(report, "out").synops == 3 * (4 + 4)  # both neurons' spikes, 3 each
    assert row(report, "side").synops == 2 * 4  # ra's only
    assert report.total_synops == 32
    assert row(report, "out").macs == 4 * 3 and row(report, "side").macs == 4 * 2


def test_concatenate_places_spikes_where_the_convolution_sees_them():
    a, b = keras.Input((2, 1), name="a"), keras.Input((2, 1), name="b")
    joined = L.Concatenate(axis=1)([L.ReLU(name="ra")(a), L.ReLU(name="rb")(b)])
    out = L.Conv1D(1, 3, name="conv")(joined)
    snn = spiking(keras.Model([a, b], out))
    report = ksc.estimate_energy(snn, [drive([[[1], [2]]]), drive([[[3], [4]]])])
    # Positions 0..3 of the concatenation are in [1, 2, 2, 1] windows.
    assert row(report, "conv").synops == 1 * 1 + 2 * 2 + 3 * 2 + 4 * 1
    assert row(report, "conv").macs == 2 * 3


def nested_model():
    inner_in = keras.Input((4,))
    hidden = L.Dense(3, activation="relu", use_bias=False, name="hidden")(inner_in)
    block = keras.Model(inner_in, L.Dense(2, name="inner_out")(hidden), name="block")
    inp = keras.Input((4,))
    out = L.Dense(5, name="head")(block(L.ReLU(name="r0")(inp)))
    model = keras.Model(inp, out)
    # `hidden` passes r0's first three neurons on, one spike for each spike.
    block.get_layer("hidden").set_weights([np.eye(4, 3, dtype="float32")])
    return model


def test_nested_models_are_counted_layer_by_layer():
    snn = spiking(nested_model())
    counts = np.array([[2, 1, 0, 3]])
    report = ksc.estimate_energy(snn, drive(counts))
    assert row(report, "block/hidden").synops == 6 * 3  # r0's 6 spikes, 3 outputs each
    assert row(report, "block/hidden").spikes == 3  # 2 + 1 + 0
    assert row(report, "block/inner_out").synops == 3 * 2
    # `head` gets inner_out's values (no neuron between): every connection, every step.
    assert row(report, "head").synops == 0
    assert row(report, "head").dense_macs == 2 * 5 * T
    assert report.macs == 4 * 3 + 3 * 2 + 2 * 5


def test_two_inputs_first_layers_compute_every_connection_every_step():
    a, b = keras.Input((4,), name="a"), keras.Input((3,), name="b")
    da = L.Dense(5, activation="relu", name="da")(a)
    db = L.Dense(6, activation="relu", name="db")(b)
    out = L.Dense(2, name="out")(L.Concatenate()([da, db]))
    snn = spiking(keras.Model([a, b], out))
    rng = np.random.default_rng(0)
    x = [ksc.tile_time(rng.uniform(0, 1, (3, n)).astype("float32") * 100, 10) for n in (4, 3)]
    report = ksc.estimate_energy(snn, x)
    assert report.dense_macs == (4 * 5 + 3 * 6) * 10
    assert row(report, "out").synops == pytest.approx(2 * report.total_spikes)
    assert report.macs == 4 * 5 + 3 * 6 + 11 * 2
    assert report.neurons == 11 and report.neuron_updates == 11 * 10


def test_synapses_and_scales_route_spikes_unchanged():
    inp = keras.Input((5, 5, 1))
    out = L.Conv2D(2, 3, strides=2, name="conv")(L.ReLU(name="spikes")(inp))
    model = keras.Model(inp, out)
    x = drive(np.ones((1, 5, 5, 1)))
    plain = ksc.estimate_energy(spiking(model), x)
    filtered = ksc.estimate_energy(spiking(model, synapse=0.01), x)
    assert filtered.total_synops == plain.total_synops == 2 * 36
    assert filtered.synapse_updates == 25 * T and plain.synapse_updates == 0


def test_layers_without_a_counting_rule_are_noted():
    inp = keras.Input((4,))
    h = L.ReLU(name="spikes")(inp)
    doubled = L.Dense(3, name="after_op")(h * 2.0)  # keeps the shape: elementwise
    summed = L.Dense(3, name="after_sum")(keras.ops.sum(h, axis=-1, keepdims=True))
    snn = spiking(keras.Model(inp, [doubled, summed]))
    with pytest.warns(UserWarning, match="no counting rule"):
        report = ksc.estimate_energy(snn, drive([[1, 2, 0, 1]]))
    assert row(report, "after_op").synops == 4 * 3
    # The sum's output counts as non-spike values: every connection, every step.
    assert row(report, "after_sum").synops == 0
    assert row(report, "after_sum").dense_macs == 1 * 3 * T
    # Operation names are numbered by Keras per process: 'multiply', 'multiply_12', ...
    assert any(
        re.match(r"'multiply(_\d+)?' \(OperationLayer\) counted as elementwise", note)
        for note in report.notes
    )


# -- energy -----------------------------------------------------------------------------
def strided_report():
    inp = keras.Input((5, 5, 1))
    out = L.Conv2D(2, 3, strides=2, name="conv")(L.ReLU(name="spikes")(inp))
    return ksc.estimate_energy(spiking(keras.Model(inp, out)), drive(np.ones((1, 5, 5, 1))))


def test_energy_is_the_registry_numbers_times_the_counts():
    report = strided_report()  # 72 synops, 25 neurons for 4 steps, 72 MACs per pass
    assert report.energy("loihi") == pytest.approx(72 * 27.1e-12 + 25 * T * 81e-12)
    assert report.energy("spinnaker2") == pytest.approx(72 * 450e-12 + 25 * T * 2.19e-9)
    # A non-spiking device simulates every connection every step.
    assert report.energy("cpu") == pytest.approx(72 * T * 8.6e-9 + 25 * T * 8.6e-9)
    assert report.ann_energy("gpu") == pytest.approx(72 * 0.3e-9 + 25 * 0.3e-9)
    assert report.ann_energy("horowitz_45nm") == pytest.approx(72 * 4.6e-12 + 25 * 0.9e-12)
    assert report.energy("Loihi") == report.energy("loihi")
    for name in ("cpu", "gpu", "arm", "loihi", "spinnaker", "spinnaker2", "horowitz_45nm"):
        assert get_device(name).citation


def test_register_device_prices_a_new_device():
    ksc.register_device("test-chip", energy_per_synop=1e-12, energy_per_neuron=2e-12, spiking=True)
    report = strided_report()
    assert report.energy("test-chip") == pytest.approx(72 * 1e-12 + 25 * T * 2e-12)
    assert devices()["test-chip"].energy_per_mac == 1e-12
    with pytest.warns(UserWarning, match="already registered"):
        ksc.register_device(
            "test-chip", energy_per_synop=3e-12, energy_per_neuron=2e-12, spiking=True
        )
    with pytest.raises(ValueError, match="energy_per_neuron"):
        ksc.register_device("bad", energy_per_synop=1e-12, energy_per_neuron=-1, spiking=True)


# -- bad input --------------------------------------------------------------------------
def test_errors_name_the_fix():
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(2)(L.ReLU()(inp)))
    with pytest.raises(ValueError, match=r"not a converted.*keras_spiking_conv.convert"):
        ksc.estimate_energy(model, np.ones((2, 3, 4), "float32"))
    snn = spiking(model)
    with pytest.raises(ValueError, match=r"no time axis.*tile_time"):
        ksc.estimate_energy(snn, np.ones((2, 4), "float32"))
    report = ksc.estimate_energy(snn, np.ones((2, 3, 4), "float32"))
    with pytest.raises(ValueError, match=r"unknown device 'tpu'.*loihi.*register_device"):
        report.energy("tpu")


# -- output -----------------------------------------------------------------------------
def test_table_dict_and_dataframe():
    report = strided_report()
    text = str(report)
    for piece in ("spikes", "conv", "Conv2D", "total", "loihi", "J per example"):
        assert piece in text
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["totals"]["synops"] == 72 and data["totals"]["macs"] == 72
    assert [r["name"] for r in data["rows"]] == ["spikes", "conv"]
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            report.to_dataframe()
    else:
        assert list(report.to_dataframe()["synops"]) == [0.0, 72.0]


def test_plots_write_png_files(tmp_path):
    from keras_spiking_conv import plotting

    report = strided_report()
    rng = np.random.default_rng(0)
    spikes = (rng.uniform(size=(20, 6, 6, 3)) < 0.2) * 1000.0
    paths = [
        plotting.plot_spike_raster(spikes, tmp_path / "raster.png", neurons=[0, 5, 9]),
        plotting.plot_rate_histogram(report, tmp_path / "rates.png"),
        plotting.plot_output_over_time(
            rng.uniform(size=(6, 6)), spikes, rng.normal(size=(20, 10)), tmp_path / "out.png"
        ),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_sweep_counts_synops_and_energy_per_duration(tmp_path):
    inp = keras.Input((5, 5, 1))
    h = L.Conv2D(2, 3, strides=2, activation="relu", name="conv")(inp)
    out = L.Dense(3, name="dense")(L.Flatten()(h))
    snn = spiking(keras.Model(inp, out))
    x = np.random.default_rng(0).uniform(0, 1, (6, 5, 5, 1)).astype("float32") * 50
    sweep = ksc.latency_sweep(snn, x, np.zeros(6, int), steps=(2, 4), energy=True, verbose=0)
    full = ksc.estimate_energy(snn, ksc.tile_time(x, 4))
    assert sweep.rows[-1]["synops"] == pytest.approx(full.total_synops)
    assert sweep.rows[0]["synops"] <= sweep.rows[1]["synops"]
    assert sweep.reports[4].energy("loihi") == pytest.approx(full.energy("loihi"))
    path = ksc.plot_latency({"snn": sweep}, tmp_path / "sweep.png", device="loihi")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_firing_rate_monitor_logs_synops():
    from keras_spiking_conv.callbacks import FiringRateMonitor

    inp = keras.Input((5, 5, 1))
    out = L.Conv2D(2, 3, strides=2, name="conv")(L.ReLU(name="spikes")(inp))
    snn = spiking(keras.Model(inp, out))
    x = drive(np.ones((2, 5, 5, 1)))
    snn.compile("sgd", "mse")
    monitor = FiringRateMonitor(x, synops=True)
    history = snn.fit(x, np.zeros((2, T, 2, 2, 2)), epochs=2, callbacks=[monitor], verbose=0)
    assert history.history["total_synops"] == [72.0, 72.0]
    assert "spikes_neuron_rate_mean" in history.history


def test_a_constant_input_model_is_measured_on_its_network_with_held_inputs():
    inp = keras.Input((5, 5, 1))
    h = L.ReLU(name="spikes")(inp)
    model = keras.Model(inp, L.Conv2D(2, 3, strides=2, name="conv")(h))
    counts = np.ones((1, 5, 5, 1), dtype="float32")
    rates = counts / (T * 0.001)
    constant = spiking(model, n_steps=T, constant_input=True)
    held = ksc.estimate_energy(constant, rates)
    tiled = ksc.estimate_energy(spiking(model), ksc.tile_time(rates, T))
    assert held.total_synops == tiled.total_synops == 2 * 36
