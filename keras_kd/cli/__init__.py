"""Command line: `python -m keras_kd COMMAND [OPTIONS]`, or `keras-kd COMMAND`.

An application of the library, one module per subcommand (`demo`,
`distill`, `report`, `export`, `tune`), each with `add_parser(subparsers)`,
which declares its options, and `run(args)`, which runs it from the parsed
arguments. What they share: `keras_kd.launch` (the argparse types and the
backend choice; no Keras), `arguments` (option groups and checks; no Keras),
`loading` (datasets and .keras models, once Keras runs) and `errors`. The
applications are apart from their parsers, which import them and are never
imported by them: the demo is `keras_kd.demo`, the sweep `tune_app`. Keras
is imported inside the `run` functions only, after `--backend` has set
`KERAS_BACKEND`.

Bad input ends the program with a one-line message on stderr and exit
status 2.
"""

import argparse
import sys

from keras_kd.cli import demo, distill, errors, export, report, tune
from keras_kd.cli.errors import USAGE_ERROR_STATUS

# The subcommands, in the order of `keras-kd --help`.
_COMMANDS = (demo, distill, report, export, tune)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block)."""

    def error(self, message):
        self.exit(USAGE_ERROR_STATUS, f"{self.prog}: error: {message}\n")


def main(argv=None):
    """Runs the command line `argv` (default: `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except errors.UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return USAGE_ERROR_STATUS
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def build_parser():
    """The `keras-kd` parser, with one subparser per subcommand."""
    parser = _Parser(
        prog="keras-kd",
        description="Knowledge distillation for Keras 3, on torch, TensorFlow and JAX.",
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    subparsers.required = True
    for command in _COMMANDS:
        command.add_parser(subparsers)
    return parser
