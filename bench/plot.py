"""The plot of the benchmark page: each pair's ratios that have a target, per backend.

`bench.report.write` draws it beside the page (`benchmarks.md` ->
`benchmarks.png`) from `bench.report.headline_ratios`. Matplotlib's Agg
canvas draws it, without pyplot's global state; matplotlib is imported at the
first plot, so that the benchmark runs where it is missing (the page then
says so).
"""

# One color per backend, the same in every panel.
BACKEND_COLORS = {"jax": "#4c72b0", "tensorflow": "#dd8452", "torch": "#55a868"}


def plot_ratios(ratios, path):
    """Draws the ratios as horizontal bars, one panel per pair, and saves a PNG; returns `path`.

    Each ratio is a group of bars, one per backend, with its target drawn as
    a black tick and 1.0 (as fast as the denominator) as a grey line. A
    missing value (a failed or absent configuration) leaves its bar out.

    Args:
        ratios: A list of `(pair title, rows)`, each row
            `(ratio name, target, {backend: value or None})`: what
            `bench.report.headline_ratios` returns.
        path: The PNG file to write.

    Returns:
        `path`.

    Raises:
        ValueError: If `ratios` holds no value to draw.
    """
    panels = [(title, rows) for title, rows in ratios if _values(rows)]
    if not panels:
        raise ValueError("No ratio has a value to plot: every configuration it needs failed or was not run.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    backends = sorted({backend for _, rows in panels for _, _, values in rows for backend in values})
    heights = [len(rows) * (0.25 * len(backends) + 0.35) + 0.9 for _, rows in panels]
    figure = Figure(figsize=(9, sum(heights) + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes_list = figure.subplots(len(panels), 1, squeeze=False, height_ratios=heights)[:, 0]
    targets = [target for _, rows in panels for _, target, _ in rows if target is not None]
    right = 1.1 * max(1.0, *targets, *(value for _, rows in panels for value in _values(rows)))
    for axes, (title, rows) in zip(axes_list, panels):
        _draw_panel(axes, title, rows, backends)
        axes.set_xlim(0, right)
    axes_list[-1].set_xlabel("ratio of seconds per epoch on one backend (lower is faster)")
    handles = [Patch(color=BACKEND_COLORS.get(backend), label=backend) for backend in backends]
    figure.legend(handles=handles, loc="outside upper right", ncols=len(backends), fontsize="small")
    figure.savefig(path, format="png")
    return path


def _draw_panel(axes, title, rows, backends):
    bar_height = 0.8 / len(backends)
    for row_index, (_, target, values) in enumerate(rows):
        for backend_index, backend in enumerate(backends):
            value = values.get(backend)
            if value is None:
                continue
            centre = row_index + (backend_index - (len(backends) - 1) / 2) * bar_height
            axes.barh(centre, value, height=bar_height, color=BACKEND_COLORS.get(backend))
            axes.text(value, centre, f" {value:.2f}", va="center", fontsize="x-small")
        if target is not None:
            axes.plot([target, target], [row_index - 0.45, row_index + 0.45], color="black", linewidth=2)
    axes.axvline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes.set_yticks(range(len(rows)), [_label(name, target) for name, target, _ in rows], fontsize="small")
    axes.invert_yaxis()
    axes.set_title(title, fontsize="medium", loc="left")


def _label(name, target):
    return name if target is None else f"{name}\n(target <= {target:.2f})"


def _values(rows):
    return [value for _, _, values in rows for value in values.values() if value is not None]
