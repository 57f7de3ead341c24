"""On-policy distillation's training step against its parts, and its memory at language-model vocabularies.

    python -m bench.on_policy [--backends torch tensorflow jax] [--rounds 8] [--threads N]
        [--no-memory] [--json PATH]
    KERAS_BACKEND=jax python -m bench.on_policy --smoke

**The step against its parts.** For each backend, a fresh process builds
KerasHub Llama 3 causal LMs from configs, with random weights (teacher 4
layers x 128, student 2 x 64, vocabulary 4,096), and one batch of 8 rows of
64 tokens in the prompt/response layout of `keras_kd.OnPolicyDistiller`: a
32-token prompt, then a 32-token response. It then times, one after another
in each round (so that a slow spell of a shared machine falls on all of them
alike):

- `sampling`: the student samples 32 tokens after each prompt through
  KerasHub's own compiled generation function (`make_generate_function`,
  with `RandomSampler(temperature=1.0)`, the OnPolicyDistiller's default);
- `teacher_forward`: `teacher.predict_on_batch` on the batch;
- `off_policy`: one training step of `keras_kd.Distiller` on the batch
  (`ReverseKL`, T = 1, alpha = 1, as the OnPolicyDistiller's defaults): the
  teacher forward, the student forward and backward;
- `on_policy`: one training step of `keras_kd.OnPolicyDistiller(lmbda=1,
  max_new_tokens=32)` on the batch: the student samples the 32 response
  tokens inside the step, then the same as `off_policy` on them.

The first round compiles and is reported apart; the median over the other
rounds is each part's time, and `on_policy / (sampling + off_policy)` says
what the on-policy step adds to its parts (1.00: nothing). Sampling must not
recompile from step to step: the process counts the traces of the on-policy
step (the times Python runs its batch preparation: once per trace where the
step is compiled, once per step on torch, which runs eagerly), on JAX every
trace and XLA compilation of any function (`jax.monitoring`), and on
TensorFlow the traces of KerasHub's generation function, each in the first
round and in the rounds after it.

**Memory.** For each backend, a fresh process runs one off-policy and one
on-policy training step of a Llama 3 pair whose output layer has Gemma 3's
vocabulary, 262,144 (teacher 1 x 64, student 1 x 32; 2 rows of 256 tokens,
32 sampled), and reports the peak resident memory above the memory just
before the step, as `bench.loss_memory` measures it, in float32 copies of
the logits `(batch, length, vocabulary)`. Beside it, `bench.loss_memory`'s
own measurement of the divergences at that shape and T = 1 (reverse KL, the
on-policy default, and generalized JSD): the forward and backward pass of the
loss alone, where the gradient itself is one copy.

`--smoke` runs tiny sizes in this process, on the backend Keras runs, for
the tests (the loss rows are left out). `--json` writes the results, which
`bench.report` turns into the benchmark page's on-policy section.
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

from bench import loss_memory
from keras_kd import launch

# (layers, hidden units) of each Llama 3 model.
MODELS = {
    "timing": {"teacher": (4, 128), "student": (2, 64)},
    "memory": {"teacher": (1, 64), "student": (1, 32)},
    "smoke": {"teacher": (1, 32), "student": (1, 16)},
}
SIZES = {
    "timing": {"batch": 8, "length": 64, "max_new_tokens": 32, "vocabulary": 4096},
    # Gemma 3's vocabulary.
    "memory": {"batch": 2, "length": 256, "max_new_tokens": 32, "vocabulary": 262_144},
    "smoke": {"batch": 2, "length": 12, "max_new_tokens": 4, "vocabulary": 64},
}
# The divergences measured by `bench.loss_memory` at the memory shape, at the on-policy temperature.
LOSSES = {"reverse_kl": "reverse KL", "generalized_jsd": "generalized JSD"}
TEMPERATURE = 1.0
PARTS = {
    "sampling": "student sampling (KerasHub's compiled generation)",
    "teacher_forward": "teacher forward (`teacher.predict_on_batch`)",
    "off_policy": "off-policy step (`keras_kd.Distiller`: teacher forward, student forward and backward)",
    "on_policy": "on-policy step (`keras_kd.OnPolicyDistiller`, lmbda = 1)",
}
TITLE = "On-policy step (KerasHub Llama 3 causal LMs)"
DEFAULT_ROUNDS = 8
LEARNING_RATE = 1e-4
RESULT_PREFIX = "ON_POLICY_RESULT "
# `jax.monitoring` events: a function traced to a jaxpr, a program compiled by XLA.
JAX_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "traces",
    "/jax/core/compile/backend_compile_duration": "compilations",
}


# ------------------------------------------------------------------ models and data


def causal_lm(layers, hidden_dim, vocabulary, name):
    """A KerasHub Llama 3 causal LM built from a config, with random weights and no preprocessor."""
    import keras_hub

    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=vocabulary,
        num_layers=layers,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=hidden_dim,
        intermediate_dim=2 * hidden_dim,
        dropout=0.0,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None, name=name)


def prompt_response_batch(batch, length, max_new_tokens, vocabulary, seed=0):
    """`(x, y, sample_weight, prompts)`: each row a prompt of `length - max_new_tokens` tokens, then a response.

    `sample_weight` marks the response's targets (`y[:, j]` is token `j +
    1`); `prompts` holds the prompts alone, as KerasHub's generation takes
    them (`padding_mask` False where a token is to be sampled).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    # Id 0 pads sampled responses: the data use the others.
    tokens = rng.integers(1, vocabulary, (batch, length + 1)).astype("int32")
    prompt_length = length - max_new_tokens
    positions = np.arange(length)[None, :].repeat(batch, axis=0)
    x = {"token_ids": tokens[:, :length], "padding_mask": np.ones((batch, length), "int32")}
    sample_weight = ((positions >= prompt_length - 1) & (positions < length - 1)).astype("float32")
    in_prompt = positions < prompt_length
    prompts = {"token_ids": np.where(in_prompt, x["token_ids"], 0).astype("int32"), "padding_mask": in_prompt}
    return x, tokens[:, 1:], sample_weight, prompts


class Setup:
    """A teacher, an off-policy and an on-policy distiller (each with its own student), and one batch."""

    def __init__(self, kind, sizes, models):
        import keras

        import keras_kd

        self.kind, self.sizes, self.models = kind, sizes, models
        keras.utils.set_random_seed(0)
        vocabulary = sizes["vocabulary"]
        self.teacher = causal_lm(*models["teacher"], vocabulary, "teacher")
        self.counting_class = counting_on_policy_class()
        self.on_policy = self.counting_class(
            self.teacher,
            self.student("on_policy_student"),
            lmbda=1.0,
            max_new_tokens=sizes["max_new_tokens"],
            temperature=TEMPERATURE,
            seed=0,
        )
        self.off_policy = keras_kd.Distiller(
            self.teacher,
            self.student("off_policy_student"),
            temperature=TEMPERATURE,
            alpha=1.0,
            distillation_loss=keras_kd.losses.ReverseKL(),
        )
        for distiller in (self.on_policy, self.off_policy):
            distiller.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
        self.x, self.y, self.sample_weight, self.prompts = prompt_response_batch(
            sizes["batch"], sizes["length"], sizes["max_new_tokens"], vocabulary
        )

    def student(self, name):
        return causal_lm(*self.models["student"], self.sizes["vocabulary"], name)

    def step(self, distiller):
        return lambda: distiller.train_on_batch(self.x, self.y, sample_weight=self.sample_weight)


def counting_on_policy_class():
    """An `OnPolicyDistiller` that counts how often Python runs its training batch preparation.

    Where the step is compiled (JAX, TensorFlow) that is once per trace;
    on torch, which runs the step eagerly, once per step.
    """
    import keras_kd

    class CountingOnPolicyDistiller(keras_kd.OnPolicyDistiller):
        python_runs = 0

        def prepare_batch(self, data, training):
            if training:
                type(self).python_runs += 1
            return super().prepare_batch(data, training)

    return CountingOnPolicyDistiller


# ------------------------------------------------------------------ measurements (in a child process)


def time_parts(setup, rounds):
    """Times the parts and the on-policy step, one of each in turn per round; returns the result dict."""
    import keras
    import keras_hub

    backend = keras.config.backend()
    jax_counts = _jax_event_counter() if backend == "jax" else None
    sampling_lm = setup.student("sampling_student")
    sampling_lm.compile(sampler=keras_hub.samplers.RandomSampler(temperature=1.0))
    generate = sampling_lm.make_generate_function()
    prompts = keras.tree.map_structure(keras.ops.convert_to_tensor, setup.prompts)
    runs = {
        "sampling": lambda: keras.ops.convert_to_numpy(generate(prompts)["token_ids"]),
        "teacher_forward": lambda: setup.teacher.predict_on_batch(setup.x),
        "off_policy": setup.step(setup.off_policy),
        "on_policy": setup.step(setup.on_policy),
    }

    def counts():
        values = {"step_python_runs": setup.counting_class.python_runs}
        if jax_counts is not None:
            values.update({f"jax_{name}": count for name, count in jax_counts.items()})
        if backend == "tensorflow":
            values["generate_traces"] = generate.experimental_get_tracing_count()
        return values

    first_seconds = {name: _seconds(run) for name, run in runs.items()}
    first_counts = counts()
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(_seconds(run))
    later_counts = {name: count - first_counts[name] for name, count in counts().items()}
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    parts = [s + o for s, o in zip(seconds["sampling"], seconds["off_policy"])]
    return {
        "backend": backend,
        "sizes": setup.sizes,
        "models": setup.models,
        "teacher_parameters": setup.teacher.count_params(),
        "student_parameters": sampling_lm.count_params(),
        "rounds": rounds,
        "threads": _threads(backend),
        "first_seconds": first_seconds,
        "seconds": seconds,
        "median_seconds": medians,
        "ratio": medians["on_policy"] / (medians["sampling"] + medians["off_policy"]),
        "paired_ratio": statistics.median(on / part for on, part in zip(seconds["on_policy"], parts)),
        "counts_first_round": first_counts,
        "counts_later_rounds": later_counts,
    }


def step_memory(setup):
    """The peak memory of one off-policy and one on-policy step above the memory before it, in logits copies."""
    import keras

    backend = keras.config.backend()
    sizes = setup.sizes
    logits_bytes = 4 * sizes["batch"] * sizes["length"] * sizes["vocabulary"]
    extra = {name: peak_extra_bytes(setup.step(getattr(setup, name)), backend) for name in ("off_policy", "on_policy")}
    return {
        "backend": backend,
        "sizes": sizes,
        "models": setup.models,
        "logits_bytes": logits_bytes,
        "peak_extra_bytes": extra,
        "ratio": {name: value / logits_bytes for name, value in extra.items()},
    }


def peak_extra_bytes(run, backend):
    """The peak RSS of `run()` above the RSS before it, after a first call (compilation, optimizer, caches)."""
    run()
    loss_memory.settle(backend)
    loss_memory.reset_peak_rss()
    before = loss_memory.current_rss_bytes()
    run()
    return loss_memory.peak_rss_bytes() - before


def _seconds(run):
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def _jax_event_counter():
    """Counts, from now on, JAX's traces and XLA compilations of any function (a dict updated in place)."""
    import jax

    counts = dict.fromkeys(JAX_EVENTS.values(), 0)

    def listener(event, duration, **kwargs):
        if event in JAX_EVENTS:
            counts[JAX_EVENTS[event]] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    return counts


def set_threads(threads):
    """Makes torch and TensorFlow use `threads` threads per op (JAX's XLA keeps its own pool)."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _threads(backend):
    """Threads per op of `backend`, where it says (None for JAX)."""
    if backend == "torch":
        import torch

        return torch.get_num_threads()
    if backend == "tensorflow":
        import tensorflow as tf

        # 0: TensorFlow's default, which it does not report.
        return tf.config.threading.get_intra_op_parallelism_threads() or None
    return None


def child(kind, rounds):
    """The measurement `kind` ("timing" or "memory") on the backend of this process, as a dict."""
    setup = Setup(kind, SIZES[kind], MODELS[kind])
    return time_parts(setup, rounds) if kind == "timing" else step_memory(setup)


# ------------------------------------------------------------------ the parent process


def run_child(kind, backend, args):
    """Runs `child(kind, ...)` in a fresh process on `backend`; its result, or `{"error": ...}`."""
    environment = loss_memory.child_environment(backend)
    if kind == "timing" and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        # The memory children's allocator setting would slow the timed steps.
        environment.pop("MALLOC_MMAP_THRESHOLD_")
    command = [sys.executable, "-m", "bench.on_policy", "--child", kind, "--rounds", str(args.rounds)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    environment["KERAS_BACKEND"] = backend
    try:
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"backend": backend, "error": f"timed out after {args.timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return {"backend": backend, "error": f"exit code {done.returncode}: {done.stderr.strip()[-1500:]}"}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench.on_policy", description=__doc__.split("\n\n")[0].strip().splitlines()[0]
    )
    parser.add_argument(
        "--backends", nargs="+", choices=launch.BACKENDS, default=list(launch.BACKENDS), help="(default: all three)"
    )
    parser.add_argument(
        "--rounds",
        type=launch.positive_int,
        default=None,
        help=f"Timed rounds after the first (default {DEFAULT_ROUNDS}; smoke 2).",
    )
    parser.add_argument(
        "--threads",
        type=launch.positive_int,
        default=None,
        help="Threads per op for torch and TensorFlow (default: theirs; JAX keeps its own).",
    )
    parser.add_argument("--no-memory", action="store_true", help="Time the step only; leave the memory out.")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes, in this process, on Keras's backend.")
    parser.add_argument("--json", default=None, help="Also write the results to this JSON file.")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds allowed per child process.")
    parser.add_argument("--child", choices=sorted(set(SIZES) - {"smoke"}), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 2 if args.smoke else DEFAULT_ROUNDS
    return args


def main(argv=None, print_fn=print):
    """Runs the measurements; returns their results (`run`, `timing`, `memory`, `loss_memory`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.child:
        if args.threads:
            set_threads(args.threads)
        print_fn(RESULT_PREFIX + json.dumps(child(args.child, args.rounds)))
        return None
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start, clock = os.getloadavg(), time.perf_counter()
    timing, memory, losses = [], [], []
    if args.smoke:
        launch.select_backend(None)
        setup = Setup("smoke", SIZES["smoke"], MODELS["smoke"])
        timing.append(time_parts(setup, args.rounds))
        if not args.no_memory:
            memory.append(step_memory(setup))
    else:
        for backend in args.backends:
            timing.append(run_child("timing", backend, args))
            print_fn(_progress(timing[-1]))
            if args.no_memory:
                continue
            memory.append(run_child("memory", backend, args))
            shape = tuple(SIZES["memory"][key] for key in ("batch", "length", "vocabulary"))
            for loss in LOSSES:
                losses.append(loss_memory.run_child(backend, loss, shape, temperature=TEMPERATURE))
    results = {
        "run": {
            "command": "python -m bench.on_policy " + " ".join(shlex.quote(arg) for arg in argv),
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "wall_seconds": time.perf_counter() - clock,
            "load_start": load_start,
            "load_end": os.getloadavg(),
            "smoke": args.smoke,
        },
        "timing": timing,
        "memory": memory,
        "loss_memory": losses,
    }
    for line in section_lines(results):
        print_fn(line)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as file:
            json.dump(results, file, indent=1)
    return results


def failed(results):
    """Whether any measurement of `main`'s results (or the whole run, `{"error": ...}`) failed."""
    if "error" in results:
        return True
    return any("error" in row for key in ("timing", "memory", "loss_memory") for row in results[key])


def _progress(result):
    if "error" in result:
        return f"{result['backend']}: failed: {_last_line(result['error'])}"
    medians = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in result["median_seconds"].items())
    return f"{result['backend']}: {medians}; on-policy / (sampling + off-policy) {result['ratio']:.2f}"


# ------------------------------------------------------------------ the page's section


def section_lines(results):
    """The benchmark page's on-policy section (markdown lines) from `main`'s results."""
    run, timing = results["run"], results["timing"]
    lines = [f"## {TITLE}", ""]
    lines += [
        f"`{run['command']}`"
        + (" — a smoke run: tiny sizes, not a measurement" if run["smoke"] else "")
        + f"; started {run['started']}, took {run['wall_seconds']:.0f} s; load average (1, 5, 15 min) "
        f"at the start {_load(run['load_start'])}, at the end {_load(run['load_end'])}. What it measures: "
        "`bench/on_policy.py`.",
        "",
    ]
    lines += _timing_lines(timing)
    lines += _memory_lines(results["memory"], results["loss_memory"])
    return lines


def _timing_lines(timing):
    done = [result for result in timing if "error" not in result]
    lines = [f"- {r['backend']}: failed: `{_last_line(r['error'])}`" for r in timing if "error" in r]
    if not done:
        return lines + ([""] if lines else [])
    first = done[0]
    sizes, models = first["sizes"], first["models"]
    backends = [result["backend"] for result in done]
    threads = ", ".join(f"{r['backend']} {r['threads']}" for r in done if r["threads"] is not None)
    lines += [
        f"Teacher Llama 3 {_model(models['teacher'])} ({first['teacher_parameters']:,} parameters), student "
        f"{_model(models['student'])} ({first['student_parameters']:,}), vocabulary {sizes['vocabulary']:,}, "
        f"random weights; a batch of {sizes['batch']} rows of {sizes['length']} tokens: a "
        f"{sizes['length'] - sizes['max_new_tokens']}-token prompt, then {sizes['max_new_tokens']} tokens "
        f"that the on-policy step samples (`max_new_tokens={sizes['max_new_tokens']}`, no stop token). "
        f"Median seconds per step over {first['rounds']} rounds after the first, each part in turn within a "
        f"round (in brackets: the slowest round over the fastest); threads per op: {threads or 'the defaults'}.",
        "",
        *_header("part", backends),
    ]
    for name, label in PARTS.items():
        lines.append(f"| {label} | " + " | ".join(_time_cell(r["seconds"][name]) for r in done) + " |")
    student_cells = [f"{r['median_seconds']['off_policy'] - r['median_seconds']['teacher_forward']:.3f}" for r in done]
    lines.append(
        "| student forward and backward (off-policy step − teacher forward) | " + " | ".join(student_cells) + " |"
    )
    lines.append(
        "| first on-policy step (compiles) | "
        + " | ".join(f"{r['first_seconds']['on_policy']:.2f}" for r in done)
        + " |"
    )
    lines += [
        "",
        *_header("ratio", backends),
        "| on-policy step / (sampling + off-policy step), medians (paired: median of each round's) | "
        + " | ".join(f"{r['ratio']:.2f} (paired {r['paired_ratio']:.2f})" for r in done)
        + " |",
        "| sampling / on-policy step | "
        + " | ".join(f"{r['median_seconds']['sampling'] / r['median_seconds']['on_policy']:.2f}" for r in done)
        + " |",
        "",
        "Compilation, in the first round / in the rounds after it (0 after the first: nothing recompiles "
        "from step to step):",
        "",
        *_header("count", backends),
        "| on-policy step traced (Python runs of its batch preparation; torch runs eagerly, once per step) | "
        + " | ".join(_count_cell(r, "step_python_runs") for r in done)
        + " |",
        "| JAX: traces of any function | " + " | ".join(_count_cell(r, "jax_traces") for r in done) + " |",
        "| JAX: XLA compilations of any function | "
        + " | ".join(_count_cell(r, "jax_compilations") for r in done)
        + " |",
        "| TensorFlow: traces of KerasHub's generation function | "
        + " | ".join(_count_cell(r, "generate_traces") for r in done)
        + " |",
        "",
    ]
    return lines


def _memory_lines(memory, losses):
    done = [result for result in memory if "error" not in result]
    lines = [f"- memory, {r['backend']}: failed: `{_last_line(r['error'])}`" for r in memory if "error" in r]
    lines += [f"- {r['loss']}, {r['backend']}: failed: `{_last_line(r['error'])}`" for r in losses if "error" in r]
    if not done:
        return lines + ([""] if lines else [])
    first = done[0]
    sizes, models = first["sizes"], first["models"]
    backends = [result["backend"] for result in done]
    shape = f"({sizes['batch']}, {sizes['length']}, {sizes['vocabulary']:,})"
    lines += [
        f"Memory at vocabulary {sizes['vocabulary']:,}: the peak resident memory above the memory just before "
        f"the measured call, in float32 copies of the logits {shape} ({first['logits_bytes'] / 2**20:.0f} MiB), "
        "as `bench.loss_memory` measures it. The loss rows are `bench.loss_memory` at that shape and T = "
        f"{TEMPERATURE:g}: the loss's forward and backward pass alone, whose gradient is itself one copy. The "
        f"step rows train a Llama 3 {_model(models['teacher'])} teacher and {_model(models['student'])} student "
        f"with that vocabulary for one step ({sizes['max_new_tokens']} tokens sampled on-policy).",
        "",
        *_header("measured call", backends),
    ]
    by_key = {(row["backend"], row["loss"]): row for row in losses if "error" not in row}
    for loss, label in LOSSES.items():
        cells = [by_key.get((backend, loss)) for backend in backends]
        if any(cells):
            lines.append(
                f"| {label}, forward and backward (T = {TEMPERATURE:g}) | "
                + " | ".join("—" if row is None else f"{row['ratio']:.2f}" for row in cells)
                + " |"
            )
    for name, label in (("off_policy", "off-policy training step"), ("on_policy", "on-policy training step")):
        lines.append(f"| {label} | " + " | ".join(f"{r['ratio'][name]:.2f}" for r in done) + " |")
    lines.append(
        "| on-policy step − off-policy step | "
        + " | ".join(f"{r['ratio']['on_policy'] - r['ratio']['off_policy']:+.2f}" for r in done)
        + " |"
    )
    lines.append("")
    return lines


def _header(first_column, backends):
    return ["| " + first_column + " | " + " | ".join(backends) + " |", "|---|" + "---:|" * len(backends)]


def _time_cell(values):
    cell = f"{statistics.median(values):.3f}"
    if len(values) > 1:
        cell += f" ({max(values) / min(values):.2f}x)"
    return cell


def _count_cell(result, name):
    if name not in result["counts_first_round"]:
        return "—"
    return f"{result['counts_first_round'][name]} / {result['counts_later_rounds'][name]}"


def _model(shape):
    return f"{shape[0]} x {shape[1]}"


def _load(values):
    return ", ".join(f"{value:.2f}" for value in values)


def _last_line(text):
    lines = str(text).strip().splitlines()
    return lines[-1][-300:] if lines else ""


if __name__ == "__main__":
    results = main()
    sys.exit(1 if results is not None and failed(results) else 0)
