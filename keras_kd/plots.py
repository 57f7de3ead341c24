"""PNG plots of a training run, a comparison report and a sweep (matplotlib, Agg).

`plot_history(history, path)` draws the curves of a `fit` run (each loss
term, accuracy and teacher agreement, temperature and alpha, validation
dashed); `plot_comparison(report, path)` draws a `keras_kd.report.Report` as
bars; `plot_heatmap(rows, path)` draws the trials of a `keras_kd.tuning`
search as a temperature x alpha grid. All draw on a
`matplotlib.figure.Figure` rendered by the Agg canvas, so they work without
a display and leave pyplot's global state alone.

Needs matplotlib (`pip install 'keras_kd[plots]'`), imported at the first
plot, so that `import keras_kd.plots` (and a deployment without matplotlib)
stays light.
"""

import math
import os

import numpy as np

from keras_kd._optional import import_optional
from keras_kd.atomic import atomic_file

DEFAULT_SIZE = (1200, 800)
DEFAULT_DPI = 100
_VALIDATION_PREFIX = "val_"


def plot_history(history, path, *, size=DEFAULT_SIZE, dpi=DEFAULT_DPI, title=None):
    """Saves the training curves of `history` as a PNG; returns `path`.

    One panel per kind of value, each only if the history has it:
    "Loss terms" (`loss`, `distillation_loss`, `student_loss`, feature
    terms: anything not listed below; log scale when they span more than
    100x), "Accuracy" (`*accuracy*` and `teacher_agreement`, in %),
    "Temperature" and "Alpha". Validation values (`val_*`) are dashed in
    the color of their training curve.

    Args:
        history: A `keras.callbacks.History` (what `fit` returns) or a dict
            of name -> list of per-epoch values.
        path: The PNG file to write.
        size: `(width, height)` of the image in pixels.
        dpi: Resolution used to convert `size` to inches.
        title: Optional title above the panels.

    Returns:
        `path`.

    Raises:
        TypeError: if `history` is neither a History nor a dict.
        ValueError: if it holds no numeric per-epoch values.

    Example:

    ```python
    import os
    import tempfile

    from keras_kd import plots

    # What `Distiller.fit(...).history` holds, for three epochs.
    history = {
        "loss": [1.2, 0.8, 0.6],
        "distillation_loss": [1.0, 0.7, 0.5],
        "student_loss": [2.0, 1.1, 0.9],
        "accuracy": [0.5, 0.7, 0.8],
        "val_accuracy": [0.45, 0.65, 0.75],
    }
    path = plots.plot_history(history, os.path.join(tempfile.mkdtemp(), "training.png"))
    assert os.path.getsize(path) > 0
    ```
    """
    series = _history_series(history)
    panels = {"Loss terms": [], "Accuracy (%)": [], "Temperature": [], "Alpha": []}
    for name in series:
        panels[_panel_of(name)].append(name)
    panels = {title_: names for title_, names in panels.items() if names}
    figure, axes_list = _figure_grid(len(panels), size, dpi)
    for axes, (panel_title, names) in zip(axes_list, panels.items()):
        _draw_curves(axes, names, series, percent=panel_title.startswith("Accuracy"))
        axes.set_title(panel_title)
        if panel_title == "Loss terms":
            _log_scale_if_wide(axes, [series[name] for name in names])
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def plot_comparison(report, path, *, size=DEFAULT_SIZE, dpi=DEFAULT_DPI, title=None):
    """Saves a `keras_kd.report.Report` as bar charts in a PNG; returns `path`.

    Panels: test accuracy and agreement with the teacher (%), expected
    calibration error (%), parameters, size (MB), latency per sample (ms,
    p50, one bar per batch size) and throughput (samples/s, per batch size).

    Args:
        report: A `Report`, or its `to_dict()`.
        path: The PNG file to write.
        size: `(width, height)` of the image in pixels.
        dpi: Resolution used to convert `size` to inches.
        title: Title above the panels (default: the backend and device).

    Returns:
        `path`.

    Example:

    ```python
    import os
    import tempfile

    import numpy as np

    from keras_kd import models, plots, report

    x, y = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32"), np.arange(16) % 10
    compared = report.compare(
        {
            "teacher": models.mlp_student(input_shape=(8, 8, 1), hidden_units=(16,)),
            "student": models.mlp_student(input_shape=(8, 8, 1), hidden_units=(4,)),
        },
        (x, y),
        teacher="teacher",
        batch_sizes=(8,),
        warmup_batches=1,
        timed_batches=1,
    )
    path = plots.plot_comparison(compared, os.path.join(tempfile.mkdtemp(), "comparison.png"))
    assert os.path.getsize(path) > 0
    ```
    """
    data = report if isinstance(report, dict) else report.to_dict()
    metrics = data["models"]
    names = list(metrics)
    if not names:
        raise ValueError("The report holds no models to plot.")
    figure, axes_list = _figure_grid(6, size, dpi)
    accuracy, calibration, parameters, file_size, latency, throughput = axes_list

    def per_model(key):
        return [metrics[name][key] for name in names]

    def per_batch_size(key):
        by_batch_size = {}
        for name in names:
            for timing in metrics[name]["latency"]:
                by_batch_size.setdefault(timing["batch_size"], []).append(timing[key])
        return {f"batch {batch}": values for batch, values in by_batch_size.items()}

    quality = {"test accuracy": per_model("test_accuracy")}
    if data.get("teacher") is not None:
        quality["agreement with teacher"] = per_model("teacher_agreement")
    bins = data["settings"]["calibration_bins"]
    _grouped_bars(accuracy, names, quality, "Accuracy (%)", zoom=True)
    _grouped_bars(
        calibration,
        names,
        {"ECE": per_model("expected_calibration_error")},
        f"Calibration error (%, {bins} bins)",
    )
    _grouped_bars(parameters, names, {"parameters": per_model("parameters")}, "Parameters")
    _grouped_bars(file_size, names, {"size": per_model("size_mb")}, "Size of .keras (MB)")
    _grouped_bars(latency, names, per_batch_size("p50_ms_per_sample"), "Latency p50 (ms/sample)", log=True)
    _grouped_bars(throughput, names, per_batch_size("throughput"), "Throughput (samples/s)", log=True)
    environment = data.get("environment", {})
    figure.suptitle(title or f"{environment.get('backend', '?')} on {environment.get('device', '?')}")
    return _save(figure, path)


def plot_heatmap(rows, path, *, title="", objective="val_accuracy"):
    """Saves a temperature x alpha heatmap of the best score per cell as a PNG; returns `path`.

    Where several trials share a cell (other learning rates, decay on/off,
    Hyperband rounds) the cell shows the best. Untried cells are blank; the
    best cell is outlined.

    Args:
        rows: Trials as dicts with `temperature`, `alpha` and `objective`
            (a score in [0, 1], or None for an unfinished trial), as
            `keras_kd.tuning.collect_trials` returns them.
        path: The PNG file to write.
        title: Title above the grid (default: the score's name).
        objective: The key of the score in each row, shown in %.

    Returns:
        `path`.

    Example:

    ```python
    import os
    import tempfile

    from keras_kd import plots

    rows = [
        {"temperature": 2.0, "alpha": 0.5, "val_accuracy": 0.75},
        {"temperature": 8.0, "alpha": 0.5, "val_accuracy": 0.80},
        {"temperature": 8.0, "alpha": 0.9, "val_accuracy": None},  # Unfinished.
    ]
    path = plots.plot_heatmap(rows, os.path.join(tempfile.mkdtemp(), "heatmap.png"))
    assert os.path.getsize(path) > 0
    ```
    """
    scored = [row for row in rows if row.get(objective) is not None]
    temperatures = sorted({row["temperature"] for row in scored})
    alphas = sorted({row["alpha"] for row in scored})
    grid = np.full((len(temperatures), len(alphas)), np.nan)
    for row in scored:
        cell = temperatures.index(row["temperature"]), alphas.index(row["alpha"])
        grid[cell] = np.nanmax([grid[cell], 100.0 * row[objective]])
    name = (
        f"validation {objective[len(_VALIDATION_PREFIX) :]}" if objective.startswith(_VALIDATION_PREFIX) else objective
    )
    label = f"{name.replace('_', ' ')} (%)"  # "val_accuracy" -> "validation accuracy (%)"
    figure = _new_figure(figsize=(max(5.5, 2.0 + 0.9 * len(alphas)), max(3.5, 1.5 + 0.6 * len(temperatures))), dpi=120)
    axes = figure.subplots()
    image = axes.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    axes.set_xticks(range(len(alphas)), [f"{value:g}" for value in alphas])
    axes.set_yticks(range(len(temperatures)), [f"{value:g}" for value in temperatures])
    axes.set_xlabel("alpha (weight of the distillation term)")
    axes.set_ylabel("temperature T")
    axes.set_title(title or label, fontsize=10)
    figure.colorbar(image, ax=axes, label=label)
    if scored:
        from matplotlib.patches import Rectangle

        finite = grid[np.isfinite(grid)]
        middle = (finite.min() + finite.max()) / 2
        for (row_index, column_index), value in np.ndenumerate(grid):
            if np.isfinite(value):
                color = "black" if value > middle else "white"
                axes.text(column_index, row_index, f"{value:.1f}", ha="center", va="center", fontsize=8, color=color)
        best_row, best_column = np.unravel_index(np.nanargmax(grid), grid.shape)
        axes.add_patch(Rectangle((best_column - 0.5, best_row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    figure.tight_layout()
    return _save(figure, path)


# ------------------------------------------------------------------ helpers


def _history_series(history):
    values = getattr(history, "history", history)
    if not isinstance(values, dict):
        raise TypeError(
            "`history` must be a keras.callbacks.History (what fit returns) or a dict "
            f"of name -> per-epoch values; got {type(history).__name__}."
        )
    series = {}
    for name, points in values.items():
        try:
            array = np.asarray(points, dtype="float64").reshape(-1)
        except (TypeError, ValueError):
            continue  # Not a numeric series: nothing to draw.
        if array.size:
            series[str(name)] = array
    if not series:
        raise ValueError(f"`history` holds no numeric per-epoch values; its keys: {list(values)}.")
    return series


def _panel_of(name):
    base = name[len(_VALIDATION_PREFIX) :] if name.startswith(_VALIDATION_PREFIX) else name
    if base == "temperature":
        return "Temperature"
    if base == "alpha":
        return "Alpha"
    if "accuracy" in base or base == "teacher_agreement":
        return "Accuracy (%)"
    return "Loss terms"


def _draw_curves(axes, names, series, percent):
    from matplotlib.ticker import MaxNLocator

    colors = {}
    for name in sorted(names, key=lambda item: item.startswith(_VALIDATION_PREFIX)):
        base = name[len(_VALIDATION_PREFIX) :] if name.startswith(_VALIDATION_PREFIX) else name
        values = series[name] * (100.0 if percent and np.nanmax(series[name]) <= 1.0 else 1.0)
        epochs = np.arange(1, len(values) + 1)
        line_style = "--" if name.startswith(_VALIDATION_PREFIX) else "-"
        (line,) = axes.plot(epochs, values, line_style, marker="o", markersize=3, label=name, color=colors.get(base))
        colors.setdefault(base, line.get_color())
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")


def _log_scale_if_wide(axes, arrays):
    values = np.concatenate(arrays)
    values = values[np.isfinite(values)]
    if values.size and values.min() > 0 and values.max() / values.min() > 100:
        axes.set_yscale("log")


def _grouped_bars(axes, names, groups, title, log=False, zoom=False):
    positions = np.arange(len(names))
    width = 0.8 / max(len(groups), 1)
    for index, (label, values) in enumerate(groups.items()):
        heights = [np.nan if value is None else value for value in values]
        bars = axes.bar(positions + (index - (len(groups) - 1) / 2) * width, heights, width, label=label)
        axes.bar_label(bars, labels=[_short_number(value) for value in heights], fontsize="x-small")
    axes.set_xticks(positions, names)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    if log:
        axes.set_yscale("log")
    finite = [value for values in groups.values() for value in values if value is not None and math.isfinite(value)]
    if zoom and finite:
        # Accuracies of 90-100 % would look equal on an axis from 0: start
        # at the decade below the lowest bar (the bar labels give the values).
        bottom = max(0.0, 10 * math.floor((min(finite) - 2) / 10))
        axes.set_ylim(bottom, max(finite) + 0.08 * (max(finite) - bottom))
    if len(groups) > 1:
        axes.legend(fontsize="small")


def _short_number(value):
    if value is None or not math.isfinite(value):
        return ""
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e5:
        return f"{value / 1e3:.0f}k"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.3g}"


def _figure_grid(panels, size, dpi):
    width, height = _check_size(size)
    columns = min(panels, 2 if panels <= 4 else 3)
    rows = math.ceil(panels / columns)
    figure = _new_figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    axes_grid = figure.subplots(rows, columns, squeeze=False).reshape(-1)
    for unused in axes_grid[panels:]:
        unused.set_visible(False)
    return figure, list(axes_grid[:panels])


def _check_size(size):
    try:
        width, height = (int(value) for value in size)
    except (TypeError, ValueError):
        raise ValueError(f"`size` must be (width, height) in pixels; got {size!r}.") from None
    if width < 100 or height < 100:
        raise ValueError(f"`size` must be at least 100x100 pixels; got {size!r}.")
    return width, height


def _save(figure, path):
    """Renders `figure` to the PNG `path`, atomically; returns `path`."""
    if not os.fspath(path).lower().endswith(".png"):
        raise ValueError(f"Plots are written as PNG; give a path ending in .png, not {os.fspath(path)!r}.")
    with atomic_file(path, suffix=".png") as temporary:
        figure.savefig(temporary, format="png", dpi=figure.dpi)
    return path


def _new_figure(**options):
    """A `matplotlib.figure.Figure` (every plot starts here, so matplotlib is checked here)."""
    import_optional("matplotlib", "keras_kd.plots")
    from matplotlib.figure import Figure

    return Figure(**options)
