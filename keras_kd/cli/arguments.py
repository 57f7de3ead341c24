"""What the subcommands share before Keras starts: the backend option, option groups, checks.

Nothing here imports Keras: the subcommands parse and check their arguments
first, then `select_backend` sets `KERAS_BACKEND`, and only then is Keras
imported. The argparse types and the backend choice itself are
`keras_kd.launch`'s, which the recipes and the benchmarks share; their
names stay importable from here. The checks raise `UsageError`.
"""

import argparse
import os
import zipfile

from keras_kd import launch
from keras_kd.cli.errors import UsageError
from keras_kd.launch import (  # noqa: F401
    BACKENDS,
    alpha,
    finite_float,
    non_negative_int,
    positive_float,
    positive_int,
    temperature,
)

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
    """`keras_kd.launch.select_backend`, with a `UsageError` where Keras already runs on another backend."""
    try:
        launch.select_backend(name)
    except launch.BackendMismatchError as error:
        raise UsageError(str(error)) from None


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
        type=launch.positive_int,
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


def weight_list(text):
    """An argparse type: `"2:1:1"`, one non-negative weight per teacher, as a list of floats."""
    try:
        weights = [float(part) for part in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of weights separated by ':' (one per teacher, e.g. 2:1:1)"
        ) from None
    if any(not weight >= 0 or weight == float("inf") for weight in weights):
        raise argparse.ArgumentTypeError(f"{text!r}: each weight must be a finite number >= 0")
    return weights
