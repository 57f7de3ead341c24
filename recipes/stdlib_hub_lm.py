"""A KerasHub Llama 3 over bytes distilled into half its depth: students initialised from the teacher, hidden-state KD.

DistilBERT's recipe (Sanh et al., 2019) on a causal language model, measured
offline: the corpus of `recipes/stdlib_byte_lm.py` (the Python 3.11 standard
library's top-level modules read as bytes, split by file into training,
validation and test files; training batches of random windows of
`--context` bytes, batch `b` of epoch `e` a function of (seed, e, b) only),
read and scored by that recipe's own functions.

Models: KerasHub `Llama3CausalLM`s built from configs (random weights,
`preprocessor=None`), over the 256 byte values (no pad id: every training
window is full, and the padded end of a file's last held-out window has
weight 0 and comes after every byte it could affect, the model being
causal); inputs `{"token_ids", "padding_mask"}` with an all-true mask. The
teacher (`--teacher-depth` layers of width `--width`, `--heads` heads)
trains for `--epochs` x `--steps-per-epoch` steps with warm-up and cosine
decay. The student has half its depth and the same width, and starts

- (a) from random weights (seed `s`), or
- (b) from the teacher: `keras_kd.students.from_teacher(teacher,
  num_layers=depth // 2)`, the teacher's transformer layers 0, 2, 4, ...,
  its embeddings, final normalization and head copied (the same weights for
  every seed; the seed then changes the batches only).

Each start trains for `--student-steps` steps on the same batches (AdamW at
a constant rate after `--warmup-steps` of warm-up) in three ways:

1. labels only: `student.fit` on the next bytes;
2. logit KD: `keras_kd.Distiller` with `SoftTargetKL()` at T = `--temperature`
   and alpha = `--alpha` (the weight of the soft term);
3. logit + hidden-state KD: the same, plus for every student layer `j` a
   `keras_kd.FeatureMatch` of its output with the output of the teacher's
   layer `2j + 1` (the layer whose output the student's layer `j` replaces,
   layers `2j` and `2j + 1` of the teacher becoming one), the layers named
   by their path in the causal LM (`"teacher_backbone/transformer_layer_3"`);
   the loss `1 - cos` per byte position (DistilBERT's cosine loss between
   hidden states), weighted by `w`.

`w` is chosen per start, on the validation split only, among
`--feature-weights`, with a seed of its own (`--seed` + `--seeds`): the
`w` whose student models `--validation-windows` evenly spaced validation
windows best after `--student-steps` steps. Alpha, T and the steps are
fixed beforehand (alpha = 1 at T = 1 is what `stdlib_byte_lm.py` chose on its
validation split). The measurement is the test split's bits per byte
(every byte of every test file but its first, in non-overlapping windows,
as `stdlib_byte_lm.bits_per_byte` scores them), over seeds `--seed`, ...

Usage:
    .venv/bin/python recipes/stdlib_hub_lm.py --backend jax
    .venv/bin/python recipes/stdlib_hub_lm.py --smoke
Writes saved_models/stdlib_hub_lm/: teacher.keras, the six students of seed
`--seed`, history.json (the teacher's and seed `--seed`'s logs),
results.json, report.md.
"""

import os
import time

import stdlib_byte_lm as byte_lm  # recipes/stdlib_byte_lm.py: the corpus, its windows and bits per byte
import support  # recipes/support.py, beside this script

RECIPE = "stdlib_hub_lm"
CLAIM = (
    "DistilBERT (Sanh et al., 2019): a student of half its teacher's depth, initialised from one in two of the "
    "teacher's layers and trained on the teacher's soft targets plus a cosine loss between hidden states, keeps "
    "most of the teacher's quality; of its ingredients, the initialisation from the teacher matters most. "
    "Measured here on a causal byte-level Llama 3 over Python source, at equal steps; no published number is "
    "reproduced."
)
EXPECTED = (
    "Written before the full run: the teacher near 2.2-2.4 bits per byte (the 2-block Transformer of "
    "stdlib_byte_lm.py reaches 2.31). Initialised from the teacher, every student ends well below the same "
    "method from random weights (by several tenths of a bit: it starts from a model that already predicts "
    "bytes). Logit KD beats labels only by a few hundredths to a tenth of a bit from random weights (as forward "
    "KL did in stdlib_byte_lm.py), by as much or more from the teacher. The hidden-state term adds little on "
    "top, within the seed spread, perhaps most for the student initialised from the teacher, whose layers it "
    "keeps aligned with the teacher's."
)
INITIALISATIONS = ("random", "from the teacher")
METHODS = ("labels only", "logit KD", "logit + hidden-state KD")
# --smoke: a few steps of tiny models on short windows, scored on a few windows.
SMOKE_SETTINGS = {
    "context": 16,
    "batch_size": 4,
    "steps_per_epoch": 2,
    "width": 8,
    "heads": 2,
    "teacher_depth": 2,
    "student_steps": 2,
    "warmup_steps": 1,
    "seeds": 1,
    "max_eval_windows": 8,
    "validation_windows": 8,
}


def add_arguments(parser):
    support.add_training_arguments(parser, batch_size=32, learning_rate=2e-3, temperature=1.0, alpha=1.0)
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="teacher steps per epoch (default 100)")
    parser.add_argument("--context", type=int, default=64, help="bytes per window (default 64)")
    parser.add_argument("--width", type=int, default=64, help="hidden size of both models (default 64)")
    parser.add_argument("--heads", type=int, default=4, help="attention heads of both models (default 4)")
    parser.add_argument("--teacher-depth", type=int, default=4, help="transformer layers, even (default 4)")
    parser.add_argument("--student-steps", type=int, default=250, help="steps of every student (default 250)")
    parser.add_argument("--warmup-steps", type=int, default=25, help="students' linear warm-up (default 25)")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument(
        "--feature-weights",
        type=float,
        nargs="+",
        default=[0.3, 3.0],
        help="weights of the hidden-state term to choose from on the validation split (default 0.3 3)",
    )
    parser.add_argument(
        "--validation-windows", type=int, default=1024, help="evenly spaced validation windows scored (default 1024)"
    )
    parser.add_argument("--max-eval-windows", type=int, default=None, help="score only the first N test windows")


def check_arguments(args):
    problems = []
    if args.teacher_depth < 2 or args.teacher_depth % 2:
        problems.append(f"--teacher-depth {args.teacher_depth}: must be even and at least 2 (the student has half)")
    if args.width % (2 * args.heads):
        problems.append(f"--width {args.width}: must be a multiple of 2 x --heads {args.heads} (for RoPE)")
    if not 0 <= args.alpha <= 1:
        problems.append(f"--alpha {args.alpha}: must be in [0, 1]")
    if any(weight < 0 for weight in args.feature_weights):
        problems.append(f"--feature-weights {args.feature_weights}: weights must be >= 0")
    if args.student_steps < 2:
        problems.append(f"--student-steps {args.student_steps}: must be at least 2")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def causal_lm(args, depth, name):
    """A Llama 3 causal LM over bytes from a config (random weights, no preprocessor); its backbone is `<name>_backbone`."""
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=byte_lm.VOCABULARY,
        num_layers=depth,
        num_query_heads=args.heads,
        num_key_value_heads=args.heads,
        hidden_dim=args.width,
        intermediate_dim=4 * args.width,
        dropout=0.0,
        name=f"{name}_backbone",
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None, name=name)


def model_inputs(token_ids):
    """The `{"token_ids", "padding_mask"}` a KerasHub causal LM takes, for windows with no padding."""
    import numpy as np

    return {"token_ids": token_ids, "padding_mask": np.ones(token_ids.shape, dtype=bool)}


def token_batches(windows):
    """`stdlib_byte_lm.random_windows` batches with their inputs as `model_inputs` dicts (the same batches)."""
    import keras

    class TokenBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()

        def __len__(self):
            return len(windows)

        def __getitem__(self, index):
            x, y = windows[index]
            return model_inputs(x), y

        def on_epoch_end(self):
            windows.on_epoch_end()

    return TokenBatches()


def plain_view(model):
    """A plain functional `keras.Model` sharing `model`'s layers and weights: its `fit` takes a `PyDataset`.

    (A KerasHub task's own `fit` takes arrays and `tf.data` or grain datasets
    only; training the view trains the task.)
    """
    import keras

    return keras.Model(model.input, model.output, name=f"{model.name}_view")


class OnTokenIds:
    """A causal LM seen as `stdlib_byte_lm.bits_per_byte` calls a model: `predict_on_batch(token_ids)`."""

    def __init__(self, model):
        self.model = model

    def predict_on_batch(self, token_ids):
        return self.model.predict_on_batch(model_inputs(token_ids))


def bits_per_byte(model, x, y, sample_weight):
    return byte_lm.bits_per_byte(OnTokenIds(model), x, y, sample_weight)


def hidden_state_matches(teacher, student, weight):
    """One `FeatureMatch` per student layer `j`: its output against the teacher's layer `2j + 1`, `1 - cos` per byte."""
    import keras_kd

    return [
        keras_kd.FeatureMatch(
            teacher_layer=f"{teacher.backbone.name}/transformer_layer_{2 * layer + 1}",
            student_layer=f"{student.backbone.name}/transformer_layer_{layer}",
            loss="cosine",
            weight=weight,
        )
        for layer in range(student.backbone.num_layers)
    ]


def method_model(args, teacher, student, method, feature_weight):
    """What trains `student` by `method`: the student itself, or a Distiller."""
    import keras_kd

    if method == "labels only":
        return plain_view(student)
    matches = hidden_state_matches(teacher, student, feature_weight) if method == "logit + hidden-state KD" else []
    return keras_kd.Distiller(
        teacher,
        student,
        temperature=args.temperature,
        alpha=args.alpha,
        distillation_loss=keras_kd.losses.SoftTargetKL(),
        feature_matches=matches,
    )


def mean_std_text(values, signed=False):
    mean, std = support.mean_std(values)
    return f"{mean:{'+' if signed else ''}.3f} ± {std:.3f}"


def report_tables(args, *, teacher_record, unigram, student_parameters, grid, chosen, runs):
    """The recipe's markdown: the validation choice of `w`, and the test split."""
    import numpy as np

    rows = [
        [initialisation, *(f"{grid[initialisation][str(weight)]:.3f}" for weight in args.feature_weights)]
        for initialisation in INITIALISATIONS
    ]
    validation_table = support.markdown_table(
        ["Student start", *(f"w = {weight:g}" for weight in args.feature_weights)], rows
    )
    chosen_text = ", ".join(f"{initialisation}: w = {chosen[initialisation]:g}" for initialisation in INITIALISATIONS)

    reference = np.array([run["bits_per_byte"] for run in runs["random"]["labels only"]])
    rows = [
        ["unigram of the training bytes", "-", f"{unigram:.3f}", "", "", ""],
        [
            f"teacher ({args.teacher_depth} layers)",
            f"{teacher_record['parameters']:,}",
            f"{teacher_record['bits_per_byte']['test']:.3f}",
            "",
            "",
            "",
        ],
    ]
    for initialisation in INITIALISATIONS:
        labels = np.array([run["bits_per_byte"] for run in runs[initialisation]["labels only"]])
        for method in METHODS:
            scores = np.array([run["bits_per_byte"] for run in runs[initialisation][method]])
            name = f"student ({args.teacher_depth // 2} layers), {initialisation}: {method}"
            if method == "logit + hidden-state KD":
                name += f" (w = {chosen[initialisation]:g})"
            rows.append(
                [
                    name,
                    f"{student_parameters:,}",
                    mean_std_text(scores),
                    ", ".join(f"{score:.3f}" for score in scores),
                    "" if method == "labels only" else mean_std_text(scores - labels, signed=True),
                    ""
                    if initialisation == "random" and method == "labels only"
                    else mean_std_text(scores - reference, signed=True),
                ]
            )
    test_table = support.markdown_table(
        [
            "Model",
            "Parameters",
            f"Test bits per byte (mean ± std, {args.seeds} seeds)",
            "Per seed",
            "Paired vs labels only, same start",
            "Paired vs random start, labels only",
        ],
        rows,
    )
    seconds = {
        f"{initialisation}: {method}": support.mean_std([run["step_seconds"] for run in runs[initialisation][method]])[
            0
        ]
        for initialisation in INITIALISATIONS
        for method in METHODS
    }
    cost = ", ".join(f"{name} {value * 1000:.0f}" for name, value in seconds.items())
    return (
        f"Teacher: {teacher_record['steps']} steps (warm-up and cosine decay), "
        f"{teacher_record['parameters']:,} parameters; validation {teacher_record['bits_per_byte']['validation']:.3f}, "
        f"test {teacher_record['bits_per_byte']['test']:.3f} bits per byte. Students: "
        f"{args.teacher_depth // 2} layers of width {args.width}, {student_parameters:,} parameters "
        f"({teacher_record['parameters'] / student_parameters:.2f}x fewer); {args.student_steps} steps of "
        f"{args.batch_size} windows of {args.context} bytes, AdamW {args.learning_rate} constant after "
        f"{args.warmup_steps} warm-up steps; KD at T = {args.temperature}, alpha = {args.alpha}.\n\n"
        f"### 1. The hidden-state weight w, on the validation split (seed {args.seed + args.seeds}; "
        f"{args.validation_windows} evenly spaced windows, bits per byte of logit + hidden-state KD)\n\n"
        f"{validation_table}\n\nChosen: {chosen_text}.\n\n"
        f"### 2. Test split, {args.student_steps} steps each (seeds {args.seed}-{args.seed + args.seeds - 1})\n\n"
        f"{test_table}\n\nPaired: the difference per seed (same batches; the same initial weights within a start), "
        f"then mean ± std. Median ms per step (compilation left out): {cost}."
    )


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=8, datasets=("stdlib",), add_arguments=add_arguments
    )
    if args.smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(args, key, value)
    check_arguments(args)
    keras = support.select_backend(args.backend)

    from keras_kd import students

    load_at_start = os.getloadavg()
    splits, test, validation, corpus, description = byte_lm.held_out_data(args)
    scored_bytes = int(test[2].sum())
    if args.smoke:
        description += " (smoke test: tiny models, a few steps, a few windows; not a result)"
    output = support.RecipeOutput(args, support.Data(None, None, test[0], test[1], description), CLAIM)

    def batches(seed):
        return token_batches(
            byte_lm.random_windows(
                splits["train"],
                context=args.context,
                batch_size=args.batch_size,
                steps_per_epoch=args.steps_per_epoch,
                seed=seed,
            )
        )

    keras.utils.set_random_seed(args.seed)
    teacher = causal_lm(args, args.teacher_depth, "teacher")
    teacher_history, teacher_seconds = byte_lm.train_teacher(
        plain_view(teacher),
        batches(args.seed),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate,
    )
    output.add_history("teacher", teacher_history)
    teacher_record = {
        "parameters": support.parameter_count(teacher),
        "bits_per_byte": {"validation": bits_per_byte(teacher, *validation), "test": bits_per_byte(teacher, *test)},
        "seconds": round(teacher_seconds, 1),
        "steps": args.epochs * args.steps_per_epoch,
    }
    print(f"teacher: {teacher_record}", flush=True)

    # The students' initial weights: the teacher's layers 0, 2, 4, ... (one set), or random (one per seed).
    student_depth = args.teacher_depth // 2
    from_teacher = students.from_teacher(teacher, num_layers=student_depth).get_weights()

    def initial_weights(initialisation, seed):
        if initialisation == "from the teacher":
            return from_teacher
        keras.utils.set_random_seed(seed)
        return causal_lm(args, student_depth, "student").get_weights()

    def train(initialisation, method, seed, feature_weight=None):
        """Trains one student; returns it with its logs and `stdlib_byte_lm.step_clock`."""
        student = causal_lm(args, student_depth, "student")
        student.set_weights(initial_weights(initialisation, seed))
        keras.utils.set_random_seed(seed)
        history, clock, fit_seconds = byte_lm.train_steps(
            method_model(args, teacher, student, method, feature_weight),
            student,
            batches(seed),
            steps=args.student_steps,
            batches_per_epoch=args.steps_per_epoch,
            learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps,
        )
        return student, history, clock, fit_seconds

    student_parameters = support.parameter_count(causal_lm(args, student_depth, "student"))

    # 1. The hidden-state weight, per start, on the validation split with a seed of its own.
    grid_seed = args.seed + args.seeds
    grid, chosen = {}, {}
    for initialisation in INITIALISATIONS:
        grid[initialisation] = {}
        for weight in args.feature_weights:
            student, history, _, _ = train(initialisation, "logit + hidden-state KD", grid_seed, weight)
            grid[initialisation][str(weight)] = bits_per_byte(student, *validation)
            print(f"validation, {initialisation}, w={weight:g}: {grid[initialisation][str(weight)]:.4f}", flush=True)
        chosen[initialisation] = min(args.feature_weights, key=lambda weight: grid[initialisation][str(weight)])

    # 2. The seeds, scored on the test split.
    runs = {initialisation: {method: [] for method in METHODS} for initialisation in INITIALISATIONS}
    saved = {"teacher": teacher}
    for seed in range(args.seed, args.seed + args.seeds):
        for initialisation in INITIALISATIONS:
            for method in METHODS:
                started = time.perf_counter()
                student, history, clock, fit_seconds = train(initialisation, method, seed, chosen[initialisation])
                score = bits_per_byte(student, *test)
                runs[initialisation][method].append(
                    {
                        "seed": seed,
                        "bits_per_byte": score,
                        "step_seconds": clock.step_seconds(),
                        "fit_seconds": round(fit_seconds, 1),
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                )
                name = f"{initialisation}, {method}"
                print(f"{name}, seed {seed}: {score:.4f} bits per byte ({fit_seconds:.0f} s)", flush=True)
                if seed == args.seed:
                    output.add_history(f"{name} seed {seed}", history)
                    model_name = f"student {'from teacher' if initialisation != 'random' else 'random'} {method}"
                    saved[model_name.replace(" + ", " ").replace("-", " ").replace(" ", "_")] = student
    output.save_models(saved)

    unigram = byte_lm.unigram_bits_per_byte(splits["train"], test[1], test[2])
    tables = report_tables(
        args,
        teacher_record=teacher_record,
        unigram=unigram,
        student_parameters=student_parameters,
        grid=grid,
        chosen=chosen,
        runs=runs,
    )
    summary = {
        initialisation: {
            method: dict(zip(("mean", "std"), support.mean_std([run["bits_per_byte"] for run in method_runs])))
            for method, method_runs in by_method.items()
        }
        for initialisation, by_method in runs.items()
    }
    return output.finish(
        f"Expected beforehand: {EXPECTED}\n\n{tables}",
        {
            "corpus": corpus,
            "scored_bytes": scored_bytes,
            "unigram_bits_per_byte": unigram,
            "teacher": teacher_record,
            "student_parameters": student_parameters,
            "validation_grid": grid,
            "chosen_feature_weight": chosen,
            "runs": runs,
            "summary": summary,
            # The machine is shared: its 1, 5 and 15 minute load averages.
            "load_average": {"start": load_at_start, "end": os.getloadavg()},
        },
    )


if __name__ == "__main__":
    support.run(main)
