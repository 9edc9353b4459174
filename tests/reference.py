"""Independent NumPy implementations of the layer equations (float64)."""

import numpy as np


def spiking_relu(x, v0, dt, amplitude=1.0):
    """Integrate-and-fire with remainder reset over axis 1 of `x`."""
    x = np.asarray(x, dtype=np.float64)
    v = np.broadcast_to(np.asarray(v0, dtype=np.float64), x[:, 0].shape).copy()
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        v += np.maximum(x[:, t], 0) * dt
        n = np.floor(v)
        out[:, t] = amplitude * n / dt
        v -= n
    return out, v


def lowpass(x, tau, dt):
    """First-order zero-order-hold low-pass over axis 1 of `x`, from zero."""
    x = np.asarray(x, dtype=np.float64)
    a = np.exp(-dt / np.asarray(tau, dtype=np.float64))
    y = np.zeros_like(x[:, 0])
    out = np.zeros_like(x)
    for t in range(x.shape[1]):
        y = a * y + (1 - a) * x[:, t]
        out[:, t] = y
    return out
