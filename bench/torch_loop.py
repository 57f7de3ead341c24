"""A hand-written pure-PyTorch distillation loop: the baseline keras_kd is timed against.

The loop follows the PyTorch knowledge-distillation tutorial
(https://pytorch.org/tutorials/beginner/knowledge_distillation_tutorial.html):
the teacher in `eval()` mode under `torch.no_grad()`, the soft-target loss
`sum(p_teacher * (log p_teacher - log p_student)) / batch * T**2`, plus
cross-entropy, and optionally an MSE between hidden features. The models are
`nn.Module` twins of the Keras pairs (same layers, sizes and BatchNorm
settings; `TWINS` says which pairs have them) in PyTorch's native
channels-first layout. Batches are sliced
from in-memory tensors in a random order each epoch, which is what a
`DataLoader(shuffle=True)` over a `TensorDataset` yields, minus its
per-row collation (so the baseline is, if anything, flattered).

Nothing here imports Keras.
"""

import torch
from torch import nn
from torch.nn import functional


class ConvNet(nn.Module):
    """The twin of `keras_kd.models.small_cnn_teacher` and `small_cnn_student`.

    Blocks of (3x3 conv with bias, BatchNorm, ReLU) x `convs_per_block`, 2x2
    max pooling, global average pooling, an optional ReLU Dense layer, then
    the logits. `forward` returns `(logits, feature)`, the feature being the
    layer that the Keras pair matches (the pooled features, or the Dense
    layer where there is one).
    """

    def __init__(self, in_channels, num_classes, filters, convs_per_block, dense_units):
        super().__init__()
        blocks = []
        channels = in_channels
        for block_filters in filters:
            for _ in range(convs_per_block):
                blocks += [
                    nn.Conv2d(channels, block_filters, 3, padding=1),
                    # Keras's defaults: epsilon 1e-3, moving average 0.99.
                    nn.BatchNorm2d(block_filters, eps=1e-3, momentum=0.01),
                    nn.ReLU(),
                ]
                channels = block_filters
            blocks.append(nn.MaxPool2d(2))
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Linear(channels, dense_units) if dense_units else None
        self.logits = nn.Linear(dense_units or channels, num_classes)

    def forward(self, images):
        feature = self.blocks(images).mean(dim=(2, 3))
        if self.dense is not None:
            feature = functional.relu(self.dense(feature))
        return self.logits(feature), feature


class Mlp(nn.Module):
    """The twin of `keras_kd.models.mlp_student`: ReLU Linear layers, then the logits.

    `forward` returns `(logits, feature)`, the feature being the last hidden layer.
    """

    def __init__(self, in_features, num_classes, hidden_units):
        super().__init__()
        layers = []
        for units in hidden_units:
            layers += [nn.Linear(in_features, units), nn.ReLU()]
            in_features = units
        self.hidden = nn.Sequential(*layers)
        self.logits = nn.Linear(in_features, num_classes)

    def forward(self, inputs):
        feature = self.hidden(inputs)
        return self.logits(feature), feature


def small_pair(smoke):
    """The PyTorch twins of `bench.pairs.PAIRS["small"]`: `(teacher, student)`."""
    if smoke:
        return (
            ConvNet(3, 10, (8, 8, 16, 16), 2, 0),
            ConvNet(3, 10, (4, 4, 8, 8), 1, 16),
        )
    return ConvNet(3, 10, (64, 128, 256, 512), 2, 0), ConvNet(3, 10, (16, 32, 64, 128), 1, 512)


def mlp_pair(smoke):
    """The PyTorch twins of `bench.pairs.PAIRS["overhead"]`: `(teacher, student)`."""
    if smoke:
        return Mlp(784, 10, (64, 64)), Mlp(784, 10, (8,))
    return Mlp(784, 10, (1024, 1024)), Mlp(784, 10, (32,))


# The pairs of `bench.pairs.PAIRS` that have PyTorch twins: name -> builder of `smoke`.
TWINS = {"small": small_pair, "overhead": mlp_pair}


def count_parameters(module):
    """Trainable parameters of `module` (Keras's trainable-weight count)."""
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def distillation_epoch(
    teacher,
    student,
    optimizer,
    images,
    labels,
    batch_size,
    *,
    temperature=4.0,
    alpha=0.9,
    feature_weight=0.0,
    generator=None,
    teacher_logits=None,
):
    """One epoch of tutorial-style KD; returns the mean loss.

    Args:
        teacher: The frozen teacher, an `nn.Module` returning `(logits, feature)`.
        student: The student, likewise.
        optimizer: A `torch.optim` optimizer over the student's parameters.
        images: A float tensor of `rows` inputs (images channels first).
        labels: An int64 tensor of `rows` class indices.
        batch_size: Rows per step.
        temperature: Softmax temperature of the soft targets.
        alpha: Weight of the soft-target term; `1 - alpha` weighs the labels.
        feature_weight: Weight of the feature MSE term; 0 skips it.
        generator: A `torch.Generator` for the row order.
        teacher_logits: The teacher's logits of every row, computed before
            (a cache), or None to run the teacher at each step. Not with
            `feature_weight`.

    Returns:
        The mean of the per-step losses, as a float.
    """
    if teacher_logits is not None and feature_weight:
        raise ValueError("Precomputed teacher logits hold no features; use feature_weight=0.")
    teacher.eval()
    student.train()
    order = torch.randperm(len(images), generator=generator)
    total, steps = 0.0, 0
    for start in range(0, len(images), batch_size):
        rows = order[start : start + batch_size]
        inputs, targets = images[rows], labels[rows]
        if teacher_logits is None:
            with torch.no_grad():
                batch_teacher_logits, teacher_feature = teacher(inputs)
        else:
            batch_teacher_logits = teacher_logits[rows]
        optimizer.zero_grad()
        student_logits, student_feature = student(inputs)
        soft_targets = functional.softmax(batch_teacher_logits / temperature, dim=-1)
        soft_log_probs = functional.log_softmax(student_logits / temperature, dim=-1)
        soft_loss = (
            torch.sum(soft_targets * (soft_targets.log() - soft_log_probs)) / soft_log_probs.size(0) * temperature**2
        )
        loss = alpha * soft_loss + (1.0 - alpha) * functional.cross_entropy(student_logits, targets)
        if feature_weight:
            loss = loss + feature_weight * functional.mse_loss(student_feature, teacher_feature)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        steps += 1
    return total / steps


def student_epoch(student, optimizer, images, labels, batch_size, generator=None):
    """One epoch of the student alone on cross-entropy (the baseline of a cached loop); returns the mean loss."""
    student.train()
    order = torch.randperm(len(images), generator=generator)
    total, steps = 0.0, 0
    for start in range(0, len(images), batch_size):
        rows = order[start : start + batch_size]
        optimizer.zero_grad()
        loss = functional.cross_entropy(student(images[rows])[0], labels[rows])
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        steps += 1
    return total / steps
