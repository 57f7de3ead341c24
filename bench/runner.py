"""`python -m bench`: times every configuration on each backend and writes BENCHMARKS.md.

Each configuration runs in a fresh process (`python -m bench.workload`) with
`KERAS_BACKEND` set, one after another, so that its peak memory is its own and
no two timings share the two CPU cores. `--smoke` runs tiny sizes in this
process instead (on the backend Keras already runs), for the tests.
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
import time

from bench import report
from bench import workload
from bench.pairs import PAIRS

BACKENDS = ("jax", "tensorflow", "torch")
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_CONFIGS = tuple(name for name in workload.CONFIGS if name not in workload.TORCH_CONFIGS)
# Batch sizes of the scaling runs (the main table's batch size is added).
SCALING_BATCH_SIZES = {False: (512,), True: (8,)}
SCALING_CONFIGS = ("student", "kd_logits", "kd_cached")
# Persistent XLA cache for JAX: model building compiles one small program per
# weight shape (seconds per ResNet), again in every fresh process otherwise.
# It changes start-up time only, never the timed epochs.
JAX_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "keras_kd_bench_jax")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time keras_kd against core Keras and a pure-PyTorch loop; write BENCHMARKS.md.",
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
        "--pairs", nargs="+", choices=sorted(PAIRS), default=None,
        help="Teacher/student pairs (default: all; with --smoke: small).",
    )
    parser.add_argument(
        "--configs", nargs="+", choices=list(workload.CONFIGS), default=list(workload.CONFIGS),
        help="Configurations to time (default: all).",
    )
    parser.add_argument("--repeats", type=int, default=None, help="Timed epochs per configuration; the minimum is reported (default 2, smoke 1).")
    parser.add_argument("--warmup-steps", type=int, default=None, help="Training steps before timing (default 2, smoke 1).")
    parser.add_argument("--images", type=int, default=None, help="Images per epoch for every pair (default: the pair's own).")
    parser.add_argument("--batch-size", type=int, default=None, help="Batch size of the main runs for every pair (default: the pair's own).")
    parser.add_argument(
        "--dtype-policy", choices=DTYPE_POLICIES, default="float32",
        help="Keras dtype policy of the Keras configurations (default float32; the mixed ones are for GPUs).",
    )
    parser.add_argument("--no-scaling", action="store_true", help="Skip the batch-size scaling runs.")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes, in this process, on the current Keras backend.")
    parser.add_argument("--output", default="BENCHMARKS.md", help="Markdown file to write (default: BENCHMARKS.md).")
    parser.add_argument("--json", default=None, help="Also write every result to this JSON file.")
    parser.add_argument("--timeout", type=int, default=900, help="Seconds allowed per configuration process.")
    args = parser.parse_args(argv)
    if args.pairs is None:
        args.pairs = ["small"] if args.smoke else list(PAIRS)
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 2
    if args.warmup_steps is None:
        args.warmup_steps = 1 if args.smoke else 2
    for name in ("repeats", "warmup_steps", "images", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {value}.")
    return args


def plan(args):
    """The list of workload specs this invocation runs, in order."""
    specs = []
    torch_loop_done = False
    for backend in _backends(args):
        for pair_name in args.pairs:
            pair = PAIRS[pair_name]
            batch_size = args.batch_size or pair.batch_size[args.smoke]
            images = max(args.images or pair.images[args.smoke], batch_size)
            images -= images % batch_size
            for config in args.configs:
                if pair.configs is not None and config not in pair.configs:
                    continue
                is_torch_loop = config in workload.TORCH_CONFIGS
                # The PyTorch loop does not use Keras: once per run, small pair only.
                if is_torch_loop and (torch_loop_done or pair_name != "small"):
                    continue
                specs.append(_spec(args, backend, pair_name, config, images, batch_size, "main"))
            if not args.no_scaling and pair_name == "small":
                for scaled_batch in SCALING_BATCH_SIZES[args.smoke]:
                    for config in SCALING_CONFIGS:
                        if config in args.configs:
                            scaled_images = max(images - images % scaled_batch, scaled_batch)
                            specs.append(
                                _spec(args, backend, pair_name, config, scaled_images, scaled_batch, "scaling")
                            )
        torch_loop_done = True
    return specs


def _spec(args, backend, pair, config, images, batch_size, group):
    return {
        "backend": "pytorch" if config in workload.TORCH_CONFIGS else backend,
        "pair": pair,
        "config": config,
        "images": images,
        "batch_size": batch_size,
        "repeats": args.repeats,
        "warmup_steps": args.warmup_steps,
        "smoke": args.smoke,
        "group": group,
        "dtype_policy": args.dtype_policy,
    }


def _backends(args):
    if not args.smoke:
        return args.backend or list(BACKENDS)
    return [_smoke_backend(args.backend)]


def _smoke_backend(requested):
    """The backend of an in-process smoke run: `requested` (at most one) or Keras's."""
    if requested and len(requested) > 1:
        raise SystemExit("--smoke runs in this process, on one backend: give at most one --backend.")
    if requested and "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = requested[0]
    # torch before tensorflow (the other order can segfault): the smoke run
    # runs the PyTorch loop in this process too.
    import torch  # noqa: F401
    import keras

    if requested and keras.config.backend() != requested[0]:
        raise SystemExit(
            f"--smoke runs in this process, where Keras already runs on "
            f"{keras.config.backend()!r}, not {requested[0]!r}; set KERAS_BACKEND={requested[0]}."
        )
    return keras.config.backend()


def run_spec(spec, args):
    """Runs one spec (in a fresh process unless smoke); returns its result or error."""
    if args.smoke:
        result = workload.run(spec)
        result["backend"] = spec["backend"]
        return result
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [REPOSITORY_ROOT, environment.get("PYTHONPATH")])
    )
    if spec["backend"] != "pytorch":
        environment["KERAS_BACKEND"] = spec["backend"]
    if spec["backend"] == "jax":
        environment.setdefault("JAX_COMPILATION_CACHE_DIR", JAX_CACHE_DIR)
        environment.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    command = [sys.executable, "-m", "bench.workload", json.dumps(spec)]
    try:
        completed = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return dict(spec, error=f"timed out after {args.timeout} s")
    for line in completed.stdout.splitlines():
        if line.startswith(workload.RESULT_PREFIX):
            result = json.loads(line[len(workload.RESULT_PREFIX):])
            result["backend"] = spec["backend"]
            return result
    return dict(spec, error=f"exit code {completed.returncode}: {completed.stderr.strip()[-1500:]}")


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


def main(argv=None):
    """Runs the benchmark; returns 0, or 1 if any configuration failed."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    clock = time.perf_counter()
    results = []
    specs = plan(args)
    for index, spec in enumerate(specs, start=1):
        result = run_spec(spec, args)
        results.append(result)
        outcome = result.get("error") or f"{result['seconds']:.2f} s/epoch, peak {result['peak_rss_mb']:.0f} MiB"
        print(
            f"[{index}/{len(specs)}] {spec['backend']:10} {spec['pair']:6} {spec['config']:18} "
            f"batch {spec['batch_size']:4}: {outcome}",
            flush=True,
        )
    run_info = {
        "command": "python -m bench " + " ".join(shlex.quote(arg) for arg in argv),
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": time.perf_counter() - clock,
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "machine": machine_info(),
        "smoke": args.smoke,
        "repeats": args.repeats,
        "warmup_steps": args.warmup_steps,
        "dtype_policy": args.dtype_policy,
    }
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"run": run_info, "results": results}, file, indent=1)
    report.write(args.output, run_info, results)
    print(f"Wrote {args.output} ({run_info['wall_seconds']:.0f} s).")
    return 1 if any("error" in result for result in results) else 0
