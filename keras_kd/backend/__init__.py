"""Gradient mechanics, one small module per backend.

Each module exposes `train_step(distiller, ...)` and `test_step(distiller, ...)`
with the signature its Keras trainer expects (JAX's steps are stateless and
take `state` first). They only arrange *where* gradients are computed; every
loss, metric and schedule is computed by the Distiller in `keras.ops`.
The private Keras APIs keras_kd needs are in `_keras_compat`.
"""

import contextlib
import importlib

import numpy as np

_MODULES = {
    "jax": "keras_kd.backend.jax",
    "tensorflow": "keras_kd.backend.tensorflow",
    "torch": "keras_kd.backend.torch",
}


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
    return importlib.import_module(_MODULES[name])


def train_step(distiller, *args):
    return _module().train_step(distiller, *args)


def test_step(distiller, *args):
    return _module().test_step(distiller, *args)


def checked_step_function(function, checks, training):
    """Wraps a step function Keras made so `checks` (a `fit_checks.StepChecks`) run first.

    The wrapper runs outside the step, which may be compiled: TensorFlow's
    step function takes the iterator (its batches stay inside the graph and
    their labels are checked in the data pipeline), torch's takes the data.
    JAX's stateless step has its own wrapper.
    """
    module = _module()
    if hasattr(module, "checked_step_function"):
        return module.checked_step_function(function, checks, training)

    def checked(data):
        if training:
            checks.before_train_call()
        outputs = function(data)
        checks.completed_calls += 1
        return outputs

    return checked


def keeping_state(distiller, checks):
    """A context in which a failed fit/evaluate leaves the Distiller's variables usable.

    TensorFlow's and torch's trainers keep the variables attached throughout;
    JAX's detaches them during fit and has its own context.
    """
    module = _module()
    if hasattr(module, "keeping_state"):
        return module.keeping_state(distiller, checks)
    return contextlib.nullcontext()


def float32_vector(tensors, numbers):
    """A float32 vector of scalar `tensors` followed by Python `numbers`.

    One op per backend where it has one: on an eager backend (torch),
    `keras.ops.stack` and `convert_to_tensor` cost microseconds per element.
    """
    module = _module()
    if hasattr(module, "float32_vector"):
        return module.float32_vector(tensors, numbers)
    from keras import ops

    from keras_kd import _casting

    stacked = ops.stack([_casting.float32(tensor) for tensor in tensors])
    return ops.concatenate([stacked, np.asarray(numbers, "float32")]) if numbers else stacked


def value_version(variable):
    """A token of `variable`'s current value that proves it unchanged, or None.

    Two tokens of one variable are `same_version` only if its value has not
    changed between them. None where the backend offers nothing cheap
    (TensorFlow): the caller then reads the value itself.
    """
    module = _module()
    return module.value_version(variable) if hasattr(module, "value_version") else None


def same_version(token, other):
    """Whether two `value_version` tokens prove the same, unchanged value."""
    if token is None or other is None:
        return False
    (reference, version), (other_reference, other_version) = token, other
    value = reference()
    return value is not None and value is other_reference() and version == other_version


def kept_frozen_values(distiller):
    """True when no step traced so far assigned a variable of the Distiller's teacher.

    Then a finished fit or evaluate left the teacher's values as they were,
    even where the trainer hands them back as new objects (JAX); False
    where that is not recorded (torch keeps each variable's tensor, whose
    version tells).
    """
    module = _module()
    return module.kept_frozen_values(distiller) if hasattr(module, "kept_frozen_values") else False
