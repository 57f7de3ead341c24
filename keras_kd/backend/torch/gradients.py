"""PyTorch: autograd on the student's forward pass; the teacher under no_grad.

Under `torch.distributed` (a process group initialized, as under
`torchrun`), each process runs this step on its own shard of the global
batch and the trained variables' gradients are averaged across the
processes before the optimizer applies them, so every process keeps the
same weights: data parallelism without torch's `DistributedDataParallel`
wrapper, which expects a `torch.nn.Module` whose forward it calls
(docs/guides/distributed-torch.md).
"""

import weakref

import torch

from keras_kd.backend import roles


def _process_group_size():
    """The number of processes in torch's default process group; 1 without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _average_across_processes(gradients, processes):
    """Averages `gradients` (None entries left alone) across the processes, in place.

    One all-reduce per dtype over a flat copy of the gradients, rather than
    one per variable, keeps the number of collectives small.
    """
    by_dtype = {}
    for gradient in gradients:
        if gradient is not None:
            by_dtype.setdefault(gradient.dtype, []).append(gradient)
    for group in by_dtype.values():
        flat = torch.cat([gradient.reshape(-1) for gradient in group])
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= processes
        for gradient, averaged in zip(group, torch.split(flat, [gradient.numel() for gradient in group])):
            gradient.copy_(averaged.view_as(gradient))


def _broadcast_from_first_process(variables):
    """Gives every process the values of process 0's `variables`."""
    for variable in variables:
        value = variable.value.data
        torch.distributed.broadcast(value, src=0)


class TorchGradientMechanics(roles.GradientMechanics):
    def __init__(self):
        # The Distillers whose weights the processes already share: process
        # 0's student, adapters and optimizer state are broadcast at the
        # first step of each Distiller, after any restore in
        # `on_train_begin`, so that the processes start from the same point.
        self._synchronized = weakref.WeakSet()

    def train_step(self, distiller, data):
        processes = _process_group_size()
        if processes > 1 and distiller not in self._synchronized:
            with torch.no_grad():
                _broadcast_from_first_process(
                    distiller.trainable_variables
                    + distiller.student.non_trainable_variables
                    + list(distiller.optimizer.variables)
                )
            self._synchronized.add(distiller)
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
            if processes > 1:
                # Each process's loss is the mean over its shard: with equal
                # shards, the mean of the processes' gradients is the gradient
                # of the loss of the global batch.
                _average_across_processes(gradients, processes)
            distiller.optimizer.apply(gradients, variables)
            # Logs need no gradients: autograd records nothing of them.
            return distiller.update_metrics(batch, outputs)

    def test_step(self, distiller, data):
        with torch.no_grad():
            batch = distiller.prepare_batch(data, training=False)
            outputs = distiller.compute_step_loss(batch, training=False)
            return distiller.update_metrics(batch, outputs)
