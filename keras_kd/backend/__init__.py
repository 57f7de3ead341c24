"""Gradient mechanics, one small module per backend.

Each module exposes `train_step(distiller, ...)` and `test_step(distiller, ...)`
with the signature its Keras trainer expects (JAX's steps are stateless and
take `state` first). They only arrange *where* gradients are computed; every
loss, metric and schedule is computed by the Distiller in `keras.ops`.
The private Keras APIs keras_kd needs are in `_keras_compat`.
"""

import contextlib
import functools
import importlib

import numpy as np

_MODULES = {
    "jax": "keras_kd.backend.jax",
    "tensorflow": "keras_kd.backend.tensorflow",
    "torch": "keras_kd.backend.torch",
}
# The modules imported so far, by backend: `_module` runs several times a
# step on an eager backend, and `import_module` costs microseconds a call.
_LOADED = {}


def _module():
    # Imported here so that `import keras_kd` (which imports `_keras_compat`
    # from this package) leaves the Keras backend unchosen.
    import keras

    name = keras.config.backend()
    if name not in _MODULES:
        raise RuntimeError(
            f"keras_kd supports the backends {sorted(_MODULES)}; Keras is "
            f"running on {name!r}. Set KERAS_BACKEND to one of them."
        )
    if name not in _LOADED:
        _LOADED[name] = importlib.import_module(_MODULES[name])
    return _LOADED[name]


def _backend_first(default):
    """Makes `default` run only where the backend module has no function of its name to run instead."""
    name = default.__name__

    @functools.wraps(default)
    def dispatch(*args, **kwargs):
        return getattr(_module(), name, default)(*args, **kwargs)

    return dispatch


def train_step(distiller, *args):
    return _module().train_step(distiller, *args)


def test_step(distiller, *args):
    return _module().test_step(distiller, *args)


@_backend_first
def checked_step_function(function, checks, training):
    """Wraps a step function Keras made so `checks` (a `fit_checks.StepChecks`) run first.

    The wrapper runs outside the step, which may be compiled: TensorFlow's
    step function takes the iterator (its batches stay inside the graph and
    their labels are checked in the data pipeline), torch's takes the data.
    JAX's stateless step has its own wrapper.
    """

    def checked(data):
        if training:
            checks.before_train_call()
        outputs = function(data)
        checks.completed_calls += 1
        return outputs

    return checked


@_backend_first
def keeping_state(distiller, checks):
    """A context in which a failed fit/evaluate leaves the Distiller's variables usable.

    TensorFlow's and torch's trainers keep the variables attached throughout;
    JAX's detaches them during fit and has its own context.
    """
    return contextlib.nullcontext()


@_backend_first
def float32_vector(tensors, numbers):
    """A float32 vector of scalar `tensors` followed by Python `numbers`.

    One op per backend where it has one: on an eager backend (torch),
    `keras.ops.stack` and `convert_to_tensor` cost microseconds per element.
    """
    from keras import ops

    from keras_kd import _casting

    stacked = ops.stack([_casting.float32(tensor) for tensor in tensors])
    return ops.concatenate([stacked, np.asarray(numbers, "float32")]) if numbers else stacked


@_backend_first
def top1_agreement_count(student_logits, teacher_logits, valid=None):
    """How many positions the student's and the teacher's top-1 classes agree on, as a scalar tensor.

    `valid` (0/1 per position, or None for all) leaves positions out. Four
    ops on torch, where `keras.ops.argmax` casts each index to int32.
    """
    from keras import ops

    agreements = ops.cast(ops.argmax(student_logits, axis=-1) == ops.argmax(teacher_logits, axis=-1), "float32")
    return ops.sum(agreements if valid is None else agreements * valid)


@_backend_first
def assign_add(variable, value):
    """`variable.assign_add(value)`, in one op where the backend has one.

    Keras's `assign_add` adds, then copies into the variable: on an eager
    backend (torch) each costs microseconds of dispatch.
    """
    return variable.assign_add(value)


@_backend_first
def weighted_means(sums):
    """The means of a vector of weighted sums followed by their weights: each sum over its weight.

    0 where a weight is 0 (the `where` drops the division's 0 / 0); NaN and
    inf in a sum with a weight stay. Returns a list of scalars: NumPy ones
    where `concrete_numpy` reads the sums (outside a traced step), else
    tensors, in one op where the backend allows (torch).
    """
    from keras import ops

    concrete = concrete_numpy(sums)
    values = sums if concrete is None else concrete
    count = values.shape[0] // 2
    totals, weights = values[:count], values[count:]
    if concrete is None:
        return ops.unstack(ops.where(weights != 0, totals / weights, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return list(np.where(weights != 0, totals / weights, np.float32(0.0)))


@_backend_first
def copies(variables):
    """Copies of the values of scalar float32 `variables` (not views of them), one each.

    Logs hold them past the step: JAX donates the variables' buffers to
    the next jitted step, torch writes into them in place. NumPy arrays
    where `concrete_numpy` reads them, else tensors.
    """
    from keras import ops

    concrete = [concrete_numpy(variable.value) for variable in variables]
    if all(value is not None for value in concrete):
        return concrete
    return [ops.copy(variable) for variable in variables]


@_backend_first
def concrete_numpy(value):
    """A NumPy copy of a tensor (a variable's `.value`) where it is concrete, else None.

    None inside a traced step (JAX's `jit`, a `tf.function`), where values
    are symbolic. Where it is concrete (the logs at the end of an epoch,
    read by Keras outside the step), NumPy reads a few scalars in
    microseconds, where each eager JAX or TensorFlow op costs tens of them
    (docs/results/benchmarks.md). The default says None: torch has its own
    `weighted_means` and `copies`, in one op each.
    """
    return None


@_backend_first
def value_version(variable):
    """A token of `variable`'s current value that proves it unchanged, or None.

    Two tokens of one variable are `same_version` only if its value has not
    changed between them. None where the backend offers nothing cheap
    (TensorFlow): the caller then reads the value itself.
    """
    return None


def same_version(token, other):
    """Whether two `value_version` tokens prove the same, unchanged value."""
    if token is None or other is None:
        return False
    (reference, version), (other_reference, other_version) = token, other
    value = reference()
    return value is not None and value is other_reference() and version == other_version


@_backend_first
def kept_frozen_values(distiller):
    """True when no step traced so far assigned a variable of the Distiller's teacher.

    Then a finished fit or evaluate left the teacher's values as they were,
    even where the trainer hands them back as new objects (JAX); False
    where that is not recorded (torch keeps each variable's tensor, whose
    version tells).
    """
    return False
