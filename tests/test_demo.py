"""Tests of the offline demo (`keras_kd.demo`, `keras-kd demo`), on short runs.

The demo's accuracy claim is a measurement (README), not a test: here it runs
for one epoch, and the tests check what it writes and reports, that every
number in the table comes from the saved models, and its refusals.
"""

import json
import os

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND, assert_one_line_error
from keras_kd import cli, datasets, demo

SHORT_RUN = {"epochs": 1, "teacher_epochs": 1, "shifted_copies": 1}


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory):
    """One short demo run: (results, printed lines, output directory)."""
    output_dir = str(tmp_path_factory.mktemp("demo"))
    lines = []
    results = demo.run_demo(seeds=(4, 7), output_dir=output_dir, print_fn=lines.append, **SHORT_RUN)
    return results, lines, output_dir


def test_results_json_is_what_run_demo_returns(short_demo):
    results, _, output_dir = short_demo
    with open(os.path.join(output_dir, "results.json")) as file:
        assert json.load(file) == json.loads(json.dumps(results))
    assert results["backend"] == REQUESTED_BACKEND
    assert results["settings"]["seeds"] == [4, 7]
    assert results["settings"]["epochs"] == 1
    assert results["data"]["training_images"] == 4000
    assert results["data"]["student_training_images"] == 8000  # originals + 1 shifted copy
    assert results["data"]["test_images"] == 1000


def test_saved_models_reproduce_the_reported_accuracies(short_demo):
    results, _, _ = short_demo
    _, (x_test, y_test) = datasets.load_mnist_5k(test_fraction=demo.TEST_FRACTION)
    measured = [results["teacher"]]
    for run in results["runs"]:
        measured += [run["labels_only"], run["distilled"]]
    for entry in measured:
        model = keras.saving.load_model(entry["path"])
        logits = model.predict(x_test, verbose=0)
        accuracy = 100.0 * float(np.mean(np.argmax(logits, axis=-1) == y_test))
        assert accuracy == pytest.approx(entry["test_accuracy"], abs=1e-9)
        assert model.count_params() == entry["parameters"]
        assert os.path.getsize(entry["path"]) / 1e6 == pytest.approx(entry["size_mb"])
        assert entry["latency_ms"] > 0
    # One epoch is enough to be far above chance (10 %).
    assert results["teacher"]["test_accuracy"] > 80


def test_gain_and_summary_are_computed_from_the_runs(short_demo):
    results, _, _ = short_demo
    gains = [run["distilled"]["test_accuracy"] - run["labels_only"]["test_accuracy"] for run in results["runs"]]
    assert [run["gain_points"] for run in results["runs"]] == gains
    summary = results["summary"]
    assert summary["gain_points"]["mean"] == pytest.approx(np.mean(gains))
    assert summary["gain_points"]["std"] == pytest.approx(np.std(gains, ddof=1))
    labels_only = [run["labels_only"]["test_accuracy"] for run in results["runs"]]
    assert summary["labels_only"]["test_accuracy"]["mean"] == pytest.approx(np.mean(labels_only))


def test_the_two_students_of_a_seed_differ_only_by_distillation(short_demo):
    results, _, _ = short_demo
    for run in results["runs"]:
        labels_only = keras.saving.load_model(run["labels_only"]["path"])
        distilled = keras.saving.load_model(run["distilled"]["path"])
        assert [w.shape for w in labels_only.weights] == [w.shape for w in distilled.weights]
        different = [not np.array_equal(a, b) for a, b in zip(labels_only.get_weights(), distilled.get_weights())]
        assert any(different)  # They trained on different targets.


def test_report_prints_the_table_and_the_gain(short_demo):
    results, lines, _ = short_demo
    assert lines == lines[: -len(demo.format_report(results))] + demo.format_report(results)
    table = "\n".join(demo.format_report(results))
    assert "| Teacher: CNN |" in table
    assert "| Student (labels only): 2x64 MLP |" in table
    assert "| Student (distilled): 2x64 MLP |" in table
    mean_gain = results["summary"]["gain_points"]["mean"]
    assert f"Distillation gain: {mean_gain:+.2f} points (mean over 2 seeds;" in table
    assert f"Backend: {REQUESTED_BACKEND}." in table


@pytest.mark.parametrize(
    "seeds, fragment",
    [((), "at least one"), ((1, 1), "distinct")],
)
def test_refuses_bad_seeds(tmp_path, seeds, fragment):
    with pytest.raises(ValueError, match=fragment):
        demo.run_demo(seeds=seeds, output_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_refuses_a_backend_keras_is_not_running(tmp_path):
    other = "jax" if REQUESTED_BACKEND != "jax" else "torch"
    with pytest.raises(ValueError, match=f"KERAS_BACKEND={other}"):
        demo.run_demo(backend_name=other, output_dir=str(tmp_path))


def test_command_line_passes_its_settings(tmp_path, capsys):
    output_dir = str(tmp_path / "out")
    argv = [
        "demo",
        "--backend",
        REQUESTED_BACKEND,
        "--seeds",
        "3",
        "--epochs",
        "1",
        "--teacher-epochs",
        "1",
        "--temperature",
        "2.5",
        "--alpha",
        "0.7",
        "--shifted-copies",
        "0",
        "--output-dir",
        output_dir,
    ]
    assert cli.main(argv) in (0, None)
    with open(os.path.join(output_dir, "results.json")) as file:
        settings = json.load(file)["settings"]
    assert settings["seeds"] == [3]
    assert (settings["epochs"], settings["teacher_epochs"]) == (1, 1)
    assert (settings["temperature"], settings["alpha"], settings["shifted_copies"]) == (2.5, 0.7, 0)
    assert "Distillation gain:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--alpha", "1.5"], "must be in [0, 1]"),
        (["--temperature", "0"], "must be > 0"),
        (["--shifted-copies", "-1"], "must be an integer >= 0"),
        (["--teacher-epochs", "0"], "must be a positive integer"),
        (["--seeds", "1", "1"], "--seeds"),
    ],
)
def test_command_line_refuses_bad_settings_in_one_line(tmp_path, capsys, argv, fragment):
    try:
        status = cli.main(["demo", *argv, "--output-dir", str(tmp_path / "out")])
    except SystemExit as exit_:
        status = exit_.code
    assert_one_line_error(status, capsys.readouterr().err, fragment)
    assert not (tmp_path / "out").exists()


def test_the_demos_former_module_still_runs_it_into_saved_models_demo():
    import inspect

    from keras_kd.cli import demo_app

    assert demo_app.ShuffledBatches is demo.ShuffledBatches and demo_app.TEMPERATURE == demo.TEMPERATURE
    assert inspect.signature(demo_app.run_demo).parameters["output_dir"].default == os.path.join("saved_models", "demo")
    with pytest.raises(ValueError, match="distinct"):
        demo_app.run_demo(seeds=(1, 1))  # Refused before anything is written.
