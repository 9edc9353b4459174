"""Neuron and synapse equations as pure `keras.ops` functions.

The layers in `keras_spiking_conv.layers` are thin wrappers around these
functions, so the equations live in one place and work on every backend.
"""

from keras import ops


def spiking_relu_step(inputs, voltage, dt, amplitude):
    """One integrate-and-fire step with remainder reset.

    Nengo's `SpikingRectifiedLinear` semantics (several spikes per step allowed):
    `v += max(x, 0) * dt; n = floor(v); out = amplitude * n / dt; v -= n`.

    Args:
        inputs: Input current, any shape.
        voltage: Membrane voltage, same shape as `inputs`, in `[0, 1)`.
        dt: Timestep in seconds.
        amplitude: Output scale of each spike.

    Returns:
        A tuple `(spikes, new_voltage)`; `spikes` is in units of
        `amplitude / dt` (a firing rate).
    """
    voltage = voltage + ops.relu(inputs) * dt
    n_spikes = ops.floor(voltage)
    return n_spikes * (amplitude / dt), voltage - n_spikes


def spiking_relu_rates(inputs, amplitude):
    """The rate (non-spiking) equivalent of `spiking_relu_step`."""
    return ops.relu(inputs) * amplitude


def lowpass_coefficient(tau, dt):
    """Zero-order-hold decay `a = exp(-dt / tau)` of a first-order low-pass."""
    return ops.exp(-dt / tau)


def lowpass_step(inputs, state, decay):
    """One low-pass step: `y_t = a * y_{t-1} + (1 - a) * x_t`."""
    return decay * state + (1.0 - decay) * inputs
