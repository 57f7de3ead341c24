"""recipes/distributed_mnist.py, unchanged, under the suite's backend's launcher: the student one process trains.

Alone, the recipe trains the teacher and a student (`--smoke`); then two
processes, launched as users launch them (torchrun; a JAX job's
`KERAS_DISTRIBUTION_*` variables; TensorFlow workers' `TF_CONFIG`), train a
student on the same global batches, which must equal the first within 1e-5.
Runs once per suite run, on the backend the suite runs.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REQUESTED_BACKEND

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = os.path.join(ROOT, "recipes", "distributed_mnist.py")
TIMEOUT = 300
TOLERANCE = 1e-5


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def launch(commands, tmp_path):
    """Runs each `(command, extra environment)` as its own process group; fails with the logs if any fails."""
    processes = []
    for index, (command, extra) in enumerate(commands):
        log = open(tmp_path / f"process_{index}.log", "w")
        env = dict(os.environ, KERAS_BACKEND=REQUESTED_BACKEND, TF_CPP_MIN_LOG_LEVEL="3", **extra)
        processes.append(
            (
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
                ),
                log,
            )
        )
    try:
        for process, _ in processes:
            process.wait(timeout=TIMEOUT)
    finally:
        for process, log in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
    failed = [index for index, (process, _) in enumerate(processes) if process.returncode]
    logs = "\n".join((tmp_path / f"process_{index}.log").read_text()[-3000:] for index in failed)
    assert not failed, f"processes {failed} failed:\n{logs}"


def two_processes(output):
    """The commands that start the recipe as two processes under this backend's launcher."""
    recipe = [sys.executable, RECIPE, "--smoke", "--output-dir", str(output)]
    if REQUESTED_BACKEND == "torch":
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        return [(run + recipe[1:], {})]
    if REQUESTED_BACKEND == "jax":
        address = f"localhost:{free_port()}"
        return [
            (
                recipe,
                {
                    "KERAS_DISTRIBUTION_JOB_ADDRESSES": address,
                    "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                    "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
                    "JAX_PLATFORMS": "cpu",
                },
            )
            for index in range(2)
        ]
    workers = [f"localhost:{free_port()}", f"localhost:{free_port()}"]
    return [
        (
            recipe,
            {"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]


def test_the_recipe_trains_the_same_student_under_the_launcher_as_alone(tmp_path):
    import keras

    output = tmp_path / "output"
    launch([([sys.executable, RECIPE, "--smoke", "--output-dir", str(output)], {})], tmp_path)
    alone = json.loads((output / "results_1_processes.json").read_text())
    launch(two_processes(output), tmp_path)
    together = json.loads((output / "results_2_processes.json").read_text())
    assert together["processes"] == 2 and together["global_batch_size"] == alone["global_batch_size"]
    # Written by the chief only: one student per number of processes.
    assert sorted(path.name for path in output.glob("student_*")) == [
        "student_1_processes.keras",
        "student_2_processes.keras",
    ]
    one = keras.saving.load_model(output / "student_1_processes.keras").get_weights()
    two = keras.saving.load_model(output / "student_2_processes.keras").get_weights()
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(one, two))
    print(f"largest weight difference, two processes against one: {difference:.2e}")
    assert difference <= TOLERANCE
    assert np.all(np.isfinite(together["loss"]))
