"""Neuron and synapse equations as pure `keras.ops` functions.

The layers in `keras_spiking_conv.layers` are thin wrappers around these
functions, so the equations live in one place and work on every backend.
"""

import numpy as np
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


def lif_rates(inputs, tau_rc, tau_ref, amplitude=1.0):
    """Nengo's `LIFRate`: `amplitude / (tau_ref + tau_rc * log1p(1 / (J - 1)))` for
    `J > 1`, else 0.

    Args:
        inputs: Input current `J`, any shape.
        tau_rc: Membrane time constant in seconds.
        tau_ref: Refractory period in seconds.
        amplitude: Output scale. Defaults to `1.0`.

    Returns:
        Firing rates (Hz times `amplitude`), shaped like `inputs`.
    """
    return _lif_rates_of_excess(inputs - 1.0, tau_rc, tau_ref, amplitude)


def soft_lif_rates(inputs, tau_rc, tau_ref, sigma, amplitude=1.0):
    """NengoDL's `SoftLIFRate(sigma)` (Hunsberger & Eliasmith, 2015): `LIFRate` with
    the excess current `J - 1` replaced by `sigma * softplus((J - 1) / sigma)`,
    smooth everywhere and equal to `LIFRate` as `sigma` goes to zero.

    Args:
        inputs: Input current `J`, any shape.
        tau_rc: Membrane time constant in seconds.
        tau_ref: Refractory period in seconds.
        sigma: Smoothing, `> 0`.
        amplitude: Output scale. Defaults to `1.0`.

    Returns:
        Firing rates, shaped like `inputs`.
    """
    y = (inputs - 1.0) / sigma
    # log(excess) = log(sigma) + log(softplus(y)), with log(softplus(y)) = y (to 1e-7)
    # below y = -15, where softplus underflows in float32 long before the rate is 0.
    log_softplus = ops.where(y > -15.0, ops.log(ops.softplus(ops.maximum(y, -15.0))), y)
    log_excess = log_softplus + float(np.log(sigma))
    excess = ops.exp(log_excess)
    # log1p(1 / excess), computed without overflow or cancellation on either side of 1.
    above = excess > 1.0
    log_ratio = ops.where(
        above,
        ops.log1p(1.0 / ops.maximum(excess, 1.0)),
        ops.log1p(ops.minimum(excess, 1.0)) - ops.minimum(log_excess, 0.0),
    )
    return amplitude / (tau_ref + tau_rc * log_ratio)


def _lif_rates_of_excess(excess, tau_rc, tau_ref, amplitude):
    positive = excess > 0
    # The untaken branch of `where` still computes: keep its argument finite, or its
    # gradient is NaN.
    safe = ops.where(positive, excess, ops.ones_like(excess))
    rates = amplitude / (tau_ref + tau_rc * ops.log1p(1.0 / safe))
    return ops.where(positive, rates, ops.zeros_like(rates))


def lif_step(inputs, voltage, refractory_time, dt, tau_rc, tau_ref, min_voltage, amplitude):
    """One step of Nengo's `LIF` (`nengo.LIF.step`), with its spike-time-aware
    refractory period.

    `refractory_time -= dt`; the neuron integrates for `delta_t = clip(dt -
    refractory_time, 0, dt)` (part of a step when its refractory period ends
    inside it): `v -= (J - v) * expm1(-delta_t / tau_rc)`. It spikes when `v > 1`
    (at most once a step), output `amplitude / dt`; then `v = max(v, min_voltage)`,
    and a neuron that spiked gets `v = 0` and `refractory_time = tau_ref + t_spike`,
    with `t_spike = dt + tau_rc * log1p(-(v - 1) / (J - 1))` the time within the step
    at which its voltage crossed 1 (negative: before the step's end).

    Args:
        inputs: Input current `J`, any shape.
        voltage: Membrane voltage, shaped like `inputs`.
        refractory_time: Refractory time left, shaped like `inputs`.
        dt: Timestep in seconds.
        tau_rc: Membrane time constant in seconds.
        tau_ref: Refractory period in seconds.
        min_voltage: The voltage's floor (`<= 0`).
        amplitude: Output scale of each spike.

    Returns:
        `(spikes, voltage, refractory_time)`; `spikes` in units of `amplitude / dt`.
    """
    refractory_time = refractory_time - dt
    delta_t = ops.clip(dt - refractory_time, 0.0, dt)
    voltage = voltage - (inputs - voltage) * ops.expm1(-delta_t / tau_rc)
    spiked = voltage > 1.0
    spikes = ops.cast(spiked, voltage.dtype) * (amplitude / dt)
    # A neuron only crosses 1 with J > 1; keep the other branch finite.
    excess = ops.where(spiked, inputs - 1.0, ops.ones_like(inputs))
    t_spike = dt + tau_rc * ops.log1p(-(voltage - 1.0) / excess)
    voltage = ops.where(spiked, ops.zeros_like(voltage), ops.maximum(voltage, min_voltage))
    refractory_time = ops.where(spiked, tau_ref + t_spike, refractory_time)
    return spikes, voltage, refractory_time


def rate_to_spikes_step(rates, voltage, dt, amplitude=1.0):
    """One step of regular spiking of a rate, possibly negative (KerasSpiking's
    `SpikingActivation`, Nengo's `RegularSpiking`).

    `v += r * dt; n = floor(v); v -= n; out = amplitude * n / dt`: a negative rate
    gives negative spikes, and the voltage stays in `[0, 1)`.

    Args:
        rates: The rate `r = f(x)`, any shape.
        voltage: Voltage, shaped like `rates`.
        dt: Timestep in seconds.
        amplitude: Output scale of each spike. Defaults to `1.0`.

    Returns:
        `(spikes, new_voltage)`.
    """
    voltage = voltage + rates * dt
    n_spikes = ops.floor(voltage)
    return n_spikes * (amplitude / dt), voltage - n_spikes


def stochastic_spikes(rates, uniform, dt, amplitude=1.0):
    """One step of Nengo's `StochasticSpiking` for a signed rate: with `e = |r| * dt`,
    `floor(e)` spikes, plus one with probability `e - floor(e)` (`uniform < e -
    floor(e)`), signed as `r`.

    Args:
        rates: The rate `r`, any shape.
        uniform: Uniform numbers in `[0, 1)`, shaped like `rates`.
        dt: Timestep in seconds.
        amplitude: Output scale of each spike. Defaults to `1.0`.

    Returns:
        The spikes, in units of `amplitude / dt`.
    """
    expected = ops.abs(rates) * dt
    whole = ops.floor(expected)
    n_spikes = whole + ops.cast(uniform < expected - whole, rates.dtype)
    return ops.sign(rates) * n_spikes * (amplitude / dt)


def poisson_spikes(rates, uniform, dt, amplitude=1.0, max_spikes=32):
    """One step of Nengo's `PoissonSpiking` for a signed rate: a Poisson number of
    spikes of mean `|r| * dt`, signed as `r`, drawn by inverting the Poisson CDF at
    `uniform` (exact up to `max_spikes` spikes a step, a mean of about 20).

    Args:
        rates: The rate `r`, any shape.
        uniform: Uniform numbers in `[0, 1)`, shaped like `rates`.
        dt: Timestep in seconds.
        amplitude: Output scale of each spike. Defaults to `1.0`.
        max_spikes: The most spikes a step. Defaults to `32`.

    Returns:
        The spikes, in units of `amplitude / dt`.
    """
    mean = ops.abs(rates) * dt
    term = ops.exp(-mean)  # P(n = k), from k = 0
    cdf = term
    n_spikes = ops.zeros_like(mean)
    for k in range(1, max_spikes + 1):
        n_spikes = n_spikes + ops.cast(uniform >= cdf, mean.dtype)
        term = term * mean / k
        cdf = cdf + term
    return ops.sign(rates) * n_spikes * (amplitude / dt)


def alpha_step(inputs, state, decay, dt_over_tau):
    """One step of the alpha filter `1 / (tau s + 1)^2` with zero-order hold, as
    `nengo.Alpha(tau).filt` computes it (the exact solution for an input held over
    the step, output at the step's end).

    The filter is two first-order low-passes in series (`first`, then `second`);
    with `a = exp(-dt / tau)` and `d = dt / tau`:
    `second = a * second + d * a * first + (1 - a - d * a) * x`, then
    `first = a * first + (1 - a) * x`; the output is `second`. Its DC gain is 1.

    Args:
        inputs: Input, any shape.
        state: `(first, second)`, each shaped like `inputs`.
        decay: `a = exp(-dt / tau)`.
        dt_over_tau: `d = dt / tau`.

    Returns:
        `(output, (first, second))`.
    """
    first, second = state
    cross = dt_over_tau * decay
    second = decay * second + cross * first + (1.0 - decay - cross) * inputs
    first = lowpass_step(inputs, first, decay)
    return second, (first, second)


def causal_conv_step(inputs, frames, kernel, bias, dilation):
    """One frame of a causal 1-D convolution over time (`Conv1D(padding="causal")`).

    `frames` holds the last `(K - 1) * dilation` input frames, oldest first (zeros
    before the first frame: the causal zero padding), `kernel` is `(K, in, out)`:
    `out = sum_j x[t - (K - 1 - j) * dilation] @ kernel[j] + bias`.

    Returns:
        `(output, new_frames)`.
    """
    window = ops.concatenate([frames, ops.expand_dims(inputs, 1)], axis=1)
    taps = ops.take(window, list(range(0, window.shape[1], dilation)), axis=1)
    output = ops.einsum("bkf,kfc->bc", taps, kernel)
    if bias is not None:
        output = output + bias
    return output, window[:, 1:]


def running_pool_step(inputs, state, mode, steps=1):
    """One step of global pooling over all frames so far (`GlobalAveragePooling1D`,
    `GlobalMaxPooling1D` over time, streamed), with `steps` simulation steps per frame.

    `"max"`: the maximum so far (`state`, from `-inf`). `"mean"`: `state` stacks, on
    axis 1, the sum of the mean inputs of the finished frames, their count, the sum of
    this frame's inputs so far and its steps so far; the output is the mean over frames
    with this frame's mean so far as its value: `(sum + partial / step) / (frames + 1)`.
    With rate inputs (the same at every step of a frame) every step of a frame outputs
    the pooling of the frames so far.

    Returns:
        `(output, new_state)`.
    """
    if mode == "max":
        new_state = ops.maximum(state, inputs)
        return new_state, new_state
    total, frames, partial, step = ops.unstack(state, axis=1)
    partial = partial + inputs
    step = step + 1.0
    current = partial / step
    output = (total + current) / (frames + 1.0)
    done = step >= steps
    zeros = ops.zeros_like(partial)
    new_state = ops.stack(
        [
            ops.where(done, total + current, total),
            ops.where(done, frames + 1.0, frames),
            ops.where(done, zeros, partial),
            ops.where(done, zeros, step),
        ],
        axis=1,
    )
    return output, new_state


def recurrent_current(inputs, previous, kernel, recurrent_kernel, bias):
    """The input current of a simple recurrent layer (`SimpleRNN`): `x @ W + h @ U + b`,
    with `h` the layer's output of the previous frame."""
    current = ops.matmul(inputs, kernel) + ops.matmul(previous, recurrent_kernel)
    return current if bias is None else current + bias
