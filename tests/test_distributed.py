"""Multi-device training of a converted model matches one-device training.

Each test starts a fresh interpreter that sees two CPU devices (logical devices
on TensorFlow, `--xla_force_host_platform_device_count=2` on JAX): the device
count is fixed when the backend initializes, so it cannot change in this
process. The fresh interpreter trains the same converted model (same data,
same initial weights, plain SGD, rate neurons, a low-pass synapse and a firing
rate scale) once on one device and once data-parallel on two, and saves the
weights; this process compares them. Gradients of the two halves of each batch
are averaged, so the two runs differ only by float32 rounding.

The tests run in their own processes whatever this session's backend is, so
each is marked to run in one backend session only (an all-backend run does
each once): MirroredStrategy in the TensorFlow session, `keras.distribution`
(a JAX feature) in the JAX session.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_in_fresh_process

ROOT = Path(__file__).resolve().parents[1]

# Shared by both scripts: the model, the data and one training run.
COMMON = """
import json
import numpy as np
import keras
import keras_spiking_conv as ksc
from tests import models

keras.utils.set_random_seed(0)
model = models.tutorial_convnet()
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, (64, 3, 28, 28, 1)).astype("float32")  # (batch, time, 28, 28, 1)
y = rng.normal(size=(64, 3, 10)).astype("float32")


def convert_and_compile():
    snn = ksc.convert(
        model, synapse={model.layers[2].name: 0.005}, scale_firing_rates=2.0, seed=0
    )
    snn.compile(keras.optimizers.SGD(0.1), "mse")
    return snn


def fit(snn, prefix, out):
    arrays = {f"{prefix}_init_{i}": w for i, w in enumerate(snn.get_weights())}
    history = snn.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    arrays.update({f"{prefix}_{i}": w for i, w in enumerate(snn.get_weights())})
    arrays[f"{prefix}_loss"] = np.array(history.history["loss"])
    out.update(arrays)
"""

MIRRORED = """
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
{common}
out = {{}}
for prefix, strategy in [
    ("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
    ("two", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])),
]:
    with strategy.scope():
        snn = convert_and_compile()
    fit(snn, prefix, out)
np.savez(r"{path}", **out)
print(json.dumps({{"backend": keras.backend.backend(), "replicas": strategy.num_replicas_in_sync}}))
"""

DATA_PARALLEL = """
{common}
import jax

out = {{}}
fit(convert_and_compile(), "one", out)
distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices("cpu"))
with distribution.scope():
    snn = convert_and_compile()
    fit(snn, "two", out)
devices = len(snn.trainable_variables[0].value.sharding.device_set)
np.savez(r"{path}", **out)
print(json.dumps({{"backend": keras.backend.backend(), "replicas": devices,
                  "jax_devices": len(jax.devices())}}))
"""


def _check_same_training(path):
    data = np.load(path)
    n = sum(1 for key in data if key.startswith("one_init_"))
    assert n > 0
    moved = 0.0
    for i in range(n):
        np.testing.assert_array_equal(data[f"two_init_{i}"], data[f"one_init_{i}"])
        one, two = data[f"one_{i}"], data[f"two_{i}"]
        # float32 rounding only: observed differences are ~1e-8 on weights of ~0.1.
        np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-6, err_msg=f"weight {i}")
        moved = max(moved, float(np.abs(one - data[f"one_init_{i}"]).max()))
    assert moved > 1e-3  # training really changed the weights, far beyond the tolerance
    np.testing.assert_allclose(data["two_loss"], data["one_loss"], rtol=1e-5)


def _run(script, tmp_path, env):
    path = tmp_path / "weights.npz"
    stdout = run_in_fresh_process(
        script.format(common=COMMON, path=path), cwd=ROOT, env=env, timeout=600
    )
    return json.loads(stdout.strip().splitlines()[-1]), path


@pytest.mark.tensorflow_only
def test_mirrored_strategy_two_devices_matches_one_device(tmp_path):
    info, path = _run(MIRRORED, tmp_path, {"KERAS_BACKEND": "tensorflow"})
    assert info == {"backend": "tensorflow", "replicas": 2}
    _check_same_training(path)


@pytest.mark.jax_only
def test_jax_data_parallel_two_devices_matches_one_device(tmp_path):
    pytest.importorskip("jax")
    env = {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    info, path = _run(DATA_PARALLEL, tmp_path, env)
    assert info == {"backend": "jax", "replicas": 2, "jax_devices": 2}
    _check_same_training(path)
