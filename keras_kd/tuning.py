"""Keras Tuner sweeps of the distillation temperature and alpha.

`DistillationHyperModel` is a `keras_tuner.HyperModel`: `build(hp)` makes a
compiled `keras_kd.Distiller` for one (temperature, alpha) (and optionally a
learning rate and a temperature decay), `fit(hp, model, ...)` trains it. It
runs the frozen teacher once per sweep: the teacher's logits on the training
and validation rows go into a `keras_kd.cache.TeacherCache` at the first
trial, and every trial trains from that cache. Each trial starts from the
same student weights and sees the batches in the same order, so trials differ
only in their hyperparameters.

Any Keras Tuner tuner drives it; `make_tuner` builds RandomSearch,
GridSearch, BayesianOptimization or Hyperband, each also writing a journal
(`trials_journal.jsonl` in the project directory: one line per trial start
and end, per process) that shows which trials ran where and when.

`tune(...)` is the whole sweep behind `recipes/tune_temperature_alpha.py` and
`keras-kd tune`: data, a teacher (trained once and kept in `teacher.keras`),
the search (resumed after an interruption unless `overwrite=True`; a chief or
worker of a distributed search when Keras Tuner's environment variables say
so), and the reports: `trials.csv`, `trials.json`, `heatmap.png`.
"""

import collections
import csv
import functools
import json
import math
import numbers
import os
import tempfile
import time

import keras
import keras_tuner
import numpy as np

from keras_kd import datasets, models, validation
from keras_kd.cache import TeacherCache
from keras_kd.distiller import Distiller

OBJECTIVE = "val_accuracy"
DEFAULT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)
# The usual setting a sweep is compared against (T=4, alpha=0.9).
DEFAULT_SETTING = (4.0, 0.9)
JOURNAL_FILE = "trials_journal.jsonl"
TEACHER_FILE = "teacher.keras"
PROJECT_NAME = "search"
TUNER_KINDS = ("grid", "random", "bayesian", "hyperband")


class Range(collections.namedtuple("Range", ["min_value", "max_value", "sampling"])):
    """A continuous search range, `Range(1.0, 20.0, "log")`, instead of a list of values.

    Args:
        min_value: Smallest value.
        max_value: Largest value (> `min_value`).
        sampling: `"linear"` or `"log"` (Keras Tuner's sampling).
    """

    __slots__ = ()

    def __new__(cls, min_value, max_value, sampling="linear"):
        return super().__new__(cls, min_value, max_value, sampling)


class DistillationHyperModel(keras_tuner.HyperModel):
    """Searches the temperature and alpha of a `keras_kd.Distiller`.

    Hyperparameters (Keras Tuner names): `temperature`, `alpha`, and, when
    given as lists or ranges, `learning_rate`; `temperature_decay` (a
    Boolean) when `temperature_decay="tune"`.

    Args:
        teacher: The trained teacher, a `keras.Model` that outputs logits.
        student_builder: A callable with no arguments that returns a new,
            untrained student `keras.Model` (logits out).
        train_data: `(x, y)` arrays to train each student on.
        validation_data: `(x, y)` arrays that score each trial
            (`val_accuracy`).
        temperatures: Values to try (a list) or a `Range`; all > 0.
        alphas: Values to try (a list) or a `Range`; all in [0, 1]. Alpha
            weighs the distillation term (1 = labels unused).
        learning_rate: Adam's learning rate: a float (fixed), a list or a
            `Range` (searched).
        temperature_decay: `False` (constant T), `True` (T moves linearly to
            1 over `epochs` epochs, as in seed 002's 5 -> 1), or `"tune"` (try
            both).
        epochs: Epochs per trial (Hyperband sets its own).
        batch_size: Batch size of training and validation.
        seed: Seed of the student's initial weights and of the batch order,
            the same for every trial.
        compile_options: Extra arguments of `Distiller.compile` (e.g.
            `{"jit_compile": False}`: for tiny models, compiling each
            trial's step can take longer than training it).

    Raises:
        TypeError: for a teacher that is not a `keras.Model`, a student
            builder that is not callable or does not return a `keras.Model`,
            or hyperparameter values that are not numbers.
        ValueError: for temperatures <= 0, alphas outside [0, 1], empty or
            repeated value lists, a bad `Range`, data of mismatched lengths,
            or a student whose inputs or outputs do not fit the teacher.

    Example:

    ```python
    hypermodel = keras_kd.tuning.DistillationHyperModel(
        teacher, lambda: keras_kd.models.mlp_student(), (x_train, y_train), (x_val, y_val),
        temperatures=[2.0, 4.0, 8.0], alphas=[0.5, 0.9],
    )
    tuner = keras_kd.tuning.make_tuner("grid", hypermodel, directory="sweeps")
    tuner.search()
    best = tuner.get_best_hyperparameters()[0].values
    ```
    """

    def __init__(
        self,
        teacher,
        student_builder,
        train_data,
        validation_data,
        *,
        temperatures=DEFAULT_TEMPERATURES,
        alphas=DEFAULT_ALPHAS,
        learning_rate=1e-3,
        temperature_decay=False,
        epochs=5,
        batch_size=64,
        seed=0,
        compile_options=None,
        name="distillation",
    ):
        super().__init__(name=name, tunable=True)
        validation.check_model("teacher", teacher)
        if not callable(student_builder) or isinstance(student_builder, keras.Model):
            raise TypeError(
                "`student_builder` must be a callable with no arguments that "
                f"returns a new keras.Model; got {student_builder!r} of type "
                f"{type(student_builder).__name__}."
            )
        self.teacher = teacher
        self.student_builder = student_builder
        self.train_data = _check_arrays("train_data", train_data)
        self.validation_data = _check_arrays("validation_data", validation_data)
        self.temperatures = _check_space("temperatures", temperatures, validation.check_temperature)
        self.alphas = _check_space("alphas", alphas, validation.check_alpha)
        self.learning_rate = _check_space("learning_rate", learning_rate, _check_learning_rate)
        if temperature_decay not in (False, True, "tune"):
            raise ValueError(
                "`temperature_decay` must be False, True or 'tune'; got "
                f"{temperature_decay!r}."
            )
        self.temperature_decay = temperature_decay
        self.epochs = _check_positive_int("epochs", epochs)
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.seed = seed
        self.compile_options = dict(compile_options or {})
        self._caches = None
        # Fail now, not inside a trial (Keras Tuner would log and retry it).
        self._make_distiller(_first_value(self.temperatures), _first_value(self.alphas), False)

    # ------------------------------------------------------------ keras_tuner API

    def build(self, hp):
        """A compiled Distiller for the hyperparameters drawn in `hp`."""
        temperature = _declare(hp, "temperature", self.temperatures)
        alpha = _declare(hp, "alpha", self.alphas)
        learning_rate = _declare(hp, "learning_rate", self.learning_rate)
        decay = self.temperature_decay
        if decay == "tune":
            decay = hp.Boolean("temperature_decay", default=False)
        distiller = self._make_distiller(temperature, alpha, decay)
        distiller.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            metrics=["accuracy"],
            **self.compile_options,
        )
        return distiller

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` on the cached training data; returns the History.

        Keras Tuner passes its callbacks (and, for Hyperband, `epochs` and
        `initial_epoch`) here; other `search(...)` keyword arguments go to
        `Distiller.fit`. The data were given to the constructor.

        Raises:
            TypeError: if `search` was given data (`x`, `y`,
                `validation_data`).
        """
        if args or {"x", "y", "validation_data"} & set(kwargs):
            # Fatal: Keras Tuner would otherwise log it and retry the trial.
            raise keras_tuner.errors.FatalTypeError(
                "DistillationHyperModel trains on the data given to its "
                "constructor; call tuner.search() without x, y or validation_data."
            )
        train_cache, validation_cache = self._teacher_caches()
        kwargs.setdefault("epochs", self.epochs)
        train = train_cache.dataset(
            *self.train_data, batch_size=self.batch_size, shuffle=True, seed=self.seed
        )
        validation_set = validation_cache.dataset(
            *self.validation_data, batch_size=self.batch_size, shuffle=False
        )
        return model.fit(train, validation_data=validation_set, **kwargs)

    # ------------------------------------------------------------ helpers

    def make_student(self):
        """A new student from `student_builder`, with the sweep's initial weights."""
        keras.utils.set_random_seed(self.seed)
        student = self.student_builder()
        if not isinstance(student, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "`student_builder` must return a keras.Model; it returned "
                f"{student!r} of type {type(student).__name__}."
            )
        return student

    def _make_distiller(self, temperature, alpha, decay):
        if decay:
            steps = self.epochs * math.ceil(len(self.train_data[0]) / self.batch_size)
            temperature = keras.optimizers.schedules.PolynomialDecay(
                temperature, decay_steps=steps, end_learning_rate=min(temperature, 1.0)
            )
        return Distiller(self.teacher, self.make_student(), temperature=temperature, alpha=alpha)

    def _teacher_caches(self):
        """The teacher's outputs on the training and validation rows, computed once."""
        if self._caches is None:
            self._caches = tuple(
                TeacherCache.build(self.teacher, x, batch_size=max(self.batch_size, 256))
                for x, _ in (self.train_data, self.validation_data)
            )
        return self._caches


# ------------------------------------------------------------------ tuners


class _JournalMixin:
    """Appends one JSON line per trial start and end to the project's journal.

    (Also lets the TensorFlow backend run without tensorboard installed.)

    Keras Tuner records trials in the oracle; the journal also records which
    process ran each trial and when, which is what shows that a resumed or
    distributed search ran no trial twice.
    """

    def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
        # Keras Tuner 1.4.8 imports tensorboard for every trial on the
        # TensorFlow backend, even without a TensorBoard callback; TensorFlow
        # 2.21 no longer installs it. Only a TensorBoard callback needs it.
        if any(type(callback).__name__ == "TensorBoard" for callback in callbacks):
            super()._configure_tensorboard_dir(callbacks, trial, execution)

    def on_trial_begin(self, trial):
        append_journal(self.project_dir, "started", trial.trial_id, self.tuner_id, trial.hyperparameters.values)
        super().on_trial_begin(trial)

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        append_journal(
            self.project_dir,
            "ended",
            trial.trial_id,
            self.tuner_id,
            trial.hyperparameters.values,
            status=str(trial.status),
        )


class ResumableGridSearchOracle(keras_tuner.oracles.GridSearchOracle):
    """`GridSearchOracle` whose grid bookkeeping survives a reload.

    Keras Tuner 1.4.8 keeps the grid order of the trials (`_ordered_ids`)
    and the queue of trials whose successor may still be untried
    (`_populate_next`) in memory only, so a GridSearch resumed with
    `overwrite=False` fails at its first new trial with a `KeyError`
    (keras-team/keras-tuner#1055). Both follow from the recorded trials, so
    they are rebuilt from them on reload.
    """

    def set_state(self, state):
        super().set_state(state)
        tried = sorted(
            (trial for trial in self.trials.values() if trial.hyperparameters.values),
            key=functools.cmp_to_key(
                lambda a, b: self._compare(a.hyperparameters.values, b.hyperparameters.values)
            ),
        )
        self._ordered_ids = type(self._ordered_ids)()
        for trial in tried:
            self._ordered_ids.insert(trial.trial_id)
        # Re-queuing a trial whose successor was tried is harmless: the
        # oracle skips it.
        self._populate_next = list(self.end_order)


class GridSearch(_JournalMixin, keras_tuner.Tuner):
    """`keras_tuner.GridSearch` that resumes (`ResumableGridSearchOracle`) and writes `trials_journal.jsonl`."""

    def __init__(self, hypermodel=None, objective=None, max_trials=None, seed=None, **kwargs):
        oracle_options = {
            key: kwargs.pop(key)
            for key in ("hyperparameters", "tune_new_entries", "allow_new_entries", "max_retries_per_trial", "max_consecutive_failed_trials")
            if key in kwargs
        }
        oracle = ResumableGridSearchOracle(objective=objective, max_trials=max_trials, seed=seed, **oracle_options)
        super().__init__(oracle, hypermodel, **kwargs)


class RandomSearch(_JournalMixin, keras_tuner.RandomSearch):
    """`keras_tuner.RandomSearch` that writes `trials_journal.jsonl`."""


class BayesianOptimization(_JournalMixin, keras_tuner.BayesianOptimization):
    """`keras_tuner.BayesianOptimization` that writes `trials_journal.jsonl`."""


class Hyperband(_JournalMixin, keras_tuner.Hyperband):
    """`keras_tuner.Hyperband` that writes `trials_journal.jsonl`."""


_TUNER_CLASSES = {
    "grid": GridSearch,
    "random": RandomSearch,
    "bayesian": BayesianOptimization,
    "hyperband": Hyperband,
}


def make_tuner(kind, hypermodel, *, max_trials=None, directory=".", project_name=PROJECT_NAME, overwrite=False, seed=0, **kwargs):
    """A Keras Tuner tuner of the given kind that maximizes `val_accuracy`.

    Args:
        kind: `"grid"`, `"random"`, `"bayesian"` or `"hyperband"`.
        hypermodel: A `DistillationHyperModel`.
        max_trials: Trials to run; `None` runs the whole grid (`"grid"`) or
            10 trials. Hyperband sizes itself from `hypermodel.epochs` (its
            `max_epochs`) and ignores it.
        directory: Parent directory of the project.
        project_name: The project's folder name.
        overwrite: `False` resumes a search found in the project folder.
        seed: Seed of the search's random choices.
        **kwargs: Passed to the tuner (e.g. `factor` for Hyperband).

    Returns:
        The tuner.

    Raises:
        ValueError: for an unknown `kind` or `max_trials` < 1.
    """
    if kind not in _TUNER_CLASSES:
        raise ValueError(f"Unknown tuner {kind!r}. Valid: {', '.join(TUNER_KINDS)}.")
    if max_trials is not None:
        max_trials = _check_positive_int("max_trials", max_trials)
    options = dict(
        hypermodel=hypermodel,
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        directory=os.fspath(directory),
        project_name=project_name,
        overwrite=overwrite,
        seed=seed,
        **kwargs,
    )
    if kind == "hyperband":
        options["max_epochs"] = hypermodel.epochs
    else:
        options["max_trials"] = max_trials if max_trials or kind == "grid" else 10
    return _TUNER_CLASSES[kind](**options)


def append_journal(project_dir, event, trial_id, tuner_id, values, **extra):
    """Appends one event to `<project_dir>/trials_journal.jsonl`.

    One `write` of one line on a file opened for appending, flushed to disk:
    processes sharing the file (distributed workers) do not interleave lines,
    and a killed process leaves whole lines.
    """
    record = {
        "event": event,
        "trial_id": trial_id,
        "tuner_id": tuner_id,
        "pid": os.getpid(),
        "time": time.time(),
        "values": _plain(values),
        **extra,
    }
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    descriptor = os.open(os.path.join(project_dir, JOURNAL_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_journal(project_dir):
    """The events of `<project_dir>/trials_journal.jsonl`, in order (empty if none)."""
    path = os.path.join(project_dir, JOURNAL_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as file:
        return [json.loads(line) for line in file if line.strip()]


# ------------------------------------------------------------------ results


def collect_trials(project_dir):
    """Every trial Keras Tuner recorded in `project_dir`, as plain dicts.

    Read from the trials' own `trial.json` files, so it works for a running,
    resumed or distributed search alike.

    Returns:
        A list sorted by trial id of dicts with `trial_id`, `status`, the
        hyperparameter values (Keras Tuner's `tuner/...` bookkeeping left
        out) and `val_accuracy` (the trial's best epoch; None if unfinished).
    """
    rows = []
    if not os.path.isdir(project_dir):
        return rows
    for entry in sorted(os.listdir(project_dir)):
        path = os.path.join(project_dir, entry, "trial.json")
        if not entry.startswith("trial_") or not os.path.exists(path):
            continue
        with open(path) as file:
            trial = json.load(file)
        values = {
            key: value
            for key, value in trial["hyperparameters"]["values"].items()
            if not key.startswith("tuner/")
        }
        score = trial.get("score")
        rows.append(
            {
                "trial_id": trial["trial_id"],
                "status": trial["status"],
                **values,
                **_hyperband_epochs(trial["hyperparameters"]["values"]),
                OBJECTIVE: None if score is None else float(score),
            }
        )
    return rows


def _hyperband_epochs(values):
    return {"epochs": values["tuner/epochs"]} if "tuner/epochs" in values else {}


def best_trial(rows):
    """The completed row with the highest `val_accuracy` (None if none)."""
    completed = [row for row in rows if row["status"] == "COMPLETED" and row[OBJECTIVE] is not None]
    return max(completed, key=lambda row: row[OBJECTIVE]) if completed else None


def write_reports(rows, output_dir, title=""):
    """Writes `trials.csv`, `trials.json` and `heatmap.png` of the trials.

    Returns:
        A dict of the three paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "csv": os.path.join(output_dir, "trials.csv"),
        "json": os.path.join(output_dir, "trials.json"),
        "heatmap": os.path.join(output_dir, "heatmap.png"),
    }
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with _atomic_open(paths["csv"]) as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with _atomic_open(paths["json"]) as file:
        json.dump({"objective": OBJECTIVE, "best": best_trial(rows), "trials": rows}, file, indent=2)
    plot_heatmap(rows, paths["heatmap"], title=title)
    return paths


def plot_heatmap(rows, path, title=""):
    """A temperature x alpha heatmap of the best `val_accuracy` per cell.

    Where several trials share a cell (other learning rates, decay on/off,
    Hyperband rounds) the cell shows the best. Untried cells are blank; the
    best cell is outlined.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    scored = [row for row in rows if row.get(OBJECTIVE) is not None]
    temperatures = sorted({row["temperature"] for row in scored})
    alphas = sorted({row["alpha"] for row in scored})
    grid = np.full((len(temperatures), len(alphas)), np.nan)
    for row in scored:
        cell = temperatures.index(row["temperature"]), alphas.index(row["alpha"])
        grid[cell] = np.nanmax([grid[cell], 100.0 * row[OBJECTIVE]])
    figure, axes = pyplot.subplots(
        figsize=(max(5.5, 2.0 + 0.9 * len(alphas)), max(3.5, 1.5 + 0.6 * len(temperatures)))
    )
    image = axes.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    axes.set_xticks(range(len(alphas)), [f"{value:g}" for value in alphas])
    axes.set_yticks(range(len(temperatures)), [f"{value:g}" for value in temperatures])
    axes.set_xlabel("alpha (weight of the distillation term)")
    axes.set_ylabel("temperature T")
    axes.set_title(title or "validation accuracy (%)", fontsize=10)
    figure.colorbar(image, ax=axes, label="validation accuracy (%)")
    if scored:
        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2
        for (row_index, column_index), value in np.ndenumerate(grid):
            if np.isfinite(value):
                axes.text(column_index, row_index, f"{value:.1f}", ha="center", va="center", fontsize=8, color="black" if value > middle else "white")
        best_row, best_column = np.unravel_index(np.nanargmax(grid), grid.shape)
        axes.add_patch(pyplot.Rectangle((best_column - 0.5, best_row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


# ------------------------------------------------------------------ the sweep


def tune(
    dataset="mnist_5k",
    *,
    data_dir=None,
    tuner="grid",
    max_trials=None,
    epochs=None,
    teacher_epochs=None,
    temperatures=None,
    alphas=None,
    learning_rate=1e-3,
    temperature_decay=False,
    batch_size=64,
    output_dir="saved_models/tune_temperature_alpha",
    overwrite=False,
    smoke=False,
    seed=0,
    compare_seeds=(),
    verbose=1,
    print_fn=print,
):
    """Sweeps temperature and alpha on `dataset`; writes and returns the results.

    1. Loads `dataset`; holds out 20 % of its training split (by class, seed
       0) to score trials; the test split is used only by `compare_seeds`.
    2. Trains the teacher (a CNN, `keras_kd.models.mnist_cnn_teacher`) once
       and keeps it in `output_dir/teacher.keras`; a resumed or distributed
       search reloads that file, so every trial distils the same teacher.
    3. Runs the Keras Tuner search of a 2x64 MLP student
       (`keras_kd.models.mlp_student`) in `output_dir/search/`, showing Keras
       Tuner's progress. With `overwrite=False`, a search found there resumes:
       completed trials are kept, the interrupted one runs again, none runs
       twice. When `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
       `KERASTUNER_ORACLE_PORT` are set, this process is the chief (tuner id
       containing "chief": it serves the search) or a worker (it runs trials).
    4. Writes `trials.csv`, `trials.json` and `heatmap.png` in `output_dir`
       and prints the best (T, alpha) (not on workers).
    5. With `compare_seeds`, trains per seed a labels-only student and two
       distilled ones, with the best and the default (T=4, alpha=0.9), and
       reports the share of the teacher-student gap in test accuracy each
       closes (`compare_with_default`).

    Args:
        dataset: A name from `keras_kd.datasets.DATASET_NAMES`.
        data_dir: TFDS data directory (see `keras_kd.datasets.load`).
        tuner: `"grid"`, `"random"`, `"bayesian"` or `"hyperband"`.
        max_trials: Trials to run (default: the whole grid, or 10).
        epochs: Student epochs per trial (default 10; 1 with `smoke`).
        teacher_epochs: Teacher epochs (default 8; 1 with `smoke`).
        temperatures: Temperatures to try (list) or a `Range` (default
            `DEFAULT_TEMPERATURES`; 2 and 8 with `smoke`).
        alphas: Alphas to try (list) or a `Range` (default `DEFAULT_ALPHAS`;
            0.5 and 0.9 with `smoke`).
        learning_rate: Fixed float, list or `Range`.
        temperature_decay: `False`, `True` or `"tune"`.
        batch_size: Training batch size.
        output_dir: Where everything goes.
        overwrite: Start afresh (deletes the search and retrains the teacher).
            Ignored on distributed workers, which must not delete the chief's
            search.
        smoke: Tiny and fast: 256 training and 128 validation rows, one
            epoch, by default 2 temperatures x 2 alphas.
        seed: Seed of the teacher, of every student's initial weights, of the
            batch order and of the search.
        compare_seeds: Seeds for `compare_with_default` (empty: skip it).
        verbose: Keras Tuner's and Keras's verbosity (0, 1 or 2).
        print_fn: Receives the summary lines.

    Returns:
        A dict: `best` (the best trial's row, None on a worker), `trials`
        (all rows), `paths`, and `comparison` when `compare_seeds` is given.
    """
    if temperatures is None:
        temperatures = (2.0, 8.0) if smoke else DEFAULT_TEMPERATURES
    if alphas is None:
        alphas = (0.5, 0.9) if smoke else DEFAULT_ALPHAS
    epochs = epochs or (1 if smoke else 10)
    teacher_epochs = teacher_epochs or (1 if smoke else 8)
    worker = _is_distributed_worker()
    overwrite = overwrite and not worker
    os.makedirs(output_dir, exist_ok=True)
    train, validation_rows, test = _split_data(dataset, data_dir, smoke)
    teacher = prepare_teacher(
        os.path.join(output_dir, TEACHER_FILE), dataset, train, teacher_epochs, batch_size, seed, overwrite, print_fn
    )
    image_shape, num_classes = datasets.image_shape(dataset), datasets.num_classes(dataset)
    hypermodel = DistillationHyperModel(
        teacher,
        lambda: models.mlp_student(input_shape=image_shape, num_classes=num_classes),
        train,
        validation_rows,
        temperatures=temperatures,
        alphas=alphas,
        learning_rate=learning_rate,
        temperature_decay=temperature_decay,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    search = make_tuner(tuner, hypermodel, max_trials=max_trials, directory=output_dir, overwrite=overwrite, seed=seed)
    search.search(verbose=verbose)
    results = {"best": None, "trials": [], "paths": {}}
    if worker:
        return results
    rows = collect_trials(search.project_dir)
    best = best_trial(rows)
    results.update(
        best=best,
        trials=rows,
        paths=write_reports(rows, output_dir, title=f"{dataset}, {tuner} search:\nbest validation accuracy (%) per cell"),
    )
    completed = sum(row["status"] == "COMPLETED" for row in rows)
    print_fn(f"{completed} trials completed; results in {results['paths']['csv']}, {results['paths']['heatmap']}")
    if best is not None:
        print_fn(
            f"Best: temperature={best['temperature']:g}, alpha={best['alpha']:g} -> "
            f"validation accuracy {100 * best[OBJECTIVE]:.2f}% (trial {best['trial_id']})"
        )
    if compare_seeds and best is not None:
        comparison = compare_with_default(
            teacher,
            hypermodel.student_builder,
            train,
            test,
            tuned=(best["temperature"], best["alpha"]),
            seeds=compare_seeds,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=best.get("learning_rate", learning_rate),
        )
        results["comparison"] = comparison
        with _atomic_open(os.path.join(output_dir, "comparison.json")) as file:
            json.dump(comparison, file, indent=2)
        for line in describe_comparison(comparison):
            print_fn(line)
    return results


def prepare_teacher(path, dataset, train, epochs, batch_size, seed, overwrite, print_fn=print):
    """The sweep's teacher: loaded from `path`, or trained and saved there.

    Saving is first-writer-wins (written to a temporary file, then linked
    into place), and every process then loads the file, so concurrent
    processes of one distributed search all distil the same teacher.
    """
    if os.path.exists(path) and not overwrite:
        print_fn(f"Teacher: {path}")
        return keras.saving.load_model(path, safe_mode=True)
    keras.utils.set_random_seed(seed)
    teacher = models.mnist_cnn_teacher(
        input_shape=datasets.image_shape(dataset),
        num_classes=datasets.num_classes(dataset),
        filters=(16, 32) if datasets.image_shape(dataset)[0] >= 16 else (32,),
    )
    teacher.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print_fn(f"Training the teacher for {epochs} epochs ...")
    teacher.fit(*train, batch_size=batch_size, epochs=epochs, verbose=0)
    descriptor, temporary = tempfile.mkstemp(suffix=".keras", dir=os.path.dirname(path) or ".")
    os.close(descriptor)
    try:
        teacher.save(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # Another process of this search saved its teacher first.
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return keras.saving.load_model(path, safe_mode=True)


# ------------------------------------------------------------------ measurement


def compare_with_default(teacher, student_builder, train, test, *, tuned, default=DEFAULT_SETTING, seeds=(0, 1, 2), epochs=10, batch_size=64, learning_rate=1e-3):
    """How much of the teacher-student gap the tuned and the default (T, alpha) close.

    For each seed, one student is initialised and copied three times: one
    copy trains on the labels alone, one is distilled with `tuned`, one with
    `default`; same data order, epochs and optimizer. The share of the gap a
    distilled student closes is `(acc_distilled - acc_labels) / (acc_teacher -
    acc_labels)` in test accuracy (1 = reaches the teacher, 0 = no better than
    the labels, negative = worse).

    Args:
        teacher: The trained teacher.
        student_builder: As for `DistillationHyperModel`.
        train: `(x, y)` training arrays.
        test: `(x, y)` test arrays.
        tuned: `(temperature, alpha)` found by the sweep.
        default: `(temperature, alpha)` to compare with.
        seeds: Student seeds.
        epochs, batch_size, learning_rate: Training of every student.

    Returns:
        A JSON-ready dict with per-seed accuracies (%) and shares, and their
        means over the seeds.
    """
    cache = TeacherCache.build(teacher, train[0], batch_size=256)
    teacher_accuracy = _accuracy(teacher, test)
    per_seed = []
    for seed in seeds:
        keras.utils.set_random_seed(seed)
        initial = student_builder()
        accuracies = {}
        for label, setting in (("labels_only", None), ("tuned", tuned), ("default", default)):
            student = keras.models.clone_model(initial)
            student.set_weights(initial.get_weights())
            optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
            # alpha=0 trains exactly as student.fit on the labels would, and
            # keeps the data order of the distilled students.
            temperature, alpha = setting or (default[0], 0.0)
            distiller = Distiller(teacher, student, temperature=temperature, alpha=alpha)
            distiller.compile(optimizer=optimizer)
            distiller.fit(cache.dataset(*train, batch_size=batch_size, shuffle=True, seed=seed), epochs=epochs, verbose=0)
            accuracies[label] = _accuracy(student, test)
        # With no gap (a student as good as the teacher) a share means nothing.
        gap = teacher_accuracy - accuracies["labels_only"]
        per_seed.append(
            {
                "seed": seed,
                **accuracies,
                **{
                    f"{label}_gap_share": (accuracies[label] - accuracies["labels_only"]) / gap if gap > 0 else None
                    for label in ("tuned", "default")
                },
            }
        )
    keys = ("labels_only", "tuned", "default", "tuned_gap_share", "default_gap_share")
    return {
        "teacher": teacher_accuracy,
        "tuned_setting": {"temperature": tuned[0], "alpha": tuned[1]},
        "default_setting": {"temperature": default[0], "alpha": default[1]},
        "epochs": epochs,
        "per_seed": per_seed,
        "mean": {key: _mean([row[key] for row in per_seed]) for key in keys},
    }


def describe_comparison(comparison):
    """Printable lines of a `compare_with_default` result."""
    mean = comparison["mean"]
    tuned, default = comparison["tuned_setting"], comparison["default_setting"]

    def share(value):
        return "n/a" if value is None else f"{100 * value:.1f}%"

    return [
        f"Test accuracy (mean of seeds {[row['seed'] for row in comparison['per_seed']]}): "
        f"teacher {comparison['teacher']:.2f}%, labels-only student {mean['labels_only']:.2f}%",
        f"  tuned   T={tuned['temperature']:g}, alpha={tuned['alpha']:g}: {mean['tuned']:.2f}%, "
        f"closes {share(mean['tuned_gap_share'])} of the gap",
        f"  default T={default['temperature']:g}, alpha={default['alpha']:g}: {mean['default']:.2f}%, "
        f"closes {share(mean['default_gap_share'])} of the gap",
    ]


# ------------------------------------------------------------------ internals


def _split_data(dataset, data_dir, smoke):
    """(train, validation, test) arrays; validation is 20 % of train, by class."""
    from sklearn.model_selection import train_test_split

    x, y = datasets.load(dataset, "train", data_dir=data_dir)
    test = datasets.load(dataset, "test", data_dir=data_dir)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    if smoke:
        return (x_train[:256], y_train[:256]), (x_val[:128], y_val[:128]), (test[0][:128], test[1][:128])
    return (x_train, y_train), (x_val, y_val), test


def _accuracy(model, data):
    logits = model.predict(data[0], batch_size=256, verbose=0)
    return float(100.0 * np.mean(np.argmax(logits, axis=-1) == data[1]))


def _mean(values):
    values = [value for value in values if value is not None]
    return float(np.mean(values)) if values else None


def _is_distributed_worker():
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def _check_arrays(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"`{name}` must be a pair (x, y) of arrays; got {type(data).__name__}.")
    x, y = (np.asarray(part) for part in data)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"`{name}` must hold as many labels as inputs (and at least one); got "
            f"{len(x)} inputs and {len(y)} labels."
        )
    return x, y


def _check_space(name, values, check):
    """A validated `Range`, a tuple of floats (a choice), or one float (fixed)."""
    if isinstance(values, Range):
        low = check(values.min_value, name=f"{name}.min_value")
        high = check(values.max_value, name=f"{name}.max_value")
        if not low < high:
            raise ValueError(f"`{name}` is {values}: min_value must be < max_value.")
        if values.sampling not in ("linear", "log"):
            raise ValueError(f"`{name}.sampling` must be 'linear' or 'log'; got {values.sampling!r}.")
        return Range(low, high, values.sampling)
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        return check(values, name=name)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list of numbers or a keras_kd.tuning.Range; got "
            f"{values!r} of type {type(values).__name__}."
        )
    checked = tuple(check(value, name=f"{name}[{index}]") for index, value in enumerate(values))
    if not checked:
        raise ValueError(f"`{name}` is empty; give at least one value.")
    if len(set(checked)) != len(checked):
        raise ValueError(f"`{name}` repeats a value: {list(checked)}.")
    return checked


def _check_learning_rate(value, name="learning_rate"):
    value = validation.check_real_number(name, value, schedulable=False)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0 (typically 1e-4 to 1e-2); got {value!r}.")
    return value


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def _declare(hp, name, space):
    """Declares `name` in `hp` from a checked space; returns its current value."""
    if isinstance(space, Range):
        return hp.Float(name, space.min_value, space.max_value, sampling=space.sampling)
    if isinstance(space, tuple):
        if len(space) == 1:
            return hp.Fixed(name, space[0])
        return hp.Choice(name, list(space), ordered=True)
    return space  # A fixed float: not a hyperparameter of the search.


def _first_value(space):
    if isinstance(space, Range):
        return space.min_value
    return space[0] if isinstance(space, tuple) else space


def _plain(values):
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in values.items()}


class _atomic_open:
    """Opens `path` for writing text; the file appears complete or not at all."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        descriptor, self.temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(self.path)}.", dir=os.path.dirname(self.path) or "."
        )
        self.file = os.fdopen(descriptor, "w", newline="")
        return self.file

    def __exit__(self, error_type, error, traceback):
        self.file.close()
        if error_type is None:
            os.replace(self.temporary, self.path)
        else:
            os.remove(self.temporary)
