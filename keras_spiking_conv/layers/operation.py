"""A `keras.ops` call of a functional graph, as a layer."""

import keras

PACKAGE = "keras_spiking_conv"

# Markers of an encoded argument template (JSON-safe, and kept apart from Keras' own).
INPUT = "__ksc_input__"
_TUPLE = "__ksc_tuple__"


def encode_arguments(args, kwargs, is_tensor):
    """A JSON-safe template of a call's arguments, and the tensors it takes out of them.

    Every value for which `is_tensor(value)` holds becomes a placeholder (in the
    order the tensors are returned); tuples stay tuples (an index such as
    `x[:, 1:3]` needs it); anything else is serialized with Keras (numbers,
    strings, `None`, slices, NumPy arrays, dtypes).

    Returns:
        `(template, tensors)`: `decode_arguments(template, tensors)` gives back
        `(args, kwargs)`.
    """
    tensors = []

    def encode(value):
        if is_tensor(value):
            tensors.append(value)
            return {INPUT: len(tensors) - 1}
        if isinstance(value, tuple):
            return {_TUPLE: [encode(v) for v in value]}
        if isinstance(value, list):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {str(k): encode(v) for k, v in value.items()}
        return keras.saving.serialize_keras_object(value)

    template = {"args": [encode(a) for a in args], "kwargs": encode(dict(kwargs))}
    return template, tensors


def decode_arguments(template, tensors):
    """`(args, kwargs)` from an `encode_arguments` template and its tensors."""

    def decode(value):
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, dict):
            if INPUT in value:
                return tensors[value[INPUT]]
            if _TUPLE in value:
                return tuple(decode(v) for v in value[_TUPLE])
            if "class_name" in value:
                return keras.saving.deserialize_keras_object(value)
            return {k: decode(v) for k, v in value.items()}
        return value

    return [decode(a) for a in template["args"]], decode(template["kwargs"])


@keras.saving.register_keras_serializable(package=PACKAGE)
class OperationLayer(keras.layers.Layer):
    """Applies one recorded `keras.ops` call (such as `x + 3` or `ops.mean(x, axis=-1)`).

    Keras 3 records `keras.ops` calls on symbolic tensors as operation nodes
    of a functional graph. `convert` turns each into an `OperationLayer` (then
    folded over time by `TimeFold`), so a converted graph is made of layers
    only. The operation is kept as its Keras config and its constant
    arguments (numbers, axes, slices, arrays) as a template; the layer's
    inputs fill the template's tensor slots in order. It computes in the
    dtypes of its inputs, as the operation did (no autocasting).

    Args:
        operation: The `keras.Operation` (or its serialized config).
        arguments: The call's argument template, from `encode_arguments`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        One tensor, or a list of tensors (one per tensor argument, in order).
    """

    def __init__(self, operation, arguments, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(operation, dict):
            operation = keras.saving.deserialize_keras_object(operation)
        self.operation = operation
        self.arguments = arguments
        self.n_inputs = _count_inputs(arguments)

    def _fill(self, inputs):
        single = self.n_inputs == 1 and not isinstance(inputs, (list, tuple))
        tensors = [inputs] if single else list(inputs)
        return decode_arguments(self.arguments, tensors)

    def call(self, inputs):
        args, kwargs = self._fill(inputs)
        return self.operation(*args, **kwargs)

    def compute_output_spec(self, inputs):
        args, kwargs = self._fill(inputs)
        return self.operation.compute_output_spec(*args, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "operation": keras.saving.serialize_keras_object(self.operation),
            "arguments": self.arguments,
        }


def _count_inputs(template):
    count = 0

    def walk(value):
        nonlocal count
        if isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            if INPUT in value:
                count += 1
            elif _TUPLE in value:
                walk(value[_TUPLE])
            elif "class_name" not in value:
                for v in value.values():
                    walk(v)

    walk(template)
    return count
