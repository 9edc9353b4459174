"""Nengo's leaky integrate-and-fire neuron (`LIF`, `LIFRate`, NengoDL's `SoftLIFRate`):
an RNN cell and a sequence layer."""

import keras
from keras import ops

from keras_spiking_conv import neurons
from keras_spiking_conv._validation import check_bool, check_number
from keras_spiking_conv.layers.base import NeuronSequence, VoltageCell

PACKAGE = "keras_spiking_conv"

# The neuron arguments, shared by the cell and its sequence layer.
LIF_ARGS = (
    "tau_rc",
    "tau_ref",
    "amplitude",
    "min_voltage",
    "dt",
    "smoothing",
    "initial_voltage",
    "seed",
    "spiking_aware_training",
    "spiking",
)


def _check_lif_args(owner, tau_rc, tau_ref, amplitude, min_voltage, dt, smoothing):
    tau_rc = check_number("tau_rc", tau_rc, owner=owner, positive=True)
    tau_ref = check_number("tau_ref", tau_ref, owner=owner)
    if tau_ref < 0:
        raise ValueError(
            f"{owner}: Argument `tau_ref` is the refractory period, a time in seconds: it "
            "cannot be negative. Pass 0 for no refractory period, or a positive time such "
            f"as Nengo's default 0.002. Received: tau_ref={tau_ref!r}"
        )
    min_voltage = check_number("min_voltage", min_voltage, owner=owner)
    if min_voltage > 0:
        raise ValueError(
            f"{owner}: Argument `min_voltage` is the floor of the voltage, which a spike "
            "resets to 0: it must be <= 0. Pass 0 (Nengo's default) or a negative value; "
            f"-inf is not allowed, use a large negative number. Received: "
            f"min_voltage={min_voltage!r}"
        )
    if smoothing is not None:
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)):
            raise TypeError(
                f"{owner}: Argument `smoothing` must be None or a number > 0. "
                f"Received: smoothing={smoothing!r}"
            )
        if not smoothing > 0:
            raise ValueError(
                f"{owner}: Argument `smoothing` is the sigma of SoftLIFRate, which must be "
                "> 0 (0 would be LIFRate, whose gradient is infinite at the threshold). "
                "Pass None for LIFRate, or a small positive value such as 0.01 or 0.02 for "
                f"a smooth rate. Received: smoothing={smoothing!r}"
            )
        smoothing = float(smoothing)
    return dict(
        tau_rc=tau_rc,
        tau_ref=tau_ref,
        amplitude=check_number("amplitude", amplitude, owner=owner, positive=True),
        min_voltage=min_voltage,
        dt=check_number("dt", dt, owner=owner, positive=True),
        smoothing=smoothing,
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class LIFCell(VoltageCell):
    """Cell of Nengo's leaky integrate-and-fire neuron (`nengo.LIF`), exactly.

    Each step, with input current `J`, voltage `v` and refractory time left `r`
    (`neurons.lif_step`): `r -= dt`; the voltage integrates for
    `delta_t = clip(dt - r, 0, dt)`: `v -= (J - v) * expm1(-delta_t / tau_rc)`; a
    neuron with `v > 1` spikes (output `amplitude / dt`), its voltage goes to 0 and
    `r` to `tau_ref` plus the time since it crossed 1 within the step (Nengo's
    spike-time-aware refractory period); other voltages are floored at
    `min_voltage`. Its state stacks `(v, r)` on axis 1.

    Its rate is Nengo's `LIFRate`: `amplitude / (tau_ref + tau_rc * log1p(1 / (J -
    1)))` for `J > 1`, else 0; with `smoothing=sigma`, NengoDL's `SoftLIFRate`, with
    `J - 1` replaced by `sigma * softplus((J - 1) / sigma)`.

    Args:
        tau_rc: Membrane time constant in seconds. Defaults to `0.02`.
        tau_ref: Refractory period in seconds, `>= 0`. Defaults to `0.002`.
        amplitude: Scale of each spike (and of the rate). Defaults to `1.0`.
        min_voltage: Floor of the voltage, `<= 0`. Defaults to `0.0`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        smoothing: None (`LIFRate`) or `sigma > 0` (`SoftLIFRate(sigma)`): the rate
            of `spiking=False`, of training without `spiking_aware_training`, and
            the gradient of spiking-aware training. Defaults to `None`.
        initial_voltage: `"random"` (uniform in `[0, 1)` per neuron, from `seed`,
            as Nengo draws it) or a constant in `[0, 1)`; None: `"random"`.
            Defaults to `None`.
        seed: Seed of the random initial voltage (None: drawn once, kept in the
            config). Defaults to `None`.
        spiking_aware_training: In training, spikes forward and the rate's gradient
            backward (`rates + stop_gradient(spikes - rates)`); if False, the rate
            in both passes. Defaults to `True`.
        spiking: If False, a rate neuron (`LIFRate`, or `SoftLIFRate` with
            `smoothing`). Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: One timestep, shape `(batch, *features)`.
        states: List with the state `(batch, 2, *features)`: voltage, refractory time.
        training: Python bool, training or inference mode.
    """

    n_components = 2

    def __init__(
        self,
        tau_rc=0.02,
        tau_ref=0.002,
        amplitude=1.0,
        min_voltage=0.0,
        dt=0.001,
        smoothing=None,
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        **kwargs,
    ):
        super().__init__(initial_voltage=initial_voltage, seed=seed, **kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        args = _check_lif_args(owner, tau_rc, tau_ref, amplitude, min_voltage, dt, smoothing)
        for key, value in args.items():
            setattr(self, key, value)
        self.spiking_aware_training = check_bool(
            "spiking_aware_training", spiking_aware_training, owner=owner
        )
        self.spiking = check_bool("spiking", spiking, owner=owner)

    def rates(self, inputs):
        """The rate: `LIFRate`, or `SoftLIFRate(smoothing)`."""
        if self.smoothing is None:
            return neurons.lif_rates(inputs, self.tau_rc, self.tau_ref, self.amplitude)
        return neurons.soft_lif_rates(
            inputs, self.tau_rc, self.tau_ref, self.smoothing, self.amplitude
        )

    def call(self, inputs, states, training=False):
        state = states[0]
        if not self.spiking or (training and not self.spiking_aware_training):
            return self.rates(inputs), [state]
        voltage, refractory_time = ops.unstack(state, axis=1)
        spikes, voltage, refractory_time = neurons.lif_step(
            inputs,
            voltage,
            refractory_time,
            self.dt,
            self.tau_rc,
            self.tau_ref,
            self.min_voltage,
            self.amplitude,
        )
        if training:
            rates = self.rates(inputs)
            spikes = rates + ops.stop_gradient(spikes - rates)
        return spikes, [ops.stack([voltage, refractory_time], axis=1)]

    def get_config(self):
        return {
            **super().get_config(),
            **{key: getattr(self, key) for key in LIF_ARGS if key not in ("initial_voltage",)},
            "initial_voltage": self.initial_voltage_arg,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class LIF(NeuronSequence):
    """Nengo's leaky integrate-and-fire neuron over `(batch, time, *features)`.

    The sequence form of `LIFCell` (see it for the equations and the arguments):
    `spiking=True` is `nengo.LIF`, `spiking=False` is `nengo.LIFRate` (or NengoDL's
    `SoftLIFRate(smoothing)`), a stateless layer applied to every step at once.

    Args:
        tau_rc: Membrane time constant in seconds. Defaults to `0.02`.
        tau_ref: Refractory period in seconds, `>= 0`. Defaults to `0.002`.
        amplitude: Scale of each spike (and of the rate). Defaults to `1.0`.
        min_voltage: Floor of the voltage, `<= 0`. Defaults to `0.0`.
        dt: Simulation timestep in seconds. Defaults to `0.001`.
        smoothing: None (`LIFRate`) or `sigma > 0` (`SoftLIFRate(sigma)`), for the
            rate and for the gradient of spiking-aware training. Defaults to `None`.
        initial_voltage: `"random"` or a constant in `[0, 1)`; None: `"random"`.
            Defaults to `None`.
        seed: Seed of the random initial voltage. Defaults to `None`.
        spiking_aware_training: Spikes forward and the rate gradient backward in
            training. Defaults to `True`.
        spiking: If False, a rate neuron. Defaults to `True`.
        return_sequences: Return every step (True) or only the last. Defaults to
            `True`.
        return_state: Also return the final state `(batch, 2, *features)`.
            Defaults to `False`.
        stateful: Keep the final state as the next call's initial state.
            Defaults to `False`.
        unroll: Unroll the time loop (static length only). Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.

    Input shape:
        `(batch, time, *features)`: the input current.

    Output shape:
        `(batch, time, *features)` (spikes of `amplitude / dt`, or rates), or
        `(batch, *features)` if `return_sequences=False`.

    Example:

    >>> x = np.full((1, 1000, 1), 2.0, dtype="float32")
    >>> spikes = LIF(initial_voltage=0.0)(x)
    >>> int(np.sum(spikes) * 0.001)  # LIFRate(2.0) is 63.2 Hz
    63
    """

    cell_args = LIF_ARGS

    def __init__(
        self,
        tau_rc=0.02,
        tau_ref=0.002,
        amplitude=1.0,
        min_voltage=0.0,
        dt=0.001,
        smoothing=None,
        initial_voltage=None,
        seed=None,
        spiking_aware_training=True,
        spiking=True,
        return_sequences=True,
        return_state=False,
        stateful=False,
        unroll=False,
        **kwargs,
    ):
        cell = LIFCell(
            tau_rc=tau_rc,
            tau_ref=tau_ref,
            amplitude=amplitude,
            min_voltage=min_voltage,
            dt=dt,
            smoothing=smoothing,
            initial_voltage=initial_voltage,
            seed=seed,
            spiking_aware_training=spiking_aware_training,
            spiking=spiking,
            name=f"{kwargs.get('name', 'lif')}_cell",
            dtype=kwargs.get("dtype"),
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            stateful=stateful,
            unroll=unroll,
            **kwargs,
        )

    tau_rc = property(lambda self: self.cell.tau_rc)
    tau_ref = property(lambda self: self.cell.tau_ref)
    amplitude = property(lambda self: self.cell.amplitude)
    min_voltage = property(lambda self: self.cell.min_voltage)
    dt = property(lambda self: self.cell.dt)
    smoothing = property(lambda self: self.cell.smoothing)
    initial_voltage = property(lambda self: self.cell.initial_voltage)
    seed = property(lambda self: self.cell.seed)
    spiking_aware_training = property(lambda self: self.cell.spiking_aware_training)
