"""What the subcommands share before Keras starts: option types, option groups, checks, the backend.

Nothing here imports Keras: the subcommands parse and check their arguments
first, then `select_backend` sets `KERAS_BACKEND`, and only then is Keras
imported. The argparse types (`positive_int`, `temperature`, ...) raise
`argparse.ArgumentTypeError`, so argparse names the option in its one-line
error; the checks raise `UsageError`.
"""

import argparse
import importlib.util
import math
import os
import sys
import zipfile

from keras_kd.cli.errors import UsageError

BACKENDS = ("torch", "tensorflow", "jax")


# ------------------------------------------------------------------ the backend


def add_backend_option(parser):
    """Adds `--backend {torch,tensorflow,jax}` (default: Keras' own choice)."""
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else Keras' own default)",
    )


def select_backend(name):
    """Makes Keras run on backend `name`; call it before Keras is imported.

    With `name=None`, Keras keeps the backend it would choose anyway
    (`KERAS_BACKEND`, else `~/.keras/keras.json`, else TensorFlow). torch, when
    installed, is imported before anything imports TensorFlow: the other order
    can crash the process when both get loaded.

    Raises:
        UsageError: if Keras is already imported with another backend, which
            can no longer change in this process.
    """
    keras = sys.modules.get("keras")
    if name is not None and keras is not None and keras.config.backend() != name:
        raise UsageError(
            f"Keras is already running on {keras.config.backend()!r} in this "
            f"process, so the backend {name!r} cannot take effect. Run in a new "
            f"process, or set KERAS_BACKEND={name} before importing Keras."
        )
    if name is not None:
        os.environ["KERAS_BACKEND"] = name
    if "tensorflow" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401


# ------------------------------------------------------------------ option groups


def add_dataset_options(parser, splits_help):
    """Adds `--dataset` (required), `--data-dir` and `--limit` (see `keras_kd.cli.loading.load_split`).

    Args:
        parser: The subcommand's parser.
        splits_help: What the subcommand does with the dataset's splits, for
            `--help`.
    """
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help=(
            "a keras_kd.datasets name: mnist, fashion_mnist, cifar10, cifar100 (local "
            "TFDS or keras.datasets copy), mnist_5k or digits (offline); " + splits_help
        ),
    )
    add_data_dir_option(parser)
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="use only the first N examples of each split (quick runs)",
    )


def add_data_dir_option(parser):
    """Adds `--data-dir DIR`, the TensorFlow Datasets directory."""
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="TensorFlow Datasets directory (default: TFDS's own)",
    )


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


# ------------------------------------------------------------------ checks before Keras starts


def check_distinct(option, values):
    """A UsageError if `values` (of a repeatable option) repeat one."""
    if len(set(values)) != len(values):
        raise UsageError(f"{option} must be distinct; got {' '.join(map(str, values))}")


def check_model_file(path, option):
    """Checks, before Keras starts, that `path` is an existing .keras file."""
    if not path.endswith(".keras"):
        raise UsageError(f"{option} {path!r} is not a .keras file")
    if not os.path.isfile(path):
        raise UsageError(f"{option} {path!r}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{option} {path!r} is not a .keras archive (not a zip file); is it corrupted?")


def check_output_file(path, suffix, option):
    """A UsageError if `path` does not end in `suffix` or its directory cannot be written."""
    if not path.endswith(suffix):
        raise UsageError(f"{option} {path!r} must end in {suffix}")
    check_output_dir(os.path.dirname(os.path.abspath(path)))


def check_output_dir(path):
    """Creates `path` if needed; a UsageError if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output directory {path!r}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"the output directory {path!r} is not writable")
