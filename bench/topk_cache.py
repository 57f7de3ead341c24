"""Top-k teacher cache against the dense cache: its size, and the student it gives.

    KERAS_BACKEND=jax python -m bench.topk_cache [--seeds 1 2 3] [--top-k 8 32]
        [--temperatures 1 4] [--epochs 15] [--json results.json] [--smoke]

Size: `TeacherCache.nbytes` of a dense cache and of top-k caches (k = 8, 32)
of a teacher with random weights (sizes do not depend on the values), for
1,000 classes (4,096 rows of logits `(rows, classes)`) and 32,000 classes
(16 sequences of 64 tokens, logits `(rows, time, classes)`), with the build
time of each.

Quality: a synthetic 1,000-class task whose classes come in 100 groups of 10
similar ones (class means = group mean + a smaller offset; inputs = class
mean + Gaussian noise), so that a trained teacher spreads its probability
over a class's siblings: a real tail. The teacher (MLP 32-512-512-1000) is
trained once on 60,000 rows; each student (MLP 32-64-1000) is distilled on
another 10,000 labelled rows for the same number of steps from: labels only,
the dense cache, top-k caches (the uniform tail of `keras_kd.cache.topk`,
set for the distillation temperature, `tail_temperature=T`, and at T != 1
also set for T = 1, the default), and the DistillKit treatment (the teacher renormalized over its top-k, zero
mass elsewhere: a dense cache of a teacher whose other logits are pushed
1e4 below its k-th), at each temperature. Reported on 10,000 held-out rows:
accuracy on the true labels, top-1 agreement with the teacher, and the
KL(teacher || student) at T = 1, mean and spread over the seeds.
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings

import keras
import numpy as np
from keras import ops

import keras_kd
from keras_kd.cache import topk

GROUPS, PER_GROUP, FEATURES = 100, 10, 32
GROUP_SCALE, OFFSET_SCALE, NOISE = 1.0, 0.6, 1.4
# The renormalized (DistillKit) teacher: its logits outside the top-k sit this
# far below its k-th largest, so that softmax gives them exactly 0 at T <= 10.
RENORMALIZED_GAP = 1e4


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.topk_cache", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--top-k", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--epochs", type=int, default=15, help="student epochs (the same for every arm)")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one seed: checks that it runs")
    args = parser.parse_args(argv)
    for name in ("epochs", "teacher_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if min(args.top_k) < 1:
        parser.error(f"--top-k must be >= 1; got {args.top_k}")
    return args


# ------------------------------------------------------------------ sizes


def random_teacher(input_shape, classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(classes)(inputs), name=f"random_{classes}")


def measure_sizes(top_ks, smoke):
    shapes = [(1000, (64,) if smoke else (4096,))] + ([] if smoke else [(32000, (16, 64))])
    rows = []
    for classes, leading in shapes:
        keras.utils.set_random_seed(0)
        teacher = random_teacher(leading[1:] + (16,), classes)
        x = np.random.default_rng(0).normal(size=leading + (16,)).astype("float32")
        positions = int(np.prod(leading))
        for top_k in [None, *top_ks]:
            start = time.perf_counter()
            cache = keras_kd.TeacherCache.build(teacher, x, top_k=top_k, batch_size=8 if len(leading) > 1 else 256)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "classes": classes,
                    "logits_shape": list(leading) + [classes],
                    "top_k": top_k,
                    "class_id_dtype": None if top_k is None else str(cache.teacher_top_k[1].dtype),
                    "nbytes": cache.nbytes,
                    "bytes_per_position": cache.nbytes / positions,
                    "build_seconds": seconds,
                }
            )
            del cache
    for row in rows:
        dense = next(r for r in rows if r["classes"] == row["classes"] and r["top_k"] is None)
        row["fraction_of_dense"] = row["nbytes"] / dense["nbytes"]
    return rows


# ---------------------------------------------------------------- quality


def synthetic_task(rows, seed):
    """`(x, y)` of the grouped 1,000-class task; the class means come from seed 0 always."""
    means_rng = np.random.default_rng(0)
    groups = means_rng.normal(size=(GROUPS, FEATURES)) * GROUP_SCALE
    means = (
        groups[np.arange(GROUPS * PER_GROUP) // PER_GROUP]
        + means_rng.normal(size=(GROUPS * PER_GROUP, FEATURES)) * OFFSET_SCALE
    )
    rng = np.random.default_rng(seed)
    y = rng.integers(0, GROUPS * PER_GROUP, rows)
    return (means[y] + rng.normal(size=(rows, FEATURES)) * NOISE).astype("float32"), y


class RenormalizedTopK(keras.Model):
    """The teacher as DistillKit's top-k treatment sees it: its top-k renormalized, zero elsewhere."""

    def __init__(self, teacher, top_k):
        super().__init__(name=f"{teacher.name}_renormalized_top_{top_k}")
        self.teacher, self.top_k = teacher, top_k
        self.built = True

    def call(self, inputs, training=False):
        logits = self.teacher(inputs, training=False)
        values, class_ids, _ = topk.compress(logits, self.top_k)
        floor = ops.min(ops.cast(values, "float32"), axis=-1) - RENORMALIZED_GAP
        return topk.dense_logits(values, class_ids, floor, logits.shape[-1])


def log_softmax(logits):
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def evaluate(student, x, y, teacher_logits):
    logits = student.predict(x, batch_size=1024, verbose=0)
    teacher_log_probs, student_log_probs = log_softmax(teacher_logits), log_softmax(logits)
    kl = np.sum(np.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), -1).mean()
    return {
        "accuracy": float(np.mean(np.argmax(logits, -1) == y)),
        "agreement": float(np.mean(np.argmax(logits, -1) == np.argmax(teacher_logits, -1))),
        "kl_teacher_student": float(kl),
    }


def measure_quality(args):
    classes = GROUPS * PER_GROUP
    teacher_rows, student_rows, test_rows = (2000, 500, 500) if args.smoke else (60000, 10000, 10000)
    x_teacher, y_teacher = synthetic_task(teacher_rows, 1)
    x_train, y_train = synthetic_task(student_rows, 2)
    x_test, y_test = synthetic_task(test_rows, 3)

    keras.utils.set_random_seed(0)
    teacher = keras_kd.models.mlp_student((FEATURES,), classes, (512, 512), name="teacher")
    teacher.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.perf_counter()
    teacher.fit(x_teacher, y_teacher, batch_size=256, epochs=args.teacher_epochs, verbose=0)
    teacher_seconds = time.perf_counter() - start
    teacher_test = teacher.predict(x_test, batch_size=1024, verbose=0)
    probabilities = np.exp(log_softmax(teacher.predict(x_train, batch_size=1024, verbose=0)))
    top_mass = {k: float(np.mean(-np.sort(-probabilities, -1)[:, :k].sum(-1))) for k in args.top_k}
    teacher_summary = {
        "accuracy": float(np.mean(np.argmax(teacher_test, -1) == y_test)),
        "train_seconds": teacher_seconds,
        "top_k_mass_on_student_rows": top_mass,
    }

    shared = {"dense": (teacher, keras_kd.TeacherCache.build(teacher, x_train))}
    for k in args.top_k:
        renormalized = RenormalizedTopK(teacher, k)
        shared[f"top-{k} renormalized"] = (renormalized, keras_kd.TeacherCache.build(renormalized, x_train))

    def caches_at(temperature):
        """The arms at `temperature`: top-k caches with their tail set for it (and for T = 1 if T != 1)."""
        caches = {"dense": shared["dense"]}
        for k in args.top_k:
            caches[f"top-{k}"] = (
                teacher,
                keras_kd.TeacherCache.build(teacher, x_train, top_k=k, tail_temperature=temperature),
            )
            if temperature != 1.0:
                caches[f"top-{k}, tail for T=1"] = (teacher, keras_kd.TeacherCache.build(teacher, x_train, top_k=k))
            caches[f"top-{k} renormalized"] = shared[f"top-{k} renormalized"]
        return caches

    caches = {temperature: caches_at(temperature) for temperature in args.temperatures}

    def student(seed):
        keras.utils.set_random_seed(seed)
        return keras_kd.models.mlp_student((FEATURES,), classes, (64,), name="student")

    results = []
    for seed in args.seeds:
        model = student(seed)
        model.compile(
            optimizer=keras.optimizers.Adam(3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        start = time.perf_counter()
        model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=0)
        results.append(
            {"arm": "labels only", "temperature": None, "seed": seed, "seconds": time.perf_counter() - start}
            | evaluate(model, x_test, y_test, teacher_test)
        )
        for temperature in args.temperatures:
            for arm, (arm_teacher, cache) in caches[temperature].items():
                model = student(seed)
                distiller = keras_kd.Distiller(arm_teacher, model, temperature=temperature, alpha=0.9)
                distiller.compile(optimizer=keras.optimizers.Adam(3e-3))
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # The tail-for-T=1 arm at T != 1, on purpose.
                    data = cache.dataset(x_train, y_train, batch_size=128, seed=seed)
                    distiller.fit(data, epochs=args.epochs, verbose=0)
                results.append(
                    {"arm": arm, "temperature": temperature, "seed": seed, "seconds": time.perf_counter() - start}
                    | {"cache_nbytes": cache.nbytes}
                    | evaluate(model, x_test, y_test, teacher_test)
                )
    return teacher_summary, results


# ----------------------------------------------------------------- report


def _spread(values):
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def report_lines(sizes, teacher_summary, results):
    lines = ["| classes | logits shape | stored | class ids | bytes | bytes per position | of dense | build s |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in sizes:
        stored = "dense" if row["top_k"] is None else f"top-{row['top_k']}"
        lines.append(
            f"| {row['classes']:,} | {tuple(row['logits_shape'])} | {stored} | {row['class_id_dtype'] or '—'} | "
            f"{row['nbytes']:,} | {row['bytes_per_position']:.0f} | {row['fraction_of_dense']:.4f} | "
            f"{row['build_seconds']:.2f} |"
        )
    masses = ", ".join(f"top-{k} {mass:.3f}" for k, mass in teacher_summary["top_k_mass_on_student_rows"].items())
    lines += [
        "",
        f"Teacher: held-out accuracy {teacher_summary['accuracy']:.4f}; mean probability mass in its "
        f"{masses} (the student's rows, T = 1).",
        "",
        "| temperature | student trained from | accuracy | agreement with teacher | KL(teacher ‖ student), T=1 | s per run |",
        "|---|---|---|---|---|---|",
    ]
    keys = []
    for result in results:
        key = (result["temperature"], result["arm"])
        if key not in keys:
            keys.append(key)
    keys.sort(key=lambda key: -1.0 if key[0] is None else key[0])
    for temperature, arm in keys:
        runs = [r for r in results if (r["temperature"], r["arm"]) == (temperature, arm)]
        lines.append(
            f"| {'—' if temperature is None else f'{temperature:g}'} | {arm} | "
            f"{_spread([r['accuracy'] for r in runs])} | {_spread([r['agreement'] for r in runs])} | "
            f"{_spread([r['kl_teacher_student'] for r in runs])} | {np.mean([r['seconds'] for r in runs]):.1f} |"
        )
    return lines


def main(argv=None, print_fn=print):
    args = parse_args(argv)
    if args.smoke:
        args.seeds, args.top_k, args.temperatures = args.seeds[:1], args.top_k[:1], args.temperatures[:1]
        args.epochs, args.teacher_epochs = 1, 1
    started = time.time()
    sizes = measure_sizes(args.top_k, args.smoke)
    teacher_summary, results = measure_quality(args)
    run = {
        "command": "python -m bench.topk_cache " + " ".join(argv if argv is not None else sys.argv[1:]),
        "backend": keras.config.backend(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "wall_seconds": time.time() - started,
        "load_average_at_end": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "keras": keras.__version__,
    }
    print_fn(
        f"{run['backend']}: {run['command']} (started {run['started_utc']}, {run['wall_seconds']:.0f} s, "
        f"load average at the end {', '.join(f'{v:.2f}' for v in run['load_average_at_end'])})"
    )
    for line in report_lines(sizes, teacher_summary, results):
        print_fn(line)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"run": run, "sizes": sizes, "teacher": teacher_summary, "results": results}, file, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
