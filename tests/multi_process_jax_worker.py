"""One process of a JAX multi-process distillation (and, as `train_all()`, the one-process reference).

Run by tests/test_multi_process_jax.py, once per process:

    KERAS_DISTRIBUTION_JOB_ADDRESSES=HOST:PORT KERAS_DISTRIBUTION_NUM_PROCESSES=2 \
        KERAS_DISTRIBUTION_PROCESS_ID=I python tests/multi_process_jax_worker.py OUTPUT

The processes join one JAX job through `keras.distribution.initialize`, train
under `keras.distribution.DataParallel` over every device of every process,
and each gives `fit` only its share of every global batch. Process 0 writes
the per-batch losses and the student's final weights of each variant (with
and without BatchNormalization and a teacher cache) to OUTPUT (`.npz`).
"""

import argparse
import os

if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "jax"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    # CPU devices reach the other processes' devices through gloo (the
    # default of recent JAX releases; older ones had no CPU collectives).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_kd  # noqa: E402
from conftest import make_data, make_mlp  # noqa: E402

GLOBAL_BATCH = 16
ROWS = 64
EPOCHS = 3


# What each process trains, in turn: {name: (student with BatchNormalization, from a TeacherCache)}.
VARIANTS = {"uncached": (False, False), "cached_batchnorm": (True, True)}


def train_all(process_id=0, num_processes=1):
    """Every variant of `VARIANTS`; returns their losses and students' weights, in one dict of arrays."""
    results = {}
    for name, (batchnorm, cached) in VARIANTS.items():
        results.update(
            {f"{name}/{key}": value for key, value in train(process_id, num_processes, batchnorm, cached).items()}
        )
    return results


def train(process_id, num_processes, batchnorm, cached):
    """Distils with this process's share of every global batch; returns the losses and the student's weights."""
    x, y = make_data(ROWS)
    x, y = process_share(x, process_id, num_processes), process_share(y, process_id, num_processes)
    keras.utils.set_random_seed(0)  # The same initial weights in every process.
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(8, name="student", batchnorm=batchnorm)
    match = keras_kd.FeatureMatch(teacher.layers[1].name, student.layers[1].name, weight=0.1)
    distiller = keras_kd.Distiller(teacher, student, temperature=3.0, alpha=0.7, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    losses = BatchLosses()
    local_batch = GLOBAL_BATCH // num_processes
    if cached:
        # Each process runs the teacher on its own share.
        cache = keras_kd.TeacherCache.for_distiller(distiller, x, batch_size=local_batch)
        data = cache.dataset(x, y, batch_size=local_batch, shuffle=False)
        distiller.fit(data, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[losses])
    else:
        distiller.fit(x, y, batch_size=local_batch, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[losses])
    # Every variable is replicated over the devices of every process.
    assert {len(weight.value.sharding.device_set) for weight in student.weights} == {len(jax.devices())}
    weights = {f"weight_{index}": np.asarray(weight.value) for index, weight in enumerate(student.weights)}
    return dict(losses=np.array(losses.values), **weights)


def process_share(array, process_id, num_processes):
    """This process's rows of every global batch, in order (all rows for one process)."""
    batches = array.reshape(-1, num_processes, GLOBAL_BATCH // num_processes, *array.shape[1:])
    return batches[:, process_id].reshape(-1, *array.shape[1:])


class BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.values = []

    def on_train_batch_end(self, batch, logs=None):
        self.values.append(float(logs["loss"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    output = parser.parse_args().output
    # From KERAS_DISTRIBUTION_JOB_ADDRESSES, _NUM_PROCESSES and _PROCESS_ID.
    keras.distribution.initialize()
    process_id, num_processes = jax.process_index(), jax.process_count()
    assert num_processes == int(os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"]), num_processes
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
    )
    results = train_all(process_id, num_processes)
    if process_id == 0:
        np.savez(output, **results)
    print(f"process {process_id} of {num_processes}: done")


if __name__ == "__main__":
    main()
