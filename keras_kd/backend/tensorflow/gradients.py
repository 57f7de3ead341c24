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
        return distiller.update_metrics(batch, outputs)

    def test_step(self, distiller, data):
        batch = distiller.prepare_batch(data, training=False)
        outputs = distiller.compute_step_loss(batch, training=False)
        return distiller.update_metrics(batch, outputs)
