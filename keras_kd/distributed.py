"""Several processes training one student: which process am I, which rows are mine, who writes files.

On the torch backend, a run launched with `torchrun --nproc_per_node N
train.py` is data parallel once the script calls `initialize()` (or
`torch.distributed.init_process_group` itself): the Distiller averages the
student's gradients across the processes at every step, so each process
keeps the same weights, and each process reads its own shard of the data
(`process_shard`). Without a process group, and on the other backends, the
functions here describe a single process: `rank()` is 0, `world_size()` is
1, `process_shard` returns its arguments, `chief_callbacks` keeps every
callback. See docs/guides/distributed-torch.md.

```python
import keras
import numpy as np
import keras_kd.distributed

x, y = np.zeros((8, 4), "float32"), np.zeros(8, "int32")
x_mine, y_mine, _ = keras_kd.distributed.process_shard(x, y)  # every row, in one process
callbacks = keras_kd.distributed.chief_callbacks([keras.callbacks.CSVLogger("log.csv")])
assert keras_kd.distributed.is_chief() and len(callbacks) == 1
```
"""

import os

import keras

# Callbacks that only write files: in any process but the chief they would
# write the same files at the same time. (BackupAndRestore also reads.)
_WRITES_FILES = (
    keras.callbacks.CSVLogger,
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.TensorBoard,
)


def _torch_process_group():
    """`torch.distributed` when the backend is torch and a process group is initialized; None otherwise."""
    if keras.backend.backend() != "torch":
        return None
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed
    return None


def initialize(backend=None):
    """Joins the process group that `torchrun` describes in the environment (torch backend).

    Reads `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`, which
    `torchrun` sets for each process, and calls
    `torch.distributed.init_process_group`. On a machine with GPUs, each
    process also takes the GPU `LOCAL_RANK` as its device, so call this
    before creating any model. Does nothing if the process group is already
    initialized, or if the script was not launched by `torchrun` (no
    `WORLD_SIZE` in the environment), so the same script also runs as one
    process.

    Args:
        backend: torch's communication backend: `"nccl"` (GPUs), `"gloo"`
            (CPUs); by default NCCL when CUDA is available, gloo otherwise.

    Returns:
        The number of processes (`world_size()`).

    Raises:
        ValueError: if Keras's backend is not torch while `WORLD_SIZE` is
            set (the other engines have their own launchers).
    """
    if "WORLD_SIZE" not in os.environ:
        return world_size()
    if keras.backend.backend() != "torch":
        raise ValueError(
            f"keras_kd.distributed.initialize() joins a torch process group, but Keras's backend is "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=torch, or use that engine's own set-up "
            "(keras.distribution.initialize on JAX, tf.distribute on TensorFlow)."
        )
    import torch

    if not torch.distributed.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend=backend)
    return world_size()


def rank():
    """This process's index among the training processes, from 0; 0 for a single process."""
    group = _torch_process_group()
    return group.get_rank() if group is not None else 0


def world_size():
    """The number of training processes; 1 for a single process."""
    group = _torch_process_group()
    return group.get_world_size() if group is not None else 1


def is_chief():
    """True in the process that writes files (rank 0), and in a single process."""
    return rank() == 0


def process_shard(x, y=None, sample_weight=None):
    """This process's rows of `x`, `y` and `sample_weight`: every `world_size()`-th row, from `rank()`.

    Process `r` of `N` keeps rows `r, r + N, r + 2N, ...`. Its `k`-th
    batch of `B` rows, taken in order (`shuffle=False`), then holds exactly
    its share of the `k`-th batch of `N * B` rows of the whole data, so the
    processes together train on the batches one process would with
    `batch_size=N * B`: each process passes `batch_size=B` to `fit`. Every
    process must hold the same number of rows, so that each runs as many
    steps as the others.

    Args:
        x: an array, or a structure (list, tuple, dict) of arrays, the rows
            on the first axis.
        y: the labels, like `x`, or None.
        sample_weight: the weights of the rows, like `x`, or None.

    Returns:
        `(x, y, sample_weight)` of this process, the ones given as None left
        None; a single process gets its arguments back.

    Raises:
        ValueError: if the number of rows is not a multiple of
            `world_size()`, or differs between the arrays.
    """
    processes, index = world_size(), rank()
    arrays = [array for array in keras.tree.flatten((x, y, sample_weight)) if array is not None]
    rows = {len(array) for array in arrays}
    if len(rows) > 1:
        raise ValueError(
            f"process_shard() needs the same number of rows in x, y and sample_weight; got {sorted(rows)}."
        )
    if rows and next(iter(rows)) % processes:
        raise ValueError(
            f"process_shard() needs a number of rows that is a multiple of the {processes} processes, so that "
            f"each runs as many steps; got {next(iter(rows))} rows. Drop the last "
            f"{next(iter(rows)) % processes} rows (x[:len(x) - len(x) % {processes}])."
        )
    if processes == 1:
        return x, y, sample_weight
    return keras.tree.map_structure(
        lambda array: None if array is None else array[index::processes], (x, y, sample_weight)
    )


class _RestoreOnly(keras.callbacks.Callback):
    """A `BackupAndRestore` that restores the backup at the start of `fit` but never writes or deletes it."""

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def set_model(self, model):
        super().set_model(model)
        self.backup.set_model(model)

    def on_train_begin(self, logs=None):
        self.backup.on_train_begin(logs)


def chief_callbacks(callbacks):
    """`callbacks` as each process should run them: only the chief (rank 0) writes files.

    In every process but the chief, drops `ModelCheckpoint`, `CSVLogger`
    and `TensorBoard`, whose files the chief writes for all (its student is
    the same as the others'), and makes each `BackupAndRestore` read-only:
    it still restores the chief's backup when `fit` starts, so a restarted
    run resumes from the same epoch in every process, but it never writes
    or deletes it. The backup directory must therefore be one every process
    can read (any directory on one machine; shared storage across
    machines). Other callbacks that write files should be added in the
    chief only (`if keras_kd.distributed.is_chief()`).

    Args:
        callbacks: a list of `keras.callbacks.Callback`, or None.

    Returns:
        A new list; all of `callbacks` in the chief or a single process.
    """
    callbacks = list(callbacks or [])
    if is_chief():
        return callbacks
    return [
        _RestoreOnly(callback) if isinstance(callback, keras.callbacks.BackupAndRestore) else callback
        for callback in callbacks
        if not isinstance(callback, _WRITES_FILES)
    ]
