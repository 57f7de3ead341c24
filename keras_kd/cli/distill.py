"""`keras-kd distill`: distil a teacher .keras (or several) into a student on a dataset; writes the student .keras."""

import os

from keras_kd import launch
from keras_kd.cli import arguments, loading
from keras_kd.cli.errors import UsageError, one_line


def add_parser(subparsers):
    """Declares `distill` and its options."""
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
    arguments.add_backend_option(parser)
    parser.add_argument(
        "--teacher",
        required=True,
        action="append",
        metavar="T.keras",
        help=(
            "the trained teacher: a .keras file of a model that outputs logits; give it several times "
            "to distil an ensemble (the weighted mean of the teachers' softened distributions)"
        ),
    )
    parser.add_argument(
        "--teacher-weights",
        type=float,
        nargs="+",
        default=None,
        metavar="W",
        help="with several teachers: one weight >= 0 per teacher, in --teacher order (default: equal)",
    )
    parser.add_argument(
        "--ensemble-target",
        choices=("probabilities", "log_probabilities"),
        default="probabilities",
        help=(
            "with several teachers: the weighted mean of their softened distributions, or of their "
            "log-probabilities (default: probabilities)"
        ),
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
    arguments.add_dataset_options(parser, splits_help="trains on its 'train' split, validates on 'test'")
    parser.add_argument(
        "--temperature",
        type=launch.temperature,
        default=4.0,
        metavar="T",
        help="softmax temperature of the distillation term, > 0 (default: 4.0)",
    )
    parser.add_argument(
        "--alpha",
        type=launch.alpha,
        default=0.9,
        help=(
            "weight of the distillation term in [0, 1]; 1 - alpha weighs the labels; 1.0 = label-free (default: 0.9)"
        ),
    )
    parser.add_argument("--epochs", type=launch.positive_int, default=10, help="training epochs (default: 10)")
    parser.add_argument("--batch-size", type=launch.positive_int, default=64, help="training batch size (default: 64)")
    parser.add_argument(
        "--learning-rate",
        type=launch.positive_float,
        default=1e-3,
        metavar="LR",
        help="Adam learning rate (default: 0.001)",
    )
    parser.add_argument(
        "--seed",
        type=launch.non_negative_int,
        default=0,
        help=("seed of keras.utils.set_random_seed: initial weights of an ARCH student, shuffling (default: 0)"),
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
    parser.set_defaults(run=run)


def run(args):
    """Distils, saves the student and prints its test accuracy beside the teacher's."""
    for path in args.teacher:
        arguments.check_model_file(path, "--teacher")
    arguments.check_distinct("--teacher", [os.path.abspath(path) for path in args.teacher])
    student_is_file = args.student.endswith(".keras") or os.path.exists(args.student)
    if student_is_file:
        arguments.check_model_file(args.student, "--student")
    arguments.check_output_file(args.output, ".keras", "--output")
    if os.path.abspath(args.output) in [os.path.abspath(path) for path in args.teacher]:
        raise UsageError(f"--output {args.output!r} would overwrite a teacher; choose another path")
    if args.history_plot is not None:
        arguments.check_output_file(args.history_plot, ".png", "--history-plot")
    arguments.select_backend(args.backend)
    import keras

    from keras_kd import export, plots
    from keras_kd.distiller import Distiller

    x_train, y_train = loading.load_split(args, "train")
    x_test, y_test = loading.load_split(args, "test")
    teacher = loading.load_teachers(args.teacher)
    for path, single_teacher in zip(args.teacher, teacher if isinstance(teacher, list) else [teacher]):
        _check_inputs_fit(single_teacher, x_train, f"the teacher {path!r}", args.dataset)
    num_classes = int((teacher[0] if isinstance(teacher, list) else teacher).output_shape[-1])
    _check_labels_fit(y_train, num_classes, args)
    keras.utils.set_random_seed(args.seed)
    if student_is_file:
        student = loading.load_model(args.student, "--student")
    else:
        student = _build_student(args.student, x_train.shape[1:], num_classes)
    _check_inputs_fit(student, x_train, f"the student {args.student!r}", args.dataset)
    try:
        distiller = Distiller(
            teacher,
            student,
            teacher_weights=args.teacher_weights,
            ensemble_target=args.ensemble_target,
            temperature=args.temperature,
            alpha=args.alpha,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(one_line(error)) from None
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
        role: 100.0 * float((logits.argmax(axis=-1) == y_test).mean())
        for role, logits in (
            ("student", distiller.student.predict(x_test, verbose=0)),
            ("teacher", _teacher_logits(distiller, x_test)),
        )
    }
    teachers = "teacher" if len(args.teacher) == 1 else f"ensemble of {len(args.teacher)} teachers"
    print(
        f"Saved the distilled student to {args.output}: {accuracies['student']:.2f}% test "
        f"accuracy on {args.dataset} ({teachers} {accuracies['teacher']:.2f}%)."
    )


def _teacher_logits(distiller, x):
    """The teacher's logits on `x`; an ensemble's target at temperature 1."""
    from keras import ops

    from keras_kd import ensemble

    logits = distiller.teacher.predict(x, verbose=0)
    if distiller.teacher_weights is None:
        return logits
    return ops.convert_to_numpy(
        ensemble.ensemble_logits(logits, distiller.teacher_weights, 1.0, distiller.ensemble_target)
    )


def _build_student(name, input_shape, num_classes):
    from keras_kd import models

    try:
        builder = models.get(name)
        return builder(input_shape=tuple(input_shape), num_classes=num_classes)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--student {name!r}: {one_line(error)}") from None


def _check_inputs_fit(model, x, description, dataset):
    from keras_kd import report

    try:
        report.check_inputs_fit(model, x, description, f"{dataset!r}")
    except ValueError as error:
        raise UsageError(one_line(error)) from None
    output_shape = model.output_shape
    if not isinstance(output_shape, tuple) or len(output_shape) != 2:
        raise UsageError(
            f"{description} must output one logits array of shape (batch, classes); it outputs {output_shape}"
        )


def _check_labels_fit(labels, num_classes, args):
    if len(labels) and int(labels.max()) >= num_classes:
        raise UsageError(
            f"{args.dataset!r} has labels up to {int(labels.max())}, but the teacher "
            f"{args.teacher[0]!r} outputs {num_classes} classes"
        )
