"""The benchmark page's plot: the targeted ratios of a run, drawn beside the page (no bench run here)."""

import pytest

from bench import plot, report

pytest.importorskip("matplotlib")


def _result(config, seconds, backend="jax", pair="overhead"):
    """One configuration's result, as `bench.workload` returns it, with one timed epoch."""
    return {
        "pair": pair,
        "backend": backend,
        "config": config,
        "group": "main",
        "seconds": seconds,
        "epoch_seconds": [seconds],
        "images": 64,
        "batch_size": 16,
        "images_per_second": 64 / seconds,
        "repeats": 1,
        "peak_rss_mb": 200.0,
        "rss_before_mb": 100.0,
        "teacher_parameters": 1000,
        "student_parameters": 100,
    }


RESULTS = [
    _result("student", 1.0),
    _result("kd_cached", 1.05),
    _result("kd_logits", 2.2),
    _result("core_logits", 2.0),
    _result("student", 1.0, backend="torch"),
    _result("kd_cached", 1.2, backend="torch"),
    dict(_result("core_logits", 2.0, backend="torch"), error="timed out"),
]
RUN = {
    "command": "python -m bench --pairs overhead",
    "started": "2026-12-08 10:00 UTC",
    "wall_seconds": 60.0,
    "load_start": (1.0, 1.0, 1.0),
    "load_end": (2.0, 2.0, 2.0),
    "machine": {
        "accelerator": None,
        "cpu_model": "test CPU",
        "logical_cores": 2,
        "platform": "Linux",
        "python": "3.11",
        "versions": {"keras": "3"},
    },
    "smoke": False,
    "warmup_steps": 2,
    "dtype_policy": "float32",
}


def test_headline_ratios_are_the_targeted_ones_per_backend():
    ((label, rows),) = report.headline_ratios(RESULTS)
    assert label.startswith("overhead pair")
    # Only the ratios with a target; a failed configuration leaves its backend's value out.
    assert rows == [
        ("cached KD (logits) / student alone", 1.10, {"jax": pytest.approx(1.05), "torch": pytest.approx(1.2)}),
        ("uncached KD (logits) / core Distiller (logits)", 1.00, {"jax": pytest.approx(1.1), "torch": None}),
    ]


def test_the_page_shows_the_plot_written_beside_it(tmp_path):
    page = tmp_path / "benchmarks.md"
    plot_path = report.write(str(page), RUN, RESULTS)
    assert plot_path == str(tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(b"\x89PNG")
    text = page.read_text()
    assert "](benchmarks.png)" in text
    assert text.count("python -m bench --pairs overhead") == 1 and "Load average" in text


def test_a_run_with_no_ratio_says_there_is_no_plot(tmp_path):
    page = tmp_path / "benchmarks.md"
    assert report.write(str(page), RUN, [_result("student", 1.0)]) is None
    assert not (tmp_path / "benchmarks.png").exists()
    assert "No plot: No ratio has a value to plot" in page.read_text()
    with pytest.raises(ValueError, match="No ratio has a value"):
        plot.plot_ratios([("overhead pair", [("a / b", 1.0, {"jax": None})])], tmp_path / "empty.png")
