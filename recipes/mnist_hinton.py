"""Hinton et al. (2015), MNIST: a 1200-1200 teacher, the 800-800 net alone, and distilled at T=20.

The paper ("Distilling the Knowledge in a Neural Network", section 3), on the
full 60,000 MNIST training images: the teacher (two 1200-unit ReLU layers,
dropout, inputs jittered by up to 2 pixels) makes 67 test errors, the 800-800
net trained on the labels alone 146, and the same net distilled from the
teacher at temperature 20, 74.

Here, offline, it runs on the embedded 5,000-image MNIST subset (4,000 train,
1,000 test); `--dataset mnist` uses the full set where it is available. The
teacher sees the training images plus shifted copies (the jitter); both
students see the original images only and start from the same weights.

Usage:
    ./run python recipes/mnist_hinton.py --backend jax --epochs 20
    ./run python recipes/mnist_hinton.py --smoke
Writes saved_models/mnist_hinton/: teacher.keras, student_alone.keras,
student_distilled.keras, history.json, results.json, report.md.
"""

import support  # recipes/support.py, beside this script

RECIPE = "mnist_hinton"
CLAIM = (
    "Hinton, Vinyals & Dean (2015), full MNIST: teacher 1200-1200 67 test errors; "
    "800-800 net alone 146; 800-800 distilled at T=20 74 (of 10,000)."
)


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=128, learning_rate=1e-3, temperature=20.0, alpha=0.9)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--jitter-copies", type=int, default=2, help="shifted copies per teacher image (default 2)")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=20, datasets=("mnist_5k", "mnist"), add_arguments=add_arguments
    )
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import datasets, models

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    output = support.RecipeOutput(args, data, CLAIM)
    teacher_epochs = args.teacher_epochs or args.epochs
    x_jittered, y_jittered = datasets.add_shifted_copies(
        data.x_train, data.y_train, copies=args.jitter_copies, max_shift=2, seed=args.seed
    )

    fit = support.trainer(args, data, lambda _: keras.optimizers.Adam(args.learning_rate))

    keras.utils.set_random_seed(args.seed)
    teacher = models.hinton_mnist_teacher(data.input_shape, data.num_classes)
    output.add_history("teacher", fit(teacher, x_jittered, y_jittered, epochs=teacher_epochs))

    keras.utils.set_random_seed(args.seed)
    student_alone = models.hinton_mnist_student(data.input_shape, data.num_classes, name="student_alone")
    student_distilled = support.same_initial_weights(student_alone)
    output.add_history("student_alone", fit(student_alone))
    keras.utils.set_random_seed(args.seed)
    distiller = keras_kd.Distiller(teacher, student_distilled, temperature=args.temperature, alpha=args.alpha)
    output.add_history("student_distilled", fit(distiller))

    trained = {"teacher": teacher, "student_alone": student_alone, "student_distilled": student_distilled}
    output.save_models(trained)
    comparison = support.compare_models(trained, data, smoke=args.smoke)
    paper = {"teacher": 67, "student_alone": 146, "student_distilled": 74}
    errors = {name: support.test_errors(comparison, name) for name in trained}
    table = support.markdown_table(
        ["Model", "Test errors here", "Error rate here (%)", "Paper: test errors of 10,000"],
        [
            [name, f"{errors[name]} / {len(data.y_test)}", f"{100 * errors[name] / len(data.y_test):.2f}", paper[name]]
            for name in trained
        ],
    )
    return output.finish(
        table,
        {
            "test_errors": errors,
            "test_examples": len(data.y_test),
            "paper_test_errors": paper,
            "teacher_epochs": teacher_epochs,
        },
        comparison,
    )


if __name__ == "__main__":
    support.run(main)
