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
    `integrate_and_fire_step` with no other option set.

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
    spikes, voltage, _, _ = integrate_and_fire_step(
        inputs, voltage, None, None, dt, amplitude, rectify_input
    )
    return spikes, voltage


def integrate_and_fire_step(
    inputs,
    voltage,
    count,
    headroom,
    dt,
    amplitude,
    rectify_input=True,
    max_spikes_per_step=None,
    reset="subtract",
    negative_spikes=False,
    clip=None,
):
    """One integrate-and-fire step with the options of chips and low-latency conversion.

    `v += x * dt` (or `max(x, 0) * dt`), then `n = floor(v)` spikes, bounded:
    - below by 0, or with `negative_spikes` by `-count` (a neuron that fired
      too early takes spikes back, but its net count never goes below zero:
      its cumulative count is then `max(floor(v0 + sum x dt), 0)` at every
      step, the quantized ReLU of its accumulated input);
    - above by `floor(headroom + clip)` with a `clip` (the cumulative count
      never exceeds `clip` times the steps so far, so the mean output is a
      ReLU clipped at `clip * amplitude / dt`);
    - by `max_spikes_per_step` either way (`1`: binary spikes).
    Then the reset: `v -= n` (`"subtract"`) or `v = 0` after a spike (`"zero"`).

    Args:
        inputs: Input current, any shape.
        voltage: Membrane voltage, same shape as `inputs`.
        count: Net spikes so far (used with `negative_spikes`, else None).
        headroom: `clip * steps - count` so far (used with `clip`, else None).
        dt: Timestep in seconds.
        amplitude: Output scale of each spike.
        rectify_input: Rectify the input before integrating it.
        max_spikes_per_step: None or an int `>= 1`.
        reset: `"subtract"` or `"zero"`.
        negative_spikes: Allow negative spikes (down to a net count of zero).
        clip: None, or the largest mean spike count per step (a number, or a
            tensor that broadcasts on the last axis).

    Returns:
        `(spikes, voltage, count, headroom)`; `spikes` in units of `amplitude / dt`,
        `count` and `headroom` None where unused.
    """
    drive = ops.relu(inputs) if rectify_input else inputs
    voltage = voltage + drive * dt
    n_spikes = ops.floor(voltage)
    if negative_spikes:
        n_spikes = ops.maximum(n_spikes, -count)
    elif not rectify_input:  # a rectified input never takes the voltage below zero
        n_spikes = ops.relu(n_spikes)
    if clip is not None:
        headroom = headroom + clip
        n_spikes = ops.minimum(n_spikes, ops.floor(headroom))
    if max_spikes_per_step is not None:
        k = float(max_spikes_per_step)
        n_spikes = ops.clip(n_spikes, -k, k)
    if reset == "zero":
        voltage = ops.where(ops.not_equal(n_spikes, 0.0), ops.zeros_like(voltage), voltage)
    else:
        voltage = voltage - n_spikes
    if negative_spikes:
        count = count + n_spikes
    if clip is not None:
        headroom = headroom - n_spikes
    return n_spikes * (amplitude / dt), voltage, count, headroom


def spiking_relu_rates(inputs, amplitude, max_rate=None):
    """The rate (non-spiking) equivalent of `spiking_relu_step`: `amplitude * max(x, 0)`,
    clipped at `max_rate` (in input units) when given."""
    rates = ops.relu(inputs)
    if max_rate is not None:
        rates = ops.minimum(rates, max_rate)
    return rates * amplitude


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


def accumulated_max_pool_step(inputs, total, pool):
    """One step of max pooling of the accumulated input (rate-correct max pooling).

    `total += x; out = pool(total) - pool(total - x)`, with `pool` a max pooling
    (`keras.ops.max_pool` or a max-pooling layer). The outputs of the first `T`
    steps sum to `pool(sum of the first T inputs)`, so their mean is the max
    pooling of the mean inputs: of the firing rates, where pooling each step's
    spikes gives the mean of per-step maxima (more than the maximum rate when
    neurons of one window fire at different steps). Spike inputs give spike
    outputs (differences of maxima of spike counts); a constant input gives
    `pool(x)` at every step.

    Returns:
        `(output, new_total)`.
    """
    new_total = total + inputs
    return pool(new_total) - pool(total), new_total
