"""Logits-only KD vs KD + feature matching vs Decoupled KD, CNN -> smaller CNN.

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
Writes saved_models/mnist_feature_matching/results.json and prints a table.
"""

import argparse
import json
import os
import pathlib
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("torch", "tensorflow", "jax"), default=None)
    parser.add_argument("--epochs", type=int, default=8, help="student epochs (default 8)")
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", choices=("mnist_5k",), default="mnist_5k")
    parser.add_argument("--smoke", action="store_true", help="tiny and fast: checks the recipe runs")
    parser.add_argument("--output-dir", default="saved_models/mnist_feature_matching")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    import torch  # noqa: F401  (before TensorFlow)
    import keras
    import numpy as np

    import keras_kd
    from keras_kd import datasets, models

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_5k()
    if args.smoke:
        x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:128], y_test[:128]
        args.epochs, args.teacher_epochs, args.seeds = 1, 1, args.seeds[:1]
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    keras.utils.set_random_seed(1234)
    teacher = models.mnist_cnn_teacher()
    teacher.compile(optimizer="adam", loss=cross_entropy, metrics=["accuracy"])
    teacher.fit(x_train, y_train, batch_size=64, epochs=args.teacher_epochs, verbose=0)
    teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)[1]
    teacher_conv = [layer.name for layer in teacher.layers if isinstance(layer, keras.layers.Conv2D)][-1]

    def student_conv(student):
        return [layer.name for layer in student.layers if isinstance(layer, keras.layers.Conv2D)][-1]

    methods = {
        "labels only": None,
        "KD, logits": lambda teacher, student: keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.9),
        "KD, logits + hint": lambda teacher, student: keras_kd.Distiller(
            teacher,
            student,
            temperature=4.0,
            alpha=0.9,
            feature_matches=[
                keras_kd.FeatureMatch(teacher_layer=teacher_conv, student_layer=student_conv(student), loss="mse", weight=1.0)
            ],
        ),
        "DKD + CE": lambda teacher, student: keras_kd.Distiller(
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
        initial = models.mnist_cnn_teacher(filters=(8, 16), dense_units=32, name="cnn_student")
        for name, make_distiller in methods.items():
            student = keras.models.clone_model(initial)
            student.set_weights(initial.get_weights())
            keras.utils.set_random_seed(seed)
            if make_distiller is None:
                student.compile(optimizer="adam", loss=cross_entropy)
                student.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0)
            else:
                distiller = make_distiller(teacher, student).compile(optimizer="adam")
                distiller.fit(x_train, y_train, batch_size=64, epochs=args.epochs, verbose=0)
            predictions = student.predict(x_test, verbose=0).argmax(-1)
            accuracies[name].append(float(np.mean(predictions == y_test)) * 100)
            print(f"seed {seed} {name}: {accuracies[name][-1]:.2f}%", flush=True)

    rows = [
        "| Model | Test accuracy (%) mean ± std | per seed |",
        "|---|---|---|",
        f"| teacher (CNN 32-64, {teacher.count_params():,} params) | {teacher_accuracy * 100:.2f} | |",
    ]
    for name, values in accuracies.items():
        rows.append(
            f"| student (CNN 8-16, {initial.count_params():,} params), {name} | "
            f"{np.mean(values):.2f} ± {np.std(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |"
        )
    table = "\n".join(rows)
    print(f"\nbackend: {keras.config.backend()}, epochs: {args.epochs}, seeds: {args.seeds}\n{table}")
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(
        json.dumps(
            {
                "backend": keras.config.backend(),
                "epochs": args.epochs,
                "seeds": args.seeds,
                "teacher_accuracy": teacher_accuracy,
                "student_accuracy": accuracies,
                "table": table,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
