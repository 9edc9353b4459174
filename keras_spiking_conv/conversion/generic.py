"""Converting what has no registered rule: `keras.ops` calls and unknown layers.

Both are applied to every timestep at once by folding time into the batch
(`TimeFold`): the folded tensor `(batch * time, ...)` has the rank and axes
the original saw, so axes, reshapes and broadcasting keep their meaning. That
is exact when the call works per sample. Before trusting it, the call is
checked on random inputs of its own shapes: each output must keep the batch
axis first and a batch must give what its samples give one by one (an op
over axis 0, or a layer that mixes samples, fails). A layer must also leave
its variables alone (no state of its own). When a feature size is unknown,
only the output shapes are checked (for a batch of 2 and of 3).
"""

import keras
import numpy as np
from keras import ops

from keras_spiking_conv.conversion.activations import activation_clip, layer_activation_key
from keras_spiking_conv.conversion.errors import ConversionError
from keras_spiking_conv.conversion.registry import register_rule
from keras_spiking_conv.layers import OperationLayer
from keras_spiking_conv.layers.operation import INPUT, encode_arguments
from keras_spiking_conv.runtime.plan import producer_name

# Samples in the per-sample check, and its tolerances (float outputs).
CHECK_BATCH = 3
CHECK_RTOL = 1e-4
CHECK_ATOL = 1e-5

FIX = (
    "Fix: register a rule for it (`@keras_spiking_conv.register_rule`) that says how it "
    "runs over time, or compute it outside the converted model."
)


def _is_tensor(value):
    return isinstance(value, keras.KerasTensor)


def _step_spec(tensor):
    """The spec of one step of a converted `(batch, time, ...)` tensor."""
    return keras.KerasTensor((None, *tensor.shape[2:]), dtype=tensor.dtype)


def _random(spec, batch, rng):
    dtype = keras.backend.standardize_dtype(spec.dtype)
    shape = (batch, *spec.shape[1:])
    if dtype == "bool":
        value = rng.random(shape) > 0.5
    elif "int" in dtype:
        value = rng.integers(0, 2, shape)
    else:
        value = rng.normal(size=shape)
    return ops.convert_to_tensor(np.asarray(value).astype(dtype))


def _same(single, batched):
    single, batched = np.asarray(single), np.asarray(batched)
    if single.shape != batched.shape:
        return False
    if np.issubdtype(batched.dtype, np.inexact):
        scale = float(np.nanmax(np.abs(batched), initial=0.0)) if batched.size else 0.0
        atol = CHECK_ATOL * (1.0 + (scale if np.isfinite(scale) else 0.0))
        return bool(np.allclose(single, batched, rtol=CHECK_RTOL, atol=atol, equal_nan=True))
    return bool(np.array_equal(single, batched))


def _numpy(outputs):
    return [ops.convert_to_numpy(y) for y in keras.tree.flatten(outputs)]


def _unchanged(value, old):
    """Whether a variable still holds `old` (compared in the backend: no NumPy copy of a
    variable, which NumPy 2 warns about on JAX and PyTorch)."""
    same = ops.equal(value, old)
    if "float" in keras.backend.standardize_dtype(old.dtype):
        same = ops.logical_or(same, ops.logical_and(ops.isnan(value), ops.isnan(old)))
    return bool(ops.convert_to_numpy(ops.all(same)))


def check_per_sample(call, output_spec, specs, where, variables=()):
    """Raises `ConversionError` unless `call(tensors)` works per sample.

    Args:
        call: Runs the call eagerly on a list of tensors (one per spec).
        output_spec: Computes its output specs from a list of `KerasTensor`s.
        specs: One `KerasTensor` per tensor argument, batch first.
        where: What is checked, for the messages ("Operation 'add' (Add) ...").
        variables: Variables the call must not change.
    """
    for batch in (2, CHECK_BATCH):
        shaped = [keras.KerasTensor((batch, *s.shape[1:]), dtype=s.dtype) for s in specs]
        try:
            outputs = keras.tree.flatten(output_spec(shaped))
        except Exception as error:  # noqa: BLE001  (any failure means: cannot tell)
            raise ConversionError(
                f"{where}: its output shape for a batch of {batch} could not be computed "
                f"({type(error).__name__}: {error}). {FIX}"
            ) from error
        if any(len(y.shape) == 0 or y.shape[0] != batch for y in outputs):
            shapes = [tuple(y.shape) for y in outputs]
            raise ConversionError(
                f"{where} does not keep the batch axis first (a batch of {batch} gives "
                f"outputs of shape {shapes}): it mixes the samples of a batch (a reduction, "
                f"reshape or transpose over axis 0?), so it cannot run at every timestep. "
                f"Keep its axes off the batch axis (e.g. `axis=-1`, `reshape(x, (-1, ...))`). "
                f"{FIX}"
            )
    if any(None in tuple(s.shape[1:]) for s in specs):
        return  # feature sizes unknown: the shape check is all there is
    rng = np.random.default_rng(0)
    inputs = [_random(s, CHECK_BATCH, rng) for s in specs]
    before = [ops.copy(v.value) for v in variables]
    try:
        batched = _numpy(call(inputs))
        singles = [_numpy(call([x[i : i + 1] for x in inputs])) for i in range(CHECK_BATCH)]
    except Exception as error:  # noqa: BLE001
        raise ConversionError(
            f"{where}: running it on random inputs of its shapes {[tuple(s.shape) for s in specs]}"
            f" failed ({type(error).__name__}: {error}), so the converter cannot check that it "
            f"works per sample. {FIX}"
        ) from error
    changed = [
        v.path for v, old in zip(variables, before, strict=True) if not _unchanged(v.value, old)
    ]
    if changed:
        raise ConversionError(
            f"{where} changes its own variables when called ({changed}): it has a state of "
            f"its own, which folding time into the batch would mix up. {FIX}"
        )
    for i, single in enumerate(singles):
        for k, (y1, y) in enumerate(zip(single, batched, strict=True)):
            if not _same(y1, y[i : i + 1]):
                raise ConversionError(
                    f"{where} mixes the samples of a batch: its output {k} for sample {i} "
                    "differs when the sample is run alone (a reduction over axis 0, batch "
                    "statistics, ...), so it cannot run at every timestep. " + FIX
                )


def _inputs_text(tensors):
    names = sorted({name for name in map(producer_name, tensors) if name is not None})
    return ", ".join(f"'{n}'" for n in names) or "the model inputs"


def operation_rule(operation, args, kwargs, context):
    """Converts one `keras.ops` call of a graph (an operation node)."""
    template, tensors = encode_arguments(args, kwargs, _is_tensor)
    return _convert_operation(operation, template, tensors, operation, context)


@register_rule(OperationLayer)
def operation_layer_rule(layer, args, kwargs, context):
    """Re-converting: an operation converted before converts again (a ReLU may now become
    a neuron)."""
    tensors = keras.tree.flatten(args[0] if len(args) == 1 else list(args))
    return _convert_operation(layer.operation, layer.arguments, tensors, layer, context)


def _convert_operation(operation, template, tensors, source, context):
    """`operation` applied with `template` to `tensors`, at every timestep (or a neuron
    block for an activation that becomes one); `source` is what the report names."""
    where = (
        f"Operation '{source.name}' (keras.ops {type(operation).__name__}, applied to the "
        f"output of {_inputs_text(tensors)}) in model '{context.report.model_name}'"
    )
    key = layer_activation_key(operation)
    only_input = template == {"args": [{INPUT: 0}], "kwargs": {}}
    if key is not None and only_input and context.wants_neuron(source.name, key):
        context.record(source, kind="neuron")
        return context.neuron_block(
            source.name, key, tensors[0], max_value=activation_clip(operation)
        )
    layer = OperationLayer(operation, template, name=context.unique_name(source.name))
    check_per_sample(layer, layer.compute_output_spec, [_step_spec(t) for t in tensors], where)
    context.record(source, kind="operation", activation=key)
    return context.fold(layer, layer, [tensors[0] if len(tensors) == 1 else tensors], {})


def generic_rule(layer, args, kwargs, context):
    """Converts a layer that has no rule, if it works per sample (time folded into the batch)."""
    where = f"Layer '{layer.name}' ({type(layer).__name__}, no conversion rule)"
    extra = sorted(k for k, v in kwargs.items() if k != "training" and v is not None)
    if len(args) != 1 or extra:
        raise ConversionError(
            f"{where} is called with {len(args)} positional arguments and keyword arguments "
            f"{extra}; the generic per-timestep rule passes on one input (a tensor or a list) "
            f"and `training`. {FIX}"
        )
    new_layer = _copy(layer, where, context)
    outputs = context.fold(new_layer, layer, args, kwargs)
    if id(new_layer) not in context.checked:
        context.checked.add(id(new_layer))
        specs = [_step_spec(t) for t in keras.tree.flatten(args[0])]

        def structured(tensors):
            return keras.tree.pack_sequence_as(args[0], tensors)

        check_per_sample(
            lambda tensors: (
                new_layer(structured(tensors), training=False)
                if new_layer._call_has_training_arg
                else new_layer(structured(tensors))
            ),
            lambda tensors: new_layer.compute_output_spec(structured(tensors)),
            specs,
            where,
            variables=[v for v in new_layer.variables if "seed_generator" not in v.path],
        )
        context.warn_generic(layer)
    context.record(layer, kind="generic", activation=layer_activation_key(layer))
    return outputs


def _copy(layer, where, context):
    """The copy of `layer` (one per original layer, so sharing is kept): from its config,
    or for a Lambda with its very function."""
    if isinstance(layer, keras.layers.Lambda):
        return context.clone(
            layer,
            factory=lambda: keras.layers.Lambda(
                layer.function,
                output_shape=layer._output_shape,
                mask=layer.mask,
                arguments=layer.arguments,
                name=layer.name,
                dtype=layer.dtype_policy,
            ),
        )
    try:
        return context.clone(layer)
    except Exception as error:  # noqa: BLE001  (any failure: the layer cannot be copied)
        raise ConversionError(
            f"{where} cannot be copied from its config ({type(error).__name__}: {error}); the "
            "converted model gets its own copy of every layer. Fix: give the layer a "
            "`get_config()` that `from_config` accepts (Keras' serialization guide), or "
            "register a rule for it."
        ) from error
