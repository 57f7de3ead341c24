"""PyTorch: autograd on the student's forward pass; the teacher under no_grad."""

import torch

from keras_kd.backend import roles


class TorchGradientMechanics(roles.GradientMechanics):
    def train_step(self, distiller, data):
        with torch.no_grad():
            batch = distiller.prepare_batch(data, training=True)
        variables = distiller.trainable_variables
        # The gradients left by the last step, cleared: `distiller.zero_grad()`
        # would also walk the teacher's modules, which never have any.
        for variable in variables:
            variable.value.grad = None
        outputs = distiller.compute_step_loss(batch, training=True)
        distiller.optimizer.scale_loss(outputs.loss).backward()
        gradients = [variable.value.grad for variable in variables]
        with torch.no_grad():
            distiller.optimizer.apply(gradients, variables)
            # Logs need no gradients: autograd records nothing of them.
            return distiller.update_metrics(batch, outputs)

    def test_step(self, distiller, data):
        with torch.no_grad():
            batch = distiller.prepare_batch(data, training=False)
            outputs = distiller.compute_step_loss(batch, training=False)
            return distiller.update_metrics(batch, outputs)
