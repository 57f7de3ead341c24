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
and a 4x GELU feed-forward), trained on the next bytes; a student of the same
shape, narrower and shallower, at least 8x fewer parameters (checked). Each
student seed is trained for the same number of steps on the same batches four
ways:

- labels only: `student.fit` on the next bytes (no teacher);
- forward KL: `keras_kd.Distiller` with `keras_kd.losses.SoftTargetKL()`;
- reverse KL: `keras_kd.losses.ReverseKL()`;
- generalized JSD: `keras_kd.losses.GeneralizedJSD(beta=0.5)` (GKD, Agarwal et al., ICLR 2024).

All distilled students use T = `--temperature` (default 1, the standard for
language models: the teacher's own next-byte distribution) and `--alpha`
(the weight of the distillation term, `1 - alpha` weighs the next-byte
labels). Training batches are random windows of `--context` bytes from the
training files (never across two files), drawn from a generator seeded by
(seed, epoch, batch); an epoch is `--steps-per-epoch` steps.

The measurement is held-out bits per byte: the cross-entropy of every byte of
every test file but its first (in nats, divided by ln 2, averaged over the
bytes), predicted in non-overlapping windows of `--context` bytes that restart
at each file (the last window of a file is padded, with weight 0). A unigram
model of the training bytes is given for scale.

Usage:
    ./run python recipes/stdlib_byte_lm.py --backend jax
    ./run python recipes/stdlib_byte_lm.py --smoke
Writes saved_models/stdlib_byte_lm/: teacher.keras, one student per method
(seed of `--seed`), history.json, results.json, report.md.
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
    "text better than the same student trained on the next tokens alone, at the same number of steps. Measured "
    "here on bytes of Python source; no published number is reproduced."
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
METHODS = ("labels only", "forward KL", "reverse KL", "generalized JSD (beta=0.5)")
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
    "max_eval_windows": 8,
}


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=32, learning_rate=2e-3, temperature=1.0, alpha=0.5)
    parser.add_argument("--teacher-epochs", type=int, default=6, help="default 6")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="optimizer steps per epoch (default 100)")
    parser.add_argument("--context", type=int, default=64, help="bytes per window (default 64)")
    parser.add_argument("--teacher-width", type=int, default=128, help="default 128")
    parser.add_argument("--teacher-depth", type=int, default=2, help="Transformer blocks (default 2)")
    parser.add_argument("--student-width", type=int, default=32, help="default 32")
    parser.add_argument("--student-depth", type=int, default=2, help="default 2")
    parser.add_argument("--heads", type=int, default=4, help="attention heads of both models (default 4)")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument(
        "--split", choices=("test", "validation"), default="test", help="what to score (validation: for choosing)"
    )
    parser.add_argument("--max-eval-windows", type=int, default=None, help="score only the first N windows")


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
        logits = np.asarray(model.predict_on_batch(x[start:stop]), dtype="float64")
        log_normalizer = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
        label_logits = np.take_along_axis(logits, y[start:stop, :, None], axis=-1)[..., 0]
        total_nats += float(((log_normalizer - label_logits) * sample_weight[start:stop]).sum())
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


def fit(model, dataset, *, epochs, learning_rate, steps_per_epoch):
    """Trains a logits model (sparse cross-entropy) or a Distiller (its own loss) with AdamW; returns logs and seconds."""
    import keras

    from keras_kd import Distiller

    steps = epochs * steps_per_epoch
    warmup = max(1, steps // 20)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=learning_rate, warmup_steps=warmup
    )
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0)
    if isinstance(model, Distiller):
        model.compile(optimizer=optimizer)
    else:
        model.compile(optimizer=optimizer, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, verbose=2)
    seconds = time.perf_counter() - started
    return {name: [float(value) for value in values] for name, values in history.history.items()}, seconds


def mean_std(values):
    import numpy as np

    values = np.asarray(values, dtype="float64")
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=2, datasets=("stdlib",), add_arguments=add_arguments
    )
    if args.smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(args, key, value)
    teacher_epochs = args.teacher_epochs
    keras = support.select_backend(args.backend)
    import keras_kd

    splits = split_files(stdlib_files())
    x_test, y_test, weight_test = held_out_windows(splits[args.split], args.context)
    if args.max_eval_windows:
        x_test, y_test, weight_test = (array[: args.max_eval_windows] for array in (x_test, y_test, weight_test))
    corpus = {name: describe_split(files) for name, files in splits.items()}
    scored_bytes = int(weight_test.sum())
    description = (
        f"Python {'.'.join(sysconfig.get_python_version().split('.')[:2])} standard library, "
        f"{len(STDLIB_MODULES)} top-level modules: {corpus['train']['bytes']:,} training bytes "
        f"({len(splits['train'])} files), {args.split} split {corpus[args.split]['bytes']:,} bytes "
        f"({len(splits[args.split])} files), {scored_bytes:,} bytes scored"
    )
    if args.smoke:
        description += " (smoke test: a few steps, a few windows; not a result)"
    data = support.Data(None, None, x_test, y_test, description, is_stand_in=False)
    load_at_start = os.getloadavg()
    output = support.RecipeOutput(args, data, CLAIM)

    def windows(seed):
        return random_windows(
            splits["train"],
            context=args.context,
            batch_size=args.batch_size,
            steps_per_epoch=args.steps_per_epoch,
            seed=seed,
        )

    keras.utils.set_random_seed(args.seed)
    teacher = byte_transformer(args.context, args.teacher_width, args.teacher_depth, args.heads, "teacher")
    teacher_history, teacher_seconds = fit(
        teacher,
        windows(args.seed),
        epochs=teacher_epochs,
        learning_rate=args.learning_rate,
        steps_per_epoch=args.steps_per_epoch,
    )
    output.add_history("teacher", teacher_history)
    teacher_bpb = bits_per_byte(teacher, x_test, y_test, weight_test)
    print(f"teacher: {teacher_bpb:.4f} bits per byte in {teacher_seconds:.0f} s", flush=True)

    losses = {
        "forward KL": keras_kd.losses.SoftTargetKL(),
        "reverse KL": keras_kd.losses.ReverseKL(),
        "generalized JSD (beta=0.5)": keras_kd.losses.GeneralizedJSD(beta=0.5),
    }
    runs = {method: [] for method in METHODS}
    saved = {"teacher": teacher}
    student_parameters = None
    for seed in range(args.seed, args.seed + args.seeds):
        keras.utils.set_random_seed(seed)
        initial = byte_transformer(args.context, args.student_width, args.student_depth, args.heads, "student")
        if student_parameters is None:
            student_parameters = support.parameter_count(initial)
            ratio = support.parameter_count(teacher) / student_parameters
            if ratio < MIN_SIZE_RATIO and not args.smoke:
                raise ValueError(
                    f"The student has {student_parameters:,} parameters, only {ratio:.1f}x fewer than the "
                    f"teacher's {support.parameter_count(teacher):,}; the recipe needs >= {MIN_SIZE_RATIO}x "
                    "(a smaller --student-width or --student-depth)."
                )
        for method in METHODS:
            student = support.same_initial_weights(initial)
            keras.utils.set_random_seed(seed)
            if method == "labels only":
                trained = student
            else:
                trained = keras_kd.Distiller(
                    teacher,
                    student,
                    temperature=args.temperature,
                    alpha=args.alpha,
                    distillation_loss=losses[method],
                )
            history, seconds = fit(
                trained,
                windows(seed),
                epochs=args.epochs,
                learning_rate=args.learning_rate,
                steps_per_epoch=args.steps_per_epoch,
            )
            output.add_history(f"{method} seed {seed}", history)
            score = bits_per_byte(student, x_test, y_test, weight_test)
            runs[method].append({"seed": seed, "bits_per_byte": score, "seconds": round(seconds, 1)})
            print(f"{method}, seed {seed}: {score:.4f} bits per byte in {seconds:.0f} s", flush=True)
            if seed == args.seed:
                saved["student_" + method.split(" (")[0].replace(" ", "_")] = student
    output.save_models(saved)

    unigram = unigram_bits_per_byte(splits["train"], y_test, weight_test)
    teacher_parameters = support.parameter_count(teacher)
    summary = {}
    rows = [
        ["unigram of the training bytes", "-", f"{unigram:.3f}", "-", "-"],
        [
            f"teacher ({args.teacher_depth}x{args.teacher_width})",
            f"{teacher_parameters:,}",
            f"{teacher_bpb:.3f}",
            "-",
            f"{teacher_seconds:.0f}",
        ],
    ]
    for method in METHODS:
        scores = [run["bits_per_byte"] for run in runs[method]]
        mean, std = mean_std(scores)
        seconds = mean_std([run["seconds"] for run in runs[method]])[0]
        summary[method] = {"mean": mean, "std": std, "seconds_mean": seconds}
        rows.append(
            [
                f"student ({args.student_depth}x{args.student_width}): {method}",
                f"{student_parameters:,}",
                f"{mean:.3f} ± {std:.3f}",
                ", ".join(f"{score:.3f}" for score in scores),
                f"{seconds:.0f}",
            ]
        )
    header = [
        "Model",
        "Parameters",
        f"Held-out bits per byte (mean ± std, {args.seeds} seeds)",
        "Per seed",
        "Training s (mean)",
    ]
    steps = args.epochs * args.steps_per_epoch
    table = support.markdown_table(header, rows)
    settings = (
        f"Teacher: {teacher_epochs * args.steps_per_epoch} steps; every student: {steps} steps of "
        f"{args.batch_size} windows of {args.context} bytes, seeds {args.seed}-{args.seed + args.seeds - 1}, "
        f"T={args.temperature}, alpha={args.alpha} (distillation weight). Scored on the {args.split} split: "
        f"{scored_bytes:,} bytes. Teacher/student parameters: {teacher_parameters / student_parameters:.1f}x."
    )
    return output.finish(
        f"{table}\n\n{settings}",
        {
            "corpus": corpus,
            "scored_split": args.split,
            "scored_bytes": scored_bytes,
            "unigram_bits_per_byte": unigram,
            "teacher": {
                "parameters": teacher_parameters,
                "bits_per_byte": teacher_bpb,
                "seconds": round(teacher_seconds, 1),
                "steps": teacher_epochs * args.steps_per_epoch,
            },
            "student_parameters": student_parameters,
            "student_steps": steps,
            "runs": runs,
            "summary": summary,
            # The machine is shared: its 1, 5 and 15 minute load averages.
            "load_average": {"start": load_at_start, "end": os.getloadavg()},
        },
    )


if __name__ == "__main__":
    support.run(main)
