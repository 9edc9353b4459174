"""Public-API test helpers (in the spirit of keras-hub's `run_layer_test`)."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np


def run_layer_test(layer_cls, init_kwargs, input_data, expected_output_shape):
    """Checks config round trips, symbolic and eager shapes of a layer."""
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert json.dumps(clone.get_config(), sort_keys=True) == json.dumps(config, sort_keys=True)
    serialized = keras.saving.serialize_keras_object(layer)
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is layer_cls

    symbolic = keras.Input(batch_shape=(None, *input_data.shape[1:]))
    out = layer_cls(**init_kwargs)(symbolic)
    assert tuple(out.shape[1:]) == tuple(expected_output_shape[1:])

    eager = layer(input_data)
    assert tuple(eager.shape) == tuple(expected_output_shape)
    return keras.ops.convert_to_numpy(eager)


def gradient(fn, x):
    """Gradient of `sum(fn(x))` with respect to `x`, on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x))
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    if backend == "torch":
        import torch

        x = torch.tensor(x, requires_grad=True)
        fn(x).sum().backward()
        return x.grad.numpy()
    raise NotImplementedError(backend)


def native_relu():
    """The current backend's own ReLU function (`tf.nn.relu`, `jax.nn.relu`, `torch.relu`)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.nn.relu
    if backend == "jax":
        import jax

        return jax.nn.relu
    if backend == "torch":
        import torch

        return torch.relu
    raise NotImplementedError(backend)


def run_in_fresh_process(code, cwd=None, env=None, timeout=300):
    """Runs Python `code` in a new interpreter and returns its stdout."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout
