"""The networks the benchmark times, and the plain-Keras TimeDistributed + RNN baseline."""

import keras

from keras_spiking_conv import SpikingReLUCell

L = keras.layers


def tutorial_convnet():
    """The tutorial convnet: conv32 k3 relu, conv64 k3 s2 relu, flatten, dense10."""
    inp = keras.Input((28, 28, 1))
    h = L.Conv2D(32, 3, activation="relu")(inp)
    h = L.Conv2D(64, 3, strides=2, activation="relu")(h)
    return keras.Model(inp, L.Dense(10)(L.Flatten()(h)), name="tutorial_convnet")


def resnet_small():
    """A ResNet-style net on 32x32x3: stem, three residual stages, global pool, dense."""
    inp = keras.Input((32, 32, 3))
    h = L.Conv2D(32, 3, padding="same", activation="relu")(inp)
    for filters, stride in ((32, 1), (64, 2), (128, 2)):
        shortcut = h
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(h)
        y = L.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = L.Conv2D(filters, 1, strides=stride)(shortcut)
        h = L.Activation("relu")(L.Add()([y, shortcut]))
    h = L.GlobalAveragePooling2D()(h)
    return keras.Model(inp, L.Dense(10)(h), name="resnet_small")


NETWORKS = {"tutorial_convnet": tutorial_convnet, "resnet_small": resnet_small}


def time_distributed_rnn(model, n_steps, initial_voltage=0.5):
    """What a Keras 3 user writes today: TimeDistributed layers, the neuron as an RNN cell.

    Every layer of `model` is wrapped in `keras.layers.TimeDistributed` (a
    Python loop over the static time axis); every ReLU (an activation or a
    `keras.layers.ReLU`) becomes
    `keras.layers.RNN(SpikingReLUCell)` over flattened features. Weights are
    shared with `model`.
    """
    inp = keras.Input((n_steps, *model.input_shape[1:]))
    values = {id(model.inputs[0]): inp}
    for layer in model.layers[1:]:
        args = layer._inbound_nodes[0].input_tensors
        ins = [values[id(t)] for t in args]
        x = ins[0] if len(ins) == 1 else ins
        activation = getattr(layer, "activation", None)
        relu = activation is not None and getattr(activation, "__name__", "") == "relu"
        relu = relu or (isinstance(layer, L.ReLU) and layer.max_value is None)
        if isinstance(layer, (L.Activation, L.ReLU)):
            out = x
        elif isinstance(layer, L.Add):
            out = L.Add()(x)
        else:
            if relu:
                config = layer.get_config()
                config["activation"] = "linear"
                inner = type(layer).from_config(config)
                inner.build(layer.input.shape)
                inner.set_weights(layer.get_weights())
            else:
                inner = layer
            out = L.TimeDistributed(inner)(x)
        if relu:
            shape = out.shape[2:]
            flat = L.Reshape((n_steps, -1))(out)
            cell = SpikingReLUCell(initial_voltage=initial_voltage)
            spikes = L.RNN(cell, return_sequences=True)(flat)
            out = L.Reshape((n_steps, *shape))(spikes)
        values[id(layer.output)] = out
    return keras.Model(inp, values[id(model.outputs[0])])
