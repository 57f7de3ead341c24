"""Data-parallel distillation: the same loss trajectory on two devices as on one.

Each check runs in a fresh process, because the number of devices is fixed
when JAX or TensorFlow starts. Both compare, batch by batch, the losses of one
device against two replicas, uncached and from a `TeacherCache` (whose
batches are split across the replicas together with their inputs).
"""

import pytest

from conftest import REQUESTED_BACKEND, run_in_backend

pytestmark = pytest.mark.slow

# Largest difference allowed between per-batch losses (and final student
# weights) on one device and on two: the replicas only reorder the float32
# sums of the batch mean and the gradient all-reduce (about 1e-7 observed).
TOLERANCE = 1e-5

# Shared by both subprocesses: a teacher and a student with fixed initial
# weights, trained three ways; prints nothing, asserts everything.
COMMON = """
import sys
sys.path.insert(0, "tests")
import keras
import numpy as np
import keras_kd
from conftest import make_data, make_mlp

TOLERANCE = {tolerance}
x, y = make_data(64)
keras.utils.set_random_seed(0)
TEACHER_WEIGHTS = make_mlp(16, name="teacher").get_weights()
STUDENT_WEIGHTS = make_mlp(8, name="student", batchnorm=STUDENT_BATCHNORM).get_weights()


class BatchLosses(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def train(cached):
    keras.utils.set_random_seed(1)  # The same initial adapter every time.
    teacher = make_mlp(16, name="teacher")
    student = make_mlp(8, name="student", batchnorm=STUDENT_BATCHNORM)
    teacher.set_weights(TEACHER_WEIGHTS)
    student.set_weights(STUDENT_WEIGHTS)
    match = keras_kd.FeatureMatch(teacher.layers[1].name, student.layers[1].name, weight=0.1)
    distiller = keras_kd.Distiller(
        teacher,
        student,
        temperature=keras.optimizers.schedules.ExponentialDecay(4.0, 4, 0.5),
        alpha=0.7,
        feature_matches=[match],
    )
    distiller.compile(optimizer=keras.optimizers.SGD(0.1))
    recorder = BatchLosses()
    if cached:
        cache = keras_kd.cache.TeacherCache.for_distiller(distiller, x, batch_size=32)
        data = cache.dataset(x, y, batch_size=16, shuffle=False)
        history = distiller.fit(data, epochs=3, shuffle=False, verbose=0, callbacks=[recorder])
    else:
        history = distiller.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, callbacks=[recorder])
    # Logged once per replica, these must not be summed over the replicas.
    np.testing.assert_allclose(history.history["alpha"], 0.7, rtol=1e-6)
    return np.array(recorder.losses), student


def assert_same_training(reference, other):
    (reference_losses, reference_student), (losses, student) = reference, other
    assert len(losses) == 12 and np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, reference_losses, rtol=0, atol=TOLERANCE)
    for expected, actual in zip(reference_student.get_weights(), student.get_weights()):
        np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE)
"""

JAX_CHECK = (
    """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax
STUDENT_BATCHNORM = True
"""
    + COMMON
    + """
devices = jax.devices("cpu")
assert len(devices) == 2, devices
one_device = train(cached=False)
keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
for cached in (False, True):
    two_devices = train(cached)
    # The student's variables are replicated over both devices.
    assert {len(w.value.sharding.device_set) for w in two_devices[1].weights} == {2}
    assert_same_training(one_device, two_devices)
print("ok")
"""
)

TF_CHECK = (
    """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
# MirroredStrategy normalizes BatchNormalization per replica (unless
# synchronized=True), which changes the result; the student here has none.
STUDENT_BATCHNORM = False
"""
    + COMMON
    + """
one_device = train(cached=False)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    for cached in (False, True):
        assert_same_training(one_device, train(cached))
print("ok")
"""
)


@pytest.mark.skipif(REQUESTED_BACKEND != "jax", reason="keras.distribution.DataParallel is the JAX path")
def test_jax_data_parallel_matches_one_device():
    output = run_in_backend("jax", JAX_CHECK.replace("{tolerance}", repr(TOLERANCE)))
    assert output.strip().endswith("ok")


@pytest.mark.skipif(REQUESTED_BACKEND != "tensorflow", reason="tf.distribute.MirroredStrategy is the TensorFlow path")
def test_tensorflow_mirrored_strategy_matches_one_device():
    output = run_in_backend("tensorflow", TF_CHECK.replace("{tolerance}", repr(TOLERANCE)))
    assert output.strip().endswith("ok")
