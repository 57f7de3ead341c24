"""Keras Tuner tuners of a `DistillationHyperModel`, and the journal of their trials.

`make_tuner` builds RandomSearch, GridSearch, BayesianOptimization or
Hyperband, each also writing a journal (`trials_journal.jsonl` in the
project directory: one line per trial start and end, per process) that shows
which trials ran where and when. GridSearch resumes after an interruption
(`ResumableGridSearchOracle`), as the other three already do in Keras Tuner.
"""

import json
import os
import time

import numpy as np

from keras_kd import validation
from keras_kd._optional import import_optional
from keras_kd.backend import _keras_compat
from keras_kd.tuning.hypermodel import OBJECTIVE

keras_tuner = import_optional("keras_tuner", "keras_kd.tuning")

JOURNAL_FILE = "trials_journal.jsonl"
PROJECT_NAME = "search"


class _JournalMixin(_keras_compat.TensorBoardOnlyWithItsCallback):
    """Appends one JSON line per trial start and end to the project's journal.

    (Also lets the TensorFlow backend run without tensorboard installed.)

    Keras Tuner records trials in the oracle; the journal also records which
    process ran each trial and when, which is what shows that a resumed or
    distributed search ran no trial twice.
    """

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

    Keras Tuner 1.4.8 keeps the grid order of the trials and the queue of
    trials whose successor may still be untried in memory only, so a
    GridSearch resumed with `overwrite=False` fails at its first new trial
    (keras-team/keras-tuner#1055). Both follow from the recorded trials, so
    they are rebuilt from them on reload (`_keras_compat.rebuild_grid_order`).
    """

    def set_state(self, state):
        super().set_state(state)
        _keras_compat.rebuild_grid_order(self)


class GridSearch(_JournalMixin, keras_tuner.Tuner):
    """`keras_tuner.GridSearch` that resumes (`ResumableGridSearchOracle`) and writes `trials_journal.jsonl`."""

    def __init__(self, hypermodel=None, objective=None, max_trials=None, seed=None, **kwargs):
        oracle_options = {
            key: kwargs.pop(key)
            for key in (
                "hyperparameters",
                "tune_new_entries",
                "allow_new_entries",
                "max_retries_per_trial",
                "max_consecutive_failed_trials",
            )
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
TUNER_KINDS = tuple(_TUNER_CLASSES)


def make_tuner(
    kind, hypermodel, *, max_trials=None, directory=".", project_name=PROJECT_NAME, overwrite=False, seed=0, **kwargs
):
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
        max_trials = validation.check_positive_int("max_trials", max_trials)
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


def _plain(values):
    return {key: value.item() if isinstance(value, np.generic) else value for key, value in values.items()}
