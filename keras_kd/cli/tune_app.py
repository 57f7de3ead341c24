"""The sweep behind `keras-kd tune` and `recipes/tune_temperature_alpha.py`.

`tune(...)` is the whole application of `keras_kd.tuning` to one dataset:
data, a teacher (trained once and kept in `teacher.keras`), the search
(resumed after an interruption unless `overwrite=True`; a chief or worker of
a distributed search when Keras Tuner's environment variables say so), the
reports (`trials.csv`, `trials.json`, `heatmap.png`), and optionally a
comparison of the best setting with the usual one on the test split
(`compare_with_default`).
"""

import json
import os
import tempfile

import keras
import numpy as np

from keras_kd import datasets, launch, models, tuning
from keras_kd.atomic import atomic_open
from keras_kd.cache import TeacherCache
from keras_kd.distiller import Distiller

# The usual setting a sweep is compared against (T=4, alpha=0.9).
DEFAULT_SETTING = (4.0, 0.9)
TEACHER_FILE = "teacher.keras"
# Where `tune` writes unless told otherwise (`keras-kd tune --smoke` writes elsewhere).
DEFAULT_OUTPUT_DIR = launch.default_output_dir("tune_temperature_alpha")


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
    output_dir=DEFAULT_OUTPUT_DIR,
    overwrite=False,
    smoke=False,
    seed=0,
    compare_seeds=(),
    teachers=None,
    teacher_weights=None,
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
        temperatures: Temperatures to try (list) or a `keras_kd.tuning.Range`
            (default `keras_kd.tuning.DEFAULT_TEMPERATURES`; 2 and 8 with
            `smoke`).
        alphas: Alphas to try (list) or a `keras_kd.tuning.Range` (default
            `keras_kd.tuning.DEFAULT_ALPHAS`; 0.5 and 0.9 with `smoke`).
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
        teachers: A trained teacher, or a list of them (an ensemble), to
            distil instead of training one (step 2 is skipped); each takes
            the dataset's images and outputs its classes.
        teacher_weights: With a list of teachers, the weight lists to
            search (`keras_kd.tuning.DistillationHyperModel`'s
            `teacher_weights`); None weighs them equally.
        verbose: Keras Tuner's and Keras's verbosity (0, 1 or 2).
        print_fn: Receives the summary lines.

    Returns:
        A dict: `best` (the best trial's row, None on a worker), `trials`
        (all rows), `paths`, and `comparison` when `compare_seeds` is given.
    """
    if temperatures is None:
        temperatures = (2.0, 8.0) if smoke else tuning.DEFAULT_TEMPERATURES
    if alphas is None:
        alphas = (0.5, 0.9) if smoke else tuning.DEFAULT_ALPHAS
    epochs = epochs or (1 if smoke else 10)
    teacher_epochs = teacher_epochs or (1 if smoke else 8)
    worker = _is_distributed_worker()
    overwrite = overwrite and not worker
    if compare_seeds and isinstance(teachers, (list, tuple)):
        raise ValueError(
            "compare_seeds compares one teacher's tuned and default (T, alpha); it does not take several "
            "teachers. Compare an ensemble's students with keras_kd.report.compare."
        )
    os.makedirs(output_dir, exist_ok=True)
    train, validation_rows, test = _split_data(dataset, data_dir, smoke)
    teacher = teachers
    if teacher is None:
        teacher = prepare_teacher(
            os.path.join(output_dir, TEACHER_FILE),
            dataset,
            train,
            teacher_epochs,
            batch_size,
            seed,
            overwrite,
            print_fn,
        )
    image_shape, num_classes = datasets.image_shape(dataset), datasets.num_classes(dataset)
    hypermodel = tuning.DistillationHyperModel(
        teacher,
        lambda: models.mlp_student(input_shape=image_shape, num_classes=num_classes),
        train,
        validation_rows,
        temperatures=temperatures,
        alphas=alphas,
        learning_rate=learning_rate,
        temperature_decay=temperature_decay,
        teacher_weights=teacher_weights,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    search = tuning.make_tuner(
        tuner, hypermodel, max_trials=max_trials, directory=output_dir, overwrite=overwrite, seed=seed
    )
    search.search(verbose=verbose)
    results = {"best": None, "trials": [], "paths": {}}
    if worker:
        return results
    rows = tuning.collect_trials(search.project_dir)
    best = tuning.best_trial(rows)
    results.update(
        best=best,
        trials=rows,
        paths=tuning.write_reports(
            rows, output_dir, title=f"{dataset}, {tuner} search:\nbest validation accuracy (%) per cell"
        ),
    )
    completed = sum(row["status"] == "COMPLETED" for row in rows)
    print_fn(f"{completed} trials completed; results in {results['paths']['csv']}, {results['paths']['heatmap']}")
    if best is not None:
        weights = f", teacher_weights={best['teacher_weights']}" if "teacher_weights" in best else ""
        print_fn(
            f"Best: temperature={best['temperature']:g}, alpha={best['alpha']:g}{weights} -> "
            f"validation accuracy {100 * best[tuning.OBJECTIVE]:.2f}% (trial {best['trial_id']})"
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
        with atomic_open(os.path.join(output_dir, "comparison.json")) as file:
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


def compare_with_default(
    teacher,
    student_builder,
    train,
    test,
    *,
    tuned,
    default=DEFAULT_SETTING,
    seeds=(0, 1, 2),
    epochs=10,
    batch_size=64,
    learning_rate=1e-3,
):
    """How much of the teacher-student gap the tuned and the default (T, alpha) close.

    For each seed, one student is initialised and copied three times: one
    copy trains on the labels alone, one is distilled with `tuned`, one with
    `default`; same data order, epochs and optimizer. The share of the gap a
    distilled student closes is `(acc_distilled - acc_labels) / (acc_teacher -
    acc_labels)` in test accuracy (1 = reaches the teacher, 0 = no better than
    the labels, negative = worse).

    Args:
        teacher: The trained teacher.
        student_builder: As for `keras_kd.tuning.DistillationHyperModel`.
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
            distiller.fit(
                cache.dataset(*train, batch_size=batch_size, shuffle=True, seed=seed), epochs=epochs, verbose=0
            )
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
