"""Early checks: reject what cannot be converted before any work, with a fix."""

import inspect

import keras

from keras_spiking_conv.conversion.registry import get_rule


class ConversionError(ValueError):
    """A model or layer cannot be converted; the message says why and how to fix it."""


def _is_functional(model):
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def lambda_problem(layer):
    """Why a `Lambda` layer cannot be converted (its function holds Python state), or None."""
    if not isinstance(layer, keras.layers.Lambda):
        return None
    function = layer.function
    plain = inspect.isfunction(function) and not function.__closure__
    if plain:
        return None
    return (
        f"Layer '{layer.name}' (Lambda) wraps "
        + (
            "a function that captures Python variables"
            if inspect.isfunction(function)
            else f"a {type(function).__name__} (a method or callable object)"
        )
        + ", state the converter cannot copy or check. Fix: pass the values as the Lambda's "
        "`arguments`, or replace it with a small layer class (registered with "
        "`keras_spiking_conv.register_stateless(MyLayer)` if it treats each timestep "
        "independently, or `@keras_spiking_conv.register_rule(MyLayer)`)."
    )


def _layer_problem(layer, strict):
    where = f"Layer '{layer.name}' ({type(layer).__name__})"
    if isinstance(layer, keras.layers.RNN) and get_rule(layer) is None:
        return (
            f"{where} is a recurrent layer with its own time axis and state; the converter "
            "adds a time axis of its own and only converts per-step layers. Fix: keep the "
            "recurrent part outside the converted model, or register a rule for it with "
            "`@keras_spiking_conv.register_rule` (SimpleRNN, GRU and LSTM convert with "
            "temporal=True)."
        )
    if isinstance(layer, keras.Model):
        return model_problem(layer, strict)
    if get_rule(layer) is None:
        if strict:
            return (
                f"{where} has no conversion rule, and convert(strict=True) refuses the "
                "generic per-timestep rule. Fix: if it treats each timestep independently, "
                f"call `keras_spiking_conv.register_stateless({type(layer).__name__})`; "
                "otherwise write a rule with "
                f"`@keras_spiking_conv.register_rule({type(layer).__name__})`; or convert "
                "with strict=False (the default) to fold it over time after a per-sample check."
            )
        return lambda_problem(layer) or _time_axis_problem(layer)
    return None


def _time_axis_problem(layer):
    if getattr(layer, "stateful", False) or hasattr(layer, "return_sequences"):
        return (
            f"Layer '{layer.name}' ({type(layer).__name__}) runs over a time axis of its own "
            "(it has `return_sequences` or `stateful`), and the converter adds one; the "
            "generic per-timestep rule does not apply. Fix: keep it outside the converted "
            "model, or register a rule for it (`@keras_spiking_conv.register_rule`)."
        )
    return None


def model_problem(model, strict=False):
    """Why `model` cannot be converted, or None (`strict`: layers without a rule are a
    problem too)."""
    where = f"Model '{model.name}' ({type(model).__name__})"
    if isinstance(model, keras.Sequential):
        try:
            model.inputs  # noqa: B018
        except (AttributeError, ValueError):
            built = False
        else:
            built = bool(model.inputs)
        if not built:
            return (
                f"{where} is not built, so its input shape is unknown. Fix: start it with "
                "`keras.Input(shape)`, or call `model.build((None, *input_shape))` first."
            )
    elif not _is_functional(model):
        return (
            f"{where} is a subclassed model: its `call` is Python code with no layer graph "
            "to convert. Fix: build the same network with the functional API or "
            "`keras.Sequential` (the layers can be reused), then convert that."
        )
    problems = [p for p in (_layer_problem(layer, strict) for layer in model.layers) if p]
    return "\n".join(problems) if problems else None


def check_model(model, strict=False):
    """Raises `ConversionError` (or `TypeError`) if `model` cannot be converted."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "convert() expects a keras.Model (functional or Sequential). Received: "
            f"{type(model).__name__} {model!r:.80}"
        )
    problem = model_problem(model, strict)
    if problem:
        raise ConversionError(problem)
