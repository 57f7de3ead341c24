"""The benchmark page (docs/results/benchmarks.md) from the results of one `python -m bench` run.

The whole page is generated, so that it always describes one run of the code
that wrote it: what each benchmark measures and how to read it (fixed text,
below), the run (command, date, duration, load, machine), the tables, the
ratios against their targets, and a plot of those ratios beside the page
(`bench.plot`; `benchmarks.md` -> `benchmarks.png`).
"""

import os
import statistics

from bench import on_policy as on_policy_bench
from bench import workload
from bench.pairs import PAIRS

# (name, numerator configs, denominator configs, limit): the ratio is
# sum(numerator seconds) / sum(denominator seconds) on one backend.
TARGETS = (
    ("uncached KD (logits) / core Distiller (logits)", ("kd_logits",), ("core_logits",), 1.00),
    ("uncached KD (+ features) / core Distiller (+ features)", ("kd_features",), ("core_features",), 0.80),
    (
        "uncached KD (logits) / (student alone + teacher inference)",
        ("kd_logits",),
        ("student", "teacher_inference"),
        1.10,
    ),
    ("cached KD (logits) / student alone", ("kd_cached",), ("student",), 1.15),
    (
        "uncached KD (+ features) / (student alone + teacher inference)",
        ("kd_features",),
        ("student", "teacher_inference"),
        None,
    ),
    ("cached KD (+ features) / student alone", ("kd_cached_features",), ("student",), None),
)
# Where a step is this short, the cache must cost what the student's own data
# path costs, and the Distiller no more than core's.
OVERHEAD_TARGETS = (
    ("cached KD (logits) / student alone", ("kd_cached",), ("student",), 1.10),
    ("uncached KD (logits) / core Distiller (logits)", ("kd_logits",), ("core_logits",), 1.00),
    (
        "uncached KD (logits) / (student alone + teacher inference)",
        ("kd_logits",),
        ("student", "teacher_inference"),
        None,
    ),
    ("teacher inference / student alone", ("teacher_inference",), ("student",), None),
)
# The pairs whose targets are not `TARGETS`.
PAIR_TARGETS = {"overhead": OVERHEAD_TARGETS}

# What the page says before the run's tables: true of every run.
HOW_TO_READ = """\
## What is measured

Each configuration trains (or, for the teacher, predicts) on random data of its pair's input shape;
speed does not depend on the values. One epoch is one pass over the pair's images.

| configuration | what it times |
|---|---|
| student alone | `student.fit` on the labels: the floor that distillation adds to. |
| teacher inference | `teacher.predict` over the epoch's images: what one pass of the teacher costs. |
| keras_kd KD, uncached | `keras_kd.Distiller(teacher, student).fit`: the teacher runs inside every step. "+ features" adds a `FeatureMatch` (MSE) term. |
| keras_kd KD, cached | The same Distiller fitted on a `TeacherCache` of the teacher's outputs: no teacher in the step. Building the cache (one teacher pass) is timed apart. |
| core Distiller | Core Keras's `keras.distillation.Distiller` with its `LogitsDistillation` (KL divergence) and, for "+ features", `FeatureDistillation`. |
| pure-PyTorch loop | A hand-written PyTorch loop (`bench/torch_loop.py`) on twins of the Keras models: the same math without Keras. "Teacher's precomputed" is its cached twin. |

The pairs (`bench/pairs.py`) sit at three points of one range:

- **small**: a VGG-style CNN teacher several times as costly as its small CNN student. Here the teacher
  dominates an uncached step, and a cache pays off most.
- **resnet**: a ResNet-50 teacher with an ImageNet stem and a ResNet-18 student with a CIFAR stem, on
  32x32 images. The stems make the student the costly one, so KD costs about what the student costs,
  cached or not.
- **overhead**: an MLP teacher and a tiny MLP student whose steps are short, so that the Distiller's own
  per-step work and the data path decide the speed, as they do for most pairs on a fast GPU.

## How to read the tables

- **Seconds per epoch** are the fastest of the timed epochs; in brackets, images per second; then
  how much slower the slowest epoch was. That last figure is the spread the machine's load caused:
  a difference between two rows smaller than their spread is not a result.
- **Separate or interleaved.** By default each configuration runs in a fresh process (so that its
  peak memory is its own), warms up, then times its epochs. *Interleaved* pairs (the overhead-bound
  one, and every pair under `--interleave`) build every configuration in one process per backend
  and time one epoch of each in turn, round after round, so that a slow spell of the machine falls
  on all of them alike. Where a `fit` runs several epochs, each epoch is timed inside it, leaving out
  the per-call set-up of `fit`, as a user's `fit(epochs=...)` pays it once.
- **Ratios** divide seconds per epoch on one backend: below 1.00 the numerator is faster. Each
  target says what keras_kd aims for: uncached KD no slower than core's Distiller; uncached KD
  close to the student and the teacher run back to back (the Distiller adds little of its own); cached KD
  close to the student alone. "met" and "**missed**" compare the fastest epochs with the target;
  for interleaved runs, "paired" is the median over rounds of each round's own ratio, which moves
  less with the load. A ratio that misses its target by less than its rows' spread is within
  the noise of the run.
- **Two denominators to read with care.** `teacher.predict` copies each batch's outputs to NumPy
  and runs the batches one at a time, so it can cost more than the teacher inside a compiled KD
  step: "(student alone + teacher inference)" is a generous denominator. With features, core's
  Distiller runs the student a second time (through a feature extractor) where keras_kd runs it
  once; what that saves is one student forward pass, large only where the student is costly.
- **Memory** is the peak resident memory of the configuration's process (for interleaved runs, of
  the one process that held them all); in brackets, above the process's memory before it imported
  the framework.
- **Against the pure-PyTorch loop**, the fastest backend's keras_kd throughput is divided by the
  loop's: at or above 1.00 keras_kd is as fast as the hand-written loop.
- **Scaling** tables repeat the ratios at another batch size (small pair) and across the pairs.

Other measurements live beside this one, each its own command in `bench/`: the cached step alone
(`bench.cached_step`), a tuner-like sweep on one cache (`bench.cache_sweep`), the top-k and view
caches (`bench.topk_cache`, `bench.view_cache`, whose runs are on
[the teacher cache studies](cache-studies.md) page), the peak memory of the losses at
language-model vocabularies (`bench.loss_memory`), the on-policy step against its parts and its
memory at Gemma 3's vocabulary (`bench.on_policy`: the section above, which `python -m bench` runs
unless `--no-on-policy`), the per-step checks (`bench.step_checks`) and profiles
(`bench.profile_cached`, `bench.profile_uncached`). `python -m bench --gpu-suite` is the GPU matrix
in one call (`bench/gpu_setup.sh` prepares a GPU machine).
"""


def targets(pair_name):
    """The `(name, numerator, denominator, limit)` ratios reported for a pair."""
    return PAIR_TARGETS.get(pair_name, TARGETS)


def verdict_lines(results):
    """One line per pair, backend and ratio with a target: the run's verdicts, for the console."""
    main = [result for result in results if result.get("group", "main") == "main"]
    lines = []
    for pair_name in _ordered(result["pair"] for result in main):
        by_key = {(r["backend"], r["config"]): r for r in main if r["pair"] == pair_name}
        backends = _ordered(backend for backend, _ in by_key if backend != "pytorch")
        for name, numerator, denominator, limit in targets(pair_name):
            if limit is None:
                continue
            for backend in backends:
                value = _ratio(by_key, backend, numerator, denominator)
                if value is not None:
                    line = f"{pair_name} {backend}: {name} = {_verdict(value, limit)} (target <= {limit:.2f})"
                    paired = _paired_ratio(by_key, backend, numerator, denominator)
                    lines.append(line if paired is None else f"{line}; paired rounds {paired:.2f}")
    return lines


def headline_ratios(results):
    """Each pair's ratios that have a target, per backend: what the page's plot draws.

    Returns:
        A list of `(pair label, rows)`, each row `(ratio name, limit,
        {backend: ratio or None})`, leaving out the ratios that no backend
        could compute.
    """
    main = [result for result in results if result.get("group", "main") == "main"]
    ratios = []
    for pair_name in _ordered(result["pair"] for result in main):
        by_key = {(r["backend"], r["config"]): r for r in main if r["pair"] == pair_name}
        backends = _ordered(backend for backend, _ in by_key if backend != "pytorch")
        rows = []
        for name, numerator, denominator, limit in targets(pair_name):
            values = {backend: _ratio(by_key, backend, numerator, denominator) for backend in backends}
            if limit is not None and any(value is not None for value in values.values()):
                rows.append((name, limit, values))
        if rows:
            ratios.append((f"{pair_name} pair: {_sizes_label(main, pair_name)}", rows))
    return ratios


def write(path, run_info, results, on_policy=None):
    """Writes the page to `path` and its plot beside it (`.md` -> `.png`); returns the plot's path or None.

    The plot is left out, and the page says so, where matplotlib is not
    installed or no ratio could be computed. `on_policy` holds the results
    of `bench.on_policy` for the page's on-policy section (None: no section).
    """
    plot_path = os.path.splitext(path)[0] + ".png"
    try:
        from bench import plot

        plot.plot_ratios(headline_ratios(results), plot_path)
        plot_note = None
    except ImportError as error:
        plot_path, plot_note = None, f"No plot: {error}."
    except ValueError as error:
        plot_path, plot_note = None, f"No plot: {error}"
    with open(path, "w") as file:
        file.write(render(run_info, results, plot_path=plot_path, plot_note=plot_note, on_policy=on_policy) + "\n")
    return plot_path


def render(run_info, results, plot_path=None, plot_note=None, on_policy=None):
    """The benchmark page, as a string; `plot_path` is shown by its file name (beside the page)."""
    main = [result for result in results if result.get("group", "main") == "main"]
    lines = [
        "# Benchmarks",
        "",
        "keras_kd's Distiller against the student alone, the teacher's inference, core Keras's "
        "`keras.distillation.Distiller` and a hand-written PyTorch loop. This page is written whole by "
        "`python -m bench` (the harness in `bench/`) from one run: the command, date and machine are "
        "under *Run*; run the command again to regenerate it. What each configuration and pair "
        "measures, and how to read the tables, is at the end: [What is measured](#what-is-measured).",
        "",
    ]
    if plot_path is not None:
        lines += [
            f"![Each pair's ratios with a target, per backend]({os.path.basename(plot_path)})",
            "",
            "*The ratios that have a target, from the tables below: bars per backend, the target as a "
            "black tick, 1.00 as a dashed line; lower is faster.*",
            "",
        ]
    elif plot_note:
        lines += [f"*{plot_note}*", ""]
    lines += _machine_section(run_info)
    lines += _scope_lines(results)
    errors = [result for result in results if "error" in result]
    if errors:
        lines += ["## Failed configurations", ""]
        lines += [f"- {r['backend']} / {r['pair']} / {r['config']}: `{_one_line(r['error'])}`" for r in errors]
        lines.append("")
    for pair_name in _ordered(result["pair"] for result in main):
        pair_results = [result for result in main if result["pair"] == pair_name]
        lines += _pair_section(PAIRS[pair_name], pair_results)
    lines += _pytorch_section(main)
    lines += _scaling_sections(results)
    lines += _on_policy_section(on_policy)
    lines.append(HOW_TO_READ)
    return "\n".join(lines).rstrip("\n")


def _machine_section(run_info):
    machine = run_info["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    start, end = run_info["load_start"], run_info["load_end"]
    return [
        "## Run",
        "",
        f"- Command: `{run_info['command']}` (from the repository root, in the project's venv)"
        + (" — a smoke run: tiny sizes, not a measurement" if run_info["smoke"] else ""),
        f"- Started {run_info['started']}; took {run_info['wall_seconds']:.0f} s; "
        f"{run_info['warmup_steps']} warm-up step(s) before each configuration's timed epochs.",
        f"- Load average (1, 5, 15 min) at the start: {_load(start)}; at the end: {_load(end)}. "
        "Absolute times carry that load; each ratio is taken within one backend's runs.",
        f"- CPU: {machine['cpu_model']}, {machine['logical_cores']} logical cores; "
        f"{machine['platform']}; Python {machine['python']}.",
        f"- Versions: {versions}.",
        _accelerator_line(machine.get("accelerator"), run_info.get("dtype_policy", "float32")),
        "",
    ]


def _scope_lines(results):
    """What the default run times that this one left out (options such as `--pairs`), if anything."""
    pairs = {result["pair"] for result in results}
    configs = {result["config"] for result in results}
    left_out = [f"the {name} pair" for name in PAIRS if name not in pairs]
    left_out += [f"{workload.CONFIGS[config]}" for config in workload.CONFIGS if config not in configs]
    if "small" in pairs and not any(result.get("group") == "scaling" for result in results):
        left_out.append("the batch-size scaling runs")
    if not results or not left_out:
        return []
    return [
        "This run times part of what `python -m bench` times by default; it leaves out "
        + "; ".join(left_out)
        + ". The ratios that need them are shown as —.",
        "",
    ]


def _accelerator_line(accelerator, dtype_policy):
    if accelerator is None:
        return f"- No GPU was available for this run; Keras dtype policy {dtype_policy}."
    return f"- GPU: {accelerator}; Keras dtype policy {dtype_policy}."


def _sizes_label(results, pair_name):
    """`4.7M -> 0.17M parameters` for a pair, from any of its results that has the counts."""
    counted = next((r for r in results if r["pair"] == pair_name and "teacher_parameters" in r), None)
    if counted is None:
        return PAIRS[pair_name].title
    return f"{counted['teacher_parameters'] / 1e6:.1f}M -> {counted['student_parameters'] / 1e6:.2f}M parameters"


def _pair_section(pair, results):
    backends = _ordered(r["backend"] for r in results if r["backend"] != "pytorch")
    any_result = next((r for r in results if "error" not in r), None)
    lines = [f"## {pair.title}", ""]
    interleaved = any(r.get("interleaved") for r in results)
    if any_result is not None:
        features = (
            f" Feature matching: teacher `{pair.teacher_feature}` -> student "
            f"`{pair.student_feature}` (MSE, same shape, no adapter)."
            if pair.teacher_feature
            else ""
        )
        epochs_per_fit = any_result.get("epochs_per_fit", 1)
        unit = "one epoch" if epochs_per_fit == 1 else f"one `fit` of {epochs_per_fit} epochs, each timed inside it"
        timing = (
            f"*Interleaved*: {any_result['repeats']} round(s) of {unit} of each configuration in turn."
            if interleaved
            else f"Each configuration in its own process: {any_result['repeats']} timed round(s) of {unit}."
        )
        lines += [
            f"Teacher {any_result['teacher_parameters']:,} trainable parameters, student "
            f"{any_result['student_parameters']:,}; {any_result['images']} images per epoch, "
            f"batch {any_result['batch_size']}.{features} T = {workload.TEMPERATURE:g}, "
            f"alpha = {workload.ALPHA:g}, Adam {workload.LEARNING_RATE:g}. {timing}",
            "",
        ]
    by_key = {(r["backend"], r["config"]): r for r in results}
    configs = [c for c in workload.CONFIGS if any(r["config"] == c for r in results)]
    columns = backends + (["pytorch"] if any(r["backend"] == "pytorch" for r in results) else [])
    lines += [
        "Seconds per epoch, the fastest of the repeats (images per second; then how much "
        "slower the slowest repeat was):",
        "",
        "| configuration | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for config in configs:
        cells = [_time_cell(by_key.get((backend, config))) for backend in columns]
        lines.append(f"| {workload.CONFIGS[config]} | " + " | ".join(cells) + " |")
    cached = [by_key.get((b, "kd_cached")) for b in backends]
    if any(r and "cache_build_seconds" in r for r in cached):
        cells = [f"{r['cache_build_seconds']:.2f} s" if r and "cache_build_seconds" in r else "—" for r in cached]
        cells += ["—"] * (len(columns) - len(cells))
        lines.append("| building the cache (once; teacher over all images) | " + " | ".join(cells) + " |")
    lines.append("")
    if interleaved:
        lines += _shared_memory_lines(results, columns)
    else:
        lines += [
            "Peak resident memory of the configuration's process, MiB (in brackets: above the "
            "process's memory before it imported the framework, with the data loaded):",
            "",
            "| configuration | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for config in configs:
            cells = [_memory_cell(by_key.get((backend, config))) for backend in columns]
            lines.append(f"| {workload.CONFIGS[config]} | " + " | ".join(cells) + " |")
    lines += ["", "Ratios of seconds per epoch on the same backend (target in brackets):", ""]
    lines += ["| ratio | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
    for name, numerator, denominator, limit in targets(pair.name):
        cells = []
        for backend in backends:
            value = _ratio(by_key, backend, numerator, denominator)
            paired = _paired_ratio(by_key, backend, numerator, denominator)
            cells.append(_verdict(value, limit) + ("" if paired is None else f" (paired {paired:.2f})"))
        label = name + (f" (<= {limit:.2f})" if limit is not None else " (no target)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _on_policy_section(on_policy):
    """The section of `bench.on_policy`'s results, a line saying why they are missing, or nothing."""
    if on_policy is None:
        return []
    if "error" in on_policy:
        return [
            f"## {on_policy_bench.TITLE}",
            "",
            f"`python -m bench.on_policy` failed: `{_one_line(on_policy['error'])}`",
            "",
        ]
    return on_policy_bench.section_lines(on_policy)


def _shared_memory_lines(results, columns):
    """The peak memory of each interleaved process (one per backend, every configuration in it)."""
    cells = []
    for column in columns:
        peaks = [r for r in results if r["backend"] == column and "error" not in r]
        if peaks:
            cells.append(f"{column} {_memory_cell(max(peaks, key=lambda r: r['peak_rss_mb']))}")
    return [
        "Peak resident memory, MiB, of the one process that held every configuration (in "
        "brackets: above its memory before it imported the framework, with the data loaded): " + ", ".join(cells) + "."
    ]


def _pytorch_section(results):
    torch_runs = {(r["pair"], r["config"]): r for r in results if r["backend"] == "pytorch" and "error" not in r}
    if not torch_runs:
        return []
    lines = [
        "## Best keras_kd backend against the pure-PyTorch loop (target >= 1.00)",
        "",
        "Throughput (images per second) of the fastest backend's keras_kd KD over the hand-written "
        "PyTorch loop's, on the pairs that have PyTorch twins:",
        "",
        "| pair | keras_kd configuration | vs PyTorch loop | best backend | ratio |",
        "|---|---|---|---|---|",
    ]
    comparisons = (
        ("kd_logits", "torch_logits", 1.0),
        ("kd_features", "torch_features", 1.0),
        ("kd_cached", "torch_logits", None),
        ("kd_cached", "torch_cached", None),
        ("kd_cached_features", "torch_features", None),
    )
    for pair in _ordered(pair for pair, _ in torch_runs):
        for kd_config, torch_config, limit in comparisons:
            candidates = [r for r in results if r["config"] == kd_config and r["pair"] == pair and "error" not in r]
            if not candidates or (pair, torch_config) not in torch_runs:
                continue
            best = max(candidates, key=lambda r: r["images_per_second"])
            ratio = best["images_per_second"] / torch_runs[pair, torch_config]["images_per_second"]
            verdict = _verdict(ratio, limit, at_least=True)
            lines.append(
                f"| {pair} | {workload.CONFIGS[kd_config]} | {workload.CONFIGS[torch_config]} | "
                f"{best['backend']} | {verdict}{'' if limit else ' (no target)'} |"
            )
    lines.append("")
    for pair in _ordered(pair for pair, _ in torch_runs):
        cached, student = torch_runs.get((pair, "torch_cached")), torch_runs.get((pair, "torch_student"))
        if cached and student:
            lines += [
                f"The same in hand-written PyTorch, {pair} pair: the loop on precomputed teacher logits "
                f"takes {cached['seconds'] / student['seconds']:.2f}x the student alone's epoch "
                "(what the distillation math itself adds to the step, without Keras).",
                "",
            ]
    return lines


def _scaling_sections(results):
    lines = []
    # The main table's runs of the small pair give the scaling table's middle column.
    scaling = [r for r in results if r["pair"] == "small" and r["config"] in ("student", "kd_logits", "kd_cached")]
    batch_sizes = sorted({r["batch_size"] for r in scaling if r.get("group") == "scaling"})
    if batch_sizes:
        all_batches = sorted({r["batch_size"] for r in scaling})
        backends = _ordered(r["backend"] for r in scaling)
        by_key = {(r["backend"], r["config"], r["batch_size"]): r for r in scaling}
        lines += [
            "## Scaling with batch size (small pair)",
            "",
            "Images per second; in brackets, KD's seconds per epoch over the student alone's at the same batch size.",
            "",
            "| backend | configuration | " + " | ".join(f"batch {b}" for b in all_batches) + " |",
            "|---|---|" + "---|" * len(all_batches),
        ]
        for backend in backends:
            for config in ("student", "kd_logits", "kd_cached"):
                cells = []
                for batch in all_batches:
                    result = by_key.get((backend, config, batch))
                    if result is None or "error" in result:
                        cells.append("—")
                        continue
                    cell = f"{result['images_per_second']:.0f}"
                    student = by_key.get((backend, "student", batch))
                    if config != "student" and student and "error" not in student:
                        cell += f" ({result['seconds'] / student['seconds']:.2f}x)"
                    cells.append(cell)
                lines.append(f"| {backend} | {workload.CONFIGS[config]} | " + " | ".join(cells) + " |")
        lines.append("")
    main = [r for r in results if r.get("group", "main") == "main" and "error" not in r]
    pairs = _ordered(r["pair"] for r in main)
    if len(pairs) > 1:
        backends = _ordered(r["backend"] for r in main if r["backend"] != "pytorch")
        by_key = {(r["backend"], r["pair"], r["config"]): r for r in main}
        lines += [
            "## Scaling with model size",
            "",
            "The same ratios for each pair, side by side: KD's cost over the student alone's, uncached and cached.",
            "",
            "| backend | pair (teacher -> student parameters) | student alone, img/s | uncached KD / student | uncached KD / (student + teacher) | cached KD / student |",
            "|---|---|---|---|---|---|",
        ]
        for backend in backends:
            for pair in pairs:
                student = by_key.get((backend, pair, "student"))
                if student is None:
                    continue
                size = (
                    f"{pair}: {student['teacher_parameters'] / 1e6:.1f}M -> {student['student_parameters'] / 1e6:.2f}M"
                )
                cells = [
                    f"{student['images_per_second']:.0f}",
                    _verdict(_ratio(by_key, backend, ("kd_logits",), ("student",), pair), None),
                    _verdict(_ratio(by_key, backend, ("kd_logits",), ("student", "teacher_inference"), pair), None),
                    _verdict(_ratio(by_key, backend, ("kd_cached",), ("student",), pair), None),
                ]
                lines.append(f"| {backend} | {size} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _ratio(by_key, backend, numerator, denominator, pair=None):
    def seconds(config):
        key = (backend, config) if pair is None else (backend, pair, config)
        result = by_key.get(key)
        return None if result is None or "error" in result else result["seconds"]

    top = [seconds(config) for config in numerator]
    bottom = [seconds(config) for config in denominator]
    if None in top or None in bottom:
        return None
    return sum(top) / sum(bottom)


def _paired_ratio(by_key, backend, numerator, denominator):
    """The median over rounds of the ratio within each round, for interleaved runs; else None.

    Every round of an interleaved run times each configuration once, back to
    back: a slow spell of a shared machine slows both sides of that round's
    ratio, so this median moves less than the ratio of the fastest epochs
    (on which the verdicts stay).
    """
    results = [by_key.get((backend, config)) for config in (*numerator, *denominator)]
    if any(result is None or "error" in result or not result.get("interleaved") for result in results):
        return None
    rounds = {len(result["epoch_seconds"]) for result in results}
    if len(rounds) != 1:
        return None
    top = [sum(values) for values in zip(*(result["epoch_seconds"] for result in results[: len(numerator)]))]
    bottom = [sum(values) for values in zip(*(result["epoch_seconds"] for result in results[len(numerator) :]))]
    return statistics.median(t / b for t, b in zip(top, bottom))


def _verdict(value, limit, at_least=False):
    if value is None:
        return "—"
    if limit is None:
        return f"{value:.2f}"
    met = value >= limit if at_least else value <= limit
    shown = f"{value:.2f}"
    if float(shown) == limit and value != limit:
        # Two decimals would show the limit itself, met or missed.
        shown = f"{value:.3f}"
    return f"{shown} {'met' if met else '**missed**'}"


def _time_cell(result):
    if result is None:
        return "—"
    if "error" in result:
        return "failed"
    # Epochs of the overhead-bound pair take hundredths of a second.
    seconds = result["seconds"]
    cell = f"{seconds:.2f}" if seconds >= 1 else f"{seconds:.3f}"
    cell += f" ({result['images_per_second']:.0f})"
    slowest = max(result["epoch_seconds"])
    if len(result["epoch_seconds"]) > 1:
        # The spread between repeats shows how much the shared machine's load moved it.
        cell += f" +{100 * (slowest / result['seconds'] - 1):.0f}%"
    return cell


def _memory_cell(result):
    if result is None or "error" in result:
        return "—"
    return f"{result['peak_rss_mb']:.0f} (+{result['peak_rss_mb'] - result['rss_before_mb']:.0f})"


def _load(values):
    return ", ".join(f"{value:.2f}" for value in values)


def _one_line(text):
    return " ".join(str(text).split())[-300:]


def _ordered(values):
    seen = []
    for value in values:
        if value not in seen:
            seen.append(value)
    return seen
