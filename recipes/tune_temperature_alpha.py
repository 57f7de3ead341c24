"""Keras Tuner sweep of the distillation temperature and alpha (resumable).

The command `keras-kd tune` under a recipe's name: this script becomes
`python -m keras_kd tune` with the same arguments (same options, checks and
exit status; a signal sent to it reaches the sweep). A CNN teacher is
trained once (kept in OUTPUT_DIR/teacher.keras), then Keras Tuner searches
(T, alpha) for distilling it into a 2x64 MLP student, scoring each trial on
20 % of the training split. Prints the best (T, alpha) and its validation
accuracy; writes trials.csv, trials.json and heatmap.png to
saved_models/tune_temperature_alpha/ (saved_models/smoke/tune_temperature_alpha/
with --smoke). Interrupted, it resumes when run again (add --overwrite to
start afresh).

Usage:
    ./run python recipes/tune_temperature_alpha.py --backend jax
    ./run python recipes/tune_temperature_alpha.py --smoke
    ./run python recipes/tune_temperature_alpha.py --tuner bayesian --max-trials 12 --compare-seeds 0 1 2
All options: --help.
"""

import os
import sys


def main(argv=None):
    """Replaces this process by `python -m keras_kd tune ARGV` (default: this script's arguments)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    os.execv(sys.executable, [sys.executable, "-m", "keras_kd", "tune", *argv])


if __name__ == "__main__":
    main()
