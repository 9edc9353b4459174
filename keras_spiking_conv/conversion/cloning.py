"""Copies of layers with their weights: what `convert` and `quantize_activations` build from."""

import copy

import keras
from keras import ops


def as_functional(model):
    """`model` as a functional model (a Sequential model's layers, rewired)."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def copy_weights(new_layer, source_layer):
    """Copies `source_layer`'s weights into `new_layer`, backend tensor to backend tensor.

    Unlike `set_weights(get_weights())` this makes no NumPy round trip (whose
    `Variable.__array__` raises NumPy 2 DeprecationWarnings on JAX and PyTorch), and
    each weight gets its own copy: JAX training donates variable buffers, so the
    converted model must never share one with the original.
    """
    new, source = new_layer.weights, source_layer.weights
    if len(new) != len(source) or any(
        tuple(a.shape) != tuple(b.shape) for a, b in zip(new, source, strict=True)
    ):
        new_layer.set_weights(source_layer.get_weights())  # raises Keras' own error
        return
    for target, value in zip(new, source, strict=True):
        target.assign(ops.copy(value.value))


class LayerCloner:
    """Makes one new layer per original layer (so sharing is kept) and copies its weights once."""

    def __init__(self):
        self._clones = {}
        self._weights_copied = set()

    def clone(self, layer, drop_activation=False, factory=None, **overrides):
        """A new layer with `layer`'s config, updated with `overrides` (one per original
        layer, so sharing is kept). `factory()`, if given, makes it instead."""
        if id(layer) not in self._clones and factory is not None:
            self._clones[id(layer)] = (factory(), layer)
        if id(layer) not in self._clones:
            config = {**copy.deepcopy(layer.get_config()), **overrides}
            activation = getattr(layer, "activation", None)
            keep_activation = False
            if "activation" in config and (drop_activation or callable(activation)):
                # The activation is not round-tripped through its config: a backend
                # function such as `jax.nn.relu` or `torch.relu` serializes to a config
                # Keras cannot read back. The clone gets the very same function.
                config["activation"] = "linear"
                keep_activation = not drop_activation
            new_layer = type(layer).from_config(config)
            if keep_activation:  # a recurrent layer's activation is its cell's
                target = new_layer.cell if isinstance(new_layer, keras.layers.RNN) else new_layer
                target.activation = activation
            self._clones[id(layer)] = (new_layer, layer)
        return self._clones[id(layer)][0]

    def copy_weights_once(self, new_layer, source_layer):
        """Copies the weights at a clone's first call (a shared layer is called again)."""
        if not self.weights_copied(new_layer):
            copy_weights(new_layer, source_layer)
            self.mark_weights_copied(new_layer)

    def weights_copied(self, new_layer):
        """Whether `new_layer` has its weights (copied, or set by a rule)."""
        return id(new_layer) in self._weights_copied

    def mark_weights_copied(self, new_layer):
        """Records that a rule set `new_layer`'s weights itself."""
        self._weights_copied.add(id(new_layer))


class ModelCopier(LayerCloner):
    """Copies a model call by call: each layer a clone with its weights, each `keras.ops`
    call as it is, each nested model copied the same way (once).

    Subclasses change what some calls become by overriding `copy_call`.
    """

    def __init__(self):
        super().__init__()
        self._nested = {}

    def copy_call(self, layer, args, kwargs):
        """The copy of one call of `layer` (a layer or a `keras.ops` call)."""
        if not isinstance(layer, keras.layers.Layer):  # stateless: applies in the copy
            return layer(*args, **kwargs)
        new = self.clone(layer)
        outputs = new(*args, **kwargs)
        self.copy_weights_once(new, layer)
        return outputs

    def model(self, model):
        """The copy of `model` (functional or Sequential), as a functional model."""

        def call(layer, *args, **kwargs):
            if isinstance(layer, keras.Model):
                if id(layer) not in self._nested:
                    self._nested[id(layer)] = self.model(layer)
                return self._nested[id(layer)](args[0] if len(args) == 1 else list(args))
            return self.copy_call(layer, args, kwargs)

        return keras.models.clone_model(
            as_functional(model), clone_function=lambda layer: layer, call_function=call
        )
