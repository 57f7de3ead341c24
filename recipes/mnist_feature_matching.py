"""Logits-only KD vs KD + feature matching vs Decoupled KD, CNN -> smaller CNN, on MNIST.

On the embedded 5,000-image MNIST subset (no download): a CNN teacher is
trained once; then, for each seed, one small CNN student is initialised and
copied so that every method starts from the same weights:

- labels only (plain `keras.Model.fit`);
- Hinton KD on logits (T=4, alpha=0.9);
- the same + a FitNets hint on the last convolution (1x1 adapter);
- Decoupled KD (Zhao et al., 2022) + cross-entropy.

Usage:
    ./run python recipes/mnist_feature_matching.py --backend jax
    ./run python recipes/mnist_feature_matching.py --smoke
Writes saved_models/mnist_feature_matching/: results.json, report.md,
history.json (the teacher's) and teacher.keras, and prints a table.
"""

import numpy as np
import support  # recipes/support.py, beside this script

RECIPE = "mnist_feature_matching"
CLAIM = (
    "None published: our own comparison of logits-only KD, KD + a FitNets hint and DKD "
    "against a labels-only student (README, 'Measured: logits vs features vs DKD')."
)
BATCH_SIZE = 64


def add_arguments(parser):
    parser.add_argument("--teacher-epochs", type=int, default=8, help="default 8")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one student per seed")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=8, datasets=("mnist_5k",), add_arguments=add_arguments
    )
    if args.smoke:
        args.seeds = args.seeds[:1]
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import models

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    output = support.RecipeOutput(args, data, CLAIM)

    def fit(model, epochs):
        return support.train(
            model, data.x_train, data.y_train, epochs=epochs, batch_size=BATCH_SIZE, optimizer="adam", verbose=0
        )

    keras.utils.set_random_seed(1234)
    teacher = models.mnist_cnn_teacher(data.input_shape, data.num_classes)
    output.add_history("teacher", fit(teacher, args.teacher_epochs))
    teacher_accuracy = support.accuracy(teacher, data.x_test, data.y_test)
    teacher_conv = last_conv(teacher)

    methods = {
        "labels only": None,
        "KD, logits": lambda student: keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.9),
        "KD, logits + hint": lambda student: keras_kd.Distiller(
            teacher,
            student,
            temperature=4.0,
            alpha=0.9,
            feature_matches=[
                keras_kd.FeatureMatch(teacher_layer=teacher_conv, student_layer=last_conv(student), loss="mse")
            ],
        ),
        "DKD + CE": lambda student: keras_kd.Distiller(
            teacher,
            student,
            temperature=4.0,
            alpha=0.5,
            distillation_loss=keras_kd.losses.DecoupledKD(alpha=1.0, beta=8.0),
        ),
    }
    accuracies = {name: [] for name in methods}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        initial = models.mnist_cnn_teacher(
            data.input_shape, data.num_classes, filters=(8, 16), dense_units=32, name="cnn_student"
        )
        for name, make_distiller in methods.items():
            student = support.same_initial_weights(initial)
            keras.utils.set_random_seed(seed)
            fit(student if make_distiller is None else make_distiller(student), args.epochs)
            accuracies[name].append(support.accuracy(student, data.x_test, data.y_test) * 100)
            print(f"seed {seed} {name}: {accuracies[name][-1]:.2f}%", flush=True)

    output.save_models({"teacher": teacher})
    rows = [[f"teacher (CNN, {teacher.count_params():,} params)", f"{teacher_accuracy * 100:.2f}", ""]]
    for name, values in accuracies.items():
        rows.append(
            [
                f"student (CNN 8-16, {initial.count_params():,} params), {name}",
                f"{np.mean(values):.2f} ± {np.std(values):.2f}",
                ", ".join(f"{value:.2f}" for value in values),
            ]
        )
    table = support.markdown_table(["Model", "Test accuracy (%) mean ± std", "per seed"], rows)
    return output.finish(
        table, {"seeds": args.seeds, "teacher_accuracy": teacher_accuracy, "student_accuracy": accuracies}
    )


def last_conv(model):
    """Name of the model's last Conv2D layer (where the hint is taken)."""
    import keras

    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]


if __name__ == "__main__":
    support.run(main)
