"""PyTorch: the logs' arithmetic in torch ops on tensors already on the device.

On an eager backend each `keras.ops` call converts its inputs and dispatches
through Keras; these do the same arithmetic in fewer ops
(docs/results/benchmarks.md).
"""

import torch

from keras_kd.backend import _keras_compat, roles


class TorchMetricOps(roles.MetricOps):
    def float32_vector(self, tensors, numbers):
        # torch.stack of tensors already on the device: `keras.ops.stack`
        # converts each element again.
        vector = torch.stack([tensor.to(torch.float32) for tensor in tensors])
        if not numbers:
            return vector
        return torch.cat((vector, torch.tensor(numbers, dtype=torch.float32, device=vector.device)))

    def top1_agreement_count(self, student_logits, teacher_logits, valid=None):
        # `keras.ops.argmax` casts each index to int32; the comparison needs no cast.
        agreements = student_logits.argmax(-1) == teacher_logits.argmax(-1)
        # A bool sum counts in int64; the logs' vector casts it.
        return agreements.sum() if valid is None else (agreements * valid).sum()

    def assign_add(self, variable, value):
        # Keras's `assign_add` adds, then copies into the variable: one
        # in-place add instead, unless a StatelessScope records the
        # assignment, or the value read is an autocast copy, not the
        # variable's own Parameter.
        target = variable.value
        if _keras_compat.in_stateless_scope() or not isinstance(target, torch.nn.Parameter):
            return variable.assign_add(value)
        with torch.no_grad():
            return target.add_(value)

    def weighted_means(self, sums):
        totals, weights = sums.view(2, -1)
        return torch.where(weights != 0, totals / weights, 0.0).unbind()

    def copies(self, variables):
        return torch.stack([variable.value for variable in variables]).unbind()
