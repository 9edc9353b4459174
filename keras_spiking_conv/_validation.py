"""Argument checks shared by every public object.

Each check raises an error that names the argument, says what is allowed and
echoes the value received, in the style of Keras (``"... Received: tau=-1"``).
"""

import math
import numbers

import numpy as np


def _where(owner):
    return f"{owner}: " if owner else ""


def check_number(name, value, *, owner=None, positive=False, non_negative=False):
    """Checks that `value` is a finite real number and returns it as a float.

    Args:
        name: Argument name, used in the error message.
        value: Value received.
        owner: Optional "where" prefix (e.g. the layer class and name).
        positive: Require `value > 0`.
        non_negative: Require `value >= 0`.

    Returns:
        `value` as a Python float.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{_where(owner)}Argument `{name}` must be a real number, not "
            f"{type(value).__name__}. Received: {name}={value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(
            f"{_where(owner)}Argument `{name}` must be finite. Received: {name}={value!r}"
        )
    if positive and value <= 0:
        raise ValueError(
            f"{_where(owner)}Argument `{name}` must be > 0. Received: {name}={value!r}"
        )
    if non_negative and value < 0:
        raise ValueError(
            f"{_where(owner)}Argument `{name}` must be >= 0. Received: {name}={value!r}"
        )
    return value


def check_positive_values(name, value, *, owner=None):
    """Checks a positive number or a 1-D sequence of positive numbers.

    Returns:
        A float, or a tuple of floats when `value` is a sequence.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        values = np.asarray(value)
        if values.ndim != 1 or values.size == 0:
            raise ValueError(
                f"{_where(owner)}Argument `{name}` must be a number or a non-empty "
                f"1-D sequence of numbers. Received: {name}={value!r}"
            )
        return tuple(check_number(name, v.item(), owner=owner, positive=True) for v in values)
    return check_number(name, value, owner=owner, positive=True)


def check_bool(name, value, *, owner=None):
    """Checks that `value` is a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{_where(owner)}Argument `{name}` must be True or False. Received: {name}={value!r}"
        )
    return bool(value)


def check_integer(name, value, *, owner=None, minimum=0, optional=False, hint=None):
    """Checks an integer `>= minimum` (or None, if `optional`) and returns it as an int.

    Args:
        name: Argument name, used in the error message.
        value: Value received.
        owner: Optional "where" prefix (e.g. the layer class and name).
        minimum: The smallest value allowed.
        optional: Allow None (returned as it is).
        hint: What the argument means, put in the message in brackets.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        kind = "a non-negative integer" if minimum == 0 else f"an integer >= {minimum}"
        raise ValueError(
            f"{_where(owner)}Argument `{name}` must be {'None or ' if optional else ''}{kind}"
            f"{f' ({hint})' if hint else ''}. Received: {name}={value!r}"
        )
    return int(value)


def check_seed(name, value, *, owner=None):
    """Checks an optional non-negative integer seed."""
    return check_integer(name, value, owner=owner, optional=True)


def check_initial_voltage(value, *, owner=None):
    """Checks a neuron's initial voltage: `"random"` or a number in `[0, 1)`."""
    if isinstance(value, str):
        if value != "random":
            raise ValueError(
                f"{_where(owner)}Argument `initial_voltage` must be 'random' or a number in "
                f"[0, 1). Received: initial_voltage={value!r}"
            )
        return value
    value = check_number("initial_voltage", value, owner=owner)
    if not 0 <= value < 1:
        raise ValueError(
            f"{_where(owner)}Argument `initial_voltage` must be in [0, 1) (the voltage is "
            f"reset by remainder). Received: initial_voltage={value!r}"
        )
    return value
