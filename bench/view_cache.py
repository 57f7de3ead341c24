"""Function matching from a cache of augmented views against uncached, on MNIST-5k.

`KERAS_BACKEND=jax python -m bench.view_cache [--epochs 30] [--seeds 0 1 2] [--views 4 16 64] [--json PATH]`
(`--smoke`: random 28x28 images, a few rows, two epochs; no dataset needed.)

A CNN teacher (`keras_kd.models.mnist_cnn_teacher`) is trained on the 4,000
training images with `keras_kd.datasets.augmentation("mnist_5k")`: shifts of
up to 10 % of the height and width (`RandomTranslation(0.1, 0.1)`, about 3
pixels) and rotations of up to 0.03 of a turn (`RandomRotation(0.03)`,
10.8 degrees), black fill. Then, per seed, one 2x64 MLP student is
initialised and copied to every method, and each trains for the same
`--epochs` at batch 128 (equal steps):

- student alone: `student.fit(x, y)` on the un-augmented images (labels only);
- uncached function matching: `Distiller(teacher, student, augmentation=...,
  alpha=1.0, temperature=1.0)`, the augmentation drawn in every step and the
  teacher run on it (Beyer et al., CVPR 2022; no mixup, which a view cache
  cannot replay);
- view-cached, for each K of `--views`: `TeacherCache.build(teacher, x,
  augmentation=..., views=K)` once (memory-mapped, in a temporary folder),
  then `Distiller(teacher, student, alpha=1.0, temperature=1.0)` on
  `cache.dataset(x, y)`, each row in one of its K views per epoch.

The methods' epochs are *interleaved* (one `fit` epoch of each in turn, so the
machine's load falls on all alike); an epoch's seconds are timed from its
first to its last batch by a callback, and the ratios are of medians over the
epochs after the first (compilation), within the same seed. Prints a table and
writes `--json`.
"""

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import keras
import numpy as np

import keras_kd

BATCH = 128
TEMPERATURE, ALPHA = 1.0, 1.0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of every student (default 30)")
    parser.add_argument("--teacher-epochs", type=int, default=10, help="default 10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--views", type=int, nargs="+", default=[4, 16, 64], help="K of each view cache")
    parser.add_argument("--view-dtype", default=None, help="e.g. float16 (default: float32, as augmented)")
    parser.add_argument("--json", default=None, help="where to write the results")
    parser.add_argument("--smoke", action="store_true", help="tiny random data, for tests")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first epoch compiles); got {args.epochs}.")
    if min(args.views) < 1:
        parser.error(f"--views must be positive integers; got {args.views}.")
    if args.smoke:
        args.epochs, args.teacher_epochs, args.seeds, args.views = 2, 1, args.seeds[:1], [2, 3]
    return args


def load_data(smoke):
    if smoke:
        rng = np.random.default_rng(0)
        x = rng.random((200, 28, 28, 1), dtype="float32")
        return x[:160], rng.integers(0, 10, 160), x[160:], rng.integers(0, 10, 40)
    x_train, y_train = keras_kd.datasets.load("mnist_5k", "train")
    x_test, y_test = keras_kd.datasets.load("mnist_5k", "test")
    return x_train.astype("float32"), y_train, x_test.astype("float32"), y_test


class EpochTimer(keras.callbacks.Callback):
    """Seconds from the start of each epoch to its end (a fit's own set-up excluded)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, batch_size=512, verbose=0), axis=-1) == y))


def main(argv=None):
    args = parse_args(argv)
    started, load_start = time.time(), os.getloadavg()
    x_train, y_train, x_test, y_test = load_data(args.smoke)

    def augmentation(seed):
        return keras_kd.datasets.augmentation("mnist_5k", seed=seed)

    keras.utils.set_random_seed(1234)
    teacher = keras_kd.models.mnist_cnn_teacher((28, 28, 1), 10)
    augmented_teacher = keras.Sequential([keras.Input((28, 28, 1)), augmentation(1234), teacher])
    augmented_teacher.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    augmented_teacher.fit(x_train, y_train, batch_size=64, epochs=args.teacher_epochs, verbose=0)
    teacher_accuracy = accuracy(teacher, x_test, y_test)
    print(f"teacher: {100 * teacher_accuracy:.2f}% test accuracy", flush=True)

    directory = tempfile.mkdtemp(prefix="view_cache_")
    caches, build_seconds = {}, {}
    for views in args.views:
        start = time.perf_counter()
        caches[views] = keras_kd.TeacherCache.build(
            teacher,
            x_train,
            augmentation=augmentation(0),
            views=views,
            seed=0,
            view_dtype=args.view_dtype,
            path=os.path.join(directory, f"views_{views}"),
        )
        build_seconds[views] = time.perf_counter() - start
        print(
            f"cache K={views}: built in {build_seconds[views]:.1f} s, "
            f"{caches[views].augmented_inputs.nbytes / 2**20:.0f} MiB of views",
            flush=True,
        )

    methods = ["student alone", "function matching, uncached"] + [f"view-cached, K={k}" for k in args.views]
    results = {method: {"accuracy": [], "epoch_seconds": []} for method in methods}
    for seed in args.seeds:
        keras.utils.set_random_seed(seed)
        initial = keras_kd.models.mlp_student((28, 28, 1), 10).get_weights()

        def new_student(initial=initial):
            student = keras_kd.models.mlp_student((28, 28, 1), 10)
            student.set_weights(initial)
            return student

        runs = {}
        student = new_student()
        student.compile(
            optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        runs[methods[0]] = (student, student, dict(x=x_train, y=y_train, batch_size=BATCH))
        uncached = keras_kd.Distiller(
            teacher, new_student(), augmentation=augmentation(seed), temperature=TEMPERATURE, alpha=ALPHA
        ).compile(optimizer=keras.optimizers.Adam(1e-3))
        runs[methods[1]] = (uncached.student, uncached, dict(x=x_train, y=y_train, batch_size=BATCH))
        for views, method in zip(args.views, methods[2:]):
            distiller = keras_kd.Distiller(teacher, new_student(), temperature=TEMPERATURE, alpha=ALPHA)
            distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
            runs[method] = (
                distiller.student,
                distiller,
                dict(x=caches[views].dataset(x_train, y_train, batch_size=BATCH, seed=seed)),
            )
        timers = {method: EpochTimer() for method in methods}
        for epoch in range(args.epochs):
            for method, (_, model, data) in runs.items():
                model.fit(**data, epochs=epoch + 1, initial_epoch=epoch, callbacks=[timers[method]], verbose=0)
        for method, (trained, _, _) in runs.items():
            results[method]["accuracy"].append(accuracy(trained, x_test, y_test))
            results[method]["epoch_seconds"].append(timers[method].seconds)
        print(
            f"seed {seed}: "
            + ", ".join(f"{method} {100 * results[method]['accuracy'][-1]:.2f}%" for method in methods),
            flush=True,
        )

    def median_epoch(method, index):
        return statistics.median(results[method]["epoch_seconds"][index][1:])

    rows = []
    for method in methods:
        accuracies = 100 * np.asarray(results[method]["accuracy"])
        ratios = [median_epoch(method, i) / median_epoch(methods[0], i) for i in range(len(args.seeds))]
        rows.append(
            {
                "method": method,
                "accuracy_mean": float(accuracies.mean()),
                "accuracy_std": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
                "accuracies": [float(a) for a in accuracies],
                "median_epoch_seconds": statistics.median(median_epoch(method, i) for i in range(len(args.seeds))),
                "ratio_to_student": statistics.median(ratios),
                "ratios_per_seed": ratios,
            }
        )
    steps = args.epochs * math.ceil(len(x_train) / BATCH)
    lines = [
        f"Teacher {100 * teacher_accuracy:.2f}%; every student {steps} steps ({args.epochs} epochs, batch {BATCH}).",
        "",
        "| method | test accuracy (%), mean ± std | per seed | s/epoch (median) | / student alone |",
        "|---|---:|---|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['accuracy_mean']:.2f} ± {row['accuracy_std']:.2f} | "
            + ", ".join(f"{a:.1f}" for a in row["accuracies"])
            + f" | {row['median_epoch_seconds']:.3f} | {row['ratio_to_student']:.2f} |"
        )
    lines.append("")
    lines.append("Cache builds (once per K): " + ", ".join(f"K={k} {s:.1f} s" for k, s in build_seconds.items()))
    print("\n".join(lines), flush=True)
    report = {
        "command": "python -m bench.view_cache " + " ".join(sys.argv[1:] if argv is None else argv),
        "backend": keras.config.backend(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "wall_seconds": time.time() - started,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "versions": {"keras": keras.__version__, "numpy": np.__version__},
        "augmentation": keras.saving.serialize_keras_object(augmentation(0))["config"],
        "teacher_accuracy": teacher_accuracy,
        "steps_per_student": steps,
        "cache_build_seconds": build_seconds,
        "view_bytes": {views: int(cache.augmented_inputs.nbytes) for views, cache in caches.items()},
        "rows": rows,
        "epoch_seconds": {method: results[method]["epoch_seconds"] for method in methods},
        "table": "\n".join(lines),
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=1, default=str)
    caches.clear()  # Closes the memory maps before their folder goes.
    shutil.rmtree(directory, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
