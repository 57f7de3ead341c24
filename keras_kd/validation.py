"""Input checks shared by the package: each error names the bad value and what is valid."""

import math
import numbers

import keras


def check_real_number(name, value, schedulable=True):
    """Returns `value` as a float, refusing bools, non-numbers and NaN/inf."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        valid = (
            "a real number, a keras.optimizers.schedules.LearningRateSchedule "
            "or a callable of the training step"
            if schedulable
            else "a real number"
        )
        raise TypeError(
            f"`{name}` must be {valid}; got {value!r} of type {type(value).__name__}."
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite; got {value!r}.")
    return value


def check_temperature(value, name="temperature"):
    value = check_real_number(name, value)
    if value <= 0:
        raise ValueError(
            f"`{name}` must be > 0 (typical values are 1 to 20); got {value!r}."
        )
    return value


def check_alpha(value, name="alpha"):
    value = check_real_number(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"`{name}` must be in [0, 1]: the weight of the distillation term "
            f"(1 = label-free distillation, 0 = labels only); got {value!r}."
        )
    return value


def check_mixup(value, name="mixup"):
    value = check_real_number(name, value, schedulable=False)
    if value < 0:
        raise ValueError(
            f"`{name}` must be >= 0: the Beta concentration of mixup (0 turns "
            f"it off; 0.2 to 1.0 are usual); got {value!r}."
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
    if len(labels_shape) == sparse_rank or (
        len(labels_shape) == sparse_rank + 1 and labels_shape[-1] == 1
    ):
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if dtype == "bool" or dtype == "string":
            raise TypeError(
                f"Labels must be integer class ids or one-hot floats; got "
                f"dtype {dtype}."
            )
        return
    raise ValueError(
        f"Labels of shape {labels_shape} do not fit student outputs of shape "
        f"{logits_shape}. Valid: class ids of shape {logits_shape[:-1]} or "
        f"{logits_shape[:-1] + (1,)}, or one-hot rows of shape {logits_shape}."
    )
