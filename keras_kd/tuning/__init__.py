"""Keras Tuner sweeps of the distillation temperature and alpha.

- `hypermodel`: `DistillationHyperModel` (a `keras_tuner.HyperModel` that
  builds and trains one `keras_kd.Distiller` per trial, all from one run of
  the teacher, or of each teacher of an ensemble, whose weights it can
  search too) and `Range`, a continuous search range.
- `tuners`: `make_tuner` (GridSearch, RandomSearch, BayesianOptimization or
  Hyperband, each writing a journal of its trials; GridSearch resumes) and
  the journal's `append_journal` / `read_journal`.
- `reports`: `collect_trials`, `best_trial` and `write_reports` (CSV, JSON
  and a heatmap) of a search's project folder.

The sweep that `keras-kd tune` runs on a dataset (teacher, search, reports,
comparison with the usual setting) is an application of these, in
`keras_kd.cli.tune_app`.

Needs keras-tuner (`pip install 'keras_kd[tuning]'`).
"""

from keras_kd.plots import plot_heatmap
from keras_kd.tuning.hypermodel import (
    DEFAULT_ALPHAS,
    DEFAULT_TEMPERATURES,
    OBJECTIVE,
    DistillationHyperModel,
    Range,
)
from keras_kd.tuning.reports import (
    best_trial,
    collect_trials,
    write_reports,
)
from keras_kd.tuning.tuners import (
    JOURNAL_FILE,
    PROJECT_NAME,
    TUNER_KINDS,
    BayesianOptimization,
    GridSearch,
    Hyperband,
    RandomSearch,
    ResumableGridSearchOracle,
    append_journal,
    make_tuner,
    read_journal,
)
