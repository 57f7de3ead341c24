"""Few labels, many unlabelled images: transfer sets and function matching, on MNIST-5k.

An experiment on the embedded 5,000-image MNIST subset (no download).
The 4,000 training images are split into a small labelled part (`--labeled`,
500 by default) and an unlabelled transfer part (the rest); the 1,000 test
images are held out. A CNN teacher is trained on the labelled part only (with
augmentation). Then, for each seed, one 2x64 MLP student is initialised and
copied, so every method starts from the same weights:

- (a) labels only, on the labelled part;
- (b) distilled on the labelled part (T=4, alpha=0.5);
- (c) distilled on the labelled part + the transfer set (labels -1, so only
  the distillation term sees them);
- (d) (c) with function matching: the same augmentation and mixup applied
  inside the train step, seen by teacher and student alike.

Every student gets the same number of optimizer steps (the runs on the
labelled part alone do more epochs over fewer images).

Usage:
    ./run python recipes/mnist_transfer_set.py --backend jax
    ./run python recipes/mnist_transfer_set.py --smoke
Writes saved_models/mnist_transfer_set/: results.json, report.md, history.json
and the models, and prints a table.
"""

import math

import numpy as np
import support  # recipes/support.py, beside this script

RECIPE = "mnist_transfer_set"
CLAIM = (
    "On a fixed small labelled set, soft targets add little for an MLP student; "
    "distilling on a larger unlabelled transfer set moved it by about 10 points."
)
BATCH_SIZE = 64
METHODS = (
    "(a) labels only",
    "(b) distilled, labelled part",
    "(c) distilled, + transfer set",
    "(d) (c) + function matching",
)


def add_arguments(parser):
    parser.add_argument("--labeled", type=int, default=500, help="labelled training images (default 500)")
    parser.add_argument("--teacher-epochs", type=int, default=40, help="default 40 (over the labelled part)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one student per seed")
    parser.add_argument("--temperature", type=float, default=4.0, help="default 4")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the soft term (default 0.5)")
    parser.add_argument("--mixup", type=float, default=1.0, help="mixup concentration of (d) (default 1.0)")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=10, datasets=("mnist_5k",), add_arguments=add_arguments
    )
    if args.smoke:
        args.seeds, args.labeled, args.teacher_epochs = args.seeds[:1], 16, 1
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import datasets, models, transfer

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    output = support.RecipeOutput(args, data, CLAIM)
    order = np.random.default_rng(0).permutation(len(data.x_train))
    labeled, unlabeled = order[: args.labeled], order[args.labeled :]
    x_labeled, y_labeled = data.x_train[labeled], data.y_train[labeled]
    x_transfer, y_transfer = transfer.with_transfer_set(x_labeled, y_labeled, data.x_train[unlabeled])
    # The same number of optimizer steps for every student.
    steps = args.epochs * math.ceil(len(x_transfer) / BATCH_SIZE)
    labeled_epochs = math.ceil(steps / math.ceil(len(x_labeled) / BATCH_SIZE))

    def fit(model, x, y, epochs):
        return support.train(
            model, x, y, epochs=epochs, batch_size=BATCH_SIZE, optimizer=keras.optimizers.Adam(1e-3), verbose=0
        )

    def augmentation():
        return datasets.augmentation(args.dataset, seed=args.seed)

    keras.utils.set_random_seed(1234)
    teacher = models.mnist_cnn_teacher(data.input_shape, data.num_classes)
    output.add_history(
        "teacher",
        support.train(
            teacher,
            x_labeled,
            y_labeled,
            epochs=args.teacher_epochs,
            batch_size=BATCH_SIZE,
            optimizer=keras.optimizers.Adam(1e-3),
            augmentation=augmentation(),
            verbose=0,
        ),
    )
    teacher_accuracy = support.accuracy(teacher, data.x_test, data.y_test)
    print(f"Teacher (CNN on {len(x_labeled)} labelled images): {100 * teacher_accuracy:.2f}%", flush=True)

    def distiller(student, **options):
        return keras_kd.Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha, **options)

    runs = {
        METHODS[0]: lambda student: (student, x_labeled, y_labeled, labeled_epochs),
        METHODS[1]: lambda student: (distiller(student), x_labeled, y_labeled, labeled_epochs),
        METHODS[2]: lambda student: (distiller(student), x_transfer, y_transfer, args.epochs),
        METHODS[3]: lambda student: (
            distiller(student, augmentation=augmentation(), mixup=args.mixup, seed=args.seed),
            x_transfer,
            y_transfer,
            args.epochs,
        ),
    }
    accuracies = {method: [] for method in METHODS}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        initial = models.mlp_student(data.input_shape, data.num_classes)
        for method, make_run in runs.items():
            student = support.same_initial_weights(initial)
            model, x, y, epochs = make_run(student)
            output.add_history(f"{method} seed {seed}", fit(model, x, y, epochs))
            accuracies[method].append(support.accuracy(student, data.x_test, data.y_test))
            print(f"seed {seed} {method}: {100 * accuracies[method][-1]:.2f}%", flush=True)

    lines = [
        f"Teacher: CNN trained on {len(x_labeled)} labelled images, {100 * teacher_accuracy:.2f}% test accuracy.",
        f"Students: 2x64 MLP, {steps} optimizer steps each; transfer set: {len(unlabeled)} unlabelled images.",
        "",
        "| Student | Test accuracy (%), mean ± std | Per seed |",
        "|---|---:|---|",
    ]
    for method, values in accuracies.items():
        percent = 100 * np.asarray(values)
        lines.append(
            f"| {method} | {percent.mean():.2f} ± {percent.std(ddof=1) if len(percent) > 1 else 0.0:.2f} | "
            + ", ".join(f"{value:.1f}" for value in percent)
            + " |"
        )
    output.save_models({"teacher": teacher})
    return output.finish(
        "\n".join(lines),
        {
            "teacher_accuracy": teacher_accuracy,
            "accuracies": accuracies,
            "steps_per_student": steps,
            "labeled_images": len(x_labeled),
            "transfer_images": len(unlabeled),
        },
    )


if __name__ == "__main__":
    support.run(main)
