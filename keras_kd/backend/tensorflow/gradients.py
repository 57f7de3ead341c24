"""TensorFlow: the student's forward pass under a `tf.GradientTape`."""

import tensorflow as tf

from keras_kd.backend import _keras_compat, roles


class TensorFlowGradientMechanics(roles.GradientMechanics):
    def train_step(self, distiller, data):
        # The teacher runs before the tape opens, so it is never recorded.
        batch = distiller.prepare_batch(data, training=True)
        with tf.GradientTape() as tape:
            outputs = distiller.compute_step_loss(batch, training=True)
            # Under tf.distribute each replica's gradients are summed.
            loss = distiller.optimizer.scale_loss(_keras_compat.scale_loss_for_distribution(outputs.loss))
        variables = distiller.trainable_variables
        gradients = tape.gradient(loss, variables)
        distiller.optimizer.apply(gradients, variables)
        return _averageable_over_workers(distiller.update_metrics(batch, outputs))

    def test_step(self, distiller, data):
        batch = distiller.prepare_batch(data, training=False)
        outputs = distiller.compute_step_loss(batch, training=False)
        return _averageable_over_workers(distiller.update_metrics(batch, outputs))


def _averageable_over_workers(logs):
    """The step's logs, each scalar as a vector of one value when several workers train.

    Under `tf.distribute.MultiWorkerMirroredStrategy` with several workers,
    Keras's TensorFlow trainer averages each log over the replicas along its
    first axis, which a scalar lacks (the step would fail). Each replica's
    value of one element averages to the scalar the trainer logs everywhere
    else; with one worker the logs stay as they are.
    """
    if not tf.distribute.has_strategy():
        return logs
    strategy = tf.distribute.get_strategy()
    several_workers = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )
    if not several_workers:
        return logs
    return {name: tf.reshape(value, [1]) if value.shape.rank == 0 else value for name, value in logs.items()}
