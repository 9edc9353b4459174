"""Recognising activations however a user wrote them, and naming them canonically.

ReLU appears in real models as `activation="relu"`, `activation=keras.activations.relu`,
`activation=tf.nn.relu`, `Activation("relu")` and `ReLU()` layers. Every form maps
to one canonical key (here `"relu"`), so `swap_activations` matches them all.
"""

import inspect
import re

import keras

from keras_spiking_conv.layers import LIF, QuantizedReLU

# Activation layer classes and the canonical key of their activation.
_LAYER_KEYS = {
    keras.layers.LeakyReLU: "leaky_relu",
    keras.layers.PReLU: "prelu",
    keras.layers.ELU: "elu",
    keras.layers.Softmax: "softmax",
    QuantizedReLU: "quantized_relu",
}

# Keys of activations that only exist as layers (no `keras.activations` function);
# "lif" is the key of the package's `LIF` neurons when a converted model is converted
# again (`swap_activations={"lif": "lif"}` or `{ksc.LIF: "lif"}`).
_LAYER_ONLY_KEYS = frozenset({"quantized_relu", "lif"})

# Activations the converter treats as neurons by default.
NEURON_KEYS = frozenset({"relu"})


def _function_key(fn):
    name = getattr(fn, "__name__", None)
    if name is None:
        return None
    # keras.activations.relu, keras.ops.relu, tf.nn.relu, jax.nn.relu and
    # torch.relu are all named "relu"; so are the others of each family.
    # relu6 is a clipped ReLU: the key "relu", with its clip (`activation_clip`).
    return {"linear": "linear", "relu6": "relu"}.get(name, name)


# Key of a `ReLU` layer with a negative slope or a threshold: no spiking neuron computes it.
CUSTOM_RELU_KEY = "relu_custom"


def relu_layer_key(layer):
    """Key of a `keras.layers.ReLU` layer: "relu" for a plain or clipped ReLU
    (`max_value` set: its neuron clips at it), `CUSTOM_RELU_KEY` with a negative
    slope or a threshold."""
    plain = float(layer.negative_slope) == 0 and float(layer.threshold) == 0
    return "relu" if plain else CUSTOM_RELU_KEY


def activation_clip(layer):
    """The value a layer's ReLU clips at (`ReLU(max_value=6)`, `relu6`: 6.0), or None.

    `layer` is a layer or a `keras.ops` call in a graph, as `layer_activation_key` takes.
    """
    if isinstance(layer, keras.layers.ReLU):
        return None if layer.max_value is None else float(layer.max_value)
    if isinstance(layer, keras.layers.Activation):
        function = layer.activation
    elif isinstance(layer, keras.layers.Layer):
        function = getattr(layer, "activation", None)
    else:  # a keras.ops call: ops.relu6
        return 6.0 if type(layer).__name__ == "Relu6" else None
    return 6.0 if getattr(function, "__name__", None) == "relu6" else None


def activation_key(activation):
    """Canonical key of an activation given in any supported form.

    Args:
        activation: A string (`"relu"`), an activation function (a Keras,
            TensorFlow, JAX or PyTorch function), an activation layer class
            (`keras.layers.ReLU`) or instance.

    Returns:
        A string key such as `"relu"`, or None if `activation` is not recognised.
    """
    if isinstance(activation, str):
        if activation in _LAYER_ONLY_KEYS:
            return activation
        try:
            return _function_key(keras.activations.get(activation))
        except ValueError:
            return None
    if inspect.isclass(activation):
        if activation is keras.layers.ReLU:
            return "relu"
        if activation is keras.layers.Activation:
            return None
        if activation is LIF:
            return "lif"
        return _LAYER_KEYS.get(activation)
    if isinstance(activation, keras.layers.ReLU):
        return relu_layer_key(activation)
    if isinstance(activation, keras.layers.Activation):
        return _function_key(activation.activation)
    if isinstance(activation, keras.layers.Layer):
        return _LAYER_KEYS.get(type(activation))
    if callable(activation):
        return _function_key(activation)
    return None


def operation_activation_key(operation):
    """Key of a `keras.ops` activation call recorded in a graph (`ops.relu(x)` is
    `"relu"`, `ops.hard_silu(x)` `"hard_silu"`), or None for any other operation."""
    if not type(operation).__module__.startswith("keras.src.ops.nn"):
        return None
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower()
    try:
        return _function_key(keras.activations.get(name))
    except ValueError:
        return None


def layer_activation_key(layer):
    """Key of the activation a layer applies, or None if it applies none.

    Covers layers with an `activation` attribute (Dense, convolutions),
    activation layers (`Activation`, `ReLU`, `LeakyReLU`, `Softmax`, ...) and
    `keras.ops` activation calls in a graph (`ops.relu(x)`).
    """
    if not isinstance(layer, keras.layers.Layer):
        return operation_activation_key(layer)
    if (
        isinstance(layer, (keras.layers.Activation, keras.layers.ReLU))
        or type(layer) in _LAYER_KEYS
    ):
        return activation_key(layer)
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    key = activation_key(activation)
    return None if key == "linear" else key
