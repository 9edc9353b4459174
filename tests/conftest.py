import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# Markers that run a test only in one backend's session (see pyproject.toml).
BACKEND_MARKERS = {"tensorflow_only": "tensorflow", "jax_only": "jax", "one_backend": "tensorflow"}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _same_global_seeds():
    # Python, NumPy and the backend's global seeds, so layers built without a seed get
    # the same initial weights on every run (per backend: their generators differ).
    keras.utils.set_random_seed(0)


def _backend_line():
    return f"keras backend: {keras.backend.backend()} (keras {keras.__version__})"


def pytest_report_header(config):
    return _backend_line()


def pytest_terminal_summary(terminalreporter):
    # Also under -q (which hides the header): ci/test_all_backends.sh checks this line.
    terminalreporter.write_line(_backend_line())


@pytest.fixture(autouse=True)
def _backend_only(request):
    # Tests marked for one backend's session run there only (see BACKEND_MARKERS).
    backend = keras.backend.backend()
    for marker, needed in BACKEND_MARKERS.items():
        if request.node.get_closest_marker(marker) is not None and backend != needed:
            pytest.skip(f"runs in the {needed} session, this is {backend}")


# -- Hypothesis profiles (tests/test_properties.py) ------------------------------------
# "ci" (the default): a few examples per property, the same ones every run (derandomized,
# so CI never fails on a fresh draw that no one can replay). "thorough": fresh random
# examples, as many as KSC_HYPOTHESIS_EXAMPLES (200 unless set). Setting
# KSC_HYPOTHESIS_EXAMPLES picks "thorough"; so does `pytest --hypothesis-profile=thorough`
# (and `--hypothesis-seed=N` replays a thorough run).
def _register_hypothesis_profiles():
    from hypothesis import HealthCheck, settings

    examples = os.environ.get("KSC_HYPOTHESIS_EXAMPLES", "").strip()
    if examples and not (examples.isdigit() and int(examples) > 0):
        raise ValueError(
            "KSC_HYPOTHESIS_EXAMPLES must be a positive integer (examples per property). "
            f"Received: KSC_HYPOTHESIS_EXAMPLES={examples!r}"
        )
    # Building and converting a model takes a while: no deadline, no "too slow" check.
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", max_examples=8, derandomize=True, database=None, **common)
    settings.register_profile("thorough", max_examples=int(examples or 200), **common)
    settings.load_profile("thorough" if examples else "ci")


_register_hypothesis_profiles()
