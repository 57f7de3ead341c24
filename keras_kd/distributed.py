"""Several processes training one student: joining the job, which rows are mine, who writes files.

`initialize()` reads what the launcher put in the environment and joins the
job, so one script runs unchanged under `torchrun` (torch), as the processes
of a JAX job (`KERAS_DISTRIBUTION_*`, `keras.distribution.DataParallel`),
as TensorFlow workers (`TF_CONFIG`, `MultiWorkerMirroredStrategy`), and
alone. On torch, the Distiller then averages the student's gradients across
the processes at every step, so each process keeps the same weights; torch
and JAX processes each read their own rows of every batch (`process_shard`,
`local_batch_size`), while Keras splits TensorFlow's batches itself. Without
a launcher the functions describe a single process: `rank()` is 0,
`world_size()` is 1, `process_shard` returns its arguments,
`chief_callbacks` keeps every callback. See the guides
docs/guides/distributed-torch.md, distributed-jax.md and
distributed-tensorflow.md, and recipes/distributed_mnist.py.

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

import contextlib
import os

import keras

# Callbacks that only write files: in any process but the chief they would
# write the same files at the same time. (BackupAndRestore also reads.)
_WRITES_FILES = (
    keras.callbacks.CSVLogger,
    keras.callbacks.ModelCheckpoint,
    keras.callbacks.TensorBoard,
)


# The TensorFlow strategy `initialize` made from TF_CONFIG, once made.
_tensorflow_strategy = None


def _torch_process_group():
    """`torch.distributed` when the backend is torch and a process group is initialized; None otherwise."""
    if keras.backend.backend() != "torch":
        return None
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed
    return None


def _launcher():
    """The engine the environment asks for: `"torch"` (torchrun), `"jax"`, `"tensorflow"` (TF_CONFIG), or None."""
    if "WORLD_SIZE" in os.environ:
        return "torch"
    if "KERAS_DISTRIBUTION_JOB_ADDRESSES" in os.environ or "KERAS_DISTRIBUTION_NUM_PROCESSES" in os.environ:
        return "jax"
    if "TF_CONFIG" in os.environ:
        return "tensorflow"
    return None


def initialize(backend=None):
    """Joins the job that the launcher describes in the environment; a single process without one.

    The same script then runs under each engine's launcher, and alone:

    - `torchrun` (torch backend; `RANK`, `WORLD_SIZE`, `MASTER_ADDR`,
      `MASTER_PORT`): calls `torch.distributed.init_process_group`; on a
      machine with GPUs each process also takes the GPU `LOCAL_RANK`. The
      Distiller then averages the gradients across the processes.
    - `KERAS_DISTRIBUTION_JOB_ADDRESSES`, `KERAS_DISTRIBUTION_NUM_PROCESSES`
      and `KERAS_DISTRIBUTION_PROCESS_ID` (JAX backend): calls
      `keras.distribution.initialize()` and sets
      `keras.distribution.DataParallel` over every device of every process,
      each process feeding its own share of each batch
      (`auto_shard_dataset=False`).
    - `TF_CONFIG` (TensorFlow backend): makes a
      `tf.distribute.MultiWorkerMirroredStrategy`; create the models and
      compile the Distiller inside `scope()`. Keras splits each batch
      between the workers itself.

    Call it first, before creating any model. Does nothing a second time.

    Args:
        backend: torch's communication backend: `"nccl"` (GPUs), `"gloo"`
            (CPUs); by default NCCL when CUDA is available, gloo otherwise.
            Ignored by the other engines.

    Returns:
        The number of processes (`world_size()`).

    Raises:
        ValueError: if the launcher's engine is not Keras's backend (e.g.
            `torchrun` with `KERAS_BACKEND=jax`).
    """
    global _tensorflow_strategy
    launcher = _launcher()
    if launcher is None:
        return world_size()
    if keras.backend.backend() != launcher:
        how = {
            "torch": "torchrun (WORLD_SIZE is set)",
            "jax": "a JAX job (KERAS_DISTRIBUTION_* is set)",
            "tensorflow": "TensorFlow workers (TF_CONFIG is set)",
        }[launcher]
        raise ValueError(
            f"keras_kd.distributed.initialize(): the environment describes {how}, but Keras's backend is "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND={launcher}, or launch with "
            f"{keras.backend.backend()}'s own launcher."
        )
    if launcher == "torch":
        import torch

        if not torch.distributed.is_initialized():
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            torch.distributed.init_process_group(backend=backend)
    elif launcher == "jax":
        if not isinstance(keras.distribution.distribution(), keras.distribution.DataParallel):
            keras.distribution.initialize()
            keras.distribution.set_distribution(
                keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False)
            )
    elif _tensorflow_strategy is None:
        import tensorflow as tf

        _tensorflow_strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return world_size()


def scope():
    """Where to create the models and compile the Distiller: the TensorFlow workers' strategy scope, else nothing."""
    if _tensorflow_strategy is not None:
        return _tensorflow_strategy.scope()
    return contextlib.nullcontext()


def rank():
    """This process's index among the training processes, from 0; 0 for a single process."""
    group = _torch_process_group()
    if group is not None:
        return group.get_rank()
    if _tensorflow_strategy is not None:
        return _tensorflow_strategy.cluster_resolver.task_id or 0
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index()
    return 0


def world_size():
    """The number of training processes; 1 for a single process."""
    group = _torch_process_group()
    if group is not None:
        return group.get_world_size()
    if _tensorflow_strategy is not None:
        return _tensorflow_strategy.cluster_resolver.cluster_spec().num_tasks("worker")
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count()
    return 1


def is_chief():
    """True in the process that writes files (rank 0), and in a single process."""
    return rank() == 0


def local_batch_size(global_batch_size):
    """The `batch_size` each process passes to `fit` for batches of `global_batch_size` rows in all.

    Each torch or JAX process feeds its own rows (`process_shard`), so it
    takes `global_batch_size / world_size()`; TensorFlow's workers are each
    given the global batch, which Keras splits between them.

    Raises:
        ValueError: if the global batch does not split evenly over the processes.
    """
    if _tensorflow_strategy is not None:
        return global_batch_size
    processes = world_size()
    if global_batch_size % processes:
        raise ValueError(
            f"local_batch_size(): a global batch of {global_batch_size} rows does not split evenly over the "
            f"{processes} processes; use a multiple of {processes}."
        )
    return global_batch_size // processes


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
    if _tensorflow_strategy is not None:
        return x, y, sample_weight  # Keras splits each batch between the workers.
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
