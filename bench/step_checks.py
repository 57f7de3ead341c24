"""Profile: the per-step cost of the Distiller's data and schedule checks.

`KERAS_BACKEND=jax python -m bench.step_checks [--data arrays|dataset|generator] [--epochs 1] [--repeats 3]`

A tiny MLP pair (32 features, teacher 32-64-10, student 32-16-10), 2,048
random rows in batches of 32 (64 steps an epoch), a temperature schedule
and labels, so every check runs: the labels of each batch and the
schedule at each step (`keras_kd.fit_checks`). Two Distillers of the same
models train alternately, one epoch each, one with the checks and one
without (`distiller.step_checks.enabled = False`); prints the fastest fit
of each and the difference per step. The checks before training (the
first batch, the schedule over the fit) run in both. What the checks cost
per fit rather than per step (a tf.data pipeline's check is traced once
per fit) spreads over `--epochs`: compare `--epochs 1` with `--epochs 5`.
"""

import argparse
import time

import keras
import numpy as np

import keras_kd

ROWS, FEATURES, CLASSES, BATCH_SIZE = 2048, 32, 10, 32


def mlp(hidden, name):
    inputs = keras.Input((FEATURES,))
    hidden_units = keras.layers.Dense(hidden, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(hidden_units), name=name)


def data(form, x, y):
    """The training data in `form`, made afresh (a generator is used up by one epoch)."""
    if form == "arrays":
        return {"x": x, "y": y, "batch_size": BATCH_SIZE}
    if form == "dataset":
        import tensorflow as tf

        return {"x": tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)}

    def batches():
        while True:  # Endless, as a generator for several epochs must be.
            for start in range(0, ROWS, BATCH_SIZE):
                yield x[start : start + BATCH_SIZE], y[start : start + BATCH_SIZE]

    return {"x": batches(), "steps_per_epoch": ROWS // BATCH_SIZE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["arrays", "dataset", "generator"], default="arrays")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each timed fit (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed fits of each (default 3)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, size=ROWS)
    keras.utils.set_random_seed(0)
    teacher, student = mlp(64, "teacher"), mlp(16, "student")
    # A long decay that stays valid: every step's value is checked.
    temperature = keras.optimizers.schedules.PolynomialDecay(4.0, 100_000, end_learning_rate=1.0)
    distillers = {}
    for checked in (True, False):
        distiller = keras_kd.Distiller(teacher, keras.models.clone_model(student), temperature=temperature, alpha=0.5)
        distiller.step_checks.enabled = checked
        distiller.compile(optimizer="sgd")
        distiller.fit(**data(args.data, x, y), epochs=1, verbose=0)  # Traces/compiles the step.
        distillers[checked] = distiller
    seconds = {True: [], False: []}
    for _ in range(args.repeats):
        for checked, distiller in distillers.items():
            start = time.perf_counter()
            distiller.fit(**data(args.data, x, y), epochs=args.epochs, verbose=0)
            seconds[checked].append(time.perf_counter() - start)
    steps = ROWS // BATCH_SIZE * args.epochs
    on, off = min(seconds[True]), min(seconds[False])
    print(
        f"backend={keras.config.backend()} data={args.data} steps/fit={steps} "
        f"fastest of {args.repeats}: checks on {on * 1e3:.1f} ms/fit, off {off * 1e3:.1f} ms/fit, "
        f"difference {(on - off) / steps * 1e6:+.1f} us/step ({(on - off) / off:+.1%})"
    )


if __name__ == "__main__":
    main()
