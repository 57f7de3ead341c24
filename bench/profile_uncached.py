"""Profile: uncached keras_kd KD against core Keras's Distiller, epochs interleaved.

`KERAS_BACKEND=torch python -m bench.profile_uncached [--pair small] [--epochs 5]`

A pair of `bench.pairs` at its own sizes (the small pair: 1,024 random
CIFAR-shaped images, batch 128), logits only. The two Distillers train
alternately, one epoch each, so that load on a shared machine hits both
alike; prints the median and min seconds per epoch and, with --profile, the
top operators of one epoch of each (torch.profiler on torch, cProfile
elsewhere).
"""

import argparse
import cProfile
import io
import pstats
import statistics
import time

import keras

import keras_kd
from bench import workload
from bench.pairs import PAIRS


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=sorted(PAIRS), default="small", help="the pair (default small)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs of each (default 5)")
    parser.add_argument("--profile", action="store_true", help="also print the top operators")
    args = parser.parse_args(argv)

    pair = PAIRS[args.pair]
    batch_size = pair.batch_size[False]
    x, y = workload.random_data(pair.images[False], pair.input_shape[False])
    keras.utils.set_random_seed(0)
    teacher, student = pair.build_teacher(False), pair.build_student(False)
    ours = keras_kd.Distiller(teacher, student, temperature=workload.TEMPERATURE, alpha=workload.ALPHA)
    ours.compile(optimizer=keras.optimizers.Adam(workload.LEARNING_RATE))
    core_student = keras.models.clone_model(student)
    core = workload.core_distiller(teacher, core_student, pair)
    runs = {"keras_kd": ours, "core": core}
    for model in runs.values():  # Warm-up: tracing and compilation.
        model.fit(x[: 2 * batch_size], y[: 2 * batch_size], batch_size=batch_size, epochs=1, verbose=0)
    times = {name: [] for name in runs}
    for _ in range(args.epochs):
        for name, model in runs.items():
            start = time.perf_counter()
            model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
            keras.ops.convert_to_numpy(model.trainable_variables[0])
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(
            f"{name:9s} median {statistics.median(values):.2f} s/epoch, min {min(values):.2f} "
            f"({', '.join(f'{v:.2f}' for v in values)})"
        )
    print(
        f"ratio keras_kd/core: median {statistics.median(times['keras_kd']) / statistics.median(times['core']):.2f}, "
        f"min {min(times['keras_kd']) / min(times['core']):.2f}"
    )
    if args.profile:
        for name, model in runs.items():
            print(f"\n--- {name}: one epoch ---")
            print(_profile(lambda model=model: model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)))


def _profile(run):
    if keras.config.backend() == "torch":
        import torch

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
            run()
        return profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    profile = cProfile.Profile()
    profile.enable()
    run()
    profile.disable()
    stream = io.StringIO()
    pstats.Stats(profile, stream=stream).sort_stats("tottime").print_stats(12)
    return stream.getvalue()[-4000:]


if __name__ == "__main__":
    main()
