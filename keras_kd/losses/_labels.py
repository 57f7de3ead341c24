"""The hard-label term: cross-entropy with the labels, and the losses `compile` accepts."""

import keras
from keras import ops

from keras_kd import _casting, validation
from keras_kd.backend import _keras_compat


def label_cross_entropy(labels, logits):
    """Cross-entropy between hard labels and logits, per position.

    Accepts sparse class ids of shape `(batch, ...)` or `(batch, ..., 1)`
    and one-hot (or soft) labels of shape `(batch, ..., classes)`; the form
    is read from the static shapes.

    Args:
        labels: Integer class ids or one-hot rows.
        logits: Tensor of shape `(batch, ..., classes)`.

    Returns:
        Tensor of shape `(batch, ...)`, float32.

    Raises:
        ValueError: if the labels' shape fits neither form.
    """
    logits = _casting.float32(logits)
    if is_one_hot(labels, logits):
        return keras.losses.categorical_crossentropy(ops.cast(labels, "float32"), logits, from_logits=True)
    validation.check_sparse_labels(labels, logits)
    if len(labels.shape) == len(logits.shape):
        labels = ops.squeeze(labels, axis=-1)
    return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def is_one_hot(labels, logits):
    """Whether `labels` are one-hot rows for `logits` (from static shapes)."""
    num_classes = logits.shape[-1]
    return len(labels.shape) == len(logits.shape) and num_classes != 1 and labels.shape[-1] == num_classes


_HARD_LOSS_STRINGS = {
    "sparse_categorical_crossentropy": lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    "categorical_crossentropy": lambda: keras.losses.CategoricalCrossentropy(from_logits=True),
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
        if (
            getattr(loss, "from_logits", True) is False
            or _keras_compat.loss_function_arguments(loss).get("from_logits") is False
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
