"""Patient distillation: a CNN teacher into an MLP student on MNIST-5k, at several step budgets.

Beyer et al., "Knowledge distillation: A good teacher is patient and
consistent" (CVPR 2022): the student should match the teacher's function on
many inputs (augmented views of unlabelled images, the teacher seeing exactly
the view the student sees) for many steps. This recipe measures how much of
the teacher-student gap that closes, against the number of optimizer steps.

The 4,000 MNIST-5k training images are split (`--split-seed`) into a small
labelled part (`--labeled`, 500 by default) and an unlabelled transfer part
(the rest); the 1,000 test images are held out. The CNN teacher is trained on
the labelled part only (with augmentation). Then, for each seed, one 2x64 MLP
student is initialised and copied, so every method starts from the same
weights, and each method is trained from scratch at each budget of
`--budgets` optimizer steps (batch `--batch-size`, Adam with the learning rate
cosine-decayed to 0 over the budget):

- labels only: cross-entropy on the labelled part;
- plain KD: a `keras_kd.Distiller` (T=`--temperature`, alpha=`--alpha`) on
  the labelled part, no augmentation (the teacher's outputs cached once);
- patient KD: function matching on the labelled part + the transfer set
  (labels -1, so only the distillation term sees them): the dataset's
  augmentation (`keras_kd.datasets.augmentation`: shifts and small
  rotations) and `--mixup` applied inside the step, the teacher and the
  student seeing the same batch (`keras_kd.FunctionMatchingDistiller`); or,
  with `--view-cache K`, K augmented views per image cached with the
  teacher's outputs (`keras_kd.TeacherCache.build(..., augmentation=...,
  views=K)`), one replayed per epoch, so no teacher runs in the step (no
  mixup then: a mixed view cannot be replayed).

`--budgets` replaces the recipes' `--epochs` (unused here). The labelled
part is repeated to the transfer set's length, so that an epoch has as many
steps for every method. The table gives, at each budget, the fraction of the
gap closed, `(student - labels only) / (teacher - labels
only)`, per seed then averaged.

`--validation N` holds N training images out of both parts and measures
every model on them instead of the test images: the way to choose
hyperparameters without touching the test set (with seeds and a split seed
that are not the ones reported).

Usage:
    ./run python recipes/mnist_patient.py --backend tensorflow
    ./run python recipes/mnist_patient.py --backend jax --view-cache 16
    ./run python recipes/mnist_patient.py --smoke
Writes saved_models/mnist_patient/: results.json, report.md, history.json,
teacher.keras and accuracy_vs_steps.png, and prints the tables.
"""

import math
import time

import numpy as np
import support  # recipes/support.py, beside this script

from keras_kd import launch

RECIPE = "mnist_patient"
CLAIM = (
    "Beyer et al. (CVPR 2022): distillation closes the teacher-student gap when it is patient "
    "(long schedules) and consistent (teacher and student see the same augmented view); "
    "the aim here: >= 75 % of the gap for an MLP student of a CNN teacher."
)
METHODS = ("labels only", "plain KD", "patient KD")
TEACHER_BATCH_SIZE = 64


def add_arguments(parser):
    parser.add_argument("--labeled", type=launch.positive_int, default=500, help="labelled images (default 500)")
    parser.add_argument(
        "--budgets",
        type=launch.positive_int,
        nargs="+",
        default=[250, 1000, 4000, 16000],
        help="optimizer steps of each run, one run per budget (default 250 1000 4000 16000)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one student per seed")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the labelled/unlabelled split (default 0)")
    parser.add_argument(
        "--validation",
        type=int,
        default=0,
        help="hold out this many training images and measure on them, not on the test set (default 0)",
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: all three")
    parser.add_argument("--teacher-epochs", type=int, default=40, help="over the labelled part (default 40)")
    support.add_training_arguments(parser, batch_size=128, learning_rate=1e-3, temperature=4.0, alpha=0.5)
    parser.add_argument(
        "--patient-temperature", type=float, default=1.0, help="T of patient KD (default 1, as Beyer et al.)"
    )
    parser.add_argument(
        "--patient-alpha",
        type=float,
        default=1.0,
        help="weight of the soft term of patient KD (default 1: label-free, as Beyer et al.)",
    )
    parser.add_argument(
        "--mixup",
        type=float,
        default=0.0,
        help="mixup concentration of patient KD (default 0: off, chosen on validation)",
    )
    parser.add_argument(
        "--view-cache",
        type=int,
        default=0,
        metavar="K",
        help="patient KD from K cached augmented views per image, no teacher in the step and no mixup "
        "(default 0: uncached function matching)",
    )


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=1, datasets=("mnist_5k",), add_arguments=add_arguments
    )
    if args.view_cache < 0:
        raise SystemExit(f"error: --view-cache must be 0 (uncached) or a number of views K >= 1; got {args.view_cache}")
    if args.view_cache and args.mixup:
        raise SystemExit(
            f"error: --view-cache {args.view_cache} cannot replay --mixup {args.mixup:g} (a mixed view belongs to two "
            "images); use --mixup 0 with a view cache, or --view-cache 0 for mixup"
        )
    if args.smoke:
        args.seeds, args.labeled, args.teacher_epochs = args.seeds[:1], 8, 1
        args.budgets, args.batch_size, args.validation = [3, 6], 8, min(args.validation, 4)
    keras = support.select_backend(args.backend)
    from keras_kd import models, transfer

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    order = np.random.default_rng(args.split_seed).permutation(len(data.x_train))
    if args.validation:
        held_out, order = order[: args.validation], order[args.validation :]
        x_eval, y_eval = data.x_train[held_out], data.y_train[held_out]
        evaluated_on = f"{len(held_out)} held-out training images (validation, not the test set)"
    else:
        x_eval, y_eval = data.x_test, data.y_test
        evaluated_on = f"the {len(data.x_test)} test images"
    if args.labeled >= len(order):
        raise SystemExit(f"error: --labeled {args.labeled} leaves no unlabelled images out of {len(order)}")
    labeled, unlabeled = order[: args.labeled], order[args.labeled :]
    x_labeled, y_labeled = data.x_train[labeled], data.y_train[labeled]
    x_transfer, y_transfer = transfer.with_transfer_set(x_labeled, y_labeled, data.x_train[unlabeled])
    # The labelled part repeated to the transfer set's length: as many steps per epoch for every method.
    repeats = math.ceil(len(x_transfer) / len(x_labeled))
    x_repeated, y_repeated = np.concatenate([x_labeled] * repeats), np.concatenate([y_labeled] * repeats)
    output = support.RecipeOutput(args, data, CLAIM)

    keras.utils.set_random_seed(1234)
    teacher = models.mnist_cnn_teacher(data.input_shape, data.num_classes)
    started = time.perf_counter()
    output.add_history(
        "teacher",
        support.train(
            teacher,
            x_labeled,
            y_labeled,
            epochs=args.teacher_epochs,
            batch_size=TEACHER_BATCH_SIZE,
            optimizer=keras.optimizers.Adam(1e-3),
            augmentation=augmentation(args),
            verbose=0,
        ),
    )
    teacher_accuracy = support.accuracy(teacher, x_eval, y_eval)
    print(
        f"Teacher (CNN on {len(x_labeled)} labelled images): {100 * teacher_accuracy:.2f}% "
        f"on {evaluated_on} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    runner = Runner(args, teacher, (x_repeated, y_repeated), (x_transfer, y_transfer), output)

    # results[method][budget] = [accuracy per seed]; seconds likewise.
    results = {method: {budget: [] for budget in args.budgets} for method in args.methods}
    seconds = {method: {budget: [] for budget in args.budgets} for method in args.methods}
    steps = {}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        initial = models.mlp_student(data.input_shape, data.num_classes)
        for budget in args.budgets:
            for method in args.methods:
                student = support.same_initial_weights(initial)
                keras.utils.set_random_seed(seed)
                started = time.perf_counter()
                steps[budget] = runner.fit(method, student, budget, seed)
                # The view cache's build is counted apart (once per seed, shared by the budgets).
                seconds[method][budget].append(time.perf_counter() - started - runner.pop_build_seconds())
                results[method][budget].append(support.accuracy(student, x_eval, y_eval))
                print(
                    f"seed {seed} {budget:>6} steps {method:>12}: {100 * results[method][budget][-1]:.2f}% "
                    f"({seconds[method][budget][-1]:.0f} s)",
                    flush=True,
                )

    report = [
        f"Teacher: CNN trained on {len(x_labeled)} labelled images, {100 * teacher_accuracy:.2f}% on {evaluated_on}.",
        f"Students: 2x64 MLP; labelled part {len(x_labeled)} images, transfer set {len(unlabeled)} "
        f"unlabelled images; batch {args.batch_size}, Adam {args.learning_rate:g} cosine-decayed to 0 "
        f"over each budget; seeds {', '.join(map(str, args.seeds))}; patient KD {runner.describe_patient()}.",
        "",
        accuracy_table(results, steps, seconds),
    ]
    if runner.cache_seconds:
        report += [
            "",
            f"View caches ({args.view_cache} views of {len(x_transfer)} images, built once per seed and not "
            f"counted in the patient KD seconds above): {', '.join(f'{s:.0f} s' for s in runner.cache_seconds.values())}.",
        ]
    gaps = None
    if "labels only" in results and len(results) > 1:
        gaps = gap_fractions(results, teacher_accuracy)
        report += ["", gap_table(gaps, steps)]
    output.save_models({"teacher": teacher})
    if not args.smoke:
        split = "validation" if args.validation else "test"
        plot(results, steps, teacher_accuracy, output.directory / "accuracy_vs_steps.png", split)
    return output.finish(
        "\n".join(report),
        {
            "evaluated_on": evaluated_on,
            "teacher_accuracy": teacher_accuracy,
            "accuracies": {method: {str(b): v for b, v in values.items()} for method, values in results.items()},
            "run_seconds": {method: {str(b): v for b, v in values.items()} for method, values in seconds.items()},
            "gap_closed": gaps and {method: {str(b): v for b, v in values.items()} for method, values in gaps.items()},
            "steps": {str(budget): value for budget, value in steps.items()},
            "labeled_images": len(x_labeled),
            "transfer_images": len(unlabeled),
            "view_cache_seconds": runner.cache_seconds,
        },
    )


def augmentation(args, seed=None):
    from keras_kd import datasets

    return datasets.augmentation(args.dataset, seed=args.seed if seed is None else seed)


class Runner:
    """Trains one student by one method for one budget of optimizer steps."""

    def __init__(self, args, teacher, labeled, transfer_set, output):
        self.args, self.teacher, self.labeled, self.transfer_set, self.output = (
            args,
            teacher,
            labeled,
            transfer_set,
            output,
        )
        self.plain_cache = None
        self.view_caches = {}  # seed -> TeacherCache of augmented views
        self.cache_seconds = {}
        self._unreported_build_seconds = 0.0

    def pop_build_seconds(self):
        """Seconds spent building a view cache since the last call."""
        seconds, self._unreported_build_seconds = self._unreported_build_seconds, 0.0
        return seconds

    def describe_patient(self):
        args = self.args
        inputs = (
            f"{args.view_cache} cached augmented views per image, no mixup"
            if args.view_cache
            else f"augmentation{f' + mixup {args.mixup:g}' if args.mixup else ''} in the step (uncached)"
        )
        return f"T={args.patient_temperature:g}, alpha={args.patient_alpha:g}, {inputs}"

    def fit(self, method, student, budget, seed):
        """Trains `student` for about `budget` steps (whole epochs); returns the steps it took."""
        import keras

        import keras_kd

        args = self.args
        x, y = self.transfer_set if method == "patient KD" else self.labeled
        steps_per_epoch = support.steps_per_epoch(len(x), args.batch_size)
        epochs = max(1, round(budget / steps_per_epoch))
        steps = epochs * steps_per_epoch
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, decay_steps=steps)
        optimizer = keras.optimizers.Adam(schedule)
        if method == "labels only":
            history = support.train(
                student, x, y, epochs=epochs, batch_size=args.batch_size, optimizer=optimizer, verbose=0
            )
        elif method == "plain KD":
            # No augmentation: the teacher's outputs never change, so they are computed once.
            if self.plain_cache is None:
                self.plain_cache = keras_kd.TeacherCache.build(self.teacher, x)
            model = keras_kd.Distiller(self.teacher, student, temperature=args.temperature, alpha=args.alpha)
            history = fit_cached(model, self.plain_cache.dataset(x, y, batch_size=args.batch_size), epochs, optimizer)
        elif args.view_cache:
            model = keras_kd.Distiller(
                self.teacher, student, temperature=args.patient_temperature, alpha=args.patient_alpha
            )
            dataset = self._view_cache(seed).dataset(x, self._labels(y), batch_size=args.batch_size, seed=seed)
            history = fit_cached(model, dataset, epochs, optimizer)
        else:
            model = keras_kd.FunctionMatchingDistiller(
                self.teacher,
                student,
                temperature=args.patient_temperature,
                alpha=args.patient_alpha,
                augmentation=augmentation(args, seed),
                mixup=args.mixup,
                seed=seed,
            )
            history = support.train(
                model, x, self._labels(y), epochs=epochs, batch_size=args.batch_size, optimizer=optimizer, verbose=0
            )
        self.output.add_history(f"{method}, {steps} steps, seed {seed}", history)
        return steps

    def _labels(self, y):
        return None if self.args.patient_alpha == 1.0 else y

    def _view_cache(self, seed):
        import keras_kd

        if seed not in self.view_caches:
            started = time.perf_counter()
            self.view_caches = {
                seed: keras_kd.TeacherCache.build(
                    self.teacher,
                    self.transfer_set[0],
                    augmentation=augmentation(self.args, seed),
                    views=self.args.view_cache,
                    seed=seed,
                )
            }
            self._unreported_build_seconds = time.perf_counter() - started
            self.cache_seconds[seed] = round(self._unreported_build_seconds, 1)
            print(f"view cache, seed {seed}: {self.args.view_cache} views built in {self.cache_seconds[seed]} s")
        return self.view_caches[seed]


def fit_cached(distiller, dataset, epochs, optimizer):
    """`support.train` for a `TeacherCache.dataset`, which carries its labels and batches itself."""
    distiller.compile(optimizer=optimizer, metrics=["accuracy"] if distiller.uses_labels else None)
    history = distiller.fit(dataset, epochs=epochs, verbose=0)
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def gap_fractions(results, teacher_accuracy):
    """`{method: {budget: [(student - labels only) / (teacher - labels only) per seed]}}`, labels only left out."""
    gaps = {}
    for method, by_budget in results.items():
        if method == "labels only":
            continue
        gaps[method] = {
            budget: [
                (student - alone) / (teacher_accuracy - alone) if teacher_accuracy != alone else float("nan")
                for student, alone in zip(values, results["labels only"][budget], strict=True)
            ]
            for budget, values in by_budget.items()
        }
    return gaps


def mean_spread(values, scale=100.0):
    values = scale * np.asarray(values)
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {spread:.2f}"


def accuracy_table(results, steps, seconds):
    header = ["Budget (steps)"] + [f"{method}: accuracy (%), s/run" for method in results]
    rows = []
    for budget, step_count in steps.items():
        rows.append(
            [f"{budget:,} ({step_count:,})"]
            + [
                f"{mean_spread(results[method][budget])} ({', '.join(f'{100 * v:.1f}' for v in results[method][budget])})"
                f", {np.mean(seconds[method][budget]):.0f} s"
                for method in results
            ]
        )
    return support.markdown_table(header, rows)


def gap_table(gaps, steps):
    header = ["Budget (steps)"] + [f"{method}: gap closed (%)" for method in gaps]
    rows = []
    for budget, step_count in steps.items():
        rows.append(
            [f"{budget:,} ({step_count:,})"]
            + [
                f"{mean_spread(gaps[method][budget])} ({', '.join(f'{100 * v:.0f}' for v in gaps[method][budget])})"
                for method in gaps
            ]
        )
    return support.markdown_table(header, rows)


def plot(results, steps, teacher_accuracy, path, split):
    """Accuracy against steps: the mean over seeds, the seeds' range shaded, the teacher dashed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return  # matplotlib is optional for a recipe.
    figure, axes = pyplot.subplots(figsize=(6.4, 4.2), dpi=120)
    budgets = list(steps)
    x = [steps[budget] for budget in budgets]
    for method, by_budget in results.items():
        values = np.array([by_budget[budget] for budget in budgets]) * 100
        axes.plot(x, values.mean(axis=1), marker="o", label=method)
        axes.fill_between(x, values.min(axis=1), values.max(axis=1), alpha=0.2)
    axes.axhline(
        100 * teacher_accuracy, color="black", linestyle="--", label=f"teacher (CNN), {100 * teacher_accuracy:.1f}"
    )
    axes.set_xscale("log")
    axes.set_xticks(x, [f"{value:,}" for value in x])
    axes.minorticks_off()
    axes.set_xlabel("optimizer steps (one cosine schedule per budget)")
    axes.set_ylabel(f"{split} accuracy (%)")
    axes.set_title("2x64 MLP student of a CNN teacher, MNIST-5k (mean of seeds, range shaded)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


if __name__ == "__main__":
    support.run(main)
