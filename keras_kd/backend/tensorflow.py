"""TensorFlow: the student's forward pass under a `tf.GradientTape`."""

import contextlib
import re

import keras
import tensorflow as tf

from keras_kd import validation
from keras_kd.backend import _keras_compat

# Tags the failed assertion of a bad label, so that the step function can
# tell it from other errors and raise the ValueError of `fit_checks`.
_BAD_LABEL = "keras_kd: label out of the classes"
_BAD_LABEL_VALUE = re.compile(re.escape(_BAD_LABEL) + r"\] \[([^\]]+)\]")


def train_step(distiller, data):
    data = _with_checked_labels(distiller.step_checks, data)
    # The teacher runs before the tape opens, so it is never recorded.
    batch = distiller.prepare_batch(data, training=True)
    with tf.GradientTape() as tape:
        outputs = distiller.compute_step_loss(batch, training=True)
        # Under tf.distribute each replica's gradients are summed.
        loss = distiller.optimizer.scale_loss(_keras_compat.scale_loss_for_distribution(outputs.loss))
    variables = distiller.trainable_variables
    gradients = tape.gradient(loss, variables)
    distiller.optimizer.apply(gradients, variables)
    return distiller.update_metrics(batch, outputs)


def test_step(distiller, data):
    data = _with_checked_labels(distiller.step_checks, data)
    batch = distiller.prepare_batch(data, training=False)
    outputs = distiller.compute_step_loss(batch, training=False)
    return distiller.update_metrics(batch, outputs)


def _with_checked_labels(checks, data):
    """`data` whose labels (and so the loss and the update) wait for their check.

    The batches stay inside the graph (the step pulls them from the
    iterator), so the check is an assertion there; XLA compiles assertions
    to nothing, so `jit_compile=True` goes without it.
    """
    x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if not checks.checks_labels(labels):
        return data
    any_bad, first_bad = validation.first_bad_label(labels, checks.num_classes)
    assertion = tf.debugging.Assert(tf.logical_not(any_bad), [_BAD_LABEL, first_bad])
    with tf.control_dependencies([assertion]):
        labels = tf.identity(labels)
    return keras.utils.pack_x_y_sample_weight(x, labels, sample_weight)


def checked_data(distiller, checks, data):
    """`data`, with the labels of a `tf.data.Dataset` checked in its pipeline under XLA.

    XLA compiles the step's assertion to nothing; the pipeline runs outside
    XLA, so there the same assertion holds (and fails as in the step).
    Other data under XLA are checked up to their first batch only.
    """
    if not distiller.jit_compile or not isinstance(data, tf.data.Dataset):
        return data
    return data.map(lambda *batch: _with_checked_labels(checks, batch if len(batch) > 1 else batch[0]))


def checked_step_function(function, checks, training):
    def checked(iterator):
        if training:
            checks.before_train_call()
        try:
            outputs = function(iterator)
        except tf.errors.InvalidArgumentError as error:
            match = _BAD_LABEL_VALUE.search(error.message)
            if match is None:
                raise
            raise checks.label_error(_number(match[1])) from None
        checks.completed_calls += 1
        return outputs

    return checked


def keeping_state(distiller, checks):
    # TensorFlow's trainer keeps the variables attached throughout.
    return contextlib.nullcontext()


def _number(text):
    value = float(text)
    return int(value) if value.is_integer() else value
