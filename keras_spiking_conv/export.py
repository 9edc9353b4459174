"""`export()`: a converted model as a TensorFlow SavedModel with sequence and streaming signatures.

TensorFlow is imported here only, inside `export`, so the rest of the package
runs on every Keras backend. See docs/serving.md.

Note: `keras_spiking_conv.export` is the function (the package re-exports it),
which hides this module's name on the package; reach the module itself through
`sys.modules["keras_spiking_conv.export"]`.
"""

import os
import shutil
import tempfile

import keras
from keras import tree

from keras_spiking_conv.runtime import engine
from keras_spiking_conv.runtime.plan import inputs_struct, is_converted, plan_of


def _check_backend():
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "keras_spiking_conv.export() writes a TensorFlow SavedModel and needs the "
            f"TensorFlow backend, but Keras is running on the '{backend}' backend. Fix: "
            "save the model with `model.save('model.keras')` (a .keras file loads on every "
            "backend), then load it and call export() in a process started with "
            "KERAS_BACKEND=tensorflow. On this backend, Keras' own `model.export` can still "
            "write the whole-sequence function, without step or state signatures (JAX: "
            "format='tf_saved_model'; PyTorch: format='torch' with a fixed "
            "input_signature); see docs/serving.md."
        )
    try:
        import tensorflow as tf
    except ImportError as error:  # pragma: no cover (the TF backend needs TF)
        raise ImportError(
            "keras_spiking_conv.export() needs TensorFlow: `pip install tensorflow`."
        ) from error
    return tf


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "export() expects a converted keras.Model (from keras_spiking_conv.convert). "
            f"Received: {type(model).__name__}"
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"export(): model '{model.name}' is not built, so its input shapes are unknown. "
            "Export a model made by keras_spiking_conv.convert()."
        )
    if not is_converted(model):
        shapes = [tuple(x.shape) for x in model.inputs]
        raise ValueError(
            f"export(): model '{model.name}' has no time axis: its inputs {shapes} are not "
            "(batch, time, ...) and it has no keras_spiking_conv layers. Convert it first, "
            "`snn = keras_spiking_conv.convert(model)`, which adds a time axis to every input "
            "and output, and export `snn`."
        )
    for x in model.inputs:
        if len(x.shape) < 3:
            raise ValueError(
                f"export(): input '{x.name}' of model '{model.name}' has shape "
                f"{tuple(x.shape)}, but a converted model's inputs are (batch, time, "
                "*features). Add a time axis (convert the model with "
                "keras_spiking_conv.convert)."
            )
    stateful = [
        site.name
        for site in plan_of(model).sites
        if isinstance(site.layer, keras.layers.RNN) and site.layer.stateful
    ]
    if stateful:
        raise ValueError(
            f"export(): layers {stateful} of model '{model.name}' are stateful=True: the "
            "sequence signature would keep their state between requests. Export the "
            "non-stateful converted model; the step and chunk signatures carry the state "
            "explicitly."
        )


def _write_atomically(write, path, overwrite):
    """Calls `write(tmp_dir)` then moves the result to `path`; an existing `path` is
    replaced only at the end, and kept if anything fails."""
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(
            f"export(): '{path}' already exists. Pass overwrite=True to replace it, or "
            "choose another path."
        )
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return path
    backup = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
    old = os.path.join(backup, "old")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(backup, ignore_errors=True)
        raise
    shutil.rmtree(backup, ignore_errors=True)
    return path


def export(model, path, *, overwrite=False, batch_size=None, n_steps=None, verbose=False):
    """Writes a converted model as a TensorFlow SavedModel for serving (TensorFlow backend).

    The SavedModel needs TensorFlow alone (not this package, no model code) to load
    and run: `tf.saved_model.load(path)`, or TensorFlow Serving. It has these
    signatures (all tensors keyed by name; `batch` is `batch_size` or any):

    - `sequence` (also `serving_default`): whole sequences. Inputs, one per
      model input, keyed by input name: `(batch, time, *features)`. Outputs,
      keyed by output name: `(batch, time, *features)`. Each call starts from
      the initial state, exactly as `model.predict`.
    - `step`: one timestep, for streaming. Inputs: each model input without
      its time axis, `(batch, *features)`, plus every state (below). Outputs:
      each model output for that step, `(batch, *features)`, plus the new
      state under the same keys. A server keeps the state of each stream and
      passes it back at the next step.
    - `chunk`: as `step` for a chunk of any number of timesteps: inputs and
      outputs `(batch, time, *features)`, states as in `step`.
    - `initial_state`: input `batch_size` (int32 scalar); outputs every state
      at time zero, to pass to the first `step` or `chunk` of a stream.

    State layout: one tensor per spiking `SpikingReLU` (its voltages) and per
    `LowpassSynapse` (its filter state), shaped `(batch, *features)` like the
    layer's output at one step, keyed `"state_" + layer name` (for a layer in a
    nested model, the nested model names and the layer name joined by `"__"`;
    a layer called twice has a second state with `"_call1"` added). Rate-mode
    neurons have no state. `keras_spiking_conv.state_layout(model)` lists the
    keys, layers, kinds and shapes. The initial state is zero for synapses and
    each neuron's initial voltage for neurons: 0.5 (mid-threshold, `convert`'s
    default), or the fixed random voltages stored in the model with
    `convert(..., initial_voltage="random")`; use the `initial_state` signature
    rather than building it by hand.

    Running `step` for `T` steps from `initial_state` reproduces the outputs of
    `sequence` on the same `T` steps (the same spikes).

    Args:
        model: A converted model (`keras_spiking_conv.convert`): inputs and
            outputs `(batch, time, ...)`, not `stateful`.
        path: Directory to write the SavedModel to.
        overwrite: Replace an existing `path`. Defaults to `False` (an existing
            `path` raises `FileExistsError`). The SavedModel is written to a
            temporary directory next to `path` and moved there at the end, so a
            failed export leaves an existing `path` as it was.
        batch_size: Fix the batch size of every signature. Defaults to `None`
            (any batch size).
        n_steps: Fix the number of timesteps of the `sequence` and `chunk`
            signatures. Defaults to `None`: `sequence` takes the model's own
            time axis (any length unless the model was converted with
            `n_steps`), `chunk` any length.
        verbose: Print the signatures written. Defaults to `False`.

    Returns:
        The absolute path written.

    Raises:
        RuntimeError: on a Keras backend other than TensorFlow (the message
            says what to do instead).
        FileExistsError: `path` exists and `overwrite` is False.
        ValueError: `model` is not a converted model (no time axis), or has
            stateful layers.

    Example:

    ```python
    snn = keras_spiking_conv.convert(model, swap_activations={"relu": "spiking_relu"},
                                     synapse=0.01, scale_firing_rates=20)
    keras_spiking_conv.export(snn, "snn_savedmodel")

    served = tf.saved_model.load("snn_savedmodel")           # TensorFlow only
    y = served.signatures["sequence"](input_layer=x)         # (batch, time, 10)
    state = served.signatures["initial_state"](batch_size=tf.constant(1))
    for t in range(n_steps):
        out = served.signatures["step"](input_layer=x[:, t], **state)
        state = {k: v for k, v in out.items() if k.startswith("state_")}
    ```
    """
    _check_model(model)
    tf = _check_backend()
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise ValueError(
            f"export(): `batch_size` must be None or a positive integer. Received: "
            f"batch_size={batch_size!r}"
        )
    if n_steps is not None and (
        isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1
    ):
        raise ValueError(
            f"export(): `n_steps` must be None or a positive integer. Received: n_steps={n_steps!r}"
        )
    plan = plan_of(model)
    layout = plan.states
    in_keys, out_keys = plan.input_keys, plan.output_keys
    clash = sorted((set(in_keys) | set(out_keys)) & set(layout))
    if clash:
        raise ValueError(
            f"export(): the names {clash} are used both by model inputs or outputs and by "
            "states. Rename those inputs or outputs (state keys start with 'state_')."
        )

    def seq_spec(x, key, time):
        return tf.TensorSpec((batch_size, time, *x.shape[2:]), x.dtype, name=key)

    def step_spec(x, key):
        return tf.TensorSpec((batch_size, *x.shape[2:]), x.dtype, name=key)

    state_specs = {
        key: tf.TensorSpec((batch_size, *spec.shape[1:]), spec.dtype, name=key)
        for key, spec in layout.items()
    }
    pairs = list(zip(in_keys, model.inputs, strict=True))
    seq_specs = {k: seq_spec(x, k, x.shape[1] if n_steps is None else n_steps) for k, x in pairs}
    chunk_specs = {k: seq_spec(x, k, n_steps) for k, x in pairs}
    step_specs = {k: step_spec(x, k) for k, x in pairs}
    # Every signature runs on the step engine (the `sequence` one through the model's own
    # call, which is the engine for a model with state): the same spikes everywhere.
    runner = engine.engine_of(model)

    def outputs_dict(outputs):
        return dict(zip(out_keys, tree.flatten(outputs), strict=True))

    def sequence(inputs):
        x = tree.pack_sequence_as(inputs_struct(model), [inputs[k] for k in in_keys])
        return outputs_dict(model(x, training=False))

    def chunk(inputs):
        flat = [inputs[k] for k in in_keys]
        outputs, states = runner.run_chunk(flat, {k: inputs[k] for k in layout})
        return {**outputs_dict(outputs), **states}

    def step(inputs):
        flat = [inputs[k] for k in in_keys]
        outputs, states = runner.run_step(flat, {k: inputs[k] for k in layout})
        return {**outputs_dict(outputs), **states}

    def initial_state(batch_size):
        return engine.initial_states(plan, batch_size)

    def write(directory):
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("sequence", sequence, input_signature=[seq_specs])
        archive.add_endpoint("chunk", chunk, input_signature=[{**chunk_specs, **state_specs}])
        archive.add_endpoint("step", step, input_signature=[{**step_specs, **state_specs}])
        archive.add_endpoint(
            "initial_state",
            initial_state,
            input_signature=[tf.TensorSpec((), tf.int32, name="batch_size")],
        )
        archive.write_out(directory, verbose=False)

    path = _write_atomically(write, path, overwrite)
    if verbose:
        _print_summary(path, seq_specs, chunk_specs, step_specs, state_specs, out_keys)
    return path


def _print_summary(path, seq_specs, chunk_specs, step_specs, state_specs, out_keys):
    def shapes(specs):
        return ", ".join(f"{k}: {tuple(s.shape)}" for k, s in specs.items()) or "-"

    print(
        f"Saved a SavedModel at '{path}' with the signatures:\n"
        f"  sequence (= serving_default): {shapes(seq_specs)} -> {', '.join(out_keys)}\n"
        f"  chunk: {shapes(chunk_specs)} + states -> {', '.join(out_keys)} + states\n"
        f"  step: {shapes(step_specs)} + states -> {', '.join(out_keys)} + states\n"
        f"  initial_state: batch_size -> states\n"
        f"  states: {shapes(state_specs)}"
    )
