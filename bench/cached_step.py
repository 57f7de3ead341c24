"""The cached step against the student's own, interleaved in one process.

`KERAS_BACKEND=torch python -m bench.cached_step` builds the overhead-bound
pair (`bench.pairs.PAIRS["overhead"]`), a cache of its teacher's logits, a
Distiller on that cache and the student alone, then times one epoch of each
in turn, `--epochs` times, and prints the fastest and median epochs and
their ratios. With nothing but these two in the process, it tells a change
to the cached step from the run-to-run spread of `python -m bench`.

`--ablations` adds two Distillers on the same cache that show what the
cached step's parts cost (diagnostics, not configurations a user would run):
`no_logs` keeps the Distiller's loss but updates no metric and logs the loss
alone (as the student alone does), and `bare_kd` also replaces the loss by
the textbook one, `alpha * T**2 * KL + (1 - alpha) * cross-entropy` averaged
over the batch, without the Distiller's handling of unlabelled rows, sample
weights, masks and per-position logits.
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="Timed epochs of each (default 15).")
    parser.add_argument("--rows", type=int, default=16384, help="Rows per epoch, a multiple of 512 (default 16384).")
    parser.add_argument(
        "--ablations", action="store_true", help="Also time the Distiller without its logs, and a bare KD loss."
    )
    args = parser.parse_args(argv)
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
    ratios = ", ".join(
        f"{name} / student {fastest[name] / fastest['student']:.3f} fastest, "
        f"{median[name] / median['student']:.3f} median"
        for name in distillers
    )
    times = ", ".join(f"{name} {fastest[name]:.4f} s" for name in epochs)
    print(f"{keras.config.backend()}: {times} (fastest of {args.epochs}); {ratios}")
    return fastest, median


if __name__ == "__main__":
    main()
