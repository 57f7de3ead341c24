"""The results of a search, read from its project folder: rows, the best trial, files.

`collect_trials` reads what Keras Tuner recorded (it works for a running,
resumed or distributed search alike), `best_trial` picks the best completed
row, and `write_reports` writes `trials.csv`, `trials.json` and a
temperature x alpha `heatmap.png` (`keras_kd.plots.plot_heatmap`).
"""

import csv
import json
import os

from keras_kd import plots
from keras_kd.atomic import atomic_open
from keras_kd.tuning.hypermodel import OBJECTIVE


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
            key: value for key, value in trial["hyperparameters"]["values"].items() if not key.startswith("tuner/")
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
    with atomic_open(paths["csv"], newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    with atomic_open(paths["json"]) as file:
        json.dump({"objective": OBJECTIVE, "best": best_trial(rows), "trials": rows}, file, indent=2)
    plots.plot_heatmap(rows, paths["heatmap"], title=title, objective=OBJECTIVE)
    return paths
