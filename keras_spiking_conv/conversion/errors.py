"""Early checks: reject what cannot be converted before any work, with a fix."""

import keras

from keras_spiking_conv.conversion.registry import get_rule


class ConversionError(ValueError):
    """A model or layer cannot be converted; the message says why and how to fix it."""


def _is_functional(model):
    return any(cls.__name__ == "Functional" for cls in type(model).__mro__)


def _layer_problem(layer):
    where = f"Layer '{layer.name}' ({type(layer).__name__})"
    if isinstance(layer, keras.layers.Lambda):
        return (
            f"{where} wraps arbitrary Python code, which the converter cannot inspect or "
            "serialize safely. Fix: replace it with a small layer class, then register it "
            "with `keras_spiking_conv.register_stateless(MyLayer)` if it treats each "
            "timestep independently, or with `@keras_spiking_conv.register_rule(MyLayer)`."
        )
    if isinstance(layer, keras.layers.RNN) and get_rule(layer) is None:
        return (
            f"{where} is a recurrent layer with its own time axis and state; the converter "
            "adds a time axis of its own and only converts per-step layers. Fix: keep the "
            "recurrent part outside the converted model, or register a rule for it with "
            "`@keras_spiking_conv.register_rule`."
        )
    if isinstance(layer, keras.Model):
        return model_problem(layer)
    if get_rule(layer) is None:
        return (
            f"{where} has no conversion rule. Fix: if it treats each timestep "
            f"independently, call `keras_spiking_conv.register_stateless({type(layer).__name__})`"
            "; otherwise write a rule with "
            f"`@keras_spiking_conv.register_rule({type(layer).__name__})`."
        )
    return None


def model_problem(model):
    """Why `model` cannot be converted, or None."""
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
    problems = [p for p in map(_layer_problem, model.layers) if p]
    graph = getattr(model, "_functional", model)  # a Sequential model's inner graph
    for op in getattr(graph, "operations", ()):
        if not isinstance(op, keras.layers.Layer):
            problems.append(
                f"Operation '{op.name}' ({type(op).__name__}) in model '{model.name}' is a "
                "keras.ops call on symbolic tensors (such as `a + b`), not a layer, and the "
                "converter converts layers. Fix: use the layer form (keras.layers.Add()([a, b]), "
                "Subtract, Multiply, Rescaling, ...), or a layer of your own with a conversion "
                "rule (`keras_spiking_conv.register_rule`)."
            )
    return "\n".join(problems) if problems else None


def check_model(model):
    """Raises `ConversionError` (or `TypeError`) if `model` cannot be converted."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            "convert() expects a keras.Model (functional or Sequential). Received: "
            f"{type(model).__name__} {model!r:.80}"
        )
    problem = model_problem(model)
    if problem:
        raise ConversionError(problem)
