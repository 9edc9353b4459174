"""Neuron and synapse equations as pure `keras.ops` functions.

The layers in `keras_spiking_conv.layers` are thin wrappers around these
functions, so the equations live in one place and work on every backend.
"""

from keras import ops


def spiking_relu_step(inputs, voltage, dt, amplitude, rectify_input=True):
    """One integrate-and-fire step with remainder reset.

    With `rectify_input=True`, Nengo's `SpikingRectifiedLinear` semantics
    (several spikes per step allowed):
    `v += max(x, 0) * dt; n = floor(v); out = amplitude * n / dt; v -= n`.
    With `rectify_input=False`, the voltage integrates the signed input and
    may go below zero (the integrate-and-fire neuron of ANN-to-SNN conversion
    methods): `v += x * dt; n = max(floor(v), 0); ...`. Its spike count then
    follows the ReLU of the *mean* input, where a rectified input follows the
    mean of the ReLU, which overshoots when a spiking input alternates.

    Args:
        inputs: Input current, any shape.
        voltage: Membrane voltage, same shape as `inputs`.
        dt: Timestep in seconds.
        amplitude: Output scale of each spike.
        rectify_input: Rectify the input before integrating it. Defaults to `True`.

    Returns:
        A tuple `(spikes, new_voltage)`; `spikes` is in units of
        `amplitude / dt` (a firing rate).
    """
    if rectify_input:
        voltage = voltage + ops.relu(inputs) * dt
        n_spikes = ops.floor(voltage)
    else:
        voltage = voltage + inputs * dt
        n_spikes = ops.relu(ops.floor(voltage))
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


def quantized_relu(inputs, threshold, levels):
    """The quantization clip-floor-shift (QCFS) activation of Bu et al. (ICLR 2022).

    `threshold * clip(floor(x * levels / threshold + 1/2) / levels, 0, 1)`: a ReLU
    clipped at `threshold` and rounded to `levels` steps, which is what an
    integrate-and-fire neuron with threshold `threshold`, starting at half of it,
    computes on average over `levels` timesteps. The floor has a straight-through
    gradient (the identity), so `inputs` and `threshold` both get gradients.

    Args:
        inputs: Pre-activations, any shape.
        threshold: The clip value (the spiking neuron's threshold), a positive scalar.
        levels: Number of quantization steps, an int `>= 1`.

    Returns:
        The activation, shaped like `inputs`.
    """
    h = inputs * (levels / threshold) + 0.5
    h = h + ops.stop_gradient(ops.floor(h) - h)
    return threshold * ops.clip(h / levels, 0.0, 1.0)
