"""Profile: a cached epoch against the student alone, and a sweep on one teacher cache.

`KERAS_BACKEND=jax python -m bench.cache_sweep [--rounds 3] [--sweep] [--trials 9] [--sweep-epochs 1]
[--jax-compilation-cache DIR]`

The overhead-bound pair of `python -m bench` (teacher 784-1024-1024-10,
student 784-32-10, 16,384 random rows, batch 512). First the fastest of
`--rounds` interleaved epochs of the student alone and of cached KD, after a
warm-up, one `fit` per epoch. With `--sweep`, a sweep as Keras Tuner runs
one: `--trials` fresh students, each distilled for `--sweep-epochs` from one
cache (one teacher pass, included), against the same number of students
trained alone plus that teacher pass. A new Distiller per trial pays its own
tracing and compilation, as a tuner's trial does, and the teacher's
fingerprint is computed once and then only checked. With
`--jax-compilation-cache DIR` (JAX only), JAX's persistent compilation cache
in DIR lets every trial after the first reuse the compiled steps.
"""

import argparse
import time

import keras
import numpy as np

import keras_kd
from bench.cached_step import interleaved_seconds

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--sweep", action="store_true")
parser.add_argument("--trials", type=int, default=9)
parser.add_argument("--sweep-epochs", type=int, default=1)
parser.add_argument(
    "--jax-compilation-cache",
    metavar="DIR",
    help="JAX only: keep every compiled step in DIR (JAX's persistent compilation cache), so trials reuse them.",
)
args = parser.parse_args()
if args.jax_compilation_cache:
    if keras.config.backend() != "jax":
        parser.error(f"--jax-compilation-cache needs KERAS_BACKEND=jax; Keras runs on {keras.config.backend()!r}.")
    import jax

    jax.config.update("jax_compilation_cache_dir", args.jax_compilation_cache)
    # By default JAX keeps only compilations of a second or more.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

ROWS, BATCH = 16384, 512
rng = np.random.default_rng(0)
x = rng.random((ROWS, 784), dtype="float32")
y = rng.integers(0, 10, ROWS)


def mlp(hidden, name):
    return keras_kd.models.mlp_student((784,), num_classes=10, hidden_units=hidden, name=name)


def adam():
    return keras.optimizers.Adam(1e-3)


def new_student():
    return mlp((32,), "student")


keras.utils.set_random_seed(0)
teacher = mlp((1024, 1024), "teacher")
student = new_student()
student.compile(optimizer=adam(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
distiller = keras_kd.Distiller(teacher, new_student(), temperature=4.0, alpha=0.9).compile(optimizer=adam())

start = time.perf_counter()
cache = keras_kd.TeacherCache.for_distiller(distiller, x, batch_size=BATCH)
build_seconds = time.perf_counter() - start
data = cache.dataset(x, y, batch_size=BATCH, shuffle=True, seed=0)

runs = {
    "student": lambda: student.fit(x, y, batch_size=BATCH, epochs=1, verbose=0),
    "cached": lambda: distiller.fit(data, epochs=1, verbose=0),
}
for run in runs.values():
    run()  # warm-up: traces and compiles
times = interleaved_seconds(runs, args.rounds)
best = {name: min(values) for name, values in times.items()}
print(
    f"{keras.config.backend()}: student {best['student']:.3f} s/epoch, cached {best['cached']:.3f} s/epoch, "
    f"cached/student {best['cached'] / best['student']:.2f}  (all: "
    + "; ".join(f"{n} " + " ".join(f"{t:.3f}" for t in v) for n, v in times.items())
    + ")"
)

if args.sweep:

    def trial_student():
        model = new_student()
        model.compile(optimizer=adam(), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=BATCH, epochs=args.sweep_epochs, verbose=0)

    def trial_cached():
        model = keras_kd.Distiller(teacher, new_student(), temperature=4.0, alpha=0.9).compile(optimizer=adam())
        model.fit(data, epochs=args.sweep_epochs, verbose=0)

    def timed(fn):
        start = time.perf_counter()
        for _ in range(args.trials):
            fn()
        return time.perf_counter() - start

    students = timed(trial_student)
    start = time.perf_counter()
    sweep_cache = keras_kd.TeacherCache.build(teacher, x, batch_size=BATCH)
    teacher_pass = time.perf_counter() - start
    data = sweep_cache.dataset(x, y, batch_size=BATCH, shuffle=True, seed=0)
    sweep = teacher_pass + timed(trial_cached)
    print(
        f"{keras.config.backend()}: sweep of {args.trials} trials x {args.sweep_epochs} epoch(s): cached sweep "
        f"(teacher pass included) {sweep:.2f} s; {args.trials} x student alone {students:.2f} s + teacher pass "
        f"{teacher_pass:.2f} s = {students + teacher_pass:.2f} s; ratio {sweep / (students + teacher_pass):.2f}"
    )
