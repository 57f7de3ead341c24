"""Addition answered by generation: a Llama 3 teacher distilled into a 15x smaller one, off- and on-policy.

A generation task with an exact answer, small enough for a CPU: three-digit
addition written as a prompt and a response, every number least significant
digit first ("123+456=" is written "321+654=" and answered "9750", that is
0579). Written that way, each answer digit depends on the digits at the same
place and the carry from the digit before, in the order a causal model
writes them (Lee et al., 2023, "Teaching Arithmetic to Small Transformers":
reversed answers are learned from far fewer examples). Tokens (one per
character): 0 pad, 1 start, 2 end, 3 "+", 4 "=", 5-14 the digits 0-9; a row
is `[start] + prompt + response + [end]`, packed by `keras_kd.prompts.layout`
in the layout of KerasHub's Gemma 3 preprocessor. The problems are drawn
once (seed `DATA_SEED`, whatever `--seed`), without repeats: `--train-rows`
for training, then `--held-out-rows` each for a validation split (for
choosing settings) and a test split (the one reported); no pair of operands
is in two splits.

Models: KerasHub `Llama3CausalLM`s built from configs (random weights,
`preprocessor=None`). The teacher (`--teacher-width`, 2 blocks) trains with
`teacher.fit` on the response tokens (`sample_weight`) for `--teacher-steps`
steps, enough for it to answer nearly every held-out prompt (its exact match
is reported); the student (`--student-width`, 2 blocks) has
at least 8x fewer parameters (checked). For each seed, every method starts
from the same student weights and trains for the same `--student-steps`
steps of `--batch-size` rows, on the same rows in the same order:

- SFT: `student.fit` on the response tokens (no teacher);
- off-policy KD, `keras_kd.Distiller` on the data's responses, forward KL
  (`SoftTargetKL`) and generalized JSD (`GeneralizedJSD(beta=0.5)`);
- on-policy KD, `keras_kd.OnPolicyDistiller`: with probability `lmbda` a batch's
  responses are sampled by the student (temperature 1, at most the answer's
  length plus the end token) and the teacher scores every sampled token;
  `lmbda` 1 and 0.5, reverse KL (`ReverseKL`) and JSD;
- seq_kd: `OnPolicyDistiller(lmbda=0, seq_kd=True)`, responses sampled by the
  teacher, JSD (as TRL's GKD trainer with `seq_kd=True`).

Every distilled student uses T = 1 and alpha = 1 (the distillation term only,
as in GKD and on-policy distillation; the off-policy Distiller the same, so
that the methods differ only in where the responses come from and the
divergence). All use AdamW with `--learning-rate`, warm-up and cosine decay.

The measurement is exact match: each held-out prompt is completed by the
model's own `generate` with KerasHub's greedy sampler, stopping at the end
token, and counts only if the generated tokens are the answer's four digits
followed by the end token. The share of answer digits right is given too.
Wall time is each student's whole `fit` (compilation included); tokens per
second are the student's input tokens (`--batch-size` x the sequence length
per step) over the steps after the first (compilation left out).

Usage:
    python recipes/generation_addition.py --backend jax
    python recipes/generation_addition.py --smoke
Writes saved_models/generation_addition/: teacher.keras, one student per
method (seed of `--seed`), history.json, results.json, report.md.
"""

import os
import re
import time

import support  # recipes/support.py, beside this script

RECIPE = "generation_addition"
CLAIM = (
    "On-policy distillation (GKD, Agarwal et al., ICLR 2024; MiniLLM, Gu et al., ICLR 2024; Thinking Machines' "
    "on-policy distillation, 2025): a student trained on its own samples, scored token by token by the teacher, "
    "generates better answers than one trained on fixed responses, at the same number of steps. Measured here "
    "on three-digit addition; no published number is reproduced."
)
EXPECTED = (
    "Written before any distillation run: the teacher nearly one-hot on the answer digits (it solves the task), "
    "so off-policy forward KL carries little more than the labels and should land within the seed spread of SFT, "
    "JSD the same or a little lower. On-policy (lmbda 1) trains on the student's own wrong answers with the "
    "teacher's correction at each digit, which should help a student that still makes mistakes: a few points of "
    "exact match over SFT and off-policy at the same steps, perhaps within the seed spread, reverse KL and JSD "
    "alike; lmbda 0.5 between the two. seq_kd should match off-policy JSD (the teacher's samples are nearly the "
    "data's answers). On-policy and seq_kd steps sample 5 tokens one at a time and run the teacher: 2-4x the wall "
    "time of an off-policy step, which costs about 1.5x an SFT step."
)
DATA_SEED = 20261207
DIGITS = 3  # Operands of DIGITS digits; answers of DIGITS + 1 (leading zeros written).
PAD, START, END, PLUS, EQUALS, ZERO = 0, 1, 2, 3, 4, 5
VOCABULARY_SIZE = ZERO + 10
PROMPT_TOKENS = 2 * DIGITS + 2  # "321+654="
ANSWER_TOKENS = DIGITS + 1
# x holds the start token, the prompt, the answer and the end token.
SEQUENCE_LENGTH = 1 + PROMPT_TOKENS + ANSWER_TOKENS + 1
HEADS = 4  # Attention heads of every model (the width must be a multiple of 2 * HEADS, for RoPE).
MIN_SIZE_RATIO = 8  # The student has at least 8x fewer parameters than the teacher.
METHODS = (
    "SFT",
    "off-policy forward KL",
    "off-policy JSD",
    "on-policy reverse KL, lmbda=1",
    "on-policy JSD, lmbda=1",
    "on-policy reverse KL, lmbda=0.5",
    "on-policy JSD, lmbda=0.5",
    "seq_kd JSD (teacher samples)",
)
# --smoke: tiny models, a few rows and steps, one seed.
SMOKE_SETTINGS = {
    "train_rows": 64,
    "held_out_rows": 16,
    "teacher_steps": 2,
    "student_steps": 2,
    "batch_size": 8,
    "teacher_batch_size": 8,
    "teacher_width": 16,
    "student_width": 8,
    "seeds": 1,
}


def add_arguments(parser):
    parser.add_argument("--batch-size", type=int, default=256, help="rows per student step (default 256)")
    parser.add_argument("--teacher-batch-size", type=int, default=64, help="rows per teacher step (default 64)")
    parser.add_argument("--learning-rate", type=float, default=1e-2, help="students' peak rate (default 1e-2)")
    parser.add_argument("--teacher-learning-rate", type=float, default=3e-3, help="default 3e-3")
    parser.add_argument("--teacher-steps", type=int, default=1600, help="default 1600")
    parser.add_argument("--student-steps", type=int, default=450, help="steps of every student (default 450)")
    parser.add_argument("--train-rows", type=int, default=20000, help="training problems (default 20000)")
    parser.add_argument("--held-out-rows", type=int, default=1000, help="problems per held-out split (default 1000)")
    parser.add_argument("--teacher-width", type=int, default=64, help="default 64")
    parser.add_argument("--student-width", type=int, default=16, help="default 16")
    parser.add_argument("--seeds", type=int, default=3, help="student seeds --seed, --seed+1, ... (default 3)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: all")
    parser.add_argument(
        "--split", choices=("test", "validation"), default="test", help="what to score (validation: for choosing)"
    )


def digit_tokens(number, width):
    """The digits of `number`, least significant first, `width` of them, as tokens."""
    return [ZERO + (number // 10**place) % 10 for place in range(width)]


def problems(rows, held_out_rows):
    """`{"train", "validation", "test"}` -> `(prompts, answers)`, token lists; no operand pair in two splits."""
    import numpy as np

    rng = np.random.default_rng(DATA_SEED)
    pairs = rng.choice(10 ** (2 * DIGITS), size=rows + 2 * held_out_rows, replace=False)
    first, second = pairs // 10**DIGITS, pairs % 10**DIGITS
    prompts = [
        digit_tokens(a, DIGITS) + [PLUS] + digit_tokens(b, DIGITS) + [EQUALS]
        for a, b in zip(first.tolist(), second.tolist())
    ]
    answers = [digit_tokens(a + b, ANSWER_TOKENS) for a, b in zip(first.tolist(), second.tolist())]
    bounds = {"train": (0, rows), "validation": (rows, rows + held_out_rows), "test": (rows + held_out_rows, None)}
    return {name: (prompts[start:stop], answers[start:stop]) for name, (start, stop) in bounds.items()}


def decode(tokens):
    """Tokens as text, numbers written least significant digit first as in the data (for reading reports)."""
    names = {PAD: "", START: "", END: "", PLUS: "+", EQUALS: "="}
    return "".join(names.get(token, str(token - ZERO)) for token in tokens)


def causal_lm(width, name, rope_max_wavelength=10000.0):
    """A 2-block Llama 3 causal LM over the task's tokens, `HEADS` heads, from a config (random weights, no preprocessor)."""
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCABULARY_SIZE,
        num_layers=2,
        num_query_heads=HEADS,
        num_key_value_heads=HEADS,
        hidden_dim=width,
        intermediate_dim=4 * width,
        rope_max_wavelength=rope_max_wavelength,
        dropout=0.0,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None, name=name)


def training_stream(x, y, sample_weight, *, steps, batch_size, seed):
    """`steps * batch_size` rows of the training arrays: whole shuffled passes, in an order that depends on `seed`."""
    import numpy as np

    rng = np.random.default_rng(seed)
    needed = steps * batch_size
    order = np.concatenate([rng.permutation(len(y)) for _ in range(-(-needed // len(y)))])[:needed]
    return {key: value[order] for key, value in x.items()}, y[order], sample_weight[order]


def optimizer(keras, learning_rate, steps):
    warmup = max(1, steps // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - warmup), warmup_target=learning_rate, warmup_steps=warmup
    )
    return keras.optimizers.AdamW(schedule, weight_decay=0.01, clipnorm=1.0)


def fit(model, stream, *, batch_size, learning_rate, steps):
    """Trains a CausalLM (cross-entropy on the weighted tokens) or a Distiller (its own loss) on one pass of `stream`.

    Returns `(logs, timing)`: the Keras logs, and `{"seconds": whole fit,
    "tokens_per_second": input tokens of the steps after the first}`.
    """
    import keras

    from keras_kd import Distiller

    x, y, sample_weight = stream
    if isinstance(model, Distiller):
        model.compile(optimizer=optimizer(keras, learning_rate, steps))
    else:
        model.compile(
            optimizer=optimizer(keras, learning_rate, steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[],
        )
    step_ends = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step_ends.append(time.perf_counter())

    started = time.perf_counter()
    history = model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,
        callbacks=[StepTimes()],
        verbose=0,
    )
    seconds = time.perf_counter() - started
    tokens = (len(step_ends) - 1) * batch_size * y.shape[1]
    timing = {
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / (step_ends[-1] - step_ends[0]), 1) if len(step_ends) > 1 else None,
    }
    return {name: [float(value) for value in values] for name, values in history.history.items()}, timing


def generated_answers(model, prompts):
    """The `ANSWER_TOKENS + 1` tokens `model` generates greedily after each prompt (stopping at the end token)."""
    import keras_hub
    import numpy as np

    token_ids = np.zeros((len(prompts), SEQUENCE_LENGTH), "int32")
    token_ids[:, 0] = START
    token_ids[:, 1 : 1 + PROMPT_TOKENS] = prompts
    padding_mask = np.zeros_like(token_ids, dtype=bool)
    padding_mask[:, : 1 + PROMPT_TOKENS] = True
    # compile() only sets the sampler that generate() uses; the weights are untouched.
    model.compile(sampler=keras_hub.samplers.GreedySampler())
    generated = model.generate({"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=[END])
    return np.asarray(generated["token_ids"])[:, 1 + PROMPT_TOKENS :]


def score_answers(generated, answers):
    """`(exact match, answer-digit accuracy)` of generated tokens against the answers, in [0, 1].

    A row matches exactly only if its first `ANSWER_TOKENS + 1` generated
    tokens are the answer's digits and then the end token. Digit accuracy is
    the share of answer digits generated right at their place.
    """
    import numpy as np

    generated = np.asarray(generated)
    expected = np.concatenate([np.asarray(answers), np.full((len(answers), 1), END)], axis=1)
    if generated.shape[1] < expected.shape[1]:
        raise ValueError(f"{generated.shape[1]} generated tokens per row; the answer needs {expected.shape[1]}.")
    right = generated[:, : expected.shape[1]] == expected
    return float(right.all(axis=1).mean()), float(right[:, :ANSWER_TOKENS].mean())


def evaluate(model, split):
    prompts, answers = split
    generated = generated_answers(model, prompts)
    exact, digits = score_answers(generated, answers)
    examples = [f"{decode(p)}{decode(g)}" for p, g in zip(prompts[:3], generated[:3].tolist())]
    return {"exact_match": exact, "digit_accuracy": digits, "examples": examples}


def make_student(keras_kd, method, teacher, student, seed):
    """The model that trains `student` by `method` (the student itself for SFT)."""
    losses = keras_kd.losses
    if method == "SFT":
        return student
    if method.startswith("off-policy"):
        loss = losses.SoftTargetKL() if "forward KL" in method else losses.GeneralizedJSD(beta=0.5)
        return keras_kd.Distiller(teacher, student, temperature=1.0, alpha=1.0, distillation_loss=loss)
    loss = losses.ReverseKL() if "reverse KL" in method else losses.GeneralizedJSD(beta=0.5)
    if method.startswith("seq_kd"):
        lmbda, seq_kd = 0.0, True
    else:
        lmbda, seq_kd = float(method.rsplit("lmbda=", 1)[1]), False
    return keras_kd.OnPolicyDistiller(
        teacher,
        student,
        lmbda=lmbda,
        seq_kd=seq_kd,
        max_new_tokens=ANSWER_TOKENS + 1,
        stop_token_ids=[END],
        temperature=1.0,
        alpha=1.0,
        distillation_loss=loss,
        seed=seed,
    )


def main(argv=None):
    args = support.parse_args(
        RECIPE, __doc__.splitlines()[0], argv, epochs=1, datasets=("addition",), add_arguments=add_arguments
    )
    if args.smoke:
        for key, value in SMOKE_SETTINGS.items():
            setattr(args, key, value)
    keras = support.select_backend(args.backend)
    import keras_kd

    splits = problems(args.train_rows, args.held_out_rows)
    x, y, sample_weight = keras_kd.prompts.layout(
        *splits["train"], SEQUENCE_LENGTH, start_token_id=START, end_token_id=END, pad_token_id=PAD
    )
    description = (
        f"{DIGITS}-digit addition, numbers least significant digit first: {args.train_rows:,} training problems, "
        f"{args.held_out_rows:,} validation and {args.held_out_rows:,} test problems (scored: {args.split})"
    )
    if args.smoke:
        description += " (smoke test: tiny models, a few steps; not a result)"
    load_at_start = os.getloadavg()
    output = support.RecipeOutput(args, support.Data(None, None, None, None, description), CLAIM)
    scored = splits[args.split]

    keras.utils.set_random_seed(args.seed)
    teacher = causal_lm(args.teacher_width, "teacher")
    teacher_stream = training_stream(
        x, y, sample_weight, steps=args.teacher_steps, batch_size=args.teacher_batch_size, seed=0
    )
    teacher_history, teacher_timing = fit(
        teacher,
        teacher_stream,
        batch_size=args.teacher_batch_size,
        learning_rate=args.teacher_learning_rate,
        steps=args.teacher_steps,
    )
    output.add_history("teacher", teacher_history)
    teacher_scores = {name: evaluate(teacher, splits[name]) for name in ("validation", "test")}
    print(
        f"teacher: exact match {teacher_scores[args.split]['exact_match']:.3f} on {args.split} "
        f"in {teacher_timing['seconds']:.0f} s",
        flush=True,
    )
    teacher_parameters = support.parameter_count(teacher)

    runs = {method: [] for method in args.methods}
    saved = {"teacher": teacher}
    student_parameters = None
    for seed in range(args.seed, args.seed + args.seeds):
        keras.utils.set_random_seed(seed)
        initial = causal_lm(args.student_width, "student").get_weights()
        stream = training_stream(x, y, sample_weight, steps=args.student_steps, batch_size=args.batch_size, seed=seed)
        for method in args.methods:
            keras.utils.set_random_seed(seed)
            student = causal_lm(args.student_width, "student")
            student.set_weights(initial)
            if student_parameters is None:
                student_parameters = support.parameter_count(student)
                ratio = teacher_parameters / student_parameters
                if ratio < MIN_SIZE_RATIO and not args.smoke:
                    raise ValueError(
                        f"The student has {student_parameters:,} parameters, only {ratio:.1f}x fewer than the "
                        f"teacher's {teacher_parameters:,}; the recipe needs >= {MIN_SIZE_RATIO}x "
                        "(a smaller --student-width or a larger --teacher-width)."
                    )
            trained = make_student(keras_kd, method, teacher, student, seed)
            history, timing = fit(
                trained, stream, batch_size=args.batch_size, learning_rate=args.learning_rate, steps=args.student_steps
            )
            output.add_history(f"{method} seed {seed}", history)
            score = evaluate(student, scored)
            runs[method].append({"seed": seed, **timing, **score})
            print(
                f"{method}, seed {seed}: exact match {score['exact_match']:.3f}, digits {score['digit_accuracy']:.3f}, "
                f"{timing['seconds']:.0f} s, {timing['tokens_per_second']} tokens/s",
                flush=True,
            )
            if seed == args.seed:
                saved["student_" + re.sub(r"[^A-Za-z0-9]+", "_", method).strip("_")] = student
    output.save_models(saved)

    summary = {}
    rows = [
        [
            f"teacher (width {args.teacher_width}), {args.teacher_steps} steps of {args.teacher_batch_size}",
            f"{teacher_parameters:,}",
            f"{100 * teacher_scores[args.split]['exact_match']:.1f}",
            "-",
            f"{100 * teacher_scores[args.split]['digit_accuracy']:.1f}",
            f"{teacher_timing['seconds']:.0f}",
            f"{teacher_timing['tokens_per_second']:,.0f}" if teacher_timing["tokens_per_second"] else "-",
        ]
    ]
    for method, method_runs in runs.items():
        exact = support.mean_std([100 * run["exact_match"] for run in method_runs])
        digits = support.mean_std([100 * run["digit_accuracy"] for run in method_runs])
        seconds = support.mean_std([run["seconds"] for run in method_runs])
        speeds = [run["tokens_per_second"] for run in method_runs if run["tokens_per_second"]]
        speed = support.mean_std(speeds) if speeds else None
        summary[method] = {
            "exact_match": exact,
            "digit_accuracy": digits,
            "seconds": seconds,
            "tokens_per_second": speed,
        }
        rows.append(
            [
                f"student: {method}",
                f"{student_parameters:,}",
                f"{exact[0]:.1f} ± {exact[1]:.1f}",
                ", ".join(f"{100 * run['exact_match']:.1f}" for run in method_runs),
                f"{digits[0]:.1f} ± {digits[1]:.1f}",
                f"{seconds[0]:.0f} ± {seconds[1]:.0f}",
                f"{speed[0]:,.0f} ± {speed[1]:,.0f}" if speed else "-",
            ]
        )
    header = [
        "Model",
        "Parameters",
        f"Exact match % ({args.split}, mean ± std, {args.seeds} seeds)",
        "Per seed",
        "Answer digits right %",
        "Training wall s",
        "Training tokens/s",
    ]
    settings = (
        f"Every student: {args.student_steps} steps of {args.batch_size} rows of {SEQUENCE_LENGTH} tokens, AdamW "
        f"{args.learning_rate} (warm-up, cosine decay), seeds {args.seed}-{args.seed + args.seeds - 1}; T=1, "
        f"alpha=1 for every distilled student; on-policy samples at temperature 1, at most {ANSWER_TOKENS + 1} "
        f"tokens. Teacher/student parameters: {teacher_parameters / student_parameters:.1f}x. Teacher exact match: "
        f"validation {100 * teacher_scores['validation']['exact_match']:.1f}%, "
        f"test {100 * teacher_scores['test']['exact_match']:.1f}%."
    )
    return output.finish(
        f"Expected beforehand: {EXPECTED}\n\n{support.markdown_table(header, rows)}\n\n{settings}",
        {
            "expected_beforehand": EXPECTED,
            "teacher": {
                "parameters": teacher_parameters,
                "steps": args.teacher_steps,
                **teacher_timing,
                "scores": teacher_scores,
            },
            "student_parameters": student_parameters,
            "student_steps": args.student_steps,
            "sequence_length": SEQUENCE_LENGTH,
            "runs": runs,
            "summary": summary,
            # The machine is shared: its 1, 5 and 15 minute load averages.
            "load_average": {"start": load_at_start, "end": os.getloadavg()},
        },
    )


if __name__ == "__main__":
    support.run(main)
