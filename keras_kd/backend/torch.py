"""PyTorch: autograd on the student's forward pass; the teacher under no_grad."""

import contextlib

import torch


def train_step(distiller, data):
    with torch.no_grad():
        batch = distiller.prepare_batch(data, training=True)
    distiller.zero_grad()
    outputs = distiller.compute_step_loss(batch, training=True)
    distiller.optimizer.scale_loss(outputs.loss).backward()
    variables = distiller.trainable_variables
    gradients = [variable.value.grad for variable in variables]
    with torch.no_grad():
        distiller.optimizer.apply(gradients, variables)
    return distiller.update_metrics(batch, outputs)


def test_step(distiller, data):
    with torch.no_grad():
        batch = distiller.prepare_batch(data, training=False)
        outputs = distiller.compute_step_loss(batch, training=False)
        return distiller.update_metrics(batch, outputs)


def checked_step_function(function, checks, training):
    # Outside the step, which may be torch.compile'd.
    def checked(data):
        if training:
            checks.before_train_call()
        outputs = function(data)
        checks.completed_calls += 1
        return outputs

    return checked


def keeping_state(distiller, checks):
    # PyTorch's trainer keeps the variables attached throughout.
    return contextlib.nullcontext()
