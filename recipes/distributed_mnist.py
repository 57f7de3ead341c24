"""One distillation script under every engine's launcher: torchrun, a JAX job, TensorFlow workers, or alone.

The script is the same in every case; `keras_kd.distributed.initialize()`
reads what the launcher put in the environment and joins the job. It distils
a CNN teacher into a 2x64 MLP on MNIST-5k (embedded, no download) with
global batches of `--batch-size` rows: torch and JAX processes each feed
their own rows of every batch (`process_shard`, `local_batch_size`),
TensorFlow's workers each get the whole data and Keras splits the batches.
However it is launched, the student is the one a single process trains on
the same global batches (within float32 rounding;
tests/test_distributed_recipe.py checks it under each launcher).

A teacher is a trained model every process loads: the first run, alone,
trains and saves it (`--teacher-file`, default `<output dir>/teacher.keras`); a
launched run refuses to start without it.

Usage (from the repository root; `--smoke` for a few steps on 32 images):
    .venv/bin/python recipes/distributed_mnist.py --backend torch         # alone; trains the teacher first
    .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node 2 \\
        recipes/distributed_mnist.py --backend torch                       # two torch processes (gloo on CPUs)
    KERAS_DISTRIBUTION_JOB_ADDRESSES=localhost:12345 KERAS_DISTRIBUTION_NUM_PROCESSES=2 \\
        KERAS_DISTRIBUTION_PROCESS_ID=0 .venv/bin/python recipes/distributed_mnist.py --backend jax   # and ID=1
    TF_CONFIG='{"cluster": {"worker": ["localhost:12345", "localhost:12346"]}, "task": {"type": "worker", "index": 0}}' \\
        .venv/bin/python recipes/distributed_mnist.py --backend tensorflow  # and index 1
Writes, from the chief only, <output dir>/student_<N>_processes.keras and
results_<N>_processes.json (the per-epoch losses; alone, also the student's
and the teacher's test accuracy).
"""

import json
import os

import support  # recipes/support.py, beside this script

RECIPE = "distributed_mnist"


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=64, learning_rate=0.05, temperature=4.0, alpha=0.9)
    parser.add_argument(
        "--teacher-file", default=None, help="a trained teacher (.keras); default <output dir>/teacher.keras"
    )
    parser.add_argument("--teacher-epochs", type=int, default=3, help="epochs of the teacher, when trained (default 3)")


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=3, datasets=("mnist_5k",), add_arguments=add_arguments
    )
    keras = support.select_backend(args.backend)
    import keras_kd
    from keras_kd import distributed, models

    if args.smoke:
        args.batch_size = min(args.batch_size, 8)  # several steps from the smoke run's 32 images
    processes = distributed.initialize()
    data = support.load_data(args.dataset, smoke=args.smoke, seed=args.seed)
    teacher_path = args.teacher_file or os.path.join(args.output_dir, "teacher.keras")
    if not os.path.exists(teacher_path):
        if processes > 1:
            raise SystemExit(
                f"error: no teacher at {teacher_path}: run this script once alone first (it trains and saves "
                "the teacher), or pass --teacher-file PATH."
            )
        train_teacher(keras, models, data, args, teacher_path)

    # Whole global batches only, so that every process runs as many steps.
    rows = len(data.x_train) - len(data.x_train) % args.batch_size
    x, y, _ = distributed.process_shard(data.x_train[:rows], data.y_train[:rows])
    with distributed.scope():
        teacher = keras.saving.load_model(teacher_path)
        keras.utils.set_random_seed(args.seed)  # The same initial student in every process.
        student = models.mlp_student(data.input_shape, data.num_classes, name="student")
        distiller = keras_kd.Distiller(teacher, student, temperature=args.temperature, alpha=args.alpha)
        distiller.compile(optimizer=keras.optimizers.SGD(args.learning_rate))
    history = distiller.fit(
        x, y, batch_size=distributed.local_batch_size(args.batch_size), epochs=args.epochs, shuffle=False, verbose=0
    )
    print(f"process {distributed.rank()} of {processes}: losses {history.history['loss']}")
    if not distributed.is_chief():
        return
    results = {"processes": processes, "global_batch_size": args.batch_size, "loss": history.history["loss"]}
    if processes == 1:
        results["student_test_accuracy"] = support.accuracy(student, data.x_test, data.y_test)
        results["teacher_test_accuracy"] = support.accuracy(teacher, data.x_test, data.y_test)
    student.save(os.path.join(args.output_dir, f"student_{processes}_processes.keras"))
    with open(os.path.join(args.output_dir, f"results_{processes}_processes.json"), "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)
    print(json.dumps(results))


def train_teacher(keras, models, data, args, path):
    """Trains the CNN teacher on the labels, alone, and saves it to `path`."""
    keras.utils.set_random_seed(args.seed)
    teacher = models.mnist_cnn_teacher(data.input_shape, data.num_classes, name="teacher")
    teacher.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(data.x_train, data.y_train, batch_size=args.batch_size, epochs=args.teacher_epochs, verbose=0)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    teacher.save(path)


if __name__ == "__main__":
    support.run(main)
