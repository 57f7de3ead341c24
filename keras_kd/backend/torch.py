"""PyTorch: autograd on the student's forward pass; the teacher under no_grad."""

import weakref

import torch

from keras_kd.backend import _keras_compat


def train_step(distiller, data):
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


def test_step(distiller, data):
    with torch.no_grad():
        batch = distiller.prepare_batch(data, training=False)
        outputs = distiller.compute_step_loss(batch, training=False)
        return distiller.update_metrics(batch, outputs)


def float32_vector(tensors, numbers):
    # torch.stack of tensors already on the device: `keras.ops.stack`
    # converts each element again, several microseconds apiece.
    vector = torch.stack([tensor.to(torch.float32) for tensor in tensors])
    if not numbers:
        return vector
    return torch.cat((vector, torch.tensor(numbers, dtype=torch.float32, device=vector.device)))


def top1_agreement_count(student_logits, teacher_logits, valid=None):
    agreements = student_logits.argmax(-1) == teacher_logits.argmax(-1)
    # A bool sum counts in int64; the logs' vector casts it.
    return agreements.sum() if valid is None else (agreements * valid).sum()


def assign_add(variable, value):
    target = variable.value
    # In place, unless a StatelessScope records the assignment instead, or
    # the value read is an autocast copy, not the variable's own Parameter.
    if _keras_compat.in_stateless_scope() or not isinstance(target, torch.nn.Parameter):
        return variable.assign_add(value)
    with torch.no_grad():
        return target.add_(value)


def weighted_means(sums):
    totals, weights = sums.view(2, -1)
    return torch.where(weights != 0, totals / weights, 0.0).unbind()


def copies(variables):
    return torch.stack([variable.value for variable in variables]).unbind()


def value_version(variable):
    # Every in-place change of a tensor (`copy_` in `Variable.assign`,
    # `add_`, an optimizer's update) advances its `_version`, as autograd
    # relies on; writes through `.data` or a NumPy view of it do not.
    value = variable.value
    return weakref.ref(value), value._version
