"""A spiking ReLU driven by constant inputs: spike counts approach the rates."""

import numpy as np

from keras_spiking_conv import LowpassSynapse, SpikingReLU

rates = np.array([5.0, 20.0, 80.0, 250.0], dtype="float32")  # Hz
x = np.tile(rates, (1, 1000, 1))  # one second at dt = 1 ms
spikes = SpikingReLU(initial_voltage=0.0)(x)
smoothed = LowpassSynapse(tau=0.05)(spikes)
counts = np.asarray(spikes).sum(axis=1)[0] * 0.001
print("input rates (Hz):     ", rates)
print("spikes in one second: ", counts)
print("low-pass output at 1 s:", np.asarray(smoothed)[0, -1].round(1))
