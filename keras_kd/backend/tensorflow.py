"""TensorFlow: the student's forward pass under a `tf.GradientTape`."""

import contextlib

import tensorflow as tf

from keras_kd.backend import _keras_compat


def train_step(distiller, data):
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
    batch = distiller.prepare_batch(data, training=False)
    outputs = distiller.compute_step_loss(batch, training=False)
    return distiller.update_metrics(batch, outputs)


def checked_step_function(function, checks, training):
    # Keras's TensorFlow step function takes the iterator: its batches stay
    # inside the graph (their labels are checked in the data pipeline).
    def checked(iterator):
        if training:
            checks.before_train_call()
        outputs = function(iterator)
        checks.completed_calls += 1
        return outputs

    return checked


def keeping_state(distiller, checks):
    # TensorFlow's trainer keeps the variables attached throughout.
    return contextlib.nullcontext()
