"""Peak memory of the logit divergences at language-model vocabularies.

    python -m bench.loss_memory [--backends torch jax tensorflow]
        [--vocabularies 32768 131072] [--batch 4] [--time 256] [--losses ...] [--temperature 2]

For each backend, loss and vocabulary, a fresh process builds random teacher
and student logits of shape `(batch, time, vocabulary)` in float32 directly
on the backend (so that building them leaves no larger peak behind), runs
the forward and backward pass (d sum(loss) / d student logits) once to warm
up (compilation, kernel caches), resets the kernel's peak-RSS counter
(`/proc/self/clear_refs`), runs them again with the gradient kept alive, and
reads the peak RSS (`resource.getrusage(...).ru_maxrss`); for jax it also
reports XLA's own count of the buffers it allocates (temporaries + output). The table reports
that peak minus the RSS just before the measured run (which holds the two
logits tensors), in units of one float32 copy of the logits. The gradient
itself is one such copy, so 1.0 is the floor for any loss. The children run
with `MALLOC_MMAP_THRESHOLD_=65536`, so that the RSS follows the memory in
use rather than what glibc's arenas keep after a free.

How each backend runs a training step: jax under `jax.jit` (as the Distiller
always does), torch eagerly (the Distiller's default), TensorFlow in a
`tf.function` graph (the Distiller's default; `--tf-xla` compiles it with
XLA instead).

`keras_kl_divergence` is the plain-Keras way, for comparison:
`keras.losses.kl_divergence(softmax(teacher / T), softmax(student / T)) * T ** 2`.
"""

import argparse
import gc
import json
import math
import os
import re
import resource
import subprocess
import sys
import time

from keras_kd import launch

LOSSES = ("soft_target_kl", "reverse_kl", "generalized_jsd", "total_variation", "keras_kl_divergence")
DEFAULT_LOSSES = ("soft_target_kl", "reverse_kl", "generalized_jsd", "keras_kl_divergence")
TEMPERATURE = 2.0
REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def current_rss_bytes():
    with open("/proc/self/status") as status:
        return 1024 * int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


def reset_peak_rss():
    """Makes the peak RSS (ru_maxrss, VmHWM) restart from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_rss_bytes():
    return 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def settle(backend):
    """Lets freed buffers go before the baseline: jax frees deleted arrays asynchronously."""
    gc.collect()
    if backend == "jax":
        import jax

        jax.effects_barrier()
    time.sleep(1.0)


def _loss_function(name):
    import keras

    from keras_kd import losses

    if name == "keras_kl_divergence":

        def plain_keras(teacher, student, temperature):
            teacher_probs = keras.ops.softmax(teacher / temperature, axis=-1)
            student_probs = keras.ops.softmax(student / temperature, axis=-1)
            return keras.losses.kl_divergence(teacher_probs, student_probs) * temperature**2

        return plain_keras
    return getattr(losses, name)


def _jax_step(loss, shape, temperature):
    import jax

    def total(student, teacher):
        return jax.numpy.sum(loss(teacher, student, temperature))

    make = jax.jit(lambda key: jax.random.normal(key, shape, "float32"))
    teacher, student = make(jax.random.key(0)), make(jax.random.key(1))
    step = jax.jit(jax.grad(total)).lower(student, teacher).compile()

    def run():
        gradient = step(student, teacher)
        gradient.block_until_ready()
        return gradient

    # XLA's own account of the buffers it allocates: a check on the RSS.
    analysis = step.memory_analysis()
    run.xla_bytes = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    return run


def _torch_step(loss, shape, temperature):
    import torch

    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(shape, generator=generator)
    student = torch.randn(shape, generator=generator).requires_grad_()

    def run():
        (gradient,) = torch.autograd.grad(loss(teacher, student, temperature).sum(), student)
        return gradient

    return run


def _tensorflow_step(loss, shape, temperature, xla):
    import tensorflow as tf

    teacher = tf.random.stateless_normal(shape, seed=(0, 0))
    student = tf.random.stateless_normal(shape, seed=(0, 1))

    @tf.function(jit_compile=xla)
    def step(teacher, student):
        with tf.GradientTape() as tape:
            tape.watch(student)
            total = tf.reduce_sum(loss(teacher, student, temperature))
        return tape.gradient(total, student)

    def run():
        gradient = step(teacher, student)
        _ = gradient.numpy()[0, 0, 0]  # waits for the result
        return gradient

    return run


def measure(backend, loss_name, shape, tf_xla=False, temperature=TEMPERATURE):
    """Runs in the child process (KERAS_BACKEND already set): one measurement as a dict."""
    import keras

    assert keras.backend.backend() == backend, (keras.backend.backend(), backend)
    loss = _loss_function(loss_name)
    if backend == "jax":
        run = _jax_step(loss, shape, temperature)
    elif backend == "torch":
        run = _torch_step(loss, shape, temperature)
    else:
        run = _tensorflow_step(loss, shape, temperature, tf_xla)
    warm_up = run()
    del warm_up
    settle(backend)
    reset_peak_rss()
    before = current_rss_bytes()
    start = time.perf_counter()
    gradient = run()
    seconds = time.perf_counter() - start
    peak = peak_rss_bytes()
    del gradient
    logits_bytes = 4 * math.prod(shape)
    xla_bytes = getattr(run, "xla_bytes", None)
    return {
        "xla_ratio": None if xla_bytes is None else xla_bytes / logits_bytes,
        "backend": backend + ("+xla" if backend == "tensorflow" and tf_xla else ""),
        "loss": loss_name,
        "shape": list(shape),
        "temperature": temperature,
        "logits_bytes": logits_bytes,
        "peak_extra_bytes": peak - before,
        "ratio": (peak - before) / logits_bytes,
        "seconds": seconds,
    }


def run_child(backend, loss_name, shape, tf_xla=False, temperature=TEMPERATURE):
    """Measures one loss at `shape` in a fresh process on `backend`; returns its row (with `error` if it failed)."""
    command = [sys.executable, "-m", "bench.loss_memory", "--child", backend, loss_name]
    command += ["--batch", str(shape[0]), "--time", str(shape[1]), "--vocabularies", str(shape[2])]
    command += ["--temperature", repr(float(temperature))]
    if tf_xla:
        command.append("--tf-xla")
    done = subprocess.run(command, env=child_environment(backend), capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"backend": backend, "loss": loss_name, "shape": list(shape), "error": done.stderr[-400:]}
    return json.loads(lines[-1])


def child_environment(backend):
    """The environment of a measuring child process on `backend`."""
    return {
        # glibc otherwise raises its mmap threshold up to 32 MiB as blocks are
        # freed and keeps freed 4-32 MiB blocks in per-thread arenas: the RSS
        # then measures that caching, which varied from 2.0 to 3.8 logits
        # copies between runs of the same torch loss. With a fixed threshold,
        # large blocks go back to the kernel when freed.
        "MALLOC_MMAP_THRESHOLD_": "65536",
        **os.environ,
        "KERAS_BACKEND": backend,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # `-m bench....` finds the harness from any working directory.
        "PYTHONPATH": os.pathsep.join(filter(None, [REPOSITORY_ROOT, os.environ.get("PYTHONPATH")])),
    }


def format_table(rows):
    header = (
        "| backend | loss | (batch, time, vocab) | logits MiB | peak extra MiB | extra / logits "
        "| XLA buffers / logits | seconds |"
    )
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        shape = "(" + ", ".join(str(size) for size in row["shape"]) + ")"
        if "error" in row:
            lines.append(
                f"| {row['backend']} | {row['loss']} | {shape} | failed: {row['error'].splitlines()[-1:]} |||||"
            )
            continue
        xla = "" if row["xla_ratio"] is None else f"{row['xla_ratio']:.2f}"
        lines.append(
            f"| {row['backend']} | {row['loss']} | {shape} | {row['logits_bytes'] / 2**20:.0f} "
            f"| {row['peak_extra_bytes'] / 2**20:.0f} | {row['ratio']:.2f} | {xla} | {row['seconds']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends", nargs="+", default=["torch", "jax", "tensorflow"], choices=["torch", "jax", "tensorflow"]
    )
    parser.add_argument("--vocabularies", nargs="+", type=int, default=[32768, 131072])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--time", type=int, default=256)
    parser.add_argument("--losses", nargs="+", default=list(DEFAULT_LOSSES), choices=LOSSES)
    parser.add_argument(
        "--temperature",
        type=launch.temperature,
        default=TEMPERATURE,
        help=f"the losses' temperature (default {TEMPERATURE:g}; on-policy distillation's default is 1)",
    )
    parser.add_argument("--tf-xla", action="store_true", help="compile the TensorFlow step with XLA")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "LOSS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        backend, loss_name = args.child
        shape = (args.batch, args.time, args.vocabularies[0])
        print(json.dumps(measure(backend, loss_name, shape, args.tf_xla, args.temperature)))
        return
    rows = []
    for backend in args.backends:
        for vocabulary in args.vocabularies:
            for loss_name in args.losses:
                shape = (args.batch, args.time, vocabulary)
                row = run_child(backend, loss_name, shape, args.tf_xla, args.temperature)
                rows.append(row)
                print(format_table([row]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
