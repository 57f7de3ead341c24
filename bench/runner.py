"""`python -m bench`: times every configuration on each backend and writes the benchmark page.

Each configuration runs in a fresh process (`python -m bench.workload`) with
`KERAS_BACKEND` set, one after another, so that its peak memory is its own and
no two timings share the CPU cores. Pairs whose epochs are short (the
overhead-bound pair), and every pair under `--interleave`, run
all their configurations in one process per backend instead, one epoch of
each in turn. `--gpu-suite` is the GPU matrix in one call (`GPU_SUITE`).
`--smoke` runs tiny sizes in this process instead (on the backend Keras
already runs), for the tests, and writes its page under saved_models/smoke/.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

from bench import on_policy as on_policy_bench
from bench import report, workload
from bench.pairs import PAIRS
from keras_kd import launch
from keras_kd.atomic import atomic_open

BACKENDS = launch.BACKENDS
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_CONFIGS = tuple(name for name in workload.CONFIGS if name not in workload.TORCH_CONFIGS)
# Batch sizes of the scaling runs (the main table's batch size is added).
SCALING_BATCH_SIZES = {False: (512,), True: (8,)}
SCALING_CONFIGS = ("student", "kd_logits", "kd_cached")
DEFAULT_OUTPUT = os.path.join("docs", "results", "benchmarks.md")
# A smoke run's page is not a result: it never replaces the page that ships.
SMOKE_OUTPUT = os.path.join(launch.default_output_dir("bench", smoke=True), "benchmarks.md")
# `--gpu-suite`: the GPU matrix, in one call on one GPU. Interleaved (one
# process per backend and pair: on a GPU most of a process's time is start-up
# and compilation), mixed precision, and at batch 256 on 8,192 images for the
# CNN pairs (the overhead-bound pair keeps its own sizes). The GPU image has
# no TensorFlow: torch and JAX only.
GPU_SUITE = {
    "backend": ["torch", "jax"],
    "pairs": ["resnet", "small", "overhead"],
    "configs": ["student", "teacher_inference", "kd_logits", "kd_cached", "core_logits", "torch_logits"],
    "dtype_policy": "mixed_bfloat16",
    "repeats": 3,
    "sizes": {"resnet": (8192, 256), "small": (8192, 256)},  # pair: (images, batch size)
    "output": os.path.join("saved_models", "bench_gpu", "suite.md"),
    "json": os.path.join("saved_models", "bench_gpu", "suite.json"),
}
# Persistent XLA cache for JAX: model building compiles one small program per
# weight shape (seconds per ResNet), again in every fresh process otherwise.
# It changes start-up time only, never the timed epochs.
JAX_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "keras_kd_bench_jax")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time keras_kd against core Keras and a pure-PyTorch loop; write the benchmark page.",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=BACKENDS,
        default=None,
        help="Keras backends to time, one fresh process per configuration (default: all three; "
        "with --smoke: the one Keras runs on).",
    )
    parser.add_argument(
        "--pairs",
        nargs="+",
        choices=sorted(PAIRS),
        default=None,
        help="Teacher/student pairs (default: all; with --smoke: small).",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(workload.CONFIGS),
        default=None,
        help="Configurations to time (default: all).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="Timed epochs per configuration; the minimum is reported (default: the pair's own, "
        "2, or 3 for the overhead-bound pair; smoke 1).",
    )
    parser.add_argument(
        "--epochs-per-fit",
        type=int,
        default=None,
        help="Epochs of each timed fit call, timed one by one inside it; the fastest counts "
        "(default: the pair's own, 3 for the overhead-bound pair, else 1: the whole call).",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=None, help="Training steps before timing (default 2, smoke 1)."
    )
    parser.add_argument(
        "--images", type=int, default=None, help="Images per epoch for every pair (default: the pair's own)."
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Batch size of the main runs for every pair (default: the pair's own).",
    )
    parser.add_argument(
        "--dtype-policy",
        choices=DTYPE_POLICIES,
        default=None,
        help="Keras dtype policy of the Keras configurations (default float32; the mixed ones are for GPUs).",
    )
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="Time every pair as the overhead-bound one is: one process per backend and pair, "
        "one epoch of each configuration in turn.",
    )
    parser.add_argument(
        "--gpu-suite",
        action="store_true",
        help="The GPU matrix in one call: torch and JAX; the resnet, small and overhead pairs; "
        "mixed_bfloat16; interleaved; writes saved_models/bench_gpu/suite.md and .json. Options "
        "given beside it override its choices. Needs a GPU unless --smoke.",
    )
    parser.add_argument("--no-scaling", action="store_true", help="Skip the batch-size scaling runs.")
    parser.add_argument(
        "--no-on-policy",
        action="store_true",
        help="Skip the on-policy step and its memory (`python -m bench.on_policy`, a few minutes; "
        "never run with --smoke or --gpu-suite).",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="Tiny sizes, in this process, on the current Keras backend."
    )
    parser.add_argument(
        "--output",
        default=None,
        help=f"Markdown file to write (default: {DEFAULT_OUTPUT}, or {SMOKE_OUTPUT} with --smoke).",
    )
    parser.add_argument("--json", default=None, help="Also write every result to this JSON file.")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds allowed per configuration process.")
    args = parser.parse_args(argv)
    for name in ("repeats", "epochs_per_fit", "warmup_steps", "images", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}.")
    args.sizes = {}
    if args.gpu_suite:
        _apply_gpu_suite(args)
    if args.pairs is None:
        args.pairs = ["small"] if args.smoke else list(PAIRS)
    if args.configs is None:
        args.configs = list(workload.CONFIGS)
    if args.dtype_policy is None:
        args.dtype_policy = "float32"
    if args.warmup_steps is None:
        args.warmup_steps = 1 if args.smoke else 2
    if args.output is None:
        args.output = SMOKE_OUTPUT if args.smoke else DEFAULT_OUTPUT
    return args


def _apply_gpu_suite(args):
    """Fills in the `GPU_SUITE` choices that the command line left open."""
    # The smoke run stays in this process, on the backend Keras runs.
    if args.backend is None and not args.smoke:
        args.backend = list(GPU_SUITE["backend"])
    for name in ("pairs", "configs", "dtype_policy", "repeats", "output", "json"):
        if getattr(args, name) is None and not (args.smoke and name == "repeats"):
            value = GPU_SUITE[name]
            setattr(args, name, list(value) if isinstance(value, list) else value)
    args.interleave = True
    args.no_scaling = True
    if not args.smoke:
        args.sizes = dict(GPU_SUITE["sizes"])


def plan(args):
    """The list of workload specs this invocation runs, in order.

    A spec with `config` times one configuration in its own process; one
    with `configs` times several, interleaved, in one process.
    """
    specs = []
    torch_loop_done = False
    for backend in _backends(args):
        for pair_name in args.pairs:
            pair = PAIRS[pair_name]
            images, batch_size = _sizes(args, pair)
            configs = [c for c in args.configs if pair.configs is None or c in pair.configs]
            keras_configs = [c for c in configs if c not in workload.TORCH_CONFIGS]
            # The PyTorch loop does not use Keras: once per run, on the pairs
            # that have twins of it (their `configs` name it).
            torch_configs = [] if torch_loop_done else [c for c in configs if c in workload.TORCH_CONFIGS]
            if pair.interleaved or args.interleave:
                groups = [group for group in (keras_configs, torch_configs) if group]
            else:
                groups = keras_configs + torch_configs
            specs += [_spec(args, backend, pair, group, images, batch_size, "main") for group in groups]
            if not args.no_scaling and pair_name == "small":
                for scaled_batch in SCALING_BATCH_SIZES[args.smoke]:
                    for config in SCALING_CONFIGS:
                        if config in args.configs:
                            scaled_images = max(images - images % scaled_batch, scaled_batch)
                            specs.append(_spec(args, backend, pair, config, scaled_images, scaled_batch, "scaling"))
        torch_loop_done = True
    return specs


def _sizes(args, pair):
    """`(images, batch_size)` of a pair's main runs: the options, the suite's, or the pair's."""
    suite_images, suite_batch = args.sizes.get(pair.name, (None, None))
    batch_size = args.batch_size or suite_batch or pair.batch_size[args.smoke]
    images = max(args.images or suite_images or pair.images[args.smoke], batch_size)
    return images - images % batch_size, batch_size


def _spec(args, backend, pair, configs, images, batch_size, group):
    """A spec of one configuration (a string) or of several, interleaved (a list)."""
    names = [configs] if isinstance(configs, str) else configs
    spec = {
        "backend": "pytorch" if names[0] in workload.TORCH_CONFIGS else backend,
        "pair": pair.name,
        "images": images,
        "batch_size": batch_size,
        "repeats": args.repeats or (1 if args.smoke else pair.repeats),
        "epochs_per_fit": args.epochs_per_fit or pair.epochs_per_fit,
        "warmup_steps": args.warmup_steps,
        "smoke": args.smoke,
        "group": group,
        "dtype_policy": args.dtype_policy,
    }
    spec["config" if isinstance(configs, str) else "configs"] = configs
    return spec


def _backends(args):
    if not args.smoke:
        return args.backend or list(BACKENDS)
    return [_smoke_backend(args.backend)]


def _smoke_backend(requested):
    """The backend of an in-process smoke run: `requested` (at most one) or Keras's."""
    if requested and len(requested) > 1:
        raise SystemExit("--smoke runs in this process, on one backend: give at most one --backend.")
    # Also imports torch before TensorFlow: the smoke run runs the PyTorch loop in this process too.
    try:
        launch.select_backend(requested[0] if requested else None)
    except launch.BackendMismatchError as error:
        raise SystemExit(f"--smoke runs in this process: {error}") from None
    import keras

    return keras.config.backend()


def run_spec(spec, args):
    """Runs one spec (in a fresh process unless smoke); returns the list of its results.

    A configuration that failed gives a result with `error` in place of timings.
    """
    if args.smoke:
        results = workload.run_interleaved(spec) if "configs" in spec else [workload.run(spec)]
        return [dict(result, backend=spec["backend"]) for result in results]
    environment = _child_environment()
    if spec["backend"] != "pytorch":
        environment["KERAS_BACKEND"] = spec["backend"]
    if spec["backend"] == "jax":
        environment.setdefault("JAX_COMPILATION_CACHE_DIR", JAX_CACHE_DIR)
        environment.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    command = [sys.executable, "-m", "bench.workload", json.dumps(spec)]
    try:
        completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return _failed(spec, f"timed out after {args.timeout} s")
    for line in completed.stdout.splitlines():
        if line.startswith(workload.RESULT_PREFIX):
            results = json.loads(line[len(workload.RESULT_PREFIX) :])
            results = results if isinstance(results, list) else [results]
            return [dict(result, backend=spec["backend"]) for result in results]
    return _failed(spec, f"exit code {completed.returncode}: {completed.stderr.strip()[-1500:]}")


def _child_environment():
    """The environment of a child process: the harness importable, TensorFlow's logs quiet."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [REPOSITORY_ROOT, environment.get("PYTHONPATH")]))
    return environment


def runs_on_policy(args):
    """Whether this invocation also runs `python -m bench.on_policy` (full CPU runs, unless `--no-on-policy`)."""
    return not (args.no_on_policy or args.smoke or args.gpu_suite)


def run_on_policy(args):
    """`python -m bench.on_policy` on the run's backends in a child process: its results, or `{"error": ...}`."""
    command = [sys.executable, "-m", "bench.on_policy", "--backends", *_backends(args)]
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "on_policy.json")
        try:
            completed = subprocess.run(
                [*command, "--json", path],
                env=_child_environment(),
                capture_output=True,
                text=True,
                timeout=3 * args.timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {3 * args.timeout} s"}
        # A failed backend is in the results (and the exit code): the others still count.
        if not os.path.exists(path):
            return {"error": f"exit code {completed.returncode}: {completed.stderr.strip()[-1500:]}"}
        with open(path) as file:
            results = json.load(file)
    # The command that reproduces the section, without the temporary file.
    results["run"]["command"] = " ".join(["python", *command[1:]])
    return results


def _failed(spec, error):
    """One failed result per configuration of `spec`."""
    configs = spec["configs"] if "configs" in spec else [spec["config"]]
    common = {key: value for key, value in spec.items() if key != "configs"}
    return [dict(common, config=config, error=error) for config in configs]


def machine_info():
    """What the numbers were measured on: CPU, cores, versions, load."""
    cpu_model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("keras", "jax", "jaxlib", "tensorflow", "torch", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "accelerator": _accelerator(),
        "cpu_model": cpu_model,
        "logical_cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _accelerator():
    """The GPU that torch sees, or None (asked of torch: it imports without Keras)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def _make_parent(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def main(argv=None):
    """Runs the benchmark; returns 0, or 1 if any configuration failed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    clock = time.perf_counter()
    if args.gpu_suite and not args.smoke and _accelerator() is None:
        raise SystemExit(
            "--gpu-suite times the GPU matrix, but torch sees no GPU here; "
            "add --smoke for a tiny run on the CPU, or see bench/gpu_setup.sh."
        )
    results = []
    specs = plan(args)
    for index, spec in enumerate(specs, start=1):
        for result in run_spec(spec, args):
            results.append(result)
            outcome = result.get("error") or (f"{result['seconds']:.3f} s/epoch, peak {result['peak_rss_mb']:.0f} MiB")
            print(
                f"[{index}/{len(specs)}] {spec['backend']:10} {spec['pair']:8} {result['config']:18} "
                f"batch {spec['batch_size']:4}: {outcome}",
                flush=True,
            )
    on_policy = None
    if runs_on_policy(args):
        on_policy = run_on_policy(args)
        print(f"on-policy step: {'failed' if on_policy_bench.failed(on_policy) else 'measured'}", flush=True)
    for line in report.verdict_lines(results):
        print(line)
    run_info = {
        "command": "python -m bench " + " ".join(shlex.quote(arg) for arg in argv),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": time.perf_counter() - clock,
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "machine": machine_info(),
        "smoke": args.smoke,
        "warmup_steps": args.warmup_steps,
        "dtype_policy": args.dtype_policy,
    }
    if args.json:
        _make_parent(args.json)
        with atomic_open(args.json, "w") as file:
            json.dump({"run": run_info, "results": results, "on_policy": on_policy}, file, indent=1)
    _make_parent(args.output)
    report.write(args.output, run_info, results, on_policy=on_policy)
    print(f"Wrote {args.output} ({run_info['wall_seconds']:.0f} s).")
    failed = any("error" in result for result in results)
    return 1 if failed or (on_policy is not None and on_policy_bench.failed(on_policy)) else 0
