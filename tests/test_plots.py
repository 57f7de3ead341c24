"""Tests of keras_kd.plots: each PNG is written, has the asked size, and shows something."""

import numpy as np
import pytest
from PIL import Image

from conftest import make_data, make_mlp
from keras_kd import plots
from keras_kd import report as kd_report
from keras_kd.distiller import Distiller

HISTORY = {
    "loss": [1.2, 0.8, 0.6],
    "distillation_loss": [1.0, 0.7, 0.5],
    "student_loss": [2.0, 1.1, 0.9],
    "mse_dense": [0.02, 0.01, 0.005],
    "accuracy": [0.5, 0.7, 0.8],
    "teacher_agreement": [0.6, 0.8, 0.9],
    "temperature": [4.0, 3.0, 2.0],
    "alpha": [0.9, 0.8, 0.7],
    "val_loss": [1.3, 0.9, 0.7],
    "val_accuracy": [0.45, 0.65, 0.75],
}


def _check_png(path, size):
    """The PNG at `path` has `size` pixels and is not a blank canvas."""
    assert path.exists()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        pixels = np.asarray(image.convert("RGB"), dtype="float32")
    not_white = np.any(pixels < 250, axis=-1).mean()
    colors = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert not_white > 0.02, f"only {not_white:.1%} of the pixels are drawn"
    assert colors > 20, f"only {colors} distinct colors"
    return pixels


def test_history_from_a_dict(tmp_path):
    path = tmp_path / "history.png"
    assert plots.plot_history(HISTORY, path) == path
    _check_png(path, plots.DEFAULT_SIZE)


def test_history_from_a_distiller_fit_at_a_custom_size(tmp_path):
    teacher, student = make_mlp(16), make_mlp(4)
    x, y = make_data(rows=32)
    distiller = Distiller(teacher, student).compile(optimizer="adam", metrics=["accuracy"])
    history = distiller.fit(x, y, epochs=2, batch_size=16, validation_data=(x, y), verbose=0)
    path = tmp_path / "distiller.png"
    plots.plot_history(history, path, size=(640, 480), title="distiller")
    _check_png(path, (640, 480))


def test_different_histories_give_different_images(tmp_path):
    other = {name: list(reversed(values)) for name, values in HISTORY.items()}
    first = _check_png(plots.plot_history(HISTORY, tmp_path / "a.png", size=(400, 300)), (400, 300))
    second = _check_png(plots.plot_history(other, tmp_path / "b.png", size=(400, 300)), (400, 300))
    assert np.abs(first - second).mean() > 0.1


def test_panels_group_the_history_keys():
    assert plots._panel_of("val_distillation_loss") == "Loss terms"
    assert plots._panel_of("mse_dense") == "Loss terms"
    assert plots._panel_of("val_sparse_categorical_accuracy") == "Accuracy (%)"
    assert plots._panel_of("teacher_agreement") == "Accuracy (%)"
    assert plots._panel_of("temperature") == "Temperature"
    assert plots._panel_of("val_alpha") == "Alpha"


def _report(names):
    timing = {"p50_ms": 2.0, "p95_ms": 3.0, "p50_ms_per_sample": 2.0, "p95_ms_per_sample": 3.0}
    models = {
        name: {
            "test_accuracy": 90.0 - 5 * index,
            "teacher_agreement": 100.0 - 4 * index,
            "kl_to_teacher": 0.1 * index,
            "expected_calibration_error": 3.0 + index,
            "parameters": 100_000 // (index + 1),
            "size_mb": 0.4 / (index + 1),
            "latency": [
                {**timing, "batch_size": 1, "throughput": 500.0 * (index + 1)},
                {**timing, "batch_size": 256, "throughput": 5e4 * (index + 1)},
            ],
        }
        for index, name in enumerate(names)
    }
    return kd_report.Report(
        models=models,
        teacher=names[0],
        environment={"backend": "jax", "device": "CPU"},
        settings={"calibration_bins": 15},
    )


def test_comparison_bars(tmp_path):
    report = _report(["teacher", "baseline", "distilled"])
    path = tmp_path / "comparison.png"
    report.plot(path, size=(900, 600))
    _check_png(path, (900, 600))
    plots.plot_comparison(report.to_dict(), tmp_path / "from_dict.png")
    _check_png(tmp_path / "from_dict.png", plots.DEFAULT_SIZE)


@pytest.mark.parametrize(
    "history, path, error, message",
    [
        ({"loss": []}, "a.png", ValueError, "no numeric"),
        ([1.0, 2.0], "a.png", TypeError, "History"),
        (HISTORY, "a.jpg", ValueError, "PNG"),
    ],
)
def test_bad_input_is_refused(tmp_path, history, path, error, message):
    with pytest.raises(error, match=message):
        plots.plot_history(history, tmp_path / path)
    assert not list(tmp_path.iterdir())


def test_bad_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        plots.plot_history(HISTORY, tmp_path / "a.png", size=(10, 10))
