"""Seed 003, CIFAR-10: a ~4.7M-parameter teacher, a 107K-parameter student alone and distilled; accuracy/size/params/latency.

Seed 003 reports (PyTorch, 15 epochs, Adam lr 1e-3 with weight decay 1e-4,
batch 128, random crop and flip, T=4, alpha=0.7):

| Model             | Accuracy (%) | Size (MB) | Parameters | Inference (ms) |
|-------------------|--------------|-----------|------------|----------------|
| Teacher           | 83.13        | 17.81     | 4,664,970  | 111.29         |
| Student baseline  | 72.70        | 0.41      | 106,826    | 27.76          |
| Student distilled | 70.86        | 0.41      | 106,826    | 25.82          |

Here: `keras_kd.models.small_cnn_teacher` (4,694,346 parameters; the seed's
layers are not published) and `small_cnn_student` (106,826, the seed's
count), with the same training settings; the step learning-rate schedule of
the seed is replaced by a constant rate. Both students start from the same
weights. CIFAR-10 must be available locally (`keras_kd.datasets.load`);
`--smoke` runs on random images instead, and says so.

Usage:
    ./run python recipes/cifar10_small_cnn.py --backend jax
    ./run python recipes/cifar10_small_cnn.py --smoke
Writes saved_models/cifar10_small_cnn/: teacher.keras, student_baseline.keras,
student_distilled.keras, history.json, results.json, report.md.
"""

import support  # recipes/support.py, beside this script

RECIPE = "cifar10_small_cnn"
CLAIM = (
    "Seed 003, CIFAR-10, 15 epochs: teacher 83.13% (17.81 MB, 4,664,970 parameters, 111.29 ms); "
    "student baseline 72.70% (0.41 MB, 106,826, 27.76 ms); student distilled 70.86% (25.82 ms)."
)
SEED_003 = {
    "teacher": ("83.13", "17.81", "4,664,970", "111.29"),
    "student_baseline": ("72.70", "0.41", "106,826", "27.76"),
    "student_distilled": ("70.86", "0.41", "106,826", "25.82"),
}
LATENCY_BATCH_SIZE = 128


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=128, learning_rate=1e-3, temperature=4.0, alpha=0.7, augment=True)
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="Adam weight decay (default 1e-4)")
    support.add_architecture_arguments(parser, teacher="small_cnn_teacher", student="small_cnn_student")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=15, datasets=("cifar10", "cifar100"), add_arguments=add_arguments
    )
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import models

    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    output = support.RecipeOutput(args, data, CLAIM)

    fit = support.trainer(
        args, data, lambda _: keras.optimizers.Adam(args.learning_rate, weight_decay=args.weight_decay)
    )

    keras.utils.set_random_seed(args.seed)
    teacher = models.get(args.teacher)(data.input_shape, data.num_classes, name="teacher")
    output.add_history("teacher", fit(teacher, augmentation=support.augmentation(args)))

    keras.utils.set_random_seed(args.seed)
    student_baseline = models.get(args.student)(data.input_shape, data.num_classes, name="student_baseline")
    student_distilled = support.same_initial_weights(student_baseline)
    output.add_history("student_baseline", fit(student_baseline, augmentation=support.augmentation(args)))
    keras.utils.set_random_seed(args.seed)
    distiller = keras_kd.Distiller(
        teacher,
        student_distilled,
        temperature=args.temperature,
        alpha=args.alpha,
        augmentation=support.augmentation(args),
    )
    output.add_history("student_distilled", fit(distiller))

    trained = {"teacher": teacher, "student_baseline": student_baseline, "student_distilled": student_distilled}
    output.save_models(trained)
    comparison = support.compare_models(trained, data, smoke=args.smoke, batch_sizes=(1, LATENCY_BATCH_SIZE))
    rows = []
    for name, model in trained.items():
        measured = comparison.models[name]
        batch_size, milliseconds = support.largest_batch_latency(comparison, name)
        rows.append(
            [
                name,
                f"{measured['test_accuracy']:.2f} ({SEED_003[name][0]})",
                f"{measured['size_mb']:.2f} ({SEED_003[name][1]})",
                f"{support.parameter_count(model):,} ({SEED_003[name][2]})",
                f"{milliseconds:.2f} ({SEED_003[name][3]})",
            ]
        )
    table = support.markdown_table(
        [
            "Model",
            "Accuracy (%) here (seed 003)",
            "Size (MB)",
            "Parameters, PyTorch count",
            f"ms / batch of {batch_size}, p50 (seed: ms, batch not stated)",
        ],
        rows,
    )
    return output.finish(table, {}, comparison)


if __name__ == "__main__":
    support.run(main)
