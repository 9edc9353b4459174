"""The one registry of per-layer conversion rules.

A rule is a function `rule(layer, args, kwargs, context) -> outputs`: it
receives an original layer, the converted (time-distributed) tensors it is
called on, and the `ConversionContext`, and returns the converted outputs.
Rules are keyed by exact layer class, so a subclass with its own `call` is
never silently treated as its parent. A layer with no rule falls back to the
generic per-timestep rule (`generic.py`), unless `convert(strict=True)`.
"""

import warnings

_RULES = {}


def register_rule(*layer_classes, overwrite=False):
    """Decorator registering a conversion rule for one or more layer classes.

    Args:
        *layer_classes: The Keras layer classes the rule converts.
        overwrite: Replace an existing rule without a warning. Defaults to `False`.

    Example:

    ```python
    @keras_spiking_conv.register_rule(MyLayer)
    def convert_my_layer(layer, args, kwargs, context):
        return context.fold(context.clone(layer), layer, args, kwargs)
    ```
    """
    if not layer_classes:
        raise ValueError("register_rule() needs at least one layer class. Received none.")

    def decorator(rule):
        for cls in layer_classes:
            if not isinstance(cls, type):
                raise TypeError(
                    f"register_rule() takes layer classes. Received: {cls!r} ({type(cls).__name__})"
                )
            if cls in _RULES and not overwrite and _RULES[cls] is not rule:
                warnings.warn(
                    f"register_rule: replacing the conversion rule for {cls.__name__} "
                    f"({_RULES[cls].__name__} -> {rule.__name__}). Pass overwrite=True "
                    "to silence this warning.",
                    stacklevel=2,
                )
            _RULES[cls] = rule
        return rule

    return decorator


def get_rule(layer):
    """The rule registered for `type(layer)`, or None."""
    return _RULES.get(type(layer))


def has_registered_rule(layer):
    """Whether `type(layer)` has a rule registered by a user (`register_rule` outside
    this package), which may build neuron blocks the package cannot foresee."""
    rule = _RULES.get(type(layer))
    return rule is not None and not rule.__module__.startswith("keras_spiking_conv.")
