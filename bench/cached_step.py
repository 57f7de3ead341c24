"""The cached step against the student's own, interleaved in one process.

`KERAS_BACKEND=torch python -m bench.cached_step` builds the overhead-bound
pair (`bench.pairs.PAIRS["overhead"]`), a cache of its teacher's logits, a
Distiller on that cache and the student alone, then times one epoch of each
in turn, `--epochs` times, and prints the fastest and median epochs, their
ratios, and the median of each round's ratio (`paired`). With nothing but
these two in the process, it tells a change to the cached step from the
run-to-run spread of `python -m bench`.

`--ablations` adds two Distillers on the same cache that show what the
cached step's parts cost (diagnostics, not configurations a user would run):
`no_logs` keeps the Distiller's loss but updates no metric and logs the loss
alone (as the student alone does), and `bare_kd` also replaces the loss by
the textbook one, `alpha * T**2 * KL + (1 - alpha) * cross-entropy` averaged
over the batch, without the Distiller's handling of unlabelled rows, sample
weights, masks and per-position logits.

`--compiled-steps` (JAX only) also times each model's jitted train step
alone, called on one batch already on the device (no data pipeline, no
Python loop of `fit`), and counts the fusions (XLA's kernels) in its
optimized program.

`--eager-steps` (torch only) likewise times each model's train function
alone, called on one batch already converted to tensors: the data path
left out, the step as `fit` runs it.
"""

import argparse
import time

import keras
import numpy as np
from keras import ops

import keras_kd
from bench import workload
from bench.pairs import PAIRS
from keras_kd import cache as kd_cache
from keras_kd import distiller as kd_distiller


def interleaved_seconds(runs, rounds):
    """Times `rounds` rounds of each of `runs` (a dict of names to functions) in turn; the seconds of each, by name."""
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def paired_ratios(seconds, baseline):
    """The median over rounds of each run's seconds over `baseline`'s in the same round.

    Each round times every run back to back, so a slower spell of a shared
    machine slows both sides of a round's ratio: the median of these
    ratios moves less than the ratio of the fastest (or median) epochs.
    """
    return {
        name: float(np.median(np.asarray(values) / np.asarray(seconds[baseline])))
        for name, values in seconds.items()
        if name != baseline
    }


class NoLogsDistiller(keras_kd.Distiller):
    """The Distiller's loss, with no metric updated: the step logs its loss alone."""

    def update_metrics(self, batch, outputs):
        return {"loss": outputs.loss}


class BareKDDistiller(NoLogsDistiller):
    """The textbook KD loss on every row (sparse labels, no weights, no masks), logging its loss alone."""

    def compute_step_loss(self, batch, training):
        logits = self.student(batch.x, training=training)
        temperature, alpha = ops.convert_to_tensor(self.temperature), ops.convert_to_tensor(self.alpha)
        teacher_log_probs = ops.log_softmax(batch.teacher_logits / temperature, axis=-1)
        student_log_probs = ops.log_softmax(logits / temperature, axis=-1)
        kl = ops.sum(ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
        hard = keras.losses.sparse_categorical_crossentropy(batch.y, logits, from_logits=True)
        loss = ops.mean(alpha * temperature * temperature * kl + (1.0 - alpha) * hard)
        return kd_distiller.StepOutputs(loss, logits, {}, None)


ABLATIONS = {"no_logs": NoLogsDistiller, "bare_kd": BareKDDistiller}


def compiled_steps(models, rounds, steps=100):
    """JAX: `{name: (fastest microseconds per step, fusions)}` of each model's jitted step on its batch.

    `models` maps names to `(model, batch)`, each model fitted once (its
    optimizer and metrics built) and `batch` one batch as its step takes it.
    """
    runs, fusions = {}, {}
    for name, (model, batch) in models.items():
        runs[name], fusions[name] = _jitted_step(model, batch, steps)
    seconds = interleaved_seconds(runs, rounds)
    return {name: (min(values) / steps * 1e6, fusions[name]) for name, values in seconds.items()}


def _jitted_step(model, batch, steps):
    """A `_stepper` of `model`'s jitted train step on `batch`, and the fusions in its optimized program."""
    import jax

    state = jax.tree_util.tree_map(
        lambda value: value.copy(),
        (
            [variable.value for variable in model.trainable_variables],
            [variable.value for variable in model.non_trainable_variables],
            [variable.value for variable in model.optimizer.variables],
            [variable.value for variable in model.metrics_variables],
        ),
    )
    batch = jax.device_put(batch)
    step = jax.jit(model.train_step, donate_argnums=0)
    program = step.lower(state, batch).compile().as_text()
    entry = program[program.index("ENTRY") :]
    return _stepper(step, state, batch, steps), sum(" fusion(" in line for line in entry.splitlines())


def eager_steps(models, rounds, steps=64):
    """torch: `{name: (fastest microseconds per step, paired ratio to "student")}` of each model's train function.

    `models` maps names to `(model, batch)` as for `compiled_steps`, one of
    them named "student".
    """
    runs = {}
    for name, (model, batch) in models.items():
        model.make_train_function()
        data = [keras.tree.map_structure(ops.convert_to_tensor, batch)]

        def run(function=model.train_function, data=data):
            for _ in range(steps):
                function(data)

        run()  # Warms up.
        runs[name] = run
    seconds = interleaved_seconds(runs, rounds)
    paired = {"student": 1.0, **paired_ratios(seconds, "student")}
    return {name: (min(values) / steps * 1e6, paired[name]) for name, values in seconds.items()}


def _stepper(step, state, batch, steps):
    """A function running `steps` steps from the last state it reached, and waiting for them."""
    import jax

    current = [state]

    def run():
        state = current[0]
        for _ in range(steps):
            _, state = step(state, batch)
        current[0] = jax.block_until_ready(state)

    run()  # Compiles.
    return run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="Timed epochs of each (default 15).")
    parser.add_argument("--rows", type=int, default=16384, help="Rows per epoch, a multiple of 512 (default 16384).")
    parser.add_argument(
        "--ablations", action="store_true", help="Also time the Distiller without its logs, and a bare KD loss."
    )
    parser.add_argument(
        "--compiled-steps",
        action="store_true",
        help="JAX only: also time each jitted step alone on one batch and count its fusions.",
    )
    parser.add_argument(
        "--eager-steps",
        action="store_true",
        help="torch only: also time each train function alone on one batch of tensors.",
    )
    args = parser.parse_args(argv)
    if args.compiled_steps and keras.config.backend() != "jax":
        parser.error(f"--compiled-steps needs KERAS_BACKEND=jax; Keras runs on {keras.config.backend()!r}.")
    if args.eager_steps and keras.config.backend() != "torch":
        parser.error(f"--eager-steps needs KERAS_BACKEND=torch; Keras runs on {keras.config.backend()!r}.")
    if args.epochs < 1 or args.rows < 512 or args.rows % 512:
        parser.error(f"--epochs must be >= 1 and --rows a multiple of 512; got {args.epochs} and {args.rows}.")
    pair = PAIRS["overhead"]
    x, y = workload.random_data(args.rows, pair.input_shape[False])
    keras.utils.set_random_seed(0)
    teacher, student = pair.build_teacher(False), pair.build_student(False)
    alone = keras.models.clone_model(student)
    classes = {"cached": keras_kd.Distiller, **(ABLATIONS if args.ablations else {})}
    distillers = {}
    for name, distiller_class in classes.items():
        distiller = distiller_class(
            teacher, keras.models.clone_model(student), temperature=workload.TEMPERATURE, alpha=workload.ALPHA
        )
        distillers[name] = distiller.compile(optimizer=keras.optimizers.Adam(workload.LEARNING_RATE))
    cache = kd_cache.TeacherCache.for_distiller(distillers["cached"], x, batch_size=512)
    data = cache.dataset(x, y, batch_size=512, shuffle=True, seed=0)
    alone.compile(
        optimizer=keras.optimizers.Adam(workload.LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    alone.fit(x[:1024], y[:1024], batch_size=512, verbose=0)
    for distiller in distillers.values():
        distiller.fit(data, epochs=1, steps_per_epoch=2, verbose=0)
    epochs = {"student": lambda: alone.fit(x, y, batch_size=512, verbose=0)}
    for name, distiller in distillers.items():
        epochs[name] = lambda distiller=distiller: distiller.fit(data, epochs=1, verbose=0)
    seconds = interleaved_seconds(epochs, args.epochs)
    fastest = {name: min(values) for name, values in seconds.items()}
    median = {name: float(np.median(values)) for name, values in seconds.items()}
    paired = paired_ratios(seconds, "student")
    ratios = ", ".join(
        f"{name} / student {fastest[name] / fastest['student']:.3f} fastest, "
        f"{median[name] / median['student']:.3f} median, {paired[name]:.3f} paired"
        for name in distillers
    )
    times = ", ".join(f"{name} {fastest[name]:.4f} s" for name in epochs)
    print(f"{keras.config.backend()}: {times} (fastest of {args.epochs}); {ratios}")
    if args.compiled_steps or args.eager_steps:
        cached_x, cached_y, _ = data.keras_arrays()

        def first_batch(arrays):
            return keras.tree.map_structure(lambda array: array[:512], arrays)

        models = {"student": (alone, (x[:512], y[:512]))}
        for name, distiller in distillers.items():
            models[name] = (distiller, (first_batch(cached_x), first_batch(cached_y)))
    if args.eager_steps:
        steps = eager_steps(models, args.epochs)
        print(
            "train functions alone: "
            + ", ".join(f"{name} {micros:.0f} us ({ratio:.3f} paired)" for name, (micros, ratio) in steps.items())
        )
    if args.compiled_steps:
        steps = compiled_steps(models, args.epochs)
        print(
            "compiled steps alone: "
            + ", ".join(f"{name} {micros:.0f} us ({count} fusions)" for name, (micros, count) in steps.items())
        )
    return fastest, median, paired


if __name__ == "__main__":
    main()
