"""Distillation losses.

Each loss is a pure `keras.ops` function that returns one value per example,
so the caller decides how to reduce (and how to honour sample weights), plus a
thin serializable class on top. All math runs in float32, even when the models
run in a mixed-precision policy, and probabilities are handled in log space.
"""

import re

import keras
from keras import ops

from keras_kd import validation


def soft_target_kl(teacher_logits, student_logits, temperature):
    """Temperature-scaled KL divergence between teacher and student.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network"
    (2015), section 2: both sets of logits are softened by `temperature`, and
    the result is multiplied by `temperature ** 2` so that the gradient
    magnitudes stay comparable to the hard-label term as `temperature` changes.

    `KL(softmax(teacher / T) || softmax(student / T)) * T ** 2`, computed from
    `log_softmax` so that logits of any magnitude (1e4 included) stay finite.

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`; raw logits,
            not probabilities.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).

    Returns:
        Tensor of shape `(batch, ...)`: the per-example loss, float32.

    Example:

    >>> import numpy as np
    >>> teacher = np.array([[2.0, 0.0, -1.0]], "float32")
    >>> float(soft_target_kl(teacher, teacher, 4.0)[0])
    0.0
    """
    temperature = ops.cast(temperature, "float32")
    teacher_log_probs = ops.log_softmax(
        ops.cast(teacher_logits, "float32") / temperature, axis=-1
    )
    student_log_probs = ops.log_softmax(
        ops.cast(student_logits, "float32") / temperature, axis=-1
    )
    kl = ops.sum(
        ops.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
        axis=-1,
    )
    # Rounding can leave a KL of -1e-8 for identical distributions; the true
    # value is never negative.
    return ops.maximum(kl, 0.0) * ops.square(temperature)


def label_cross_entropy(labels, logits):
    """Cross-entropy between hard labels and logits, per example.

    Accepts sparse class ids of shape `(batch,)` or `(batch, 1)` and one-hot
    (or soft) labels of shape `(batch, classes)`; the form is read from the
    static shapes.

    Args:
        labels: Integer class ids or one-hot rows.
        logits: Tensor of shape `(batch, classes)`.

    Returns:
        Tensor of shape `(batch,)`, float32.

    Raises:
        ValueError: if the labels' shape fits neither form.
    """
    logits = ops.cast(logits, "float32")
    if is_one_hot(labels, logits):
        return keras.losses.categorical_crossentropy(
            ops.cast(labels, "float32"), logits, from_logits=True
        )
    validation.check_sparse_labels(labels, logits)
    labels = ops.reshape(labels, (-1,))
    return keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True
    )


def is_one_hot(labels, logits):
    """Whether `labels` are one-hot rows for `logits` (from static shapes)."""
    num_classes = logits.shape[-1]
    return (
        len(labels.shape) == len(logits.shape)
        and num_classes != 1
        and labels.shape[-1] == num_classes
    )


def weighted_mean(values, sample_weight=None):
    """Reduces per-example values to a scalar, as Keras losses do.

    With `sample_weight`, returns `sum(values * sample_weight) / batch_size`
    (Keras's "sum_over_batch_size"), so that a Distiller with `alpha=0`
    trains exactly like `student.fit` with the same weights.
    """
    values = ops.cast(values, "float32")
    if sample_weight is not None:
        sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        values = ops.reshape(values, (ops.shape(sample_weight)[0], -1))
        values = values * ops.expand_dims(sample_weight, -1)
    return ops.mean(values)


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLoss:
    """Base class of the losses between teacher and student outputs.

    Subclasses implement `call(teacher_outputs, student_outputs, temperature)`
    and return one value per example. They hold only plain-Python
    hyperparameters, so `get_config`/`from_config` round-trip them.
    """

    def __init__(self, name=None):
        self.name = name or _snake_case(type(self).__name__)

    def __call__(self, teacher_outputs, student_outputs, temperature):
        return self.call(teacher_outputs, student_outputs, temperature)

    def call(self, teacher_outputs, student_outputs, temperature):
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "call(teacher_outputs, student_outputs, temperature)."
        )

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_kd")
class SoftTargetKL(DistillationLoss):
    """Hinton et al. (2015) soft-target loss; see `soft_target_kl`.

    The Distiller's default distillation loss. The temperature comes from the
    Distiller (a constant or a schedule), so this class has no
    hyperparameters of its own.
    """

    def call(self, teacher_outputs, student_outputs, temperature):
        return soft_target_kl(teacher_outputs, student_outputs, temperature)


_HARD_LOSS_STRINGS = {
    "sparse_categorical_crossentropy": lambda: (
        keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ),
    "categorical_crossentropy": lambda: (
        keras.losses.CategoricalCrossentropy(from_logits=True)
    ),
}


def resolve_hard_loss(loss):
    """Turns the `loss` given to `Distiller.compile` into a per-example function.

    `None` gives `label_cross_entropy` (sparse or one-hot, from logits). The
    two cross-entropy strings are read *from logits*, because students output
    logits here. A `keras.losses.Loss` instance is used through its
    unreduced `call`, so sample weights are applied once, by the Distiller.

    Raises:
        ValueError: for an unknown string, or a loss configured to expect
            probabilities (`from_logits=False`).
        TypeError: for anything that is not a string, Loss or callable.
    """
    if loss is None:
        return label_cross_entropy
    if isinstance(loss, str):
        if loss not in _HARD_LOSS_STRINGS:
            raise ValueError(
                f"Unknown hard-label loss {loss!r}. Valid strings: "
                f"{sorted(_HARD_LOSS_STRINGS)} (both read logits), None for "
                "automatic sparse/one-hot cross-entropy, or a "
                "keras.losses.Loss instance."
            )
        loss = _HARD_LOSS_STRINGS[loss]()
    if isinstance(loss, keras.losses.Loss):
        if getattr(loss, "from_logits", True) is False or (
            getattr(loss, "_fn_kwargs", {}).get("from_logits") is False
        ):
            raise ValueError(
                f"The hard-label loss {loss.name!r} has from_logits=False, but "
                "the student outputs logits in a Distiller. Pass "
                "from_logits=True."
            )
        return loss.call
    if callable(loss):
        return loss
    raise TypeError(
        "`loss` must be None, a string, a keras.losses.Loss or a callable "
        f"(y_true, y_pred) -> per-example loss; got {loss!r} of type "
        f"{type(loss).__name__}."
    )


def get(identifier):
    """Returns a DistillationLoss from an instance, a config dict or None."""
    if identifier is None:
        return SoftTargetKL()
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    raise TypeError(
        "distillation_loss must be a keras_kd.losses.DistillationLoss "
        f"(e.g. keras_kd.losses.SoftTargetKL()) or None; got {identifier!r}."
    )


def _snake_case(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


__all__ = [
    "DistillationLoss",
    "SoftTargetKL",
    "get",
    "is_one_hot",
    "label_cross_entropy",
    "resolve_hard_loss",
    "soft_target_kl",
    "weighted_mean",
]
