"""TensorFlow multi-worker distillation: two worker processes train as one process does on the global batch.

Two local workers, configured by `TF_CONFIG`, train one Distiller under
`tf.distribute.MultiWorkerMirroredStrategy`. Each is given the whole data set
and the global batch size; the strategy shards each global batch between
them (auto-sharding by DATA), and the gradients are averaged across the
workers at every step. The chief writes the per-batch losses and the
student's final weights, which must match one process trained on the global
batch.

A fit with `keras.callbacks.ModelCheckpoint` and
`keras.callbacks.BackupAndRestore` checks where they write: Keras 3's
callbacks write wherever they are told on every worker, so each worker is
given its own folder and only the chief's lands in the folder the user asked
for. The same fit, with one worker killed by SIGKILL mid-epoch and the job
restarted, resumes from each worker's backup to the weights of an unbroken run.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

import keras_kd
from conftest import REQUESTED_BACKEND, make_mlp
from test_data_parallel import COMMON, TOLERANCE

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        REQUESTED_BACKEND != "tensorflow", reason="tf.distribute.MultiWorkerMirroredStrategy is the TensorFlow path"
    ),
]

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
WORKERS = 2
# Each worker's wall-clock limit: a worker whose peer died waits on the
# collectives for ever, so the test kills both at this limit.
WORKER_TIMEOUT_SECONDS = 240

# A distillation of three epochs with a checkpoint and a backup in `folder`:
# every worker runs it, and the reference process too (under the default
# strategy). `kill_at=(epoch, batch)` kills this process with SIGKILL when
# that batch starts, as a lost machine would.
FIT_WITH_CALLBACKS = """
import os
import signal


class KillThisProcess(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def fit_with_callbacks(strategy, folder, kill_at=None):
    keras.utils.set_random_seed(1)
    with strategy.scope():
        teacher = make_mlp(16, name="teacher")
        student = make_mlp(8, name="student", batchnorm=False)
        teacher.set_weights(TEACHER_WEIGHTS)
        student.set_weights(STUDENT_WEIGHTS)
        distiller = keras_kd.Distiller(teacher, student, alpha=0.7)
        distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    callbacks = [
        keras.callbacks.ModelCheckpoint(str(folder / "distiller.weights.h5"), save_weights_only=True),
        keras.callbacks.BackupAndRestore(str(folder / "backup"), delete_checkpoint=False),
    ]
    if kill_at is not None:
        callbacks.append(KillThisProcess(*kill_at))
    history = distiller.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    return distiller, history.epoch
"""

# Run by each worker with the output folder and a mode as its arguments. The
# strategy is created first, as TensorFlow requires, and reads TF_CONFIG.
WORKER = (
    """
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
# Per replica unless synchronized=True: the student here has no BatchNormalization.
STUDENT_BATCHNORM = False
"""
    + COMMON
    + FIT_WITH_CALLBACKS
    + """
import pathlib
output, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
assert strategy.num_replicas_in_sync == 2
# TF_CONFIG names workers only, so worker 0 is the chief.
task = strategy.cluster_resolver.task_id
is_chief = task == 0
if mode == "train":
    with strategy.scope():
        losses, student = train(cached=False)
    if is_chief:
        np.savez(output / "trained.npz", losses=losses, *student.get_weights())

# Keras's callbacks write on every worker: the chief in the folder the user
# asked for, every other worker in a folder of its own.
folder = output / ("asked" if is_chief else f"worker-{task}")
kill_at = (1, 2) if mode == "interrupted" and task == 1 else None
distiller, epochs = fit_with_callbacks(strategy, folder, kill_at)
if is_chief:
    np.savez(output / "checkpointed.npz", *distiller.get_weights(), epochs=epochs)
"""
)


def free_ports(count):
    """`count` distinct localhost ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for bound in sockets:
            bound.bind(("localhost", 0))
        return [bound.getsockname()[1] for bound in sockets]
    finally:
        for bound in sockets:
            bound.close()


def tf_config(addresses, index):
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def run_workers(output, mode, killed=None):
    """Runs `WORKER` in `mode` in one process per worker of a local cluster; kills them all on any failure.

    With `killed`, that worker must die of SIGKILL; the others are then
    killed too, as a launcher stops a job that lost a worker.
    """
    addresses = [f"localhost:{port}" for port in free_ports(WORKERS)]
    logs = [output / f"{mode}-worker-{index}.log" for index in range(WORKERS)]
    workers = []
    try:
        for index in range(WORKERS):
            environment = dict(
                os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=tf_config(addresses, index)
            )
            with open(logs[index], "w") as log:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-c", WORKER.replace("{tolerance}", repr(TOLERANCE)), str(output), mode],
                        cwd=REPOSITORY,
                        env=environment,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # Its own process group, killed as one.
                    )
                )
        if killed is not None:
            status = workers[killed].wait(timeout=WORKER_TIMEOUT_SECONDS)
            if status != -signal.SIGKILL:
                raise AssertionError(f"worker {killed} exited with {status}, not killed")
            kill(workers)
        for index, worker in enumerate(workers):
            status = worker.wait(timeout=WORKER_TIMEOUT_SECONDS)
            if killed is None and status != 0:
                raise AssertionError(f"worker {index} exited with {status}")
    except BaseException as error:
        kill(workers)
        text = "\n".join(f"--- worker {index}:\n{log.read_text()[-3000:]}" for index, log in enumerate(logs))
        raise AssertionError(f"{error}\n{text}") from error


def kill(workers):
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


def one_process():
    """`COMMON` and `FIT_WITH_CALLBACKS` run in this process: their functions train on batches of 16."""
    namespace = {}
    code = "STUDENT_BATCHNORM = False\n" + COMMON.replace("{tolerance}", repr(TOLERANCE)) + FIT_WITH_CALLBACKS
    exec(compile(code, "one_process", "exec"), namespace)
    return namespace


def saved_arrays(path):
    saved = np.load(path)
    return [
        saved[name]
        for name in sorted((name for name in saved.files if name.startswith("arr_")), key=lambda name: int(name[4:]))
    ]


def assert_close(actual_weights, expected_weights):
    assert len(actual_weights) == len(expected_weights)
    for actual, expected in zip(actual_weights, expected_weights):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)


def test_two_workers_train_as_one_process_on_the_global_batch(tmp_path):
    run_workers(tmp_path, "train")
    losses, student = one_process()["train"](cached=False)

    trained = np.load(tmp_path / "trained.npz")
    assert len(trained["losses"]) == 12 and np.all(np.isfinite(trained["losses"]))
    np.testing.assert_allclose(trained["losses"], losses, rtol=0, atol=TOLERANCE)
    assert_close(saved_arrays(tmp_path / "trained.npz"), student.get_weights())

    # The folder asked for holds the chief's files only; worker 1 wrote its own.
    assert sorted(path.name for path in (tmp_path / "asked").iterdir()) == ["backup", "distiller.weights.h5"]
    assert (tmp_path / "worker-1" / "distiller.weights.h5").is_file()
    assert (tmp_path / "worker-1" / "backup").is_dir()
    # The chief's checkpoint holds the weights training ended with.
    reloaded = keras_kd.Distiller(make_mlp(16, name="teacher"), make_mlp(8, name="student", batchnorm=False))
    reloaded.load_weights(tmp_path / "asked" / "distiller.weights.h5")
    checkpointed = saved_arrays(tmp_path / "checkpointed.npz")
    assert len(reloaded.get_weights()) == len(checkpointed)
    for actual, expected in zip(reloaded.get_weights(), checkpointed):
        np.testing.assert_array_equal(actual, expected)


def test_a_worker_killed_mid_epoch_and_the_job_restarted_resumes_to_the_unbroken_weights(tmp_path):
    import tensorflow as tf

    # Worker 1 dies when the third batch of the second epoch starts.
    run_workers(tmp_path, "interrupted", killed=1)
    assert not (tmp_path / "checkpointed.npz").exists()
    run_workers(tmp_path, "resumed")
    expected, epochs = one_process()["fit_with_callbacks"](tf.distribute.get_strategy(), tmp_path / "unbroken")
    assert epochs == [0, 1, 2]

    resumed = np.load(tmp_path / "checkpointed.npz")
    # Both workers restored the first epoch's backup and trained the other two.
    assert resumed["epochs"].tolist() == [1, 2]
    assert_close(saved_arrays(tmp_path / "checkpointed.npz"), expected.get_weights())
