"""The cached step against the student's own, interleaved in one process.

`KERAS_BACKEND=torch python -m bench.cached_step` builds the overhead-bound
pair (`bench.pairs.PAIRS["overhead"]`), a cache of its teacher's logits, a
Distiller on that cache and the student alone, then times one epoch of each
in turn, `--epochs` times, and prints the fastest and median epochs and
their ratios. With nothing but these two in the process, it tells a change
to the cached step from the run-to-run spread of `python -m bench`.
"""

import argparse
import time

import keras
import numpy as np

import keras_kd
from bench import workload
from bench.pairs import PAIRS
from keras_kd import cache as kd_cache


def interleaved_seconds(runs, rounds):
    """Times `rounds` rounds of each of `runs` (a dict of names to functions) in turn; the seconds of each, by name."""
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="Timed epochs of each (default 15).")
    parser.add_argument("--rows", type=int, default=16384, help="Rows per epoch, a multiple of 512 (default 16384).")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.rows < 512 or args.rows % 512:
        parser.error(f"--epochs must be >= 1 and --rows a multiple of 512; got {args.epochs} and {args.rows}.")
    pair = PAIRS["overhead"]
    x, y = workload.random_data(args.rows, pair.input_shape[False])
    keras.utils.set_random_seed(0)
    teacher, student = pair.build_teacher(False), pair.build_student(False)
    alone = keras.models.clone_model(student)
    distiller = keras_kd.Distiller(teacher, student, temperature=workload.TEMPERATURE, alpha=workload.ALPHA)
    distiller.compile(optimizer=keras.optimizers.Adam(workload.LEARNING_RATE))
    cache = kd_cache.TeacherCache.for_distiller(distiller, x, batch_size=512)
    data = cache.dataset(x, y, batch_size=512, shuffle=True, seed=0)
    alone.compile(
        optimizer=keras.optimizers.Adam(workload.LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    alone.fit(x[:1024], y[:1024], batch_size=512, verbose=0)
    distiller.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    epochs = {
        "student": lambda: alone.fit(x, y, batch_size=512, verbose=0),
        "cached": lambda: distiller.fit(data, epochs=1, verbose=0),
    }
    seconds = interleaved_seconds(epochs, args.epochs)
    fastest = {name: min(values) for name, values in seconds.items()}
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    print(
        f"{keras.config.backend()}: student {fastest['student']:.4f} s, cached {fastest['cached']:.4f} s "
        f"(fastest of {args.epochs}); cached / student {fastest['cached'] / fastest['student']:.3f} fastest, "
        f"{median['cached'] / median['student']:.3f} median"
    )
    return fastest, median


if __name__ == "__main__":
    main()
