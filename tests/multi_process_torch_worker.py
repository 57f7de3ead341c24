"""One process of tests/test_multi_process_torch.py: trains a tiny Distiller on its shard.

Run by `torchrun --nproc_per_node 2 tests/multi_process_torch_worker.py OUT`
(KERAS_BACKEND=torch, gloo); each process writes `OUT/rank<r>.npz` (its final
student weights and per-step logged losses). `train` is also imported by the
test, which calls it in its own process on the global batch.

With `--backup`, the processes keep a `BackupAndRestore` backup (written by
the chief) in `OUT/backup` and resume from it; with `--kill` as well, the
second process kills itself mid-epoch. Each process writes its id to
`OUT/pid<r>`, for the test to kill it if the run hangs.
"""

import os
import pathlib
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
import keras_kd.distributed  # noqa: E402
from conftest import make_data, make_mlp  # noqa: E402

ROWS = 64
GLOBAL_BATCH = 16
EPOCHS = 2


class StepLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


class KillMidEpoch(keras.callbacks.Callback):
    """Kills this process (SIGKILL) at the second batch of the second epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == (1, 1):
            os.kill(os.getpid(), signal.SIGKILL)


def train(log_path=None, backup_dir=None, kill=False):
    """Trains on this process's shard of the data; returns (student weights, step losses)."""
    processes, rank = keras_kd.distributed.world_size(), keras_kd.distributed.rank()
    x, y = make_data(ROWS)
    keras.utils.set_random_seed(0)
    teacher_weights = make_mlp(16, name="teacher").get_weights()
    student_weights = make_mlp(8, name="student", batchnorm=False).get_weights()
    # Every process but the first starts from other weights (student and
    # adapter): the first step must give them the first process's.
    keras.utils.set_random_seed(1 + rank)
    teacher = make_mlp(16, name="teacher")
    student = make_mlp(8, name="student", batchnorm=False)
    teacher.set_weights(teacher_weights)
    if rank == 0:
        student.set_weights(student_weights)
    match = keras_kd.FeatureMatch(teacher.layers[1].name, student.layers[1].name, weight=0.1)
    distiller = keras_kd.Distiller(
        teacher,
        student,
        temperature=keras.optimizers.schedules.ExponentialDecay(4.0, 4, 0.5),
        alpha=0.7,
        feature_matches=[match],
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    x, y, _ = keras_kd.distributed.process_shard(x, y)
    recorder = StepLosses()
    callbacks = [recorder]
    if log_path is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(log_path)))
    if backup_dir is not None:
        callbacks.append(keras.callbacks.BackupAndRestore(str(backup_dir)))
    if kill:
        callbacks.append(KillMidEpoch())
    distiller.fit(
        x,
        y,
        batch_size=GLOBAL_BATCH // processes,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=keras_kd.distributed.chief_callbacks(callbacks),
    )
    return student.get_weights(), np.array(recorder.losses)


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1])
    keras_kd.distributed.initialize(backend="gloo")
    rank = keras_kd.distributed.rank()
    (out / f"pid{rank}").write_text(str(os.getpid()))
    weights, losses = train(
        # Every process asks for a log of its own name: only the chief's is written.
        log_path=out / f"log_rank{rank}.csv",
        backup_dir=out / "backup" if "--backup" in sys.argv[2:] else None,
        kill="--kill" in sys.argv[2:] and rank == 1,
    )
    np.savez(out / f"rank{rank}.npz", *weights, losses=losses, processes=keras_kd.distributed.world_size())
    (out / f"pid{rank}").unlink()
