"""Keras Tuner sweep of the distillation temperature and alpha (resumable).

A thin wrapper over `keras-kd tune` (`keras_kd.cli.tune_app.tune`, with the
command line's options and checks): a CNN teacher is trained once (kept in
OUTPUT_DIR/teacher.keras), then Keras Tuner searches (T, alpha) for
distilling it into a 2x64 MLP student, scoring each trial on 20 % of the
training split. Prints the best (T, alpha) and its
validation accuracy; writes trials.csv, trials.json and heatmap.png to
saved_models/tune_temperature_alpha/. Interrupted, it resumes when run again
(add --overwrite to start afresh).

Usage:
    ./run python recipes/tune_temperature_alpha.py --backend jax
    ./run python recipes/tune_temperature_alpha.py --smoke
    ./run python recipes/tune_temperature_alpha.py --tuner bayesian --max-trials 12 --compare-seeds 0 1 2
All options: --help.
"""

import sys

from keras_kd import cli


def main(argv=None):
    """Runs the sweep with `keras-kd tune` options; returns the exit status."""
    return cli.main(["tune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
