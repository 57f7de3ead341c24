"""Transfer sets: distilling on labelled and unlabelled examples together.

A teacher can label any input. Transfer sets (Hinton et al., 2015) fit on
labelled and unlabelled examples together: an unlabelled example carries the
label `UNLABELED` (-1); the hard-label loss then skips it, per example, so
batches may mix both kinds, while the distillation term applies to every
example. `with_transfer_set` builds such a training set from arrays.

Function matching, the other way to distil beyond the labelled set, is
`keras_kd.FunctionMatchingDistiller`; its mixup is in `keras_kd.mixup`
(`mix_batch` and `sample_gamma` are importable from here too).
"""

import numpy as np
from keras import ops

from keras_kd.mixup import mix_batch, sample_gamma

__all__ = ["UNLABELED", "fill_missing_labels", "label_mask", "mix_batch", "sample_gamma", "with_transfer_set"]

# The label of an example without one, in sparse labels (a one-hot row of
# -1 for one-hot labels).
UNLABELED = -1


def with_transfer_set(x_labeled, y_labeled, x_unlabeled):
    """Appends unlabelled examples, labelled `UNLABELED`, to a labelled set.

    Args:
        x_labeled: Array of labelled inputs, shape `(N, ...)`.
        y_labeled: Their labels: class ids of shape `(N,)` (or `(N, 1)`), or
            one-hot rows of shape `(N, classes)`.
        x_unlabeled: Array of unlabelled inputs, shape `(M, ...)`, the same
            shape per example as `x_labeled`.

    Returns:
        `(x, y)` with `N + M` rows, labelled rows first; the unlabelled rows
        carry -1 (a row of -1 for one-hot labels). Pass them to `fit` with
        `shuffle=True` so that batches mix both kinds.

    Raises:
        ValueError: for inputs of different shapes, a labelled set whose
            labels do not match its inputs in number, or labels that are
            already negative.

    Example:

    ```python
    import numpy as np
    import keras_kd

    rng = np.random.default_rng(0)
    x_few, y_few = rng.random((8, 8), dtype="float32"), rng.integers(0, 3, 8)
    x_many = rng.random((24, 8), dtype="float32")
    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))

    x, y = keras_kd.transfer.with_transfer_set(x_few, y_few, x_many)   # y is -1 on x_many
    keras_kd.Distiller(teacher, student, alpha=0.5).compile("adam").fit(x, y, verbose=0)
    ```
    """
    x_labeled, y_labeled, x_unlabeled = (np.asarray(a) for a in (x_labeled, y_labeled, x_unlabeled))
    if x_labeled.shape[1:] != x_unlabeled.shape[1:]:
        raise ValueError(
            f"Labelled inputs have shape {x_labeled.shape[1:]} per example but "
            f"unlabelled ones {x_unlabeled.shape[1:]}; both go through the same "
            "models, so they must match."
        )
    if len(y_labeled) != len(x_labeled):
        raise ValueError(f"{len(x_labeled)} labelled inputs but {len(y_labeled)} labels; give one label per input.")
    if y_labeled.size and y_labeled.min() < 0:
        raise ValueError(
            f"Labels must be >= 0; got {y_labeled.min().item()!r}. Negative labels "
            f"({UNLABELED}) are how unlabelled examples are marked."
        )
    missing = np.full((len(x_unlabeled),) + y_labeled.shape[1:], UNLABELED, dtype=y_labeled.dtype)
    return np.concatenate([x_labeled, x_unlabeled]), np.concatenate([y_labeled, missing])


def label_mask(labels):
    """1.0 for labelled examples, 0.0 for those marked `UNLABELED`, per example.

    Sparse labels are unlabelled where negative; one-hot rows where any entry
    is negative.
    """
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) > 1:
        labels = ops.min(ops.reshape(labels, (ops.shape(labels)[0], -1)), axis=-1)
    return ops.cast(ops.greater_equal(labels, 0), "float32")


def fill_missing_labels(labels):
    """Replaces `UNLABELED` by a valid label (0), for losses to run on every row.

    The loss of those rows is then masked out with `label_mask`; a one-hot row
    of -1 becomes a row of zeros, whose cross-entropy is 0 anyway.
    """
    # max(labels, 0) in one op (ops.maximum converts the 0 at every call).
    return ops.relu(labels)
