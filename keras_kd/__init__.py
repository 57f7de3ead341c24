"""keras_kd: knowledge distillation for Keras 3, on torch, TensorFlow and JAX.

Importing the package does not import Keras, so that a program (such as
`python -m keras_kd demo --backend jax`) can still choose the Keras backend:
`keras_kd.Distiller` and the other names below import Keras on first use. If
Keras is already imported, its backend is fixed anyway, and the modules that
define serializable classes are imported at once, so that
`keras.saving.load_model` finds them. The others (`tuning` needs keras-tuner,
`plots` matplotlib) are still imported on first use, so a deployment without
those packages can load and train a Distiller.

A Keras outside the versions keras_kd was tested with gets a warning here
(see `keras_kd/backend/_keras_compat.py`).
"""

import importlib
import sys

from keras_kd.backend import _keras_compat

__version__ = "0.1.0"

_keras_compat.warn_if_untested_keras()

# Public name -> module that defines it (a module's own name for a submodule).
_EXPORTS = {
    "CacheMismatchError": "keras_kd.cache",
    "Distiller": "keras_kd.distiller",
    "FeatureMatch": "keras_kd.features",
    "FunctionMatchingDistiller": "keras_kd.function_matching",
    "OnPolicyDistiller": "keras_kd.on_policy",
    "TeacherCache": "keras_kd.cache",
    "datasets": "keras_kd.datasets",
    "distributed": "keras_kd.distributed",
    "ensemble": "keras_kd.ensemble",
    "export": "keras_kd.export",
    "losses": "keras_kd.losses",
    "models": "keras_kd.models",
    "plots": "keras_kd.plots",
    "prompts": "keras_kd.prompts",
    "pruning": "keras_kd.pruning",
    "report": "keras_kd.report",
    "students": "keras_kd.students",
    "transfer": "keras_kd.transfer",
    "tuning": "keras_kd.tuning",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_kd' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    value = module if module.__name__ == f"keras_kd.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


# The modules whose classes `keras.saving.load_model` must find by name.
_SERIALIZABLE_MODULES = ("keras_kd.distiller", "keras_kd.function_matching", "keras_kd.features", "keras_kd.losses")

if "keras" in sys.modules:
    for _module in _SERIALIZABLE_MODULES:
        importlib.import_module(_module)
    del _module
