"""JAX multi-process data parallelism: two processes train as one does on the global batch.

Two worker processes (tests/multi_process_jax_worker.py) join one JAX job on
localhost through `keras.distribution.initialize` (from the
KERAS_DISTRIBUTION_* environment variables), with JAX's gloo CPU
collectives, and distil under `keras.distribution.DataParallel` over both
processes' devices, each feeding `fit` its half of every global batch: from
arrays with a student without BatchNormalization, then from a `TeacherCache`
of its half with a student with BatchNormalization (whose batch statistics
must be those of the global batch). The test process trains the same
Distillers alone on the global batches. The per-batch losses and the
students' final weights must agree (`pytest -s` prints the largest
difference).
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REQUESTED_BACKEND

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REQUESTED_BACKEND != "jax", reason="keras.distribution.initialize is the JAX path"),
]

WORKER = Path(__file__).with_name("multi_process_jax_worker.py")
REPOSITORY = WORKER.parent.parent

# Largest difference allowed between the losses (and final student weights)
# of one process and of two: the all-reduce only reorders the float32 sums of
# the batch mean and the gradients (about 1e-7 observed).
TOLERANCE = 1e-5

# Seconds a group of processes may run before it is killed.
TIMEOUT = 240


def test_two_processes_match_one_process(tmp_path):
    job = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}", "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    run_processes(
        [
            (str(tmp_path / "two_processes.npz"), dict(job, KERAS_DISTRIBUTION_PROCESS_ID="0")),
            (str(tmp_path / "process_1.npz"), dict(job, KERAS_DISTRIBUTION_PROCESS_ID="1")),
        ],
        tmp_path / "two_processes",
    )
    # Only process 0 writes.
    assert not (tmp_path / "process_1.npz").exists()
    two_processes = np.load(tmp_path / "two_processes.npz")

    import multi_process_jax_worker  # Imports keras_kd: on the JAX backend only.

    one_process = multi_process_jax_worker.train_all()
    assert sorted(two_processes.files) == sorted(one_process)
    for variant in multi_process_jax_worker.VARIANTS:
        losses = two_processes[f"{variant}/losses"]
        assert losses.shape == (12,) and np.all(np.isfinite(losses))
    for name in one_process:
        np.testing.assert_allclose(two_processes[name], one_process[name], rtol=0, atol=TOLERANCE, err_msg=name)
    largest = max(np.max(np.abs(two_processes[name] - one_process[name])) for name in one_process)
    print(f"largest difference between two processes and one: {largest:.2g}")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_processes(workers, log_prefix):
    """Runs the workers, (output path, extra environment) each, at once; kills them all on a failure or after TIMEOUT.

    Worker `i` writes its output to `{log_prefix}_{i}.log`.
    """
    environment = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    processes, logs = [], []
    try:
        for index, (output, worker_environment) in enumerate(workers):
            log = open(f"{log_prefix}_{index}.log", "w+")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), output],
                    cwd=REPOSITORY,
                    env=dict(environment, **worker_environment),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Its own process group, killed as one.
                )
            )
        deadline = time.monotonic() + TIMEOUT
        while any(process.poll() is None for process in processes):
            failed = any(process.poll() not in (None, 0) for process in processes)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if any(process.poll() != 0 for process in processes):
            timed_out = time.monotonic() > deadline
            raise AssertionError(describe_failure(processes, logs, timed_out))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in logs:
            log.close()


def describe_failure(processes, logs, timed_out):
    reports = [f"timed out after {TIMEOUT} s" if timed_out else "a worker failed"]
    for index, (process, log) in enumerate(zip(processes, logs)):
        log.seek(0)
        status = "still running (killed)" if process.poll() is None else f"exit status {process.returncode}"
        reports.append(f"worker {index}: {status}\n{log.read()[-3000:]}")
    return "\n\n".join(reports)
