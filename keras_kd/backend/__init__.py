"""Gradient mechanics, one small module per backend.

Each module exposes `train_step(distiller, ...)` and `test_step(distiller, ...)`
with the signature its Keras trainer expects (JAX's steps are stateless and
take `state` first). They only arrange *where* gradients are computed; every
loss, metric and schedule is computed by the Distiller in `keras.ops`.
The private Keras APIs keras_kd needs are in `_keras_compat`.
"""

import importlib

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
    """Wraps a step function Keras made so `checks` (a `fit_checks.StepChecks`) run first."""
    return _module().checked_step_function(function, checks, training)


def keeping_state(distiller, checks):
    """A context in which a failed fit/evaluate leaves the Distiller's variables usable."""
    return _module().keeping_state(distiller, checks)
