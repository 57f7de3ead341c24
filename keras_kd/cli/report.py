"""`keras-kd report`: compare models on a dataset (accuracy, fidelity, calibration, size, latency)."""

import os

from keras_kd import launch
from keras_kd.cli import arguments, loading
from keras_kd.cli.errors import UsageError, one_line


def add_parser(subparsers):
    """Declares `report` and its options."""
    parser = subparsers.add_parser(
        "report",
        help="compare models on a dataset: accuracy, fidelity, calibration, size, latency",
        description=(
            "Measures each model on a dataset split with keras_kd.report.compare: "
            "test accuracy, top-1 agreement and mean KL to the teacher, expected "
            "calibration error (15 bins), parameters, .keras size in MB, and "
            "latency (p50/p95) and throughput at each batch size. Prints a "
            "markdown table; optionally saves JSON, markdown and a PNG of bars."
        ),
    )
    arguments.add_backend_option(parser)
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="[NAME=]PATH.keras",
        help=(
            "a model to compare, repeatable, in table order; NAME defaults to the "
            "file name without .keras (e.g. --model teacher=t.keras --model distilled=s.keras)"
        ),
    )
    arguments.add_dataset_options(parser, splits_help="measures on --split")
    parser.add_argument("--split", default="test", help="the dataset split to measure on (default: test)")
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="NAME",
        help="the model that agreement and KL refer to (default: the one named 'teacher', if any)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=launch.positive_int,
        nargs="+",
        default=[1, 256],
        metavar="N",
        help="batch sizes of the latency measurement (default: 1 256)",
    )
    parser.add_argument(
        "--warmup-batches",
        type=launch.non_negative_int,
        default=5,
        help="untimed batches before timing, per batch size (default: 5)",
    )
    parser.add_argument(
        "--timed-batches",
        type=launch.positive_int,
        default=30,
        help="timed batches per batch size (default: 30)",
    )
    parser.add_argument("--json", default=None, metavar="PATH.json", help="also save the report as JSON")
    parser.add_argument("--markdown", default=None, metavar="PATH.md", help="also save the markdown tables")
    parser.add_argument("--plot", default=None, metavar="PATH.png", help="also save the comparison as bar charts")
    parser.set_defaults(run=run)


def run(args):
    """Measures the models, prints the markdown table and writes the files asked for."""
    named_paths = _named_model_paths(args.models)
    for name, path in named_paths.items():
        arguments.check_model_file(path, f"--model {name}")
    for option, path, suffix in (
        ("--json", args.json, ".json"),
        ("--markdown", args.markdown, ".md"),
        ("--plot", args.plot, ".png"),
    ):
        if path is not None:
            arguments.check_output_file(path, suffix, option)
    teacher = args.teacher
    if teacher is None:
        teacher = "teacher" if "teacher" in named_paths else None
    elif teacher not in named_paths:
        raise UsageError(f"--teacher {teacher!r} is not one of the model names {list(named_paths)}")
    arguments.select_backend(args.backend)
    from keras_kd import report as kd_report
    from keras_kd.atomic import atomic_open

    data = loading.load_split(args, args.split)
    models = {name: loading.load_model(path, f"--model {name}") for name, path in named_paths.items()}
    try:
        result = kd_report.compare(
            models,
            data,
            teacher=teacher,
            batch_sizes=args.batch_sizes,
            warmup_batches=args.warmup_batches,
            timed_batches=args.timed_batches,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None
    markdown = result.to_markdown()
    print(markdown)
    if args.json is not None:
        result.to_json(args.json)
    if args.markdown is not None:
        with atomic_open(args.markdown, encoding="utf-8") as file:
            file.write(markdown + "\n")
    if args.plot is not None:
        result.plot(args.plot)


def _named_model_paths(specs):
    """`{name: path}` of the `--model [NAME=]PATH.keras` options, in order."""
    named = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = os.path.splitext(os.path.basename(spec))[0], spec
        if not name:
            raise UsageError(f"--model {spec!r} has an empty name; write NAME=PATH.keras")
        if name in named:
            raise UsageError(f"two models are named {name!r}; write NAME=PATH.keras with distinct names")
        named[name] = path
    return named
