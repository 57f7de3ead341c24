"""keras_kd.tuning: real Keras Tuner searches of temperature and alpha, resume, distribution."""

import importlib
import inspect
import json
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time

import keras
import keras_tuner
import numpy as np
import pytest

import keras_kd
from conftest import REQUESTED_BACKEND, make_data, make_mlp
from keras_kd import cache as kd_cache
from keras_kd import tuning
from keras_kd.cli import tune_app

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(REPOSITORY, "recipes", "tune_temperature_alpha.py")


@pytest.fixture(scope="module")
def teacher():
    # Untrained: the searches below test the mechanics, not the accuracy.
    keras.utils.set_random_seed(0)
    return make_mlp(16, name="teacher", batchnorm=False)


@pytest.fixture
def cache_builds(monkeypatch):
    """Rows of each TeacherCache.build call: the teacher's runs over the data."""
    builds = []
    original_build = kd_cache.TeacherCache.build.__func__

    def counting_build(cls, model, x, **kwargs):
        builds.append(len(x))
        return original_build(cls, model, x, **kwargs)

    monkeypatch.setattr(kd_cache.TeacherCache, "build", classmethod(counting_build))
    return builds


def make_hypermodel(teacher, **options):
    # Eager steps: for these tiny models, compiling each trial's step would
    # take longer than the training (the recipe tests run compiled steps).
    options = {
        "temperatures": [2.0, 8.0],
        "alphas": [0.5, 0.9],
        "epochs": 1,
        "batch_size": 32,
        "compile_options": {"run_eagerly": True},
        **options,
    }
    return tuning.DistillationHyperModel(
        teacher,
        lambda: make_mlp(4, name="student", batchnorm=False),
        make_data(64, seed=1),
        make_data(32, seed=2),
        **options,
    )


def search(teacher, tmp_path, kind, **options):
    hypermodel = make_hypermodel(teacher)
    tuner = tuning.make_tuner(kind, hypermodel, directory=tmp_path, **options)
    tuner.search(verbose=0)
    return tuner, tuning.collect_trials(tuner.project_dir)


@pytest.mark.parametrize(
    "kind, options, expected_trials",
    [("grid", {}, 4), ("random", {"max_trials": 2}, 2), ("bayesian", {"max_trials": 2}, 2)],
)
def test_each_tuner_runs_a_real_search(teacher, tmp_path, cache_builds, kind, options, expected_trials):
    tuner, rows = search(teacher, tmp_path, kind, **options)
    # The teacher ran once per sweep: over the training rows and the validation rows.
    assert cache_builds == [64, 32]
    assert len(rows) == expected_trials
    assert all(row["status"] == "COMPLETED" and 0.0 <= row["val_accuracy"] <= 1.0 for row in rows)
    settings = [(row["temperature"], row["alpha"]) for row in rows]
    assert len(set(settings)) == len(settings)
    assert set(settings) <= {(t, a) for t in (2.0, 8.0) for a in (0.5, 0.9)}
    best = tuner.get_best_hyperparameters()[0].values
    assert (best["temperature"], best["alpha"]) == (
        tuning.best_trial(rows)["temperature"],
        tuning.best_trial(rows)["alpha"],
    )
    events = tuning.read_journal(tuner.project_dir)
    assert [e["event"] for e in events] == ["started", "ended"] * expected_trials


def test_a_reloaded_grid_search_runs_only_the_untried_cells(teacher, tmp_path):
    search(teacher, tmp_path, "grid", max_trials=2)
    _, rows = search(teacher, tmp_path, "grid", max_trials=4, overwrite=False)
    settings = [(row["temperature"], row["alpha"]) for row in rows]
    assert len(rows) == 4 and len(set(settings)) == 4
    assert all(row["status"] == "COMPLETED" for row in rows)


def test_hyperband_runs_and_continues_trials(teacher, tmp_path):
    hypermodel = make_hypermodel(teacher, epochs=2)
    tuner = tuning.make_tuner("hyperband", hypermodel, directory=tmp_path, factor=2)
    tuner.search(verbose=0)
    rows = tuning.collect_trials(tuner.project_dir)
    assert len(rows) >= 2 and all(row["status"] == "COMPLETED" for row in rows)
    assert {row["epochs"] for row in rows} == {1, 2}  # Hyperband's rounds


def test_trials_start_from_the_same_student(teacher):
    hypermodel = make_hypermodel(teacher)
    first, second = hypermodel.make_student(), hypermodel.make_student()
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_optional_hyperparameters(teacher):
    hypermodel = make_hypermodel(teacher, learning_rate=[1e-3, 1e-2], temperature_decay="tune", epochs=2)
    hp = keras_tuner.HyperParameters()
    hp.values.update({"temperature_decay": True})
    distiller = hypermodel.build(hp)
    assert {"temperature", "alpha", "learning_rate", "temperature_decay"} <= set(hp.values)
    hypermodel.fit(hp, distiller, verbose=0)
    # The decay moves T from 2 towards 1 over the training.
    assert 1.0 <= float(keras.ops.convert_to_numpy(distiller.temperature)) < 2.0
    continuous = make_hypermodel(teacher, temperatures=tuning.Range(1.0, 20.0, "log"))
    hp = keras_tuner.HyperParameters()
    continuous.build(hp)
    assert 1.0 <= hp.values["temperature"] <= 20.0


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"temperatures": [0.0, 2.0]}, ValueError, r"`temperatures\[0\]` must be > 0"),
        ({"temperatures": [-1.0]}, ValueError, "must be > 0"),
        ({"temperatures": tuning.Range(0.0, 5.0)}, ValueError, "temperatures.min_value"),
        ({"temperatures": tuning.Range(5.0, 1.0)}, ValueError, "min_value must be < max_value"),
        ({"temperatures": []}, ValueError, "is empty"),
        ({"temperatures": [2.0, 2.0]}, ValueError, "repeats a value"),
        ({"temperatures": "4"}, TypeError, "list of numbers"),
        ({"alphas": [0.5, 1.5]}, ValueError, r"`alphas\[1\]` must be in \[0, 1\]"),
        ({"alphas": [float("nan")]}, ValueError, "must be finite"),
        ({"alphas": [True]}, TypeError, "real number"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate"),
        ({"temperature_decay": "yes"}, ValueError, "temperature_decay"),
        ({"epochs": 0}, ValueError, "epochs"),
    ],
)
def test_bad_search_spaces_are_refused(teacher, options, error, message):
    with pytest.raises(error, match=message):
        make_hypermodel(teacher, **options)


def test_a_real_search_sweeps_the_teacher_weights_of_an_ensemble(teacher, tmp_path, cache_builds):
    teachers = [teacher, make_mlp(8, name="second_teacher", batchnorm=False)]
    weights = [[1.0, 1.0], [1.0, 0.0]]
    hypermodel = make_hypermodel(teachers, temperatures=[2.0], alphas=[0.9], teacher_weights=weights)
    tuner = tuning.make_tuner("grid", hypermodel, directory=tmp_path / "grid")
    tuner.search(verbose=0)
    rows = tuning.collect_trials(tuner.project_dir)
    assert sorted(row["teacher_weights"] for row in rows) == ["1:0", "1:1"]
    assert all(row["status"] == "COMPLETED" for row in rows)
    assert cache_builds == [64, 32]  # Every teacher ran once per sweep.
    assert os.path.exists(tuning.write_reports(rows, tmp_path / "reports")["csv"])
    hp = keras_tuner.HyperParameters()
    hp.values["teacher_weights"] = "1:0"
    assert hypermodel.build(hp).teacher_weights == [1.0, 0.0]
    # A Range draws each teacher's weight on its own.
    ranged = make_hypermodel(
        teachers,
        temperatures=[2.0],
        alphas=[0.9],
        teacher_weights=tuning.Range(0.5, 2.0),
        ensemble_target="log_probabilities",
    )
    tuner = tuning.make_tuner("random", ranged, directory=tmp_path / "random", max_trials=2)
    tuner.search(verbose=0)
    rows = tuning.collect_trials(tuner.project_dir)
    assert len(rows) == 2 and all(row["status"] == "COMPLETED" for row in rows)
    assert all(0.5 <= row[f"teacher_weight_{index}"] <= 2.0 for row in rows for index in (0, 1))


@pytest.mark.parametrize(
    "ensemble, weights, error, message",
    [
        (False, [1.0], ValueError, "given with one teacher"),
        (True, [[1.0, 1.0], [1.0]], ValueError, r"`teacher_weights\[1\]`: .*1 weights for 2 teachers"),
        (True, [[1.0, 1.0], [1.0, 1.0]], ValueError, "repeats the weights 1:1"),
        (True, [[0.0, 0.0]], ValueError, "all zero"),
        (True, [1.0, -1.0], ValueError, "non-negative"),
        (True, tuning.Range(0.0, 1.0), ValueError, r"`teacher_weights.min_value` must be > 0"),
        (True, "1:1", TypeError, "a list of 2 weights"),
        (True, [], ValueError, "is empty"),
    ],
)
def test_bad_teacher_weights_are_refused(teacher, ensemble, weights, error, message):
    teachers = [teacher, make_mlp(8, name="second_teacher", batchnorm=False)] if ensemble else teacher
    with pytest.raises(error, match=message):
        make_hypermodel(teachers, teacher_weights=weights)


def test_bad_models_and_data_are_refused(teacher):
    data, val = make_data(64), make_data(32)
    with pytest.raises(TypeError, match="must return a keras.Model"):
        tuning.DistillationHyperModel(teacher, lambda: "not a model", data, val)
    with pytest.raises(TypeError, match="student_builder"):
        tuning.DistillationHyperModel(teacher, make_mlp(4), data, val)
    with pytest.raises(TypeError, match="teacher"):
        tuning.DistillationHyperModel("teacher.keras", lambda: make_mlp(4), data, val)
    with pytest.raises(ValueError, match="Both must predict the same"):
        tuning.DistillationHyperModel(teacher, lambda: make_mlp(4, num_classes=5), data, val)
    with pytest.raises(ValueError, match="64 inputs and 10 labels"):
        tuning.DistillationHyperModel(teacher, lambda: make_mlp(4), (data[0], data[1][:10]), val)
    hypermodel = make_hypermodel(teacher)
    with pytest.raises(ValueError, match="Unknown tuner 'optuna'"):
        tuning.make_tuner("optuna", hypermodel)
    with pytest.raises(ValueError, match="max_trials"):
        tuning.make_tuner("random", hypermodel, max_trials=0)
    hp = keras_tuner.HyperParameters()
    with pytest.raises(TypeError, match="without x, y or validation_data"):
        hypermodel.fit(hp, hypermodel.build(hp), data[0], data[1])


def test_reports_are_written(tmp_path):
    rows = [
        {"trial_id": "0", "status": "COMPLETED", "temperature": 2.0, "alpha": 0.5, "val_accuracy": 0.75},
        {"trial_id": "1", "status": "COMPLETED", "temperature": 8.0, "alpha": 0.5, "val_accuracy": 0.8},
        {"trial_id": "2", "status": "RUNNING", "temperature": 8.0, "alpha": 0.9, "val_accuracy": None},
    ]
    paths = tuning.write_reports(rows, tmp_path)
    with open(paths["csv"]) as file:
        assert len(file.readlines()) == 1 + len(rows)
    with open(paths["json"]) as file:
        assert json.load(file)["best"]["trial_id"] == "1"
    assert os.path.getsize(paths["heatmap"]) > 1000


# ------------------------------------------------------------------ no application defaults in the library

# The command line (keras_kd.cli) is the application, where `saved_models/`
# defaults belong; keras_kd.backend holds what differs per backend.
APPLICATION_PACKAGES = ("keras_kd.cli", "keras_kd.backend")


def library_modules():
    modules = [keras_kd]
    for info in pkgutil.walk_packages(keras_kd.__path__, "keras_kd."):
        if not info.name.startswith(APPLICATION_PACKAGES):
            modules.append(importlib.import_module(info.name))
    return modules


def saved_models_defaults(module):
    """`qualified name=default` of each parameter of `module`'s public callables whose default names saved_models/."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        callables = {name: value} if inspect.isfunction(value) else {}
        if inspect.isclass(value):
            callables = {
                f"{name}.{member_name}": inspect.unwrap(getattr(member, "__func__", member))
                for member_name, member in vars(value).items()
                if inspect.isfunction(getattr(member, "__func__", member))
            }
        for qualified_name, function in callables.items():
            for parameter in inspect.signature(function).parameters.values():
                if "saved_models" in str(parameter.default):
                    found.append(f"{module.__name__}.{qualified_name}({parameter.name}={parameter.default!r})")
    return found


def test_no_library_function_defaults_to_saved_models():
    modules = library_modules()
    assert tuning.hypermodel in modules and tuning.reports in modules and tuning.tuners in modules
    assert [found for module in modules for found in saved_models_defaults(module)] == []


def test_the_saved_models_check_finds_such_a_default():
    # The command line's sweep keeps its `saved_models/` default: the check must see it.
    assert saved_models_defaults(tune_app) == [
        "keras_kd.cli.tune_app.tune(output_dir='saved_models/tune_temperature_alpha')"
    ]


# ------------------------------------------------------------------ the recipe in subprocesses


def recipe_command(output_dir, *options):
    return [
        sys.executable,
        RECIPE,
        "--backend",
        REQUESTED_BACKEND,
        "--smoke",
        "--output-dir",
        str(output_dir),
        *options,
    ]


def recipe_env(**extra):
    return dict(os.environ, KERAS_BACKEND=REQUESTED_BACKEND, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def wait_for(condition, process, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_each_trial_ran_once(project_dir, expected):
    rows = tuning.collect_trials(project_dir)
    assert len(rows) == expected and all(row["status"] == "COMPLETED" for row in rows), rows
    settings = [(row["temperature"], row["alpha"]) for row in rows]
    assert len(set(settings)) == expected  # none lost, none repeated
    events = tuning.read_journal(project_dir)
    ended = [e["trial_id"] for e in events if e["event"] == "ended"]
    assert sorted(ended) == sorted(row["trial_id"] for row in rows)  # each ended exactly once
    for index, event in enumerate(events):
        if event["event"] == "ended":  # ... and never started again afterwards
            assert all(later["trial_id"] != event["trial_id"] for later in events[index + 1 :])
    return events


@pytest.mark.slow
def test_recipe_resumes_after_kill_minus_9(tmp_path):
    project_dir = tmp_path / "search"
    command = recipe_command(tmp_path, "--max-trials", "3")
    first = subprocess.Popen(command, env=recipe_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill it in the second trial: one trial done, one under way.
        wait_for(
            lambda: [e["event"] for e in tuning.read_journal(project_dir)][:3] == ["started", "ended", "started"],
            first,
            240,
            "the second trial",
        )
        time.sleep(0.5)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    interrupted = tuning.read_journal(project_dir)
    assert [e["event"] for e in interrupted] == ["started", "ended", "started"]
    second = subprocess.run(command, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Reloading Tuner" in second.stdout
    assert "Best: temperature=" in second.stdout
    events = assert_each_trial_ran_once(project_dir, expected=3)
    # The interrupted trial ran again (it had not finished); the finished one did not.
    assert events[3]["trial_id"] == interrupted[2]["trial_id"]
    assert len(events) == 2 * 3 + 1
    with open(tmp_path / "trials.json") as file:
        assert len(json.load(file)["trials"]) == 3


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(
    REQUESTED_BACKEND != "jax",
    reason="Keras Tuner's chief/worker protocol (gRPC) does not depend on the Keras backend; "
    "run once, on JAX, to keep the suite short",
)
def test_distributed_chief_and_two_workers_share_one_search(tmp_path):
    port = str(free_port())
    processes = {}

    def start(tuner_id):
        environment = recipe_env(
            KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=port
        )
        processes[tuner_id] = subprocess.Popen(
            recipe_command(tmp_path, "--temperatures", "1", "2", "4", "--alphas", "0.5", "0.9"),
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    try:
        start("chief")
        # The chief trains the sweep's teacher first; the workers load it.
        wait_for(lambda: (tmp_path / tune_app.TEACHER_FILE).exists(), processes["chief"], 240, "the teacher")
        start("tuner0")
        start("tuner1")
        # Workers first: the chief serves until both have been told to stop.
        outputs = {name: processes[name].communicate(timeout=600)[0] for name in ("tuner0", "tuner1", "chief")}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
    events = assert_each_trial_ran_once(tmp_path / "search", expected=6)
    ran_on = {e["tuner_id"] for e in events if e["event"] == "ended"}
    assert ran_on == {"tuner0", "tuner1"}  # both workers ran trials; the chief ran none
    assert "Best: temperature=" in outputs["chief"]
