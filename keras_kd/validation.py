"""Input checks shared by the package: each error names the bad value and what is valid."""

import math
import numbers

import keras
import numpy as np


def check_real_number(name, value, schedulable=True):
    """Returns `value` as a float, refusing bools, non-numbers and NaN/inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        valid = (
            "a real number, a keras.optimizers.schedules.LearningRateSchedule or a callable of the training step"
            if schedulable
            else "a real number"
        )
        raise TypeError(f"`{name}` must be {valid}; got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value!r}.")
    return value


def check_positive_int(name, value):
    """Returns `value` as an int, refusing bools, non-integers and values < 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def check_temperature(value, name="temperature", schedulable=True):
    value = check_real_number(name, value, schedulable)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0 (typical values are 1 to 20); got {value!r}.")
    return value


def check_loss_temperature(value):
    """The `temperature` argument of a loss function.

    A tensor or variable (the Distiller passes its temperature) is used as
    it is: reading its value would need it on the host, even inside a
    compiled step. Anything else must be a finite number > 0.
    """
    if isinstance(value, (keras.Variable, np.ndarray)) or keras.ops.is_tensor(value):
        return value
    return check_temperature(value, schedulable=False)


def check_same_logits_shape(function_name, teacher_logits, student_logits):
    """Teacher and student logits must have the same static shape."""
    teacher_shape = tuple(teacher_logits.shape)
    student_shape = tuple(student_logits.shape)
    if len(teacher_shape) != len(student_shape) or any(
        t is not None and s is not None and t != s for t, s in zip(teacher_shape, student_shape)
    ):
        raise ValueError(
            f"{function_name} needs teacher and student logits of the same shape "
            f"(batch, ..., classes); got teacher {teacher_shape} and student "
            f"{student_shape}."
        )


def check_alpha(value, name="alpha"):
    value = check_real_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1]: the weight of the distillation term "
            f"(1 = label-free distillation, 0 = labels only); got {value!r}."
        )
    return value


def check_augmentation(augmentation):
    if augmentation is None or isinstance(augmentation, keras.layers.Layer):
        return augmentation
    raise TypeError(
        "`augmentation` must be None or a keras.layers.Layer, e.g. "
        "keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1)]); got "
        f"{augmentation!r} of type {type(augmentation).__name__}."
    )


def check_model(role, model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"`{role}` must be a keras.Model (Functional, Sequential or "
            f"subclassed); got {model!r} of type {type(model).__name__}."
        )


def check_sparse_labels(labels, logits):
    """Sparse labels must be `(batch,)` or `(batch, 1)` integer-like ids."""
    labels_shape = tuple(labels.shape)
    logits_shape = tuple(logits.shape)
    sparse_rank = len(logits_shape) - 1
    if len(labels_shape) == sparse_rank or (len(labels_shape) == sparse_rank + 1 and labels_shape[-1] == 1):
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if dtype == "bool" or dtype == "string":
            raise TypeError(f"Labels must be integer class ids or one-hot floats; got dtype {dtype}.")
        return
    raise ValueError(_label_shape_message(labels_shape, logits_shape))


def _label_shape_message(labels_shape, logits_shape):
    return (
        f"Labels of shape {labels_shape} do not fit student outputs of shape "
        f"{logits_shape}. Valid: class ids of shape {logits_shape[:-1]} or "
        f"{logits_shape[:-1] + (1,)}, or one-hot rows of shape {logits_shape}."
    )


def rows_fit_input_shape(rows_shape, input_shape):
    """True when rows of shape `rows_shape` fit a model input of `input_shape`.

    `input_shape` includes the batch axis; its `None` entries match any size,
    as do the `None` entries of `rows_shape` (a dataset's unknown sizes).
    """
    expected = tuple(input_shape[1:])
    return len(expected) == len(rows_shape) and all(
        want is None or got is None or want == got for want, got in zip(expected, rows_shape)
    )


def check_input_shape(data_shape, input_shape, name=None):
    """Inputs of `data_shape` (batch first) given to `fit`, against a model input's shape.

    `name` names the input of a model that takes a dict.
    """
    data_shape, expected = tuple(data_shape), tuple(input_shape[1:])
    if rows_fit_input_shape(data_shape[1:], input_shape):
        return
    which = "inputs" if name is None else f"inputs {name!r}"
    hint = ""
    if data_shape == expected:
        hint = " The data look like single rows: batch them (e.g. dataset.batch(32))."
    raise ValueError(
        f"The {which} have shape {data_shape}, but the teacher and the student "
        f"take inputs of shape {tuple(input_shape)}: rows of shape {expected}.{hint}"
    )


def check_label_array(labels, logits_shape):
    """Labels given to `fit` as a NumPy array, or one batch of them.

    `logits_shape` is the student's output shape `(None, ..., classes)`.
    Valid: integer class ids below `classes` (negative marks an unlabelled
    row, see `keras_kd.transfer.UNLABELED`), of shape `(batch, ...)` or
    `(batch, ..., 1)`, or one-hot rows of shape `(batch, ..., classes)`.
    """
    if check_label_form(labels.shape, labels.dtype.kind, str(labels.dtype), logits_shape):
        return  # One-hot (or soft) rows.
    num_classes = logits_shape[-1]
    if num_classes is None or labels.size == 0:
        return
    if labels.dtype.kind in "iu" and labels.max() < num_classes:
        return  # The common case, in one pass (this runs for every batch).
    bad = (labels >= num_classes) | (labels != np.floor(labels))
    if np.any(bad):
        raise label_value_error(labels.reshape(-1)[np.argmax(bad.reshape(-1))].item(), num_classes)


def check_label_form(labels_shape, dtype_kind, dtype_name, logits_shape):
    """The shape and dtype of labels (of an array or a `tf.TensorSpec`).

    `dtype_kind` is the NumPy kind letter ("i", "f", ...); entries of the
    shapes may be None (unknown). Returns True for one-hot (or soft) rows,
    False for class ids, whose values are then still to check.
    """
    if dtype_kind not in "biuf":
        raise TypeError(f"Labels must be integer class ids or one-hot floats; got dtype {dtype_name}.")
    labels_shape = tuple(labels_shape)
    logits_shape = labels_shape[:1] + tuple(logits_shape[1:])
    num_classes = logits_shape[-1]
    rank = len(labels_shape)
    if num_classes != 1 and rank == len(logits_shape) and labels_shape[-1] == num_classes:
        return True
    sparse_rank = len(logits_shape) - 1
    if not (rank == sparse_rank or (rank == sparse_rank + 1 and labels_shape[-1] == 1)):
        raise ValueError(_label_shape_message(labels_shape, logits_shape))
    if dtype_kind == "b":
        raise TypeError(f"Labels must be integer class ids or one-hot floats; got dtype {dtype_name}.")
    return False


def label_value_error(value, num_classes):
    """The ValueError for a label that is not a class id of `num_classes`."""
    return ValueError(
        f"Label {value!r} is not a class id of the student's {num_classes} "
        f"classes. Valid: the integers 0 to {num_classes - 1}, or -1 "
        "(keras_kd.transfer.UNLABELED) for an unlabelled example."
    )


def valid_temperatures(values):
    """Elementwise `check_temperature` over a NumPy array: finite and > 0."""
    return np.isfinite(values) & (values > 0)


def valid_alphas(values):
    """Elementwise `check_alpha` over a NumPy array: in [0, 1] (NaN is not)."""
    return (values >= 0) & (values <= 1)
