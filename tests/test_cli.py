"""Tests of the keras-kd command line: distill, report and export, end to end.

Most cases call `keras_kd.cli.main` in this process (on the backend under
test); a few run `python -m keras_kd` in a subprocess to check what a user
sees: exit status, progress bars, and one line on stderr instead of a
traceback.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND, assert_one_line_error
from keras_kd import cli, datasets
from keras_kd.distiller import Distiller

DIGITS_SHAPE = (8, 8, 1)
FAST_DISTILL = ["--dataset", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "32"]
FAST_REPORT = [
    "--dataset",
    "digits",
    "--limit",
    "32",
    "--batch-sizes",
    "1",
    "8",
    "--warmup-batches",
    "1",
    "--timed-batches",
    "2",
]


def _mlp(hidden, name, num_classes=10, input_shape=DIGITS_SHAPE):
    inputs = keras.Input(input_shape)
    hidden_units = keras.layers.Dense(hidden, activation="relu")(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes)(hidden_units), name=name)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny digits models saved as .keras, and broken files."""
    directory = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    x, y = datasets.load("digits", "train")
    teacher = _mlp(32, "teacher")
    teacher.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x[:256], y[:256], epochs=3, verbose=0)
    names = ("teacher", "student", "wide", "mnist_teacher", "distiller", "second_teacher")
    paths = {name: str(directory / f"{name}.keras") for name in names}
    teacher.save(paths["teacher"])
    _mlp(8, "student").save(paths["student"])
    _mlp(8, "wide", num_classes=12).save(paths["wide"])
    _mlp(8, "mnist_teacher", input_shape=(28, 28, 1)).save(paths["mnist_teacher"])
    _mlp(16, "teacher").save(paths["second_teacher"])  # Named like the first: an ensemble renames them.
    Distiller(teacher, _mlp(8, "inner")).save(paths["distiller"])
    paths["corrupted"] = str(directory / "corrupted.keras")
    with open(paths["corrupted"], "wb") as file:
        file.write(b"not a zip archive")
    paths["directory"] = str(directory)
    return paths


def _main(argv, capsys):
    """Runs the command line in this process; returns (status, stdout, stderr)."""
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse exits on usage errors and --help.
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _subprocess(*argv, timeout=300):
    env = dict(os.environ, KERAS_BACKEND=REQUESTED_BACKEND, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "keras_kd", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ------------------------------------------------------------ in process


def test_distill_writes_a_student_that_learned(files, tmp_path, capsys):
    output = str(tmp_path / "distilled.keras")
    plot = str(tmp_path / "history.png")
    argv = ["distill", "--teacher", files["teacher"], "--student", files["student"], *FAST_DISTILL]
    status, out, _ = _main(
        argv
        + [
            "--epochs",
            "3",
            "--temperature",
            "2",
            "--alpha",
            "0.5",
            "--output",
            output,
            "--history-plot",
            plot,
            "--quiet",
        ],
        capsys,
    )
    assert status == 0
    assert f"Saved the distilled student to {output}" in out
    student = keras.saving.load_model(output)
    assert not isinstance(student, Distiller)
    assert student.count_params() == keras.saving.load_model(files["student"]).count_params()
    assert not student.compiled  # No optimizer state in the file.
    initial = keras.saving.load_model(files["student"])
    assert any(not np.array_equal(a, b) for a, b in zip(student.get_weights(), initial.get_weights()))
    assert os.path.getsize(plot) > 10_000


def test_distill_builds_a_student_by_architecture_name(files, tmp_path, capsys):
    output = str(tmp_path / "mlp.keras")
    argv = ["distill", "--teacher", files["teacher"], "--student", "mlp_student", *FAST_DISTILL]
    status, out, _ = _main(argv + ["--output", output, "--quiet"], capsys)
    assert status == 0, out
    student = keras.saving.load_model(output)
    assert student.input_shape[1:] == DIGITS_SHAPE and student.output_shape[-1] == 10


def test_report_prints_tables_and_writes_json_and_plot(files, tmp_path, capsys):
    json_path, plot_path, markdown_path = (str(tmp_path / name) for name in ("report.json", "report.png", "report.md"))
    argv = [
        "report",
        "--model",
        f"teacher={files['teacher']}",
        "--model",
        files["student"],
        *FAST_REPORT,
    ]
    status, out, _ = _main(argv + ["--json", json_path, "--plot", plot_path, "--markdown", markdown_path], capsys)
    assert status == 0
    assert "| teacher | " in out and "| student | " in out
    assert open(markdown_path).read() == out
    data = json.loads(open(json_path).read())
    assert list(data["models"]) == ["teacher", "student"]
    assert data["teacher"] == "teacher" and data["environment"]["backend"] == REQUESTED_BACKEND
    assert data["models"]["teacher"]["teacher_agreement"] == 100.0
    assert os.path.getsize(plot_path) > 10_000


def test_export_keras_checks_parity(files, tmp_path, capsys):
    output = str(tmp_path / "exported.keras")
    status, out, _ = _main(
        [
            "export",
            "--model",
            files["student"],
            "--format",
            "keras",
            "--output",
            output,
            "--dataset",
            "digits",
        ],
        capsys,
    )
    assert status == 0
    assert "match the Keras model's within" in out
    assert os.path.exists(output)


def test_every_option_is_explained(capsys):
    parser = cli.build_parser()
    subparsers = next(action for action in parser._actions if action.dest == "command")
    for name in ("distill", "report", "export"):
        for action in subparsers.choices[name]._actions:
            assert action.help, f"{name} {action.option_strings} has no help"
        assert "--backend" in subparsers.choices[name].format_help()
    distill_help = subparsers.choices["distill"].format_help()
    assert all(dataset in distill_help for dataset in datasets.DATASET_NAMES)


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--temperature", "0"], ["--temperature", "must be > 0"]),
        (["--temperature", "nan"], ["--temperature", "finite"]),
        (["--alpha", "1.5"], ["--alpha", "[0, 1]"]),
        (["--dataset", "imagenet"], ["Unknown dataset 'imagenet'", "digits"]),
        (
            ["--teacher", "{mnist_teacher}"],
            ["takes inputs of shape (None, 28, 28, 1)", "(8, 8, 1)"],
        ),
        (["--student", "no_such_arch"], ["Unknown model 'no_such_arch'"]),
        (["--student", "{missing}"], ["no such file"]),
        (["--student", "{wide}"], ["12"]),
        (["--student", "{distiller}"], ["Distiller"]),
        (["--teacher", "{corrupted}"], ["not a .keras archive"]),
        (["--output", "{directory}/student.h5"], ["must end in .keras"]),
    ],
)
def test_distill_bad_input_is_one_line(files, tmp_path, capsys, argv, fragments):
    options = {
        "--teacher": files["teacher"],
        "--student": files["student"],
        "--output": str(tmp_path / "s.keras"),
    }
    extra = [value.format(missing=str(tmp_path / "missing.keras"), **files) for value in argv]
    for option in list(options):
        if option in extra:
            del options[option]
    command = [
        "distill",
        *[item for pair in options.items() for item in pair],
        *FAST_DISTILL,
        *extra,
        "--quiet",
    ]
    status, _, err = _main(command, capsys)
    assert_one_line_error(status, err, *fragments)
    assert not os.path.exists(tmp_path / "s.keras")


def test_distill_takes_several_teachers_and_refuses_bad_ensembles_in_one_line(files, tmp_path, capsys):
    output = str(tmp_path / "from_ensemble.keras")
    teachers = ["--teacher", files["teacher"], "--teacher", files["second_teacher"]]
    argv = ["distill", *teachers, "--student", "mlp_student", *FAST_DISTILL, "--quiet"]
    status, out, err = _main(argv + ["--teacher-weights", "2", "1", "--output", output], capsys)
    assert status == 0, err
    assert "ensemble of 2 teachers" in out and os.path.exists(output)
    missing = str(tmp_path / "missing.keras")
    cases = [
        (["--teacher", files["teacher"], "--teacher", missing], [], [missing, "no such file"]),
        (["--teacher", files["teacher"], "--teacher", files["teacher"]], [], ["--teacher must be distinct"]),
        (["--teacher", files["teacher"], "--teacher", files["wide"]], [], ["teacher[1] 'wide' has logits of shape"]),
        (
            ["--teacher", files["teacher"], "--teacher", files["mnist_teacher"]],
            [],
            ["mnist_teacher.keras' takes inputs of shape (None, 28, 28, 1)"],
        ),
        (teachers, ["--teacher-weights", "1"], ["1 weights for 2 teachers"]),
        (teachers, ["--teacher-weights", "-1", "1"], ["non-negative"]),
        (["--teacher", files["teacher"]], ["--teacher-weights", "1"], ["given with one teacher"]),
    ]
    for teacher_options, extra, fragments in cases:
        bad_output = str(tmp_path / "bad.keras")
        command = ["distill", *teacher_options, "--student", "mlp_student", *FAST_DISTILL, "--quiet"]
        status, _, err = _main(command + extra + ["--output", bad_output], capsys)
        assert_one_line_error(status, err, *fragments)
        assert not os.path.exists(bad_output)


def test_tune_sweeps_the_weights_of_several_teacher_files(files, tmp_path, capsys):
    teachers = ["--teacher", files["teacher"], "--teacher", files["second_teacher"]]
    fast = ["--dataset", "digits", "--smoke", "--temperatures", "2", "--alphas", "0.9", "--output-dir"]
    argv = ["tune", *teachers, "--teacher-weights", "1:1", "1:0", *fast, str(tmp_path / "sweep")]
    status, out, err = _main(argv, capsys)
    assert status == 0, err
    assert "2 trials completed" in out and "teacher_weights=1:" in out
    with open(tmp_path / "sweep" / "trials.json") as file:
        assert sorted(row["teacher_weights"] for row in json.load(file)["trials"]) == ["1:0", "1:1"]
    assert not os.path.exists(tmp_path / "sweep" / "teacher.keras")  # The given teachers, none trained.
    cases = [
        (["--teacher", str(tmp_path / "missing.keras")], ["no such file"]),
        (["--teacher", files["teacher"], "--teacher-weights", "1:1"], ["--teacher-weights needs several --teacher"]),
        ([*teachers, "--teacher-weights", "1:x"], ["--teacher-weights", "'1:x' is not a list of weights"]),
        ([*teachers, "--teacher-weights", "1:1:1"], ["3 weights for 2 teachers"]),
        ([*teachers, "--teacher", files["wide"]], ["teacher[2] 'wide' has logits of shape"]),
        ([*teachers, "--compare-seeds", "0"], ["--compare-seeds", "several --teacher"]),
    ]
    for options, fragments in cases:
        status, _, err = _main(["tune", *options, *fast, str(tmp_path / "bad")], capsys)
        assert_one_line_error(status, err, *fragments)


def test_report_and_export_bad_input_is_one_line(files, tmp_path, capsys):
    cases = [
        (
            ["report", "--model", files["teacher"], "--model", files["wide"], *FAST_REPORT],
            "different numbers of classes",
        ),
        (
            ["report", "--model", files["student"], "--teacher", "boss", *FAST_REPORT],
            "--teacher 'boss'",
        ),
        (
            [
                "report",
                "--model",
                f"a={files['teacher']}",
                "--model",
                f"a={files['student']}",
                *FAST_REPORT,
            ],
            "named 'a'",
        ),
        (
            [
                "export",
                "--model",
                files["distiller"],
                "--format",
                "keras",
                "--output",
                str(tmp_path / "d.keras"),
            ],
            "Distiller",
        ),
        (
            [
                "export",
                "--model",
                files["student"],
                "--format",
                "onnx",
                "--output",
                str(tmp_path / "s.keras"),
            ],
            ".onnx",
        ),
    ]
    for argv, fragment in cases:
        status, _, err = _main(argv, capsys)
        assert_one_line_error(status, err, fragment)


# ------------------------------------------------------------ subprocesses


def test_help_from_the_module_entry_point():
    result = _subprocess("--help")
    assert result.returncode == 0
    for command in ("demo", "distill", "report", "export"):
        assert command in result.stdout


def test_bad_files_end_in_one_line_not_a_traceback(files, tmp_path):
    for teacher, fragment in (
        (str(tmp_path / "missing.keras"), "no such file"),
        (files["corrupted"], "not a .keras archive"),
    ):
        result = _subprocess("distill", "--teacher", teacher, "--student", files["student"], "--dataset", "digits")
        assert_one_line_error(result.returncode, result.stderr, fragment)


@pytest.mark.slow
def test_distill_end_to_end(files, tmp_path):
    student = str(tmp_path / "distilled.keras")
    result = _subprocess(
        "distill",
        "--teacher",
        files["teacher"],
        "--student",
        files["student"],
        *FAST_DISTILL,
        "--output",
        student,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "━" in result.stdout and "teacher_agreement" in result.stdout  # Keras's progress bar.
    assert "Saved the distilled student" in result.stdout
    assert keras.saving.load_model(student).count_params() == keras.saving.load_model(files["student"]).count_params()
