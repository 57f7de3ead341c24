"""PyTorch: autograd on the student's forward pass; the teacher under no_grad."""

import weakref

import torch


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


def value_version(variable):
    # Every in-place change of a tensor (`copy_` in `Variable.assign`,
    # `add_`, an optimizer's update) advances its `_version`, as autograd
    # relies on; writes through `.data` or a NumPy view of it do not.
    value = variable.value
    return weakref.ref(value), value._version
