"""Tests of keras_kd.report: the numbers, the formats and the input checks."""

import json
import re

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND, make_data, make_mlp
from keras_kd import report as kd_report
from keras_kd.distiller import Distiller

FAST = {"batch_sizes": (1, 8), "warmup_batches": 1, "timed_batches": 3}


@pytest.fixture(scope="module")
def models_and_data():
    keras.utils.set_random_seed(0)
    teacher = make_mlp(16, name="teacher_mlp")
    student = make_mlp(4, name="student_mlp", batchnorm=False)
    x, y = make_data(rows=48)
    return {"teacher": teacher, "student": student}, (x, y)


@pytest.fixture(scope="module")
def report(models_and_data):
    models, data = models_and_data
    return kd_report.compare(models, data, **FAST)


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_expected_calibration_error_matches_hand_computation():
    # Confidences 0.5 (correct) and 0.75 (wrong) fall in different bins of
    # 15: ECE = 0.5 * |1 - 0.5| + 0.5 * |0 - 0.75| = 0.625.
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    assert kd_report.expected_calibration_error(logits, np.array([0, 1])) == pytest.approx(0.625)
    # In one bin the errors average out: |0.5 - (0.5 + 0.75) / 2| = 0.125.
    assert kd_report.expected_calibration_error(logits, np.array([0, 1]), bins=1) == pytest.approx(0.125)


def test_compare_measures_accuracy_and_fidelity(models_and_data, report):
    models, (x, y) = models_and_data
    teacher_logits = models["teacher"].predict(x, verbose=0)
    student_logits = models["student"].predict(x, verbose=0)
    student = report.models["student"]
    assert student["test_accuracy"] == pytest.approx(100 * np.mean(student_logits.argmax(-1) == y))
    assert student["teacher_agreement"] == pytest.approx(
        100 * np.mean(student_logits.argmax(-1) == teacher_logits.argmax(-1))
    )
    log_p, log_q = _log_softmax(teacher_logits.astype("float64")), _log_softmax(student_logits.astype("float64"))
    expected_kl = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1))
    assert expected_kl > 0.01
    assert student["kl_to_teacher"] == pytest.approx(expected_kl, rel=1e-4)
    assert report.models["teacher"]["teacher_agreement"] == 100.0
    assert report.models["teacher"]["kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)
    assert student["parameters"] == models["student"].count_params()


def test_compare_records_latency_at_each_batch_size(report):
    for metrics in report.models.values():
        assert [timing["batch_size"] for timing in metrics["latency"]] == [1, 8]
        for timing in metrics["latency"]:
            assert 0 < timing["p50_ms"] <= timing["p95_ms"]
            assert timing["p50_ms_per_sample"] == pytest.approx(timing["p50_ms"] / timing["batch_size"])
            assert timing["throughput"] == pytest.approx(1e3 * timing["batch_size"] / timing["p50_ms"])


def test_compare_records_backend_and_device(report):
    assert report.environment["backend"] == REQUESTED_BACKEND == keras.config.backend()
    assert report.environment["device"]
    assert report.settings["calibration_bins"] == 15
    assert report.settings["examples"] == 48 and report.settings["classes"] == 3


def test_size_leaves_out_optimizer_state(tmp_path):
    model = make_mlp(32, batchnorm=False)
    uncompiled_size = kd_report.saved_size_mb(model)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*make_data(rows=8, num_classes=3), epochs=1, verbose=0)  # Adam gets its slots.
    model.save(tmp_path / "with_optimizer.keras")
    with_optimizer_size = (tmp_path / "with_optimizer.keras").stat().st_size / 1e6
    assert kd_report.saved_size_mb(model) == pytest.approx(uncompiled_size, rel=0.05)
    assert kd_report.saved_size_mb(model) < 0.9 * with_optimizer_size


def test_json_round_trip(report, tmp_path):
    path = tmp_path / "report.json"
    text = report.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text)
    assert kd_report.Report.from_json(path) == report


def test_plot_writes_a_png(report, tmp_path):
    from PIL import Image

    path = report.plot(tmp_path / "comparison.png", size=(600, 400))
    with Image.open(path) as image:
        assert image.size == (600, 400)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20  # Not blank.


def test_markdown_has_a_row_per_model_and_batch_size(report):
    markdown = report.to_markdown()
    rows = [line for line in markdown.splitlines() if line.startswith("| student ")]
    assert len(rows) == 3  # One quality row, one per batch size.
    assert f"Backend {REQUESTED_BACKEND}" in markdown
    assert "15 equal-width" in markdown


def test_no_teacher_skips_fidelity(models_and_data):
    models, data = models_and_data
    result = kd_report.compare({"student": models["student"]}, data, teacher=None, **FAST)
    assert result.models["student"]["teacher_agreement"] is None
    assert result.models["student"]["kl_to_teacher"] is None
    assert "| — | — |" in result.to_markdown()


def test_one_hot_labels_give_the_same_accuracy(models_and_data, report):
    models, (x, y) = models_and_data
    result = kd_report.compare(models, (x, np.eye(3)[y]), **FAST)
    assert result.models["student"]["test_accuracy"] == report.models["student"]["test_accuracy"]


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown_teacher", "is not one of the model names"),
        ("empty_data", "no examples"),
        ("class_mismatch", "different numbers of classes"),
        ("label_count", "one label per input"),
        ("label_range", "valid labels: 0 to 2"),
        ("probabilities", "probabilities"),
        ("no_models", "empty"),
        ("batch_sizes", "batch_sizes"),
        ("input_shape", "takes inputs of shape"),
    ],
)
def test_bad_input_is_refused(models_and_data, case, message):
    models, (x, y) = models_and_data
    kwargs = dict(FAST)
    data = (x, y)
    if case == "unknown_teacher":
        kwargs["teacher"] = "professor"
    elif case == "empty_data":
        data = (x[:0], y[:0])
    elif case == "class_mismatch":
        models = {**models, "wide": make_mlp(4, num_classes=5)}
    elif case == "label_count":
        data = (x, y[:-1])
    elif case == "label_range":
        data = (x, y + 3)
    elif case == "probabilities":
        inputs = keras.Input((8,))
        models = {
            **models,
            "softmax": keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)),
        }
    elif case == "no_models":
        models = {}
    elif case == "batch_sizes":
        kwargs["batch_sizes"] = (0,)
    elif case == "input_shape":
        data = (x[:, :5], y)
    with pytest.raises(ValueError, match=message):
        kd_report.compare(models, data, **kwargs)


def test_distiller_and_non_mapping_are_refused(models_and_data):
    models, data = models_and_data
    distiller = Distiller(models["teacher"], models["student"])
    with pytest.raises(TypeError, match="distiller.student"):
        kd_report.compare({"teacher": models["teacher"], "distilled": distiller}, data, **FAST)
    with pytest.raises(TypeError, match="mapping"):
        kd_report.compare([models["teacher"]], data, **FAST)


def _softmax(logits):
    return np.exp(_log_softmax(np.asarray(logits, "float64")))


@pytest.mark.parametrize("target", ["probabilities", "log_probabilities"])
def test_an_ensemble_gives_a_row_per_teacher_and_one_for_its_target(models_and_data, target):
    models, (x, y) = models_and_data
    teachers = [make_mlp(units, name=f"member_{units}", batchnorm=False) for units in (8, 12, 16)]
    weights = [1.0, 1.0, 2.0]
    distiller = Distiller(teachers, models["student"], teacher_weights=weights, ensemble_target=target)
    # The Distiller's stacked teacher and its list of teachers are the same ensemble.
    for ensemble in (distiller.teachers, distiller.teacher):
        result = kd_report.compare(
            {"teacher": ensemble, "student": models["student"]},
            (x, y),
            teacher_weights=distiller.teacher_weights,
            ensemble_target=target,
            **FAST,
        )
        assert list(result.models) == ["member_8", "member_12", "member_16", "teacher", "student"]
    member_p = np.stack([_softmax(teacher.predict(x, verbose=0)) for teacher in teachers], axis=-2)
    normalized = np.array(weights).reshape(-1, 1) / sum(weights)
    if target == "probabilities":
        ensemble_p = (member_p * normalized).sum(-2)
    else:
        ensemble_p = _softmax((np.log(member_p) * normalized).sum(-2))
    ensemble_row, student_row = result.models["teacher"], result.models["student"]
    assert ensemble_row["test_accuracy"] == pytest.approx(100 * np.mean(ensemble_p.argmax(-1) == y))
    assert ensemble_row["kl_to_teacher"] == pytest.approx(0.0, abs=1e-6)
    assert ensemble_row["parameters"] == sum(teacher.count_params() for teacher in teachers)
    student_p = _softmax(models["student"].predict(x, verbose=0))
    expected_kl = np.mean(np.sum(ensemble_p * (np.log(ensemble_p) - np.log(student_p)), axis=-1))
    assert student_row["kl_to_teacher"] == pytest.approx(expected_kl, rel=1e-4)
    assert student_row["teacher_agreement"] == pytest.approx(
        100 * np.mean(student_p.argmax(-1) == ensemble_p.argmax(-1))
    )
    member_p0 = member_p[:, 0]
    assert result.models["member_8"]["teacher_agreement"] == pytest.approx(
        100 * np.mean(member_p0.argmax(-1) == ensemble_p.argmax(-1))
    )
    assert result.settings["ensembles"]["teacher"]["teachers"] == ["member_8", "member_12", "member_16"]
    assert "'teacher': the ensemble of member_8, member_12, member_16 (weights 0.25, 0.25, 0.5" in result.to_markdown()
    assert kd_report.Report.from_dict(json.loads(result.to_json())).models == result.models


def test_bad_ensembles_are_refused(models_and_data):
    models, data = models_and_data
    teachers = [make_mlp(units, name=f"member_{units}", batchnorm=False) for units in (8, 12)]
    cases = [
        ({"teacher": []}, {}, ValueError, "models['teacher']: `teacher` is an empty list"),
        ({"teacher": [teachers[0], teachers[0]]}, {}, ValueError, "the same model"),
        ({"teacher": teachers}, {"teacher_weights": [1.0]}, ValueError, "1 weights for 2 teachers"),
        ({"teacher": teachers}, {"teacher_weights": [-1.0, 1.0]}, ValueError, "non-negative"),
        ({"teacher": teachers, "member_8": models["student"]}, {}, ValueError, "named 'member_8', like another row"),
        ({"teacher": teachers[0]}, {"teacher_weights": [1.0]}, ValueError, "no entry of `models` is a list"),
        ({"teacher": [teachers[0], make_mlp(8, num_classes=5, name="wide")]}, {}, ValueError, "logits of shape"),
    ]
    for models_given, kwargs, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            kd_report.compare(models_given, data, **FAST, **kwargs)
