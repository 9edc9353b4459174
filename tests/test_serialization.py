import keras
import numpy as np
import pytest

from keras_spiking_conv import LowpassSynapse, RateScale, SpikingReLU
from tests.helpers import run_in_fresh_process


def _model():
    inp = keras.Input((6, 5, 5, 2))
    h = RateScale(3.0, name="scale")(inp)
    h = SpikingReLU(seed=4, name="neuron")(h)
    h = RateScale(3.0, inverse=True, name="unscale")(h)
    h = LowpassSynapse(tau=[0.01, 0.02], trainable_tau=True, name="synapse")(h)
    return keras.Model(inp, h)


def test_keras_file_loads_in_fresh_process_without_custom_objects(tmp_path, rng):
    x = rng.uniform(0, 300, (3, 6, 5, 5, 2)).astype("float32")
    model = _model()
    expected = keras.ops.convert_to_numpy(model(x))
    assert np.count_nonzero(expected) > 0
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    # A fresh interpreter: importing the package registers its classes, so no
    # `custom_objects` are needed.
    run_in_fresh_process(
        f"""
        import keras, numpy as np
        import keras_spiking_conv  # noqa: F401
        model = keras.saving.load_model(r"{tmp_path / "m.keras"}")
        y = keras.ops.convert_to_numpy(model(np.load(r"{tmp_path / "x.npy"}")))
        np.save(r"{tmp_path / "y.npy"}", y)
        print(sorted(type(l).__name__ for l in model.layers))
        """
    )
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


# Each backend session saves with its backend and loads on the next one, so an
# all-backend run covers tensorflow -> jax -> torch -> tensorflow.
NEXT_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_keras_file_loads_on_another_backend(tmp_path, rng):
    target = NEXT_BACKEND[keras.backend.backend()]
    pytest.importorskip(target)
    x = rng.uniform(0, 300, (3, 6, 5, 5, 2)).astype("float32")
    model = _model()
    expected = keras.ops.convert_to_numpy(model(x))
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    stdout = run_in_fresh_process(
        f"""
        import keras, numpy as np
        import keras_spiking_conv  # noqa: F401
        model = keras.saving.load_model(r"{tmp_path / "m.keras"}")
        y = keras.ops.convert_to_numpy(model(np.load(r"{tmp_path / "x.npy"}")))
        np.save(r"{tmp_path / "y.npy"}", y)
        print(keras.backend.backend())
        """,
        env={"KERAS_BACKEND": target},
    )
    assert stdout.split()[-1] == target
    # Same float32 equations, different kernels: equal up to rounding.
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-3)


def test_registered_names():
    for cls in (SpikingReLU, LowpassSynapse, RateScale):
        assert keras.saving.get_registered_name(cls) == f"keras_spiking_conv>{cls.__name__}"
