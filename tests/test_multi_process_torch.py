"""Several torch processes (torchrun, gloo) train the student one process would on the global batch.

The multi-process check launches tests/multi_process_torch_worker.py on two
processes, each training on its shard (`keras_kd.distributed.process_shard`)
with half the global batch, then trains the same Distiller here in one
process on the global batch. The helpers of `keras_kd.distributed` are also
checked in one process, on every backend, with the process count patched.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_kd.distributed
from conftest import REQUESTED_BACKEND

TESTS = pathlib.Path(__file__).resolve().parent

# Largest difference allowed between the final student weights (and the
# per-step losses) of two processes and of one: the processes only reorder
# the float32 sums of the batch mean and of the gradient average (about 6e-8
# observed).
TOLERANCE = 1e-5
WORKER_TIMEOUT_SECONDS = 240


def run_two_processes(out, *worker_options):
    """Runs the worker under torchrun on two processes; returns torchrun's exit status and output.

    Whatever happens, no process outlives the call: torchrun's process
    group and the workers (which torchrun starts in groups of their own) are
    killed if still running.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [str(TESTS / "multi_process_torch_worker.py"), str(out), *worker_options]
    env = dict(os.environ, KERAS_BACKEND="torch", OMP_NUM_THREADS="1")
    log_path = out / "torchrun.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = process.wait(timeout=WORKER_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            for pid_file in out.glob("pid*"):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = log_path.read_text()[-4000:]
    assert status is not None, f"torchrun did not finish in {WORKER_TIMEOUT_SECONDS} s:\n{output}"
    return status, output


def saved_run(path):
    saved = np.load(path)
    weights = [saved[f"arr_{index}"] for index in range(len(saved.files) - 2)]
    return weights, saved["losses"], int(saved["processes"])


def assert_both_ranks_hold_the_one_process_weights(tmp_path, train):
    """Checks the two ranks' saved runs against each other and one process; returns both ranks' and its losses."""
    (weights_0, losses_0, processes), (weights_1, losses_1, _) = (
        saved_run(tmp_path / f"rank{rank}.npz") for rank in (0, 1)
    )
    assert processes == 2
    # The second process started from other weights: the first step gave it
    # the first process's, and the averaged gradients kept them the same.
    for weight_0, weight_1 in zip(weights_0, weights_1, strict=True):
        np.testing.assert_array_equal(weight_1, weight_0)
    one_process_weights, one_process_losses = train()
    for expected, actual in zip(one_process_weights, weights_0, strict=True):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)
    return losses_0, losses_1, one_process_losses


@pytest.mark.slow
@pytest.mark.skipif(REQUESTED_BACKEND != "torch", reason="torchrun and torch.distributed are the torch path")
def test_two_torch_processes_train_the_student_of_one_process_on_the_global_batch(tmp_path):
    from multi_process_torch_worker import EPOCHS, train

    status, output = run_two_processes(tmp_path)
    assert status == 0, f"torchrun failed ({status}):\n{output}"
    losses_0, losses_1, one_process_losses = assert_both_ranks_hold_the_one_process_weights(tmp_path, train)
    # Each process logs the loss of its own shard; with equal shards their
    # mean is the loss of the global batch.
    assert len(losses_0) == len(one_process_losses) == 8
    np.testing.assert_allclose((losses_0 + losses_1) / 2, one_process_losses, rtol=0, atol=TOLERANCE)
    assert not np.allclose(losses_0, losses_1)
    # Both processes asked for a CSV log; only the chief wrote one.
    assert not (tmp_path / "log_rank1.csv").exists()
    assert len((tmp_path / "log_rank0.csv").read_text().strip().splitlines()) == 1 + EPOCHS


@pytest.mark.slow
@pytest.mark.skipif(REQUESTED_BACKEND != "torch", reason="torchrun and torch.distributed are the torch path")
def test_processes_killed_mid_epoch_and_restarted_resume_to_the_weights_of_an_unbroken_run(tmp_path):
    from multi_process_torch_worker import EPOCHS, train

    # The second process kills itself (SIGKILL) in the second epoch, which
    # ends the run; the run started again resumes from the chief's backup of
    # the first epoch.
    status, output = run_two_processes(tmp_path, "--backup", "--kill")
    assert status != 0 and not list(tmp_path.glob("rank*.npz")), output
    assert (tmp_path / "backup").exists()
    status, output = run_two_processes(tmp_path, "--backup")
    assert status == 0, f"torchrun failed ({status}):\n{output}"
    losses_0, losses_1, one_process_losses = assert_both_ranks_hold_the_one_process_weights(tmp_path, train)
    # The restarted processes trained the second epoch only.
    steps_per_epoch = len(one_process_losses) // EPOCHS
    np.testing.assert_allclose((losses_0 + losses_1) / 2, one_process_losses[steps_per_epoch:], rtol=0, atol=TOLERANCE)
    # The chief deleted its backup at the end of the run.
    assert not (tmp_path / "backup").exists()


@pytest.fixture
def second_of_two_processes(monkeypatch):
    monkeypatch.setattr(keras_kd.distributed, "world_size", lambda: 2)
    monkeypatch.setattr(keras_kd.distributed, "rank", lambda: 1)


def test_one_process_is_the_chief_of_one_and_keeps_all_its_rows():
    x, y = np.arange(12).reshape(6, 2), np.arange(6)
    assert (keras_kd.distributed.rank(), keras_kd.distributed.world_size()) == (0, 1)
    assert keras_kd.distributed.is_chief()
    assert keras_kd.distributed.process_shard(x, y) == (x, y, None)


def test_a_process_shard_takes_every_world_size_th_row_from_its_rank(second_of_two_processes):
    x, y, weights = np.arange(12).reshape(6, 2), np.arange(6), np.linspace(0, 1, 6)
    x_mine, y_mine, weights_mine = keras_kd.distributed.process_shard({"a": x, "b": x}, y, weights)
    np.testing.assert_array_equal(x_mine["a"], x[[1, 3, 5]])
    np.testing.assert_array_equal(x_mine["b"], x[[1, 3, 5]])
    np.testing.assert_array_equal(y_mine, [1, 3, 5])
    np.testing.assert_array_equal(weights_mine, weights[[1, 3, 5]])
    assert keras_kd.distributed.process_shard(x)[1:] == (None, None)


def test_process_shard_rejects_rows_that_do_not_split_evenly(second_of_two_processes):
    with pytest.raises(ValueError, match="multiple of the 2 processes.*got 5 rows"):
        keras_kd.distributed.process_shard(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"same number of rows.*\[4, 6\]"):
        keras_kd.distributed.process_shard(np.zeros((6, 2)), np.zeros(4))


def test_only_the_chief_keeps_the_callbacks_that_only_write_files(tmp_path, second_of_two_processes):
    writers = [
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "model.keras")),
        keras.callbacks.TensorBoard(str(tmp_path / "logs")),
    ]
    stopping = keras.callbacks.EarlyStopping()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    kept = keras_kd.distributed.chief_callbacks([*writers, backup, stopping])
    assert len(kept) == 2 and kept[1] is stopping
    assert keras_kd.distributed.chief_callbacks(None) == []


def test_a_process_but_the_chief_restores_the_backup_and_never_writes_it(tmp_path, second_of_two_processes):
    x, y = np.zeros((4, 2), "float32"), np.zeros(4, "float32")
    chief = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    chief.compile(optimizer="sgd", loss="mse")
    chief_backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    chief.fit(x, y, epochs=2, verbose=0, callbacks=[chief_backup])
    written = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "backup").iterdir()}
    assert written
    other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    other.compile(optimizer="sgd", loss="mse")
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    history = other.fit(x, y, epochs=3, verbose=0, callbacks=keras_kd.distributed.chief_callbacks([backup]))
    # It resumed after the chief's two epochs, and left the backup as it was.
    assert len(history.history["loss"]) == 1
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "backup").iterdir()} == written


def test_initialize_without_torchrun_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert keras_kd.distributed.initialize() == 1


@pytest.mark.skipif(REQUESTED_BACKEND == "torch", reason="torch joins the process group")
def test_initialize_under_torchrun_needs_the_torch_backend(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=f"backend is '{REQUESTED_BACKEND}'.*KERAS_BACKEND=torch"):
        keras_kd.distributed.initialize()
