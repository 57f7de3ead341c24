"""What a program does before Keras starts: choose the backend, parse its options, pick its output folder.

The command line, the recipes and the benchmark harness start the same way:
they parse their arguments, call `select_backend`, and only then import
Keras, which reads `KERAS_BACKEND` once, when first imported. So nothing here
imports Keras (importing this module leaves `keras` out of `sys.modules`).

The argparse types (`positive_int`, `temperature`, ...) raise
`argparse.ArgumentTypeError`, so that argparse names the option in its
one-line error.

Example:

```python
import argparse

from keras_kd import launch

parser = argparse.ArgumentParser()
parser.add_argument("--backend", choices=launch.BACKENDS, default=None)
parser.add_argument("--epochs", type=launch.positive_int, default=10)
args = parser.parse_args(["--epochs", "3"])
launch.select_backend(args.backend)  # None: KERAS_BACKEND, else Keras's own choice
import keras

assert args.epochs == 3 and keras.config.backend() in launch.BACKENDS
```
"""

import argparse
import importlib.util
import math
import os
import sys

# The Keras backends keras_kd runs on, in the order the command line lists them.
BACKENDS = ("torch", "tensorflow", "jax")
# Where runs write unless told otherwise; git ignores it but for the results that ship.
OUTPUT_ROOT = "saved_models"
# Under OUTPUT_ROOT: smoke runs check that a program runs, and their outputs are never results.
SMOKE_FOLDER = "smoke"


class BackendMismatchError(RuntimeError):
    """Keras already runs on another backend in this process, and cannot change."""


def select_backend(name):
    """Makes Keras run on backend `name`; call it before anything imports Keras.

    With `name=None`, Keras keeps the backend it would choose anyway
    (`KERAS_BACKEND`, else `~/.keras/keras.json`, else TensorFlow). torch, when
    installed, is imported before anything imports TensorFlow: the other order
    can crash the process when both get loaded.

    Args:
        name: One of `BACKENDS`, or `None`.

    Raises:
        ValueError: for a `name` not in `BACKENDS`.
        BackendMismatchError: if Keras is already imported with another
            backend, which can no longer change in this process.
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"Unknown Keras backend {name!r}; choose one of {', '.join(BACKENDS)}.")
    keras = sys.modules.get("keras")
    if name is not None and keras is not None and keras.config.backend() != name:
        raise BackendMismatchError(
            f"Keras is already running on {keras.config.backend()!r} in this "
            f"process, so the backend {name!r} cannot take effect. Run in a new "
            f"process, or set KERAS_BACKEND={name} before importing Keras."
        )
    if name is not None:
        os.environ["KERAS_BACKEND"] = name
    if "tensorflow" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401


def default_output_dir(run_name, smoke=False):
    """`saved_models/<run_name>`, or `saved_models/smoke/<run_name>` for a smoke run.

    A smoke run writes apart, so that it never overwrites the result files
    that ship in `saved_models/<run_name>/`.
    """
    if smoke:
        return os.path.join(OUTPUT_ROOT, SMOKE_FOLDER, run_name)
    return os.path.join(OUTPUT_ROOT, run_name)


# ------------------------------------------------------------------ argparse types


def positive_int(text):
    """argparse type: an integer >= 1, with a one-line error otherwise."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0 (a seed, a count that may be zero)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def temperature(text):
    """argparse type: a distillation temperature, a finite number > 0."""
    return positive_float(text, hint=" (typical values are 1 to 20)")


def alpha(text):
    """argparse type: the weight of the distillation term, in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"must be in [0, 1] (1 = label-free distillation, 0 = labels only); got {text!r}"
        )
    return value


def positive_float(text, hint=""):
    """argparse type: a finite number > 0 (`hint` is added to the error)."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0{hint}; got {text!r}")
    return value


def finite_float(text):
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite; got {text!r}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
