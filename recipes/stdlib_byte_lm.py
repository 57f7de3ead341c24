"""Byte-level language models on the Python standard library's sources: a Transformer teacher into an 11x smaller one.

Token-level distillation of a language model, measured offline on a corpus
that every CPython 3.11 install has: the top-level modules of the standard
library (`sysconfig.get_paths()["stdlib"]`, the fixed list `STDLIB_MODULES`
below, read as raw bytes). The files are split by file, in name order: every
tenth file (the 10th, 20th, ...) is held out for the test, the 5th, 15th, ...
form a validation split (only for choosing settings, never reported as a
result), and the rest are for training. The byte counts and a SHA-256 of each
split go into `results.json`: patch releases of 3.11 edit a few of these files,
and the hashes show whether two runs read the same bytes.

Models (vocabulary: the 256 byte values; keras layers only): a pre-norm
causal Transformer teacher (an embedding, a causal convolution of width 4 as
the position signal, `--teacher-depth` blocks of causal multi-head attention
and a 4x GELU feed-forward), trained for `--epochs` x `--steps-per-epoch`
steps on the next bytes with a cosine schedule; a student of the same shape,
narrower, at least 8x fewer parameters (checked). Training batches are random
windows of `--context` bytes from the training files (never across two
files); batch `b` of epoch `e` depends only on (seed, e, b).

Every student trains with AdamW at a constant learning rate after
`--warmup-steps` of linear warm-up, so that its weights after `n` steps are
those of a run of `n` steps: one run, evaluated at checkpoints, gives every
shorter budget. Methods, from the same initial weights and batches per seed:

- labels only: `student.fit` on the next bytes (no teacher);
- `keras_kd.Distiller` with `keras_kd.losses.SoftTargetKL()` (forward KL),
  `ReverseKL()` or `GeneralizedJSD(beta=0.5)` (GKD, Agarwal et al., ICLR
  2024), T = `--temperature` (1: the teacher's own next-byte distribution),
  the teacher run in every step ("uncached"), or its outputs read from a
  `keras_kd.TeacherCache`, dense or top-`--top-k`, built once over a pool of
  windows and replayed over epochs.

The run has four phases:

1. Settings, on the validation split only: with a seed of its own (`--seed`
   + `--seeds`), labels only and forward KL at each alpha of `--alphas`,
   evaluated after each budget of `--budgets` steps on `--validation-windows`
   evenly spaced windows of the validation split. The (budget, alpha) where
   forward KL gains most over labels only is kept for every divergence.
2. Caches: dense and top-k, over the windows of the chosen budget's first
   `--cache-fraction` of batches (seed `--seed`, epoch 0); each build timed.
3. Costs: a timed calibration, interleaved over `--calibration-rounds`
   rounds of `--calibration-steps` steps, gives the steady-state seconds per
   step of labels only and of each divergence uncached, from the dense cache
   and from the top-k cache (the first step of each fit, which compiles,
   left out). Equal wall time is then enforced as step budgets: each
   divergence's uncached run of `budget` steps defines the time T; labels
   only gets T / (its step cost) steps, a cached run (T - its share of the
   cache's build time) / (its step cost). Each cache is built once and serves
   the runs of every divergence and seed, so its build time is counted once:
   each of those runs is charged its share (the build time / the number of
   runs).
4. Seeds `--seed` ... on the test split: labels only for `--labels-only-factor`
   x budget steps, evaluated at checkpoints; each divergence uncached for the
   budget and from each cache for its equal-time steps.

The measurement is held-out bits per byte: the cross-entropy of every byte of
every test file but its first (in nats, divided by ln 2, averaged over the
bytes), predicted in non-overlapping windows of `--context` bytes that restart
at each file (the last window of a file is padded, with weight 0). A unigram
model of the training bytes is given for scale. Sample efficiency: the steps
labels only needs to reach a distilled student's test bits per byte, by linear
interpolation (in steps) between the two checkpoints of labels only that
bracket it.

Usage:
    .venv/bin/python recipes/stdlib_byte_lm.py --backend tensorflow
    .venv/bin/python recipes/stdlib_byte_lm.py --smoke
Writes saved_models/stdlib_byte_lm/: teacher.keras, one student per method
at the chosen budget (seed `--seed`), history.json (the teacher's, the
validation runs' and seed `--seed`'s logs), results.json, report.md.
"""

import hashlib
import math
import os
import pathlib
import sysconfig
import time

import support  # recipes/support.py, beside this script

RECIPE = "stdlib_byte_lm"
CLAIM = (
    "Token-level distillation of language models (Hinton et al. 2015 applied per token; GKD, Agarwal et al. 2024; "
    "MiniLLM, Gu et al. 2024): a small student trained on the teacher's per-token distributions models held-out "
    "text better than the same student trained on the next tokens alone, at the same number of steps; at the same "
    "wall time only if the teacher's outputs are cheap (cached). Measured here on bytes of Python source; no "
    "published number is reproduced."
)
VOCABULARY = 256
# Every top-level module of CPython 3.11's Lib/ but the build-specific
# _sysconfigdata_*.py and turtle.py (which Debian ships in python3-tk), in
# name order. A missing file stops the recipe: it never silently reads less.
STDLIB_MODULES = tuple(
    (
        "__future__ __hello__ _aix_support _bootsubprocess _collections_abc _compat_pickle _compression "
        "_markupbase _osx_support _py_abc _pydecimal _pyio _sitebuiltins _strptime _threading_local _weakrefset "
        "abc aifc antigravity argparse ast asynchat asyncore base64 bdb bisect bz2 cProfile calendar cgi cgitb "
        "chunk cmd code codecs codeop colorsys compileall configparser contextlib contextvars copy copyreg crypt "
        "csv dataclasses datetime decimal difflib dis doctest enum filecmp fileinput fnmatch fractions ftplib "
        "functools genericpath getopt getpass gettext glob graphlib gzip hashlib heapq hmac imaplib imghdr imp "
        "inspect io ipaddress keyword linecache locale lzma mailbox mailcap mimetypes modulefinder netrc nntplib "
        "ntpath nturl2path numbers opcode operator optparse os pathlib pdb pickle pickletools pipes pkgutil "
        "platform plistlib poplib posixpath pprint profile pstats pty py_compile pyclbr pydoc queue quopri random "
        "reprlib rlcompleter runpy sched secrets selectors shelve shlex shutil signal site smtpd smtplib sndhdr "
        "socket socketserver sre_compile sre_constants sre_parse ssl stat statistics string stringprep struct "
        "subprocess sunau symtable sysconfig tabnanny tarfile telnetlib tempfile textwrap this threading timeit "
        "token tokenize trace traceback tracemalloc tty types typing uu uuid warnings wave weakref webbrowser "
        "xdrlib zipapp zipfile zipimport"
    ).split()
)
HELD_OUT_EVERY = 10  # Files 10, 20, ... (1-based, in name order) are the test split,
VALIDATION_OFFSET = 5  # and files 5, 15, ... the validation split.
MIN_SIZE_RATIO = 8  # The student has at least 8x fewer parameters than the teacher.
DIVERGENCES = ("forward KL", "reverse KL", "generalized JSD (beta=0.5)")
METHODS = ("labels only", *DIVERGENCES)
TEACHER_SOURCES = ("uncached", "dense cache", "top-k cache")
# Where labels only is evaluated, as multiples of the chosen budget (plus its equal-time steps).
CHECKPOINT_FRACTIONS = (0.5, 1.0, 1.5, 2.0, 3.0)
BOUND_SIGNS = {"=": "", "<=": "≤", ">": ">"}  # How `steps_to_reach` bounds print.
# --smoke: a few steps of tiny models on short windows, scored on a few windows.
SMOKE_SETTINGS = {
    "context": 16,
    "batch_size": 4,
    "steps_per_epoch": 2,
    "teacher_width": 32,
    "teacher_depth": 1,
    "student_width": 8,
    "student_depth": 1,
    "heads": 2,
    "seeds": 1,
    "budgets": [2, 4],
    "warmup_steps": 1,
    "top_k": 4,
    "calibration_steps": 2,
    "calibration_rounds": 1,
    "labels_only_factor": 2.0,
    "max_eval_windows": 8,
    "validation_windows": 8,
}


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=32, learning_rate=2e-3, temperature=1.0, alpha=None)
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="teacher steps per epoch (default 100)")
    parser.add_argument("--context", type=int, default=64, help="bytes per window (default 64)")
    parser.add_argument("--teacher-width", type=int, default=128, help="default 128")
    parser.add_argument("--teacher-depth", type=int, default=2, help="Transformer blocks (default 2)")
    parser.add_argument("--student-width", type=int, default=32, help="default 32")
    parser.add_argument("--student-depth", type=int, default=2, help="default 2")
    parser.add_argument("--heads", type=int, default=4, help="attention heads of both models (default 4)")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument(
        "--budgets", type=int, nargs="+", default=[75, 150, 300], help="student steps to choose from (validation)"
    )
    parser.add_argument(
        "--alphas", type=float, nargs="+", default=[0.5, 1.0], help="alphas to choose from (ignored with --alpha)"
    )
    parser.add_argument("--warmup-steps", type=int, default=25, help="students' linear warm-up (default 25)")
    parser.add_argument("--top-k", type=int, default=16, help="logits kept per byte by the top-k cache (default 16)")
    parser.add_argument(
        "--cache-fraction",
        type=float,
        default=0.5,
        help="the caches hold the windows of this fraction of the budget's batches (default 0.5)",
    )
    parser.add_argument("--calibration-steps", type=int, default=12, help="timed steps per round (default 12)")
    parser.add_argument("--calibration-rounds", type=int, default=3, help="default 3")
    parser.add_argument(
        "--labels-only-factor", type=float, default=3.0, help="labels only trains this x the budget (default 3)"
    )
    parser.add_argument(
        "--validation-windows", type=int, default=2048, help="evenly spaced validation windows scored (default 2048)"
    )
    parser.add_argument("--max-eval-windows", type=int, default=None, help="score only the first N test windows")


def stdlib_files(directory=None):
    """`(name, bytes)` of every module of `STDLIB_MODULES`, in name order.

    Raises:
        FileNotFoundError: naming the first module missing from `directory`.
    """
    directory = pathlib.Path(directory or sysconfig.get_paths()["stdlib"])
    files = []
    for module in sorted(STDLIB_MODULES):
        path = directory / f"{module}.py"
        if not path.is_file():
            raise FileNotFoundError(
                f"The standard library at {directory} has no {module}.py; this recipe reads the "
                f"{len(STDLIB_MODULES)} top-level modules of CPython 3.11 listed in STDLIB_MODULES."
            )
        files.append((path.name, path.read_bytes()))
    return files


def split_files(files):
    """`{"train": [...], "validation": [...], "test": [...]}`: the files, split by position in name order."""
    splits = {"train": [], "validation": [], "test": []}
    for position, file in enumerate(files, start=1):
        if position % HELD_OUT_EVERY == 0:
            splits["test"].append(file)
        elif position % HELD_OUT_EVERY == VALIDATION_OFFSET:
            splits["validation"].append(file)
        else:
            splits["train"].append(file)
    return splits


def describe_split(files):
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode() + b"\0" + content)
    return {
        "files": [name for name, _ in files],
        "bytes": sum(len(content) for _, content in files),
        "sha256": digest.hexdigest(),
    }


def held_out_windows(files, context):
    """Non-overlapping windows of every file: `(x, y, sample_weight)`, each `(windows, context)`.

    `y` is `x` shifted by one byte; the first byte of a file is never a label
    and the end of a file's last window is padding, with weight 0.
    """
    import numpy as np

    xs, ys, weights = [], [], []
    for _, content in files:
        stream = np.frombuffer(content, dtype=np.uint8).astype("int32")
        labels = len(stream) - 1
        windows = -(-labels // context)
        padded = np.zeros(windows * context + 1, dtype="int32")
        padded[: len(stream)] = stream
        xs.append(padded[:-1].reshape(windows, context))
        ys.append(padded[1:].reshape(windows, context))
        weight = np.zeros(windows * context, dtype="float32")
        weight[:labels] = 1.0
        weights.append(weight.reshape(windows, context))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(weights)


def held_out_data(args):
    """The corpus as a recipe reads it: `(splits, test, validation, corpus, description)`.

    `splits` is `split_files(stdlib_files())`; `test` the `held_out_windows`
    of the test files at `args.context` (the first `args.max_eval_windows`
    if set); `validation` `args.validation_windows` evenly spaced windows of
    the validation files; `corpus` each split's `describe_split`;
    `description` the corpus and the bytes scored, in words.
    """
    import numpy as np

    splits = split_files(stdlib_files())
    test = held_out_windows(splits["test"], args.context)
    if args.max_eval_windows:
        test = tuple(array[: args.max_eval_windows] for array in test)
    validation = held_out_windows(splits["validation"], args.context)
    spread = np.unique(np.linspace(0, len(validation[0]) - 1, args.validation_windows).round().astype(int))
    validation = tuple(array[spread] for array in validation)
    corpus = {name: describe_split(files) for name, files in splits.items()}
    description = (
        f"Python {'.'.join(sysconfig.get_python_version().split('.')[:2])} standard library, "
        f"{len(STDLIB_MODULES)} top-level modules: {corpus['train']['bytes']:,} training bytes "
        f"({len(splits['train'])} files), test split {corpus['test']['bytes']:,} bytes "
        f"({len(splits['test'])} files), {int(test[2].sum()):,} bytes scored"
    )
    return splits, test, validation, corpus, description


def unigram_bits_per_byte(train_files, y, sample_weight):
    """Bits per byte of the held-out labels under the training bytes' frequencies (add-one smoothed)."""
    import numpy as np

    counts = np.ones(VOCABULARY)
    for _, content in train_files:
        counts += np.bincount(np.frombuffer(content, dtype=np.uint8), minlength=VOCABULARY)
    log2_probabilities = np.log2(counts / counts.sum())
    return float(-(log2_probabilities[y] * sample_weight).sum() / sample_weight.sum())


def bits_per_byte(model, x, y, sample_weight, batch_size=256):
    """Held-out cross-entropy of a logits model, in bits per (weighted) byte, accumulated in float64."""
    import numpy as np

    total_nats, total_bytes = 0.0, 0.0
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        logits = np.asarray(model.predict_on_batch(x[start:stop]), dtype="float32")
        largest = logits.max(-1, keepdims=True)
        log_normalizer = np.log(np.exp(logits - largest).sum(-1)) + largest[..., 0]
        label_logits = np.take_along_axis(logits, y[start:stop, :, None], axis=-1)[..., 0]
        nats = (log_normalizer - label_logits).astype("float64")
        total_nats += float((nats * sample_weight[start:stop]).sum())
        total_bytes += float(sample_weight[start:stop].sum())
    return total_nats / total_bytes / math.log(2)


def byte_transformer(context, width, depth, heads, name):
    """A pre-norm causal Transformer over bytes, from keras layers: `(batch, context)` ints to `(batch, context, 256)` logits."""
    import keras
    from keras import layers

    if width % heads:
        raise ValueError(f"width={width} is not divisible by heads={heads}; pick a width that is a multiple of heads.")
    tokens = keras.Input((context,), dtype="int32", name="bytes")
    hidden = layers.Embedding(VOCABULARY, width, name="embedding")(tokens)
    # Causal padding feeds zeros before the first byte: the position signal
    # (the attention itself is order-blind apart from its causal mask).
    hidden = layers.Conv1D(width, 4, padding="causal", name="causal_conv")(hidden)
    for block in range(depth):
        normed = layers.LayerNormalization(epsilon=1e-5, name=f"block{block}_attention_norm")(hidden)
        attended = layers.MultiHeadAttention(heads, width // heads, name=f"block{block}_attention")(
            normed, normed, use_causal_mask=True
        )
        hidden = layers.Add(name=f"block{block}_attention_residual")([hidden, attended])
        normed = layers.LayerNormalization(epsilon=1e-5, name=f"block{block}_mlp_norm")(hidden)
        expanded = layers.Dense(4 * width, activation="gelu", name=f"block{block}_mlp_in")(normed)
        hidden = layers.Add(name=f"block{block}_mlp_residual")(
            [hidden, layers.Dense(width, name=f"block{block}_mlp_out")(expanded)]
        )
    hidden = layers.LayerNormalization(epsilon=1e-5, name="final_norm")(hidden)
    return keras.Model(tokens, layers.Dense(VOCABULARY, name="logits")(hidden), name=name)


def random_windows(files, *, context, batch_size, steps_per_epoch, seed):
    """A `keras.utils.PyDataset` of `(x, y)` batches of random windows, never across two files.

    Batch `b` of epoch `e` depends only on `(seed, e, b)`, so every model
    trained with the same seed sees the same batches.
    """
    import keras
    import numpy as np

    stream = np.frombuffer(b"".join(content for _, content in files), dtype=np.uint8).astype("int32")
    lengths = np.array([len(content) for _, content in files])
    file_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # A window needs context + 1 bytes of one file (its inputs and next bytes).
    starts_per_file = np.maximum(lengths - context, 0)
    cumulative = np.cumsum(starts_per_file)
    if cumulative[-1] == 0:
        raise ValueError(f"No training file has more than context={context} bytes.")

    class RandomWindows(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = 0

        def __len__(self):
            return steps_per_epoch

        def __getitem__(self, index):
            rng = np.random.default_rng((seed, self.epoch, index))
            draws = rng.integers(0, cumulative[-1], size=batch_size)
            file = np.searchsorted(cumulative, draws, side="right")
            starts = file_starts[file] + draws - (cumulative[file] - starts_per_file[file])
            windows = stream[starts[:, None] + np.arange(context + 1)]
            return windows[:, :-1], windows[:, 1:]

        def on_epoch_end(self):
            self.epoch += 1

    return RandomWindows()


def history_logs(history):
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def compile_for_training(model, schedule):
    """Compiles a logits model (sparse cross-entropy) or a Distiller (its own loss) with AdamW on `schedule`."""
    import keras

    from keras_kd import Distiller

    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0)
    if isinstance(model, Distiller):
        model.compile(optimizer=optimizer)
    else:
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def train_teacher(teacher, dataset, *, epochs, steps_per_epoch, learning_rate):
    """Trains the teacher with warm-up and cosine decay over all its steps; returns logs and seconds."""
    import keras

    steps = epochs * steps_per_epoch
    warmup = max(1, steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=learning_rate, warmup_steps=warmup
    )
    compile_for_training(teacher, schedule)
    started = time.perf_counter()
    history = teacher.fit(dataset, epochs=epochs, verbose=2)
    return history_logs(history), time.perf_counter() - started


def constant_rate(learning_rate, warmup_steps):
    """Linear warm-up to `learning_rate`, then constant (a cosine whose floor, alpha=1, is its start)."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=1, alpha=1.0, warmup_target=learning_rate, warmup_steps=max(1, warmup_steps)
    )


def step_clock(student, steps, checkpoints=()):
    """A callback that ends `fit` after `steps` steps, keeps `student`'s weights after each step in
    `checkpoints`, and records when every step ended."""
    import keras

    checkpoints = set(checkpoints)

    class StepClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self.weights = {}

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter())
            if len(self.times) in checkpoints:
                if keras.config.backend() == "jax":
                    self.model.jax_state_sync()  # JAX's fit keeps the weights apart from the variables.
                self.weights[len(self.times)] = student.get_weights()
            if len(self.times) >= steps:
                self.model.stop_training = True

        def step_seconds(self):
            """Median seconds per step; the first step (which compiles) is left out."""
            import numpy as np

            return float(np.median(np.diff(self.times))) if len(self.times) > 1 else float("nan")

        def seconds(self, steps):
            """Seconds the first `steps` steps took at the pace of steps 2..`steps` (compilation left out)."""
            if steps < 2:
                return float("nan")
            return (self.times[steps - 1] - self.times[0]) * steps / (steps - 1)

    return StepClock()


def train_steps(model, student, dataset, *, steps, batches_per_epoch, learning_rate, warmup_steps, checkpoints=()):
    """Trains exactly `steps` steps at a constant rate after warm-up; returns logs, the `step_clock` and fit seconds."""
    compile_for_training(model, constant_rate(learning_rate, warmup_steps))
    clock = step_clock(student, steps, checkpoints)
    started = time.perf_counter()
    history = model.fit(dataset, epochs=-(-steps // batches_per_epoch), callbacks=[clock], verbose=0)
    return history_logs(history), clock, time.perf_counter() - started


def make_distiller(teacher, student, divergence, *, alpha, temperature):
    import keras_kd

    losses = {
        "forward KL": keras_kd.losses.SoftTargetKL,
        "reverse KL": keras_kd.losses.ReverseKL,
        "generalized JSD (beta=0.5)": lambda: keras_kd.losses.GeneralizedJSD(beta=0.5),
    }
    return keras_kd.Distiller(
        teacher, student, temperature=temperature, alpha=alpha, distillation_loss=losses[divergence]()
    )


def scores_at(student, weights_by_step, x, y, sample_weight):
    """`{steps: bits per byte}` of `student` with each of its checkpoints' weights."""
    scores = {}
    for steps, weights in sorted(weights_by_step.items()):
        student.set_weights(weights)
        scores[steps] = bits_per_byte(student, x, y, sample_weight)
    return scores


def steps_to_reach(curve, target):
    """Steps labels only needs to reach `target` bits per byte, from its checkpoints `curve` (`{steps: bpb}`).

    Linear interpolation (in steps) between the last checkpoint above the
    target and the first at or below it. Returns `{"steps", "bound"}`: bound
    `"="` for an interpolated value, `"<="` when the first checkpoint is
    already at or below the target, `">"` when none reaches it (steps: the
    last checkpoint).
    """
    points = sorted(curve.items())
    if points[0][1] <= target:
        return {"steps": points[0][0], "bound": "<="}
    for (steps_before, before), (steps_after, after) in zip(points, points[1:]):
        if after <= target:
            return {
                "steps": steps_before + (before - target) / (before - after) * (steps_after - steps_before),
                "bound": "=",
            }
    return {"steps": points[-1][0], "bound": ">"}


def calibrate(runs, *, steps, rounds):
    """Median seconds per step of each of `runs`, `{name: (compiled model, student, dataset, batches per epoch)}`.

    Each is fitted `rounds` times for `steps` + 1 steps, the runs taking
    turns, so that a change in the machine's load falls on all of them.
    """
    import numpy as np

    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (model, student, dataset, batches) in runs.items():
            clock = step_clock(student, steps + 1)
            model.fit(dataset, epochs=-(-(steps + 1) // batches), callbacks=[clock], verbose=0)
            seconds[name].append(clock.step_seconds())
    return {name: float(np.median(values)) for name, values in seconds.items()}


def mean_std_text(values, digits=3):
    mean, std = support.mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def check_arguments(args):
    problems = []
    if any(budget < 2 for budget in args.budgets):
        problems.append(f"--budgets {args.budgets}: every budget must be at least 2 steps")
    if not 0 < args.cache_fraction <= 1:
        problems.append(f"--cache-fraction {args.cache_fraction}: must be in (0, 1]")
    if args.labels_only_factor < 1:
        problems.append(f"--labels-only-factor {args.labels_only_factor}: must be at least 1")
    if not all(0 <= alpha <= 1 for alpha in ([args.alpha] if args.alpha is not None else args.alphas)):
        problems.append(f"--alpha/--alphas {args.alpha or args.alphas}: alphas must be in [0, 1]")
    if args.calibration_steps < 2 or args.calibration_rounds < 1:
        problems.append("--calibration-steps must be at least 2 and --calibration-rounds at least 1")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def report_tables(args, settings, *, grid, gains, teacher_bpb, unigram, parameters, runs, equal_time, **costs):
    """The recipe's markdown: the validation grid, the test split at equal steps and at equal wall time."""
    import numpy as np

    budget, alpha = settings["budget"], settings["alpha"]
    teacher_parameters, student_parameters = parameters
    seeds = f"seeds {args.seed}-{args.seed + args.seeds - 1}"
    budgets = sorted(grid["labels only"])
    alphas = [name.split("=")[1] for name in grid if name != "labels only"]
    rows = [
        [
            steps,
            f"{grid['labels only'][steps]:.3f}",
            *(
                f"{grid[f'forward KL, alpha={value}'][steps]:.3f} ({-gains[(steps, float(value))]:+.3f})"
                + (" **chosen**" if (steps, float(value)) == (budget, alpha) else "")
                for value in alphas
            ),
        ]
        for steps in budgets
    ]
    validation_table = support.markdown_table(
        ["Steps", "labels only", *(f"forward KL, alpha={value} (vs labels only)" for value in alphas)], rows
    )

    labels = np.array([run["bits_per_byte"] for run in runs["labels only"]])
    rows = [
        ["unigram of the training bytes", "-", f"{unigram:.3f}", "", "", "", ""],
        [
            f"teacher ({args.teacher_depth}x{args.teacher_width})",
            f"{teacher_parameters:,}",
            f"{teacher_bpb['test']:.3f}",
            "",
            "",
            "",
            "",
        ],
    ]
    for method, method_runs in runs.items():
        scores = np.array([run["bits_per_byte"] for run in method_runs])
        row = [
            f"student ({args.student_depth}x{args.student_width}): {method}",
            f"{student_parameters:,}",
            mean_std_text(scores),
            ", ".join(f"{score:.3f}" for score in scores),
        ]
        if method == "labels only":
            row += ["", "", ""]
        else:
            closed = (labels - scores) / (labels - teacher_bpb["test"]) * 100
            reached = [run["labels_only_steps_to_reach"] for run in method_runs]
            row += [
                mean_std_text(scores - labels),
                mean_std_text(closed, 1),
                ", ".join(f"{BOUND_SIGNS[item['bound']]}{item['steps']:.0f}" for item in reached),
            ]
        rows.append(row)
    equal_steps_table = support.markdown_table(
        [
            "Model",
            "Parameters",
            f"Test bits per byte (mean ± std, {args.seeds} seeds)",
            "Per seed",
            "Paired vs labels only",
            "Teacher gap closed (%)",
            "Labels-only steps to reach it, per seed",
        ],
        rows,
    )

    step_cost, build_seconds, cache_bytes = costs["step_cost"], costs["build_seconds"], costs["cache_bytes"]
    rows = []
    for divergence in DIVERGENCES:
        reference = np.array([run["bits_per_byte"] for run in equal_time[f"labels only, the time of {divergence}"]])
        for name in (f"labels only, the time of {divergence}", *(f"{divergence}, {s}" for s in TEACHER_SOURCES)):
            records = equal_time[name]
            steps = costs["equal_time_steps"][name]
            cost_name = "labels only" if name.startswith("labels only") else name
            build = next((seconds for source, seconds in costs["build_share"].items() if name.endswith(source)), 0.0)
            charged = steps * step_cost[cost_name] + build
            measured = support.mean_std([record["seconds"] for record in records])[0] if steps else 0.0
            if steps:
                scores = np.array([record["bits_per_byte"] for record in records])
                score_cells = [mean_std_text(scores), mean_std_text(scores - reference)]
            else:
                score_cells = ["(no steps left after the build)", ""]
            rows.append(
                [
                    name,
                    steps,
                    f"{step_cost[cost_name] * 1000:.0f}",
                    f"{build:.1f}" if build else "",
                    f"{charged:.1f}",
                    f"{measured:.1f}",
                    *score_cells,
                ]
            )
    equal_time_table = support.markdown_table(
        [
            "Student",
            "Steps",
            "ms per step (calibrated)",
            "Share of the cache build s",
            "Charged s",
            "Measured s (mean)",
            f"Test bits per byte (mean ± std, {args.seeds} seeds)",
            "Paired vs labels only",
        ],
        rows,
    )
    cache_sizes = ", ".join(f"{source} {size / 2**20:.1f} MiB" for source, size in cache_bytes.items())
    text = (
        f"Teacher: {args.epochs * args.steps_per_epoch} steps (cosine); validation {teacher_bpb['validation']:.3f}, "
        f"test {teacher_bpb['test']:.3f} bits per byte. Students: batches of {args.batch_size} windows of "
        f"{args.context} bytes, AdamW {args.learning_rate} constant after {args.warmup_steps} warm-up steps, "
        f"T={args.temperature}. Teacher/student parameters: {teacher_parameters / student_parameters:.1f}x.\n\n"
        f"### 1. Budget and alpha, on the validation split (seed {args.seed + args.seeds}; "
        f"{args.validation_windows} evenly spaced windows)\n\n{validation_table}\n\n"
        f"Chosen: {budget} steps, alpha={alpha} (the largest gain of forward KL over labels only); "
        "used for every divergence below.\n\n"
        f"### 2. Test split, {budget} steps each ({seeds})\n\n{equal_steps_table}\n\n"
        f"Labels only is evaluated after {settings['checkpoints']} steps (one run of "
        f"{settings['labels_only_steps']} steps); the steps it needs are interpolated linearly between the two "
        "checkpoints around the distilled student's score (≤: already at the first, >: not by the last).\n\n"
        f"### 3. Test split at equal wall time ({seeds})\n\n{equal_time_table}\n\n"
        f"Each divergence's uncached run of {budget} steps sets the time; the other runs get the steps that fit in "
        "it at their calibrated cost per step, the cached runs after their share of their cache's build "
        f"(built once: dense {build_seconds['dense cache']:.1f} s, top-k {build_seconds['top-k cache']:.1f} s, "
        f"shared by the {len(DIVERGENCES) * args.seeds} runs of each). Caches over {settings['pool_windows']:,} windows ({cache_sizes}), top-{args.top_k} with its "
        f"tail set for T={args.temperature}. Measured s: the runs' own steps at their steady pace (plus the build), "
        "compilation left out."
    )
    return text


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=6, datasets=("stdlib",), add_arguments=add_arguments
    )
    if args.smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(args, key, value)
    check_arguments(args)
    keras = support.select_backend(args.backend)
    import numpy as np

    import keras_kd

    load_at_start = os.getloadavg()
    splits, test, validation, corpus, description = held_out_data(args)
    x_test, y_test, weight_test = test
    scored_bytes = int(weight_test.sum())
    if args.smoke:
        description += " (smoke test: a few steps, a few windows; not a result)"
    output = support.RecipeOutput(args, support.Data(None, None, x_test, y_test, description), CLAIM)

    def windows(seed, steps_per_epoch=args.steps_per_epoch):
        return random_windows(
            splits["train"],
            context=args.context,
            batch_size=args.batch_size,
            steps_per_epoch=steps_per_epoch,
            seed=seed,
        )

    def new_student(seed):
        keras.utils.set_random_seed(seed)
        return byte_transformer(args.context, args.student_width, args.student_depth, args.heads, "student")

    def fresh(initial, seed):
        student = support.same_initial_weights(initial)
        keras.utils.set_random_seed(seed)  # The same batch order and dropout-free updates per seed.
        return student

    def fit_student(model, student, data, steps, checkpoints=()):
        dataset, batches = data
        return train_steps(
            model,
            student,
            dataset,
            steps=steps,
            batches_per_epoch=batches,
            learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps,
            checkpoints=checkpoints,
        )

    def distiller(student, divergence, alpha):
        return make_distiller(teacher, student, divergence, alpha=alpha, temperature=args.temperature)

    keras.utils.set_random_seed(args.seed)
    teacher = byte_transformer(args.context, args.teacher_width, args.teacher_depth, args.heads, "teacher")
    teacher_history, teacher_seconds = train_teacher(
        teacher,
        windows(args.seed),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate,
    )
    output.add_history("teacher", teacher_history)
    teacher_bpb = {"validation": bits_per_byte(teacher, *validation), "test": bits_per_byte(teacher, *test)}
    print(f"teacher: {teacher_bpb} bits per byte, trained in {teacher_seconds:.0f} s", flush=True)
    teacher_parameters = support.parameter_count(teacher)
    student_parameters = support.parameter_count(new_student(args.seed))
    if teacher_parameters / student_parameters < MIN_SIZE_RATIO and not args.smoke:
        raise ValueError(
            f"The student has {student_parameters:,} parameters, only {teacher_parameters / student_parameters:.1f}x "
            f"fewer than the teacher's {teacher_parameters:,}; the recipe needs >= {MIN_SIZE_RATIO}x "
            "(a smaller --student-width or --student-depth)."
        )

    # 1. Budget and alpha, on the validation split, with a seed of their own.
    grid_seed = args.seed + args.seeds
    alphas = [args.alpha] if args.alpha is not None else list(args.alphas)
    budgets = sorted(set(args.budgets))
    initial = new_student(grid_seed)
    grid = {}
    for alpha in [None, *alphas]:
        student = fresh(initial, grid_seed)
        model = student if alpha is None else distiller(student, "forward KL", alpha)
        history, clock, _ = fit_student(
            model, student, (windows(grid_seed), args.steps_per_epoch), budgets[-1], checkpoints=budgets
        )
        name = "labels only" if alpha is None else f"forward KL, alpha={alpha}"
        output.add_history(f"validation: {name} seed {grid_seed}", history)
        grid[name] = scores_at(student, clock.weights, *validation)
        print(f"validation, {name}: {grid[name]}", flush=True)
    gains = {
        (steps, alpha): grid["labels only"][steps] - grid[f"forward KL, alpha={alpha}"][steps]
        for steps in budgets
        for alpha in alphas
    }
    budget, alpha = max(sorted(gains), key=gains.get)
    print(f"chosen on validation: {budget} steps, alpha={alpha}", flush=True)

    # 2. The caches, over the windows of the budget's first batches, each build timed.
    pool_batches = max(1, round(budget * args.cache_fraction))
    pool = windows(args.seed, steps_per_epoch=pool_batches)
    x_pool = np.concatenate([pool[index][0] for index in range(pool_batches)])
    y_pool = np.concatenate([pool[index][1] for index in range(pool_batches)])
    caches, build_seconds = {}, {}
    for source, top_k in (("dense cache", None), ("top-k cache", args.top_k)):
        options = {} if top_k is None else {"top_k": top_k, "tail_temperature": args.temperature}
        started = time.perf_counter()
        caches[source] = keras_kd.TeacherCache.build(teacher, x_pool, **options)
        build_seconds[source] = time.perf_counter() - started
        print(f"{source}: {caches[source].nbytes:,} bytes, built in {build_seconds[source]:.1f} s", flush=True)

    def training_data(source, seed):
        if source == "uncached":
            return windows(seed), args.steps_per_epoch
        return caches[source].dataset(x_pool, y_pool, batch_size=args.batch_size, seed=seed), pool_batches

    # 3. What a step of each costs, and so the step budgets at equal wall time.
    initial = new_student(grid_seed)
    student = fresh(initial, grid_seed)
    calibration = {"labels only": (student, student, *training_data("uncached", grid_seed))}
    for divergence in DIVERGENCES:
        for source in TEACHER_SOURCES:
            student = fresh(initial, grid_seed)
            calibration[f"{divergence}, {source}"] = (
                distiller(student, divergence, alpha),
                student,
                *training_data(source, grid_seed),
            )
    for model, *_ in calibration.values():
        compile_for_training(model, constant_rate(args.learning_rate, args.warmup_steps))
    step_cost = calibrate(calibration, steps=args.calibration_steps, rounds=args.calibration_rounds)
    print(f"seconds per step: {step_cost}", flush=True)
    time_limit = {divergence: budget * step_cost[f"{divergence}, uncached"] for divergence in DIVERGENCES}
    # One cache serves all its runs (each divergence, each seed): its build is counted once, shared among them.
    build_share = {source: seconds / (len(DIVERGENCES) * args.seeds) for source, seconds in build_seconds.items()}
    equal_time_steps = {}
    for divergence in DIVERGENCES:
        equal_time_steps[f"labels only, the time of {divergence}"] = max(
            1, int(time_limit[divergence] / step_cost["labels only"])
        )
        equal_time_steps[f"{divergence}, uncached"] = budget
        for source in TEACHER_SOURCES[1:]:
            remaining = time_limit[divergence] - build_share[source]
            equal_time_steps[f"{divergence}, {source}"] = max(0, int(remaining / step_cost[f"{divergence}, {source}"]))
    labels_only_steps = max(2, round(args.labels_only_factor * budget))
    checkpoints = {round(fraction * budget) for fraction in CHECKPOINT_FRACTIONS if fraction <= args.labels_only_factor}
    checkpoints |= {steps for name, steps in equal_time_steps.items() if name.startswith("labels only")}
    checkpoints = sorted(steps for steps in checkpoints if steps >= 1)
    labels_only_steps = max(labels_only_steps, checkpoints[-1])

    # 4. The seeds, scored on the test split.
    runs = {method: [] for method in METHODS}
    equal_time = {name: [] for name in equal_time_steps}
    saved = {"teacher": teacher}
    for seed in range(args.seed, args.seed + args.seeds):
        initial = new_student(seed)
        student = fresh(initial, seed)
        history, labels_clock, _ = fit_student(
            student, student, training_data("uncached", seed), labels_only_steps, checkpoints=checkpoints
        )
        if seed == args.seed:  # One seed's logs (each history is also plotted).
            output.add_history(f"labels only seed {seed}", history)
        curve = scores_at(student, labels_clock.weights, *test)
        student.set_weights(labels_clock.weights[budget])
        print(f"labels only, seed {seed}: {curve}", flush=True)
        runs["labels only"].append(
            {
                "seed": seed,
                "bits_per_byte": curve[budget],
                "step_seconds": labels_clock.step_seconds(),
                "curve": {str(steps): score for steps, score in curve.items()},
            }
        )
        if seed == args.seed:
            saved["student_labels_only"] = student
        for divergence in DIVERGENCES:
            steps = equal_time_steps[f"labels only, the time of {divergence}"]
            equal_time[f"labels only, the time of {divergence}"].append(
                {"seed": seed, "steps": steps, "bits_per_byte": curve[steps], "seconds": labels_clock.seconds(steps)}
            )
            for source in TEACHER_SOURCES:
                name = f"{divergence}, {source}"
                steps = equal_time_steps[name]
                if steps < 1:
                    equal_time[name].append({"seed": seed, "steps": 0, "bits_per_byte": None, "seconds": 0.0})
                    continue
                student = fresh(initial, seed)
                history, clock, fit_seconds = fit_student(
                    distiller(student, divergence, alpha), student, training_data(source, seed), steps
                )
                if seed == args.seed:
                    output.add_history(f"{divergence if source == 'uncached' else name} seed {seed}", history)
                score = bits_per_byte(student, *test)
                record = {
                    "seed": seed,
                    "steps": steps,
                    "bits_per_byte": score,
                    "seconds": clock.seconds(steps) + build_share.get(source, 0.0),
                    "step_seconds": clock.step_seconds(),
                    "fit_seconds": round(fit_seconds, 1),
                }
                equal_time[name].append(record)
                print(f"{name}, seed {seed}: {score:.4f} bits per byte after {steps} steps", flush=True)
                if source == "uncached":
                    runs[divergence].append({**record, "labels_only_steps_to_reach": steps_to_reach(curve, score)})
                    if seed == args.seed:
                        saved["student_" + divergence.split(" (")[0].replace(" ", "_")] = student
    output.save_models(saved)

    unigram = unigram_bits_per_byte(splits["train"], y_test, weight_test)
    settings = {
        "budget": budget,
        "alpha": alpha,
        "pool_windows": len(x_pool),
        "labels_only_steps": labels_only_steps,
        "checkpoints": checkpoints,
    }
    tables = report_tables(
        args,
        settings,
        grid=grid,
        gains=gains,
        teacher_bpb=teacher_bpb,
        unigram=unigram,
        parameters=(teacher_parameters, student_parameters),
        runs=runs,
        equal_time=equal_time,
        equal_time_steps=equal_time_steps,
        step_cost=step_cost,
        build_seconds=build_seconds,
        build_share=build_share,
        cache_bytes={source: cache.nbytes for source, cache in caches.items()},
    )
    summary = {
        method: dict(zip(("mean", "std"), support.mean_std([run["bits_per_byte"] for run in method_runs])))
        for method, method_runs in runs.items()
    }
    return output.finish(
        tables,
        {
            "corpus": corpus,
            "scored_bytes": scored_bytes,
            "unigram_bits_per_byte": unigram,
            "teacher": {
                "parameters": teacher_parameters,
                "bits_per_byte": teacher_bpb,
                "seconds": round(teacher_seconds, 1),
                "steps": args.epochs * args.steps_per_epoch,
            },
            "student_parameters": student_parameters,
            "validation_grid": {
                name: {str(steps): score for steps, score in scores.items()} for name, scores in grid.items()
            },
            "chosen": settings,
            "cache_build_seconds": build_seconds,
            "cache_build_share_seconds": build_share,
            "step_seconds": step_cost,
            "equal_time_steps": equal_time_steps,
            "runs": runs,
            "equal_time": equal_time,
            "summary": summary,
            # The machine is shared: its 1, 5 and 15 minute load averages.
            "load_average": {"start": load_at_start, "end": os.getloadavg()},
        },
    )


if __name__ == "__main__":
    support.run(main)
