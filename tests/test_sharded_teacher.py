"""A sharded teacher on JAX: model-parallel teacher, data-parallel student, one mesh.

The teacher's weights are laid out across a (2 batch, 4 model) mesh of 8
virtual CPU devices by a `keras.distribution.LayoutMap` (KerasHub's own for a
Llama 3 teacher; regex keys for a plain Keras one); the student is replicated
and each batch split along the mesh's batch axis. Distillation, uncached and
from a `TeacherCache` built by the sharded teacher, must follow the run
without any distribution (one device) and the data-parallel run on the same
mesh with every weight replicated.

It runs in a fresh process, because the number of devices is fixed when JAX
starts.
"""

import pytest

from conftest import REQUESTED_BACKEND, run_in_backend

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REQUESTED_BACKEND != "jax", reason="keras.distribution.ModelParallel is the JAX path"),
]

# Largest difference allowed between per-step losses, final student weights
# and cached teacher logits of the runs compared: sharding only reorders
# float32 sums (a few 1e-7 observed).
TOLERANCE = 1e-5

CHECK = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import contextlib
import sys
sys.path.insert(0, "tests")
import jax
import keras
import keras_hub
import numpy as np
import keras_kd
from conftest import make_data, make_mlp
from hub_support import llama3_lm

TOLERANCE = {tolerance}
VOCAB, LENGTH, BATCH = 64, 8, 8
devices = jax.devices("cpu")
assert len(devices) == 8, devices
mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
# Data parallel on the mesh: nothing matches an empty layout map, so every
# variable is replicated, and batches are split along the batch axis.
replicated = keras.distribution.ModelParallel(layout_map=keras.distribution.LayoutMap(mesh), batch_dim_name="batch")
differences = {}


def llama_teacher():
    # Query heads divisible by the model axis (4), key/value heads by the
    # batch axis (2), as KerasHub's layout map shards them.
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=VOCAB, num_layers=2, num_query_heads=4, num_key_value_heads=2,
        hidden_dim=32, intermediate_dim=64, dropout=0.0,
    )
    return keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None, name="teacher")


def llama_student():
    return llama3_lm(1, 16, "student", VOCAB)


def plain_teacher():
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(64, activation="relu", name="teacher_hidden_0")(inputs)
    hidden = keras.layers.Dense(64, activation="relu", name="teacher_hidden_1")(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="teacher_logits")(hidden), name="teacher")


def plain_student():
    return make_mlp(8, name="student", batchnorm=False)


class StepLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def distil(models, teacher_scope, student_scope, x, y, sample_weight=None, cached=False, epochs=1):
    (make_teacher, teacher_weights), (make_student, student_weights) = models
    with teacher_scope:
        teacher = make_teacher()
        teacher.set_weights(teacher_weights)
    with student_scope:
        student = make_student()
        student.set_weights(student_weights)
    distiller = keras_kd.Distiller(teacher, student, temperature=2.0, alpha=0.5)
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    recorder, cache = StepLosses(), None
    if cached:
        cache = keras_kd.TeacherCache.for_distiller(distiller, x, batch_size=BATCH)
        data = cache.dataset(x, y, sample_weight=sample_weight, batch_size=BATCH, shuffle=False)
        distiller.fit(data, epochs=epochs, shuffle=False, verbose=0, callbacks=[recorder])
    else:
        distiller.fit(
            x, y, sample_weight=sample_weight, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
            callbacks=[recorder],
        )
    return np.array(recorder.losses), teacher, student, cache, distiller


def assert_same_training(name, reference, other):
    (reference_losses, _, reference_student, *_), (losses, _, student, *_) = reference, other
    assert len(losses) == len(reference_losses) >= 3 and np.all(np.isfinite(losses)), losses
    np.testing.assert_allclose(losses, reference_losses, rtol=0, atol=TOLERANCE, err_msg=name)
    differences[name + " losses"] = float(np.max(np.abs(losses - reference_losses)))
    weight_difference = 0.0
    for expected, actual in zip(reference_student.get_weights(), student.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE, err_msg=name)
        weight_difference = max(weight_difference, float(np.max(np.abs(actual - expected))))
    differences[name + " student weights"] = weight_difference


def sharded_fraction(variables):
    # The bytes of `variables` on one device, over their full bytes.
    on_one_device = sum(v.value.addressable_shards[0].data.nbytes for v in variables)
    return on_one_device / sum(v.value.nbytes for v in variables)


def assert_sharded(variable):
    sharding = variable.value.sharding
    assert len(sharding.device_set) == 8 and not sharding.is_fully_replicated, (variable.path, sharding)
    assert variable.value.addressable_shards[0].data.size < variable.value.size, variable.path


def assert_replicated(variables):
    for variable in variables:
        sharding = variable.value.sharding
        assert len(sharding.device_set) == 8 and sharding.is_fully_replicated, (variable.path, sharding)


# A KerasHub Llama 3 teacher, sharded by the backbone's own layout map, which
# leaves the untied output embedding out; one more key shards it too.
rng = np.random.default_rng(0)
tokens = rng.integers(1, VOCAB, (3 * BATCH, LENGTH + 1)).astype("int32")
padding_mask = (np.arange(LENGTH)[None] < rng.integers(3, LENGTH + 1, 3 * BATCH)[:, None]).astype("int32")
x = {"token_ids": tokens[:, :LENGTH] * padding_mask, "padding_mask": padding_mask}
y = tokens[:, 1:] * padding_mask
keras.utils.set_random_seed(0)
llama = ((llama_teacher, llama_teacher().get_weights()), (llama_student, llama_student().get_weights()))
layout_map = keras_hub.models.Llama3Backbone.get_layout_map(mesh)
layout_map["token_embedding/reverse_embeddings"] = ("batch", "model")
sharded = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")

one_device = distil(llama, contextlib.nullcontext(), contextlib.nullcontext(), x, y, padding_mask)
one_device_logits = one_device[1].predict(x, batch_size=BATCH, verbose=0)
keras.distribution.set_distribution(replicated)
data_parallel = distil(llama, replicated.scope(), replicated.scope(), x, y, padding_mask)
assert_same_training("llama data-parallel vs one device", one_device, data_parallel)
keras.distribution.set_distribution(sharded)
# The student has the teacher's variable paths: created under the sharded
# scope, the same keys would shard it; under `replicated` nothing does.
for cached in (False, True):
    run = distil(llama, sharded.scope(), replicated.scope(), x, y, padding_mask, cached=cached)
    teacher, student, cache, distiller = run[1:]
    kernels = [v for v in teacher.weights if v.path.endswith(("kernel", "embeddings"))]
    assert len(kernels) == 2 + 2 * 7, [v.path for v in kernels]
    for kernel in kernels:
        assert_sharded(kernel)
    differences["llama teacher bytes per device"] = sharded_fraction(teacher.weights)
    # The student's, the Distiller's own (temperature, alpha), the optimizer's, the metrics'.
    teacher_variables = {id(v) for v in teacher.weights}
    state = distiller.variables + distiller.optimizer.variables + distiller.metrics_variables
    assert_replicated([v for v in state if id(v) not in teacher_variables])
    name = "llama sharded teacher" + (", cached" if cached else "")
    assert_same_training(name + " vs one device", one_device, run)
    assert_same_training(name + " vs data-parallel", data_parallel, run)
    if cached:
        np.testing.assert_allclose(cache.teacher_logits, one_device_logits, rtol=0, atol=TOLERANCE)
        differences["llama cached logits"] = float(np.max(np.abs(cache.teacher_logits - one_device_logits)))

# A plain Keras teacher, sharded by regex keys on its layers' names; the
# student's layers (dense, dense_1) match none, so it needs no scope of its own.
keras.distribution.set_distribution(None)
x, y = make_data(32)
keras.utils.set_random_seed(0)
plain = ((plain_teacher, plain_teacher().get_weights()), (plain_student, plain_student().get_weights()))
layout_map = keras.distribution.LayoutMap(mesh)
layout_map["teacher_hidden_[0-9]+/kernel"] = (None, "model")
layout_map["teacher_hidden_[0-9]+/bias"] = ("model",)
layout_map["teacher_logits/kernel"] = ("model", None)
sharded = keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")
one_device = distil(plain, contextlib.nullcontext(), contextlib.nullcontext(), x, y, epochs=2)
keras.distribution.set_distribution(sharded)
run = distil(plain, sharded.scope(), sharded.scope(), x, y, epochs=2)
teacher, student = run[1:3]
for variable in teacher.weights[:-1]:  # All but the logits' bias (3 classes).
    assert_sharded(variable)
assert_replicated(student.weights)
differences["plain teacher bytes per device"] = sharded_fraction(teacher.weights)
assert_same_training("plain sharded teacher vs one device", one_device, run)

for name, value in differences.items():
    print(f"{name}: {value:.3g}")
print("ok")
"""


def test_a_sharded_teacher_distils_as_on_one_device():
    output = run_in_backend("jax", CHECK.replace("{tolerance}", repr(TOLERANCE)), timeout=300)
    print(output)
    assert output.strip().endswith("ok")
