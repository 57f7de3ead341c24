"""What differs per backend, in two roles, chosen once per backend.

- gradient mechanics (`roles.GradientMechanics`): `train_step` and
  `test_step` with the signature each Keras trainer expects (JAX's are
  stateless and take `state` first), the wrapper of the step functions Keras
  makes, and how a failed call leaves the variables;
- weight versions (`roles.WeightVersions`): tokens that prove a weight
  unchanged, for the teacher cache's fingerprints.

`roles.py` holds each role's defaults; `keras_kd/backend/<name>/` holds a
backend's subclasses, which may override only what their role declares, and
its `ROLES`. `chosen_roles()` imports the running backend's, once. The
functions below delegate to them. The private Keras APIs keras_kd needs are
in `_keras_compat`.

This package imports Keras only inside its functions: `import keras_kd`
(which imports `_keras_compat` from here) leaves the Keras backend unchosen.
"""

import importlib

_PACKAGES = {
    "jax": "keras_kd.backend.jax",
    "tensorflow": "keras_kd.backend.tensorflow",
    "torch": "keras_kd.backend.torch",
}
# The roles chosen so far, by backend: looked up several times a step.
_CHOSEN = {}


def chosen_roles():
    """The `roles.BackendRoles` of the backend Keras runs on, imported at the first call.

    Raises:
        RuntimeError: when Keras runs on a backend keras_kd does not support.
    """
    import keras

    name = keras.config.backend()
    chosen = _CHOSEN.get(name)
    if chosen is None:
        if name not in _PACKAGES:
            raise RuntimeError(
                f"keras_kd supports the backends {sorted(_PACKAGES)}; Keras is "
                f"running on {name!r}. Set KERAS_BACKEND to one of them."
            )
        chosen = _CHOSEN[name] = importlib.import_module(_PACKAGES[name]).ROLES
    return chosen


# ------------------------------------------------------------------ gradient mechanics


def train_step(distiller, *args):
    """`GradientMechanics.train_step` of the running backend."""
    return chosen_roles().gradients.train_step(distiller, *args)


def test_step(distiller, *args):
    """`GradientMechanics.test_step` of the running backend."""
    return chosen_roles().gradients.test_step(distiller, *args)


def checked_step_function(function, checks, training):
    """`GradientMechanics.checked_step_function` of the running backend."""
    return chosen_roles().gradients.checked_step_function(function, checks, training)


def keeping_state(distiller, checks):
    """`GradientMechanics.keeping_state` of the running backend."""
    return chosen_roles().gradients.keeping_state(distiller, checks)


# ------------------------------------------------------------------ weight versions


def value_version(variable):
    """`WeightVersions.value_version` of the running backend."""
    return chosen_roles().weight_versions.value_version(variable)


def same_version(token, other):
    """`WeightVersions.same_version` of the running backend."""
    return chosen_roles().weight_versions.same_version(token, other)


def kept_frozen_values(distiller):
    """`WeightVersions.kept_frozen_values` of the running backend."""
    return chosen_roles().weight_versions.kept_frozen_values(distiller)
