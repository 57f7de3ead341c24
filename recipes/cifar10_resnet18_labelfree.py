"""Seed 001, CIFAR-10: a ResNet-18 teacher, then a ResNet-18 student distilled without labels (alpha=1).

Seed 001 reports: the ResNet-18 teacher (CIFAR stem) reaches ~87% validation
accuracy in 10 epochs; a ResNet-18 student trained only on the teacher's
temperature-softened outputs (KL divergence, no label ever) reaches ~85-86%
after 10 epochs, its distillation loss falling from ~5.4 to ~0.2.

Here: `keras_kd.models.resnet18` for both, SGD with Nesterov momentum and a
cosine learning-rate decay, flips and 4-pixel shifts
(`keras_kd.datasets.augmentation`); the student gets the same augmentation
inside the Distiller's step (the teacher sees the same images) and
`Distiller.fit(x)` receives no labels: the test labels only measure accuracy.
CIFAR-10 must be available locally; `--smoke` runs on random images and tiny
models instead, and says so.

Usage:
    ./run python recipes/cifar10_resnet18_labelfree.py --backend jax
    ./run python recipes/cifar10_resnet18_labelfree.py --smoke
Writes saved_models/cifar10_resnet18_labelfree/: teacher.keras,
student_labelfree.keras, history.json, results.json, report.md.
"""

import support  # recipes/support.py, beside this script

RECIPE = "cifar10_resnet18_labelfree"
CLAIM = (
    "Seed 001, CIFAR-10: ResNet-18 teacher ~87% validation accuracy in 10 epochs; "
    "label-free ResNet-18 student ~85-86% after 10 epochs, distillation loss ~5.4 -> ~0.2."
)


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=128, learning_rate=0.05, temperature=4.0, alpha=1.0, augment=True)
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default 5e-4)")
    support.add_architecture_arguments(parser, teacher="resnet18", student="resnet18")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=10, datasets=("cifar10", "cifar100"), add_arguments=add_arguments
    )
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import models

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    output = support.RecipeOutput(args, data, CLAIM)
    teacher_epochs = args.teacher_epochs or args.epochs
    fit = support.trainer(args, data, lambda epochs: support.sgd_cosine(args, len(data.x_train), epochs))

    keras.utils.set_random_seed(args.seed)
    teacher = models.get(args.teacher)(data.input_shape, data.num_classes, name="teacher")
    output.add_history("teacher", fit(teacher, epochs=teacher_epochs, augmentation=support.augmentation(args)))

    keras.utils.set_random_seed(args.seed + 1)  # Another initialization than the teacher's.
    student = models.get(args.student)(data.input_shape, data.num_classes, name="student_labelfree")
    distiller = keras_kd.Distiller(
        teacher, student, temperature=args.temperature, alpha=args.alpha, augmentation=support.augmentation(args)
    )
    if distiller.uses_labels:
        raise ValueError(f"This recipe is label-free: --alpha must be 1.0; got {args.alpha}.")
    output.add_history("student_labelfree", fit(distiller, label_free=True))

    trained = {"teacher": teacher, "student_labelfree": student}
    output.save_models(trained)
    comparison = support.compare_models(trained, data, smoke=args.smoke)
    student_history = output.histories["student_labelfree"]
    table = support.markdown_table(
        ["Model", "Epochs", "Test accuracy (%) here", "Seed 001", "Distillation loss, first -> last epoch"],
        [
            ["teacher", teacher_epochs, f"{comparison.models['teacher']['test_accuracy']:.2f}", "~87", ""],
            [
                "student_labelfree",
                args.epochs,
                f"{comparison.models['student_labelfree']['test_accuracy']:.2f}",
                "~85-86",
                f"{student_history['distillation_loss'][0]:.3f} -> {student_history['distillation_loss'][-1]:.3f}"
                " (seed: ~5.4 -> ~0.2)",
            ],
        ],
    )
    return output.finish(table, {"teacher_epochs": teacher_epochs}, comparison)


if __name__ == "__main__":
    support.run(main)
