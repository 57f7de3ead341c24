"""`keras-kd tune`: the Keras Tuner sweep of temperature and alpha (`keras_kd.cli.tune_app.tune`)."""

import os

from keras_kd import launch
from keras_kd.cli import arguments
from keras_kd.cli.errors import UsageError, one_line

# The sweep's folder under saved_models/, which holds result files that ship;
# a smoke run writes under saved_models/smoke/ instead, never over them.
RUN_NAME = "tune_temperature_alpha"
DEFAULT_OUTPUT_DIR = launch.default_output_dir(RUN_NAME)
SMOKE_OUTPUT_DIR = launch.default_output_dir(RUN_NAME, smoke=True)
_TEMPERATURE_DECAY = {"off": False, "on": True, "tune": "tune"}


def add_parser(subparsers):
    """Declares `tune` and its options."""
    from keras_kd.datasets import DATASET_NAMES

    parser = subparsers.add_parser(
        "tune",
        help="Keras Tuner sweep of the temperature and alpha (resumable, distributable)",
        description=(
            "Trains a CNN teacher once (kept in OUTPUT_DIR/teacher.keras), then "
            "searches the temperature and alpha of distilling it into a 2x64 MLP "
            "student with Keras Tuner, scoring each trial on 20% of the training "
            "split. Writes trials.csv, trials.json and heatmap.png to OUTPUT_DIR "
            "and prints the best (T, alpha). Run it again to resume an "
            "interrupted search (no trial lost or repeated). Set "
            "KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT "
            "to run it as the chief or a worker of a distributed search."
        ),
    )
    arguments.add_backend_option(parser)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="mnist_5k", help="default: mnist_5k (offline)")
    arguments.add_data_dir_option(parser)
    parser.add_argument(
        "--tuner", choices=("grid", "random", "bayesian", "hyperband"), default="grid", help="default: grid"
    )
    parser.add_argument(
        "--max-trials", type=launch.positive_int, default=None, metavar="N", help="default: the whole grid, else 10"
    )
    parser.add_argument(
        "--epochs",
        type=launch.positive_int,
        default=None,
        help="student epochs per trial (default 10; 1 with --smoke)",
    )
    parser.add_argument("--teacher-epochs", type=launch.positive_int, default=None, help="default 8; 1 with --smoke")
    parser.add_argument(
        "--teacher",
        action="append",
        default=None,
        metavar="T.keras",
        help=(
            "distil this trained teacher (a .keras file of a model that outputs logits) instead of "
            "training one; give it several times to distil an ensemble"
        ),
    )
    parser.add_argument(
        "--teacher-weights",
        type=arguments.weight_list,
        nargs="+",
        default=None,
        metavar="W:W:...",
        help="with several --teacher: weight lists to search, one weight per teacher, e.g. 1:1:1 2:1:1 (default: equal)",
    )
    parser.add_argument(
        "--temperatures", type=launch.temperature, nargs="+", default=None, metavar="T", help="default: 1 2 4 8 16"
    )
    parser.add_argument(
        "--alphas", type=launch.alpha, nargs="+", default=None, metavar="ALPHA", help="default: 0.1 0.3 0.5 0.7 0.9"
    )
    parser.add_argument(
        "--learning-rates",
        type=launch.positive_float,
        nargs="+",
        default=[1e-3],
        metavar="LR",
        help="Adam learning rate; several values are searched too (default: 0.001)",
    )
    parser.add_argument(
        "--temperature-decay",
        choices=tuple(_TEMPERATURE_DECAY),
        default="off",
        help="T constant, decaying linearly to 1 over the epochs, or both tried (default: off)",
    )
    parser.add_argument("--batch-size", type=launch.positive_int, default=64)
    parser.add_argument("--seed", type=launch.non_negative_int, default=0)
    parser.add_argument(
        "--compare-seeds",
        type=launch.non_negative_int,
        nargs="+",
        default=[],
        metavar="SEED",
        help="after the search, per seed: labels-only vs best vs default (T=4, alpha=0.9) on the test split",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: 2x2 grid, 1 epoch, 256 rows")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help=f"default: {DEFAULT_OUTPUT_DIR}, or {SMOKE_OUTPUT_DIR} with --smoke",
    )
    parser.set_defaults(run=run)


def run(args):
    """Runs the sweep with the parsed options."""
    arguments.check_distinct("--compare-seeds", args.compare_seeds)
    teacher_paths = args.teacher or []
    for path in teacher_paths:
        arguments.check_model_file(path, "--teacher")
    arguments.check_distinct("--teacher", [os.path.abspath(path) for path in teacher_paths])
    if args.teacher_weights is not None and len(teacher_paths) < 2:
        raise UsageError("--teacher-weights needs several --teacher files (an ensemble)")
    if args.compare_seeds and len(teacher_paths) > 1:
        raise UsageError("--compare-seeds compares the settings of one teacher; it does not take several --teacher")
    output_dir = output_dir_of(args)
    arguments.check_output_dir(output_dir)
    arguments.select_backend(args.backend)
    from keras_kd.cli import loading, tune_app

    teachers = loading.load_teachers(teacher_paths) if teacher_paths else None
    learning_rates = tuple(args.learning_rates)
    try:
        tune_app.tune(
            args.dataset,
            data_dir=args.data_dir,
            tuner=args.tuner,
            max_trials=args.max_trials,
            epochs=args.epochs,
            teacher_epochs=args.teacher_epochs,
            temperatures=tuple(args.temperatures) if args.temperatures else None,
            alphas=tuple(args.alphas) if args.alphas else None,
            learning_rate=learning_rates[0] if len(learning_rates) == 1 else learning_rates,
            temperature_decay=_TEMPERATURE_DECAY[args.temperature_decay],
            batch_size=args.batch_size,
            output_dir=output_dir,
            overwrite=args.overwrite,
            smoke=args.smoke,
            seed=args.seed,
            compare_seeds=tuple(args.compare_seeds),
            teachers=teachers,
            teacher_weights=args.teacher_weights,
        )
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(one_line(error)) from None


def output_dir_of(args):
    """`--output-dir`, else `DEFAULT_OUTPUT_DIR`, or `SMOKE_OUTPUT_DIR` with `--smoke`."""
    if args.output_dir is not None:
        return args.output_dir
    return SMOKE_OUTPUT_DIR if args.smoke else DEFAULT_OUTPUT_DIR
