"""Seed 002, CIFAR-10: ResNet-50 teacher -> ResNet-18 student, CE + KL + feature matching, T 5 -> 1 and alpha decaying.

Seed 002 fine-tunes a pre-trained ResNet-50 on CIFAR-10, then trains a
ResNet-18 student on cross-entropy + KL divergence + an intermediate-feature
loss, with the temperature decaying from 5.0 to 1.0 and alpha decaying (from
the soft targets towards the labels) over training; it compares the teacher,
the distilled student and a student trained without distillation by accuracy,
parameter count and inference latency. It publishes no numbers.

Here: `keras_kd.models.resnet50` (`--teacher-weights imagenet` to start from
ImageNet, where the weights are in the Keras cache; the images are fed in
[0, 1], without ImageNet's preprocessing, and fine-tuning adapts to that) and
`keras_kd.models.resnet18`; temperature and alpha are
`keras.optimizers.schedules.PolynomialDecay` schedules of the training step,
which the Distiller evaluates inside its compiled step; the feature term is a
FitNets hint (`keras_kd.FeatureMatch`, MSE through a trainable 1x1 adapter)
between `conv4_block6_out` of the teacher and `conv4_block2_out` of the
student. Both students start from the same weights. CIFAR-10 must be
available locally; `--smoke` runs on random images and tiny models instead,
and says so.

Usage:
    ./run python recipes/cifar10_resnet50_to_resnet18.py --backend jax
    ./run python recipes/cifar10_resnet50_to_resnet18.py --smoke
Writes saved_models/cifar10_resnet50_to_resnet18/: teacher.keras,
student_baseline.keras, student_distilled.keras, history.json, results.json,
report.md.
"""

import support  # recipes/support.py, beside this script

RECIPE = "cifar10_resnet50_to_resnet18"
CLAIM = (
    "Seed 002, CIFAR-10: fine-tuned ResNet-50 teacher -> ResNet-18 student with CE + KL + feature "
    "loss and T 5 -> 1, alpha decaying, compared by accuracy, parameters and latency (no numbers published)."
)


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=128, learning_rate=0.05, temperature=5.0, alpha=0.9, augment=True)
    parser.add_argument("--final-temperature", type=float, default=1.0, help="T at the last step (default 1)")
    parser.add_argument("--final-alpha", type=float, default=0.1, help="alpha at the last step (default 0.1)")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    parser.add_argument("--teacher-weights", default=None, help="None (default), 'imagenet' or a weights file")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default 5e-4)")
    parser.add_argument("--feature-loss", choices=("mse", "cosine", "attention"), default="mse")
    parser.add_argument("--feature-weight", type=float, default=1.0, help="weight of the feature term (default 1)")
    parser.add_argument("--teacher-feature-layer", default="conv4_block6_out")
    parser.add_argument("--student-feature-layer", default="conv4_block2_out")
    support.add_architecture_arguments(parser, teacher="resnet50", student="resnet18")


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
    total_steps = support.steps_per_epoch(len(data.x_train), args.batch_size) * args.epochs

    fit = support.trainer(args, data, lambda epochs: support.sgd_cosine(args, len(data.x_train), epochs))

    keras.utils.set_random_seed(args.seed)
    teacher_options = {"weights": args.teacher_weights} if args.teacher_weights else {}
    teacher = models.get(args.teacher)(data.input_shape, data.num_classes, name="teacher", **teacher_options)
    output.add_history("teacher", fit(teacher, epochs=teacher_epochs, augmentation=support.augmentation(args)))

    keras.utils.set_random_seed(args.seed + 1)
    student_distilled = models.get(args.student)(data.input_shape, data.num_classes, name="student_distilled")
    student_baseline = support.same_initial_weights(student_distilled)
    output.add_history("student_baseline", fit(student_baseline, augmentation=support.augmentation(args)))

    def decay(start, end):
        return keras.optimizers.schedules.PolynomialDecay(start, total_steps, end_learning_rate=end)

    keras.utils.set_random_seed(args.seed + 1)
    distiller = keras_kd.Distiller(
        teacher,
        student_distilled,
        temperature=decay(args.temperature, args.final_temperature),
        alpha=decay(args.alpha, args.final_alpha),
        feature_matches=[
            keras_kd.FeatureMatch(
                teacher_layer=args.teacher_feature_layer,
                student_layer=args.student_feature_layer,
                loss=args.feature_loss,
                weight=args.feature_weight,
                name="feature_loss",
            )
        ],
        augmentation=support.augmentation(args),
    )
    output.add_history("student_distilled", fit(distiller))

    trained = {"teacher": teacher, "student_baseline": student_baseline, "student_distilled": student_distilled}
    output.save_models(trained)
    comparison = support.compare_models(trained, data, smoke=args.smoke)
    history = output.histories["student_distilled"]
    schedule = support.epoch_table(
        history,
        [
            ("temperature", "T", ".2f"),
            ("alpha", "alpha", ".2f"),
            ("distillation_loss", "KL", ".4f"),
            ("student_loss", "CE", ".4f"),
            ("feature_loss", "Feature", ".4f"),
            ("val_accuracy", "Test accuracy (%)", ".2f"),
        ],
    )
    return output.finish(
        f"### Distilled student, per epoch (T and alpha at the epoch's last step)\n\n{schedule}",
        {"teacher_epochs": teacher_epochs, "total_steps": total_steps},
        comparison,
    )


if __name__ == "__main__":
    support.run(main)
