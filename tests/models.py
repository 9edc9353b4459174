"""Small hand-made models covering the graph features the converter must handle."""

import keras

L = keras.layers


def tutorial_convnet(activation="relu"):
    inp = keras.Input((28, 28, 1))
    h = L.Conv2D(8, 3, activation=activation)(inp)
    h = L.Conv2D(16, 3, strides=2, activation=activation)(h)
    h = L.Flatten()(h)
    return keras.Model(inp, L.Dense(10)(h), name="convnet")


def skip_and_concat():
    inp = keras.Input((12, 12, 3))
    a = L.Conv2D(6, 3, padding="same", activation="relu")(inp)
    b = L.BatchNormalization()(L.Conv2D(6, 1)(inp))
    s = L.Add()([a, b])
    s = L.ReLU()(s)
    c = L.Concatenate(axis=3)([s, L.Activation("relu")(L.DepthwiseConv2D(3, padding="same")(s))])
    c = L.MaxPooling2D()(c)
    c = L.SeparableConv2D(5, 3, activation="relu")(c)
    c = L.ZeroPadding2D(1)(c)
    c = L.AveragePooling2D(2)(c)
    c = L.Conv2DTranspose(4, 2, strides=2)(c)
    c = L.Cropping2D(1)(c)
    c = L.UpSampling2D()(c)
    g = L.GlobalAveragePooling2D()(c)
    g = L.Dropout(0.3)(g)
    m = L.Multiply()([g, L.Dense(4, activation="sigmoid")(g)])
    out = L.Dense(3, activation="softmax")(L.Subtract()([m, L.Average()([m, g])]))
    return keras.Model(inp, out, name="skip_and_concat")


def nested_shared_multi_io():
    block_in = keras.Input((8,))
    block = keras.Model(block_in, L.Dense(8, activation="relu")(block_in), name="block")
    seq = keras.Sequential(
        [keras.Input((8,)), L.Dense(6, activation="relu"), L.Dense(5)], name="seq"
    )
    shared = L.Dense(8, activation="relu", name="shared")
    x1, x2 = keras.Input((8,), name="x1"), keras.Input((8,), name="x2")
    h1, h2 = shared(x1), shared(x2)
    h = L.Maximum()([block(h1), block(h2)])
    out1 = seq(h)
    out2 = L.Dense(2, name="out2")(L.Concatenate()([h1, h2, L.LeakyReLU(0.1)(h)]))
    return keras.Model([x1, x2], [out1, out2], name="nested_shared")


def conv1d_and_3d():
    a = keras.Input((16, 2))
    ha = L.GlobalMaxPooling1D()(L.Conv1D(4, 3, activation="relu")(a))
    b = keras.Input((6, 6, 6, 1))
    hb = L.GlobalAveragePooling3D()(L.Conv3D(4, 3, activation="relu")(b))
    out = L.Dense(3)(
        L.Concatenate()([ha, hb, L.Reshape((4,))(L.Permute((2, 1))(L.Reshape((2, 2))(hb)))])
    )
    return keras.Model([a, b], out, name="conv1d_3d")
