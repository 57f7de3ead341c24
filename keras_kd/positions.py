"""Which positions of the logits count: per-token and per-pixel distillation.

Logits have shape `(batch, ..., classes)`: one position per example for a
classifier `(batch, classes)`, one per token for a tagger or a language model
`(batch, time, classes)`, one per pixel for a segmenter
`(batch, height, width, classes)`. Every loss term is computed per position
and averaged over the valid positions. A position is left out when

- its sample weight is 0, for a `sample_weight` of shape `(batch, ...)`, one
  weight per position (what KerasHub preprocessors yield: the padding mask);
- Keras masks it: the student's output carries a Keras mask (e.g. after
  `Embedding(mask_zero=True)`), or the inputs are a dict with a
  `"padding_mask"` of the positions' shape (KerasHub's inputs).

A `sample_weight` of shape `(batch,)` weighs whole examples, as in Keras
(`"sum_over_batch_size"`: the weighted sum is divided by the number of
positions, so an example of weight 0 still counts in the denominator). A
label of -1 (`keras_kd.transfer.UNLABELED`) leaves its position out of the
hard-label term and the label metrics only: the distillation term still
applies there, as for the unlabelled examples of a transfer set.

The denominator differs from Keras for per-position weights: Keras divides a
`"sum_over_batch_size"` loss by every position, padding included, so a batch
with much padding weighs less; here it is divided by the valid positions, as
token-level trainers do (Hugging Face's `ignore_index`, TRL, torchtune).

This module is also where every loss term is reduced to a scalar:
`mean_over_positions` (built from `sum_over_positions` and
`divided_by_count`) for the per-position terms (the feature matches among
them whose features have the logits' positions), and `weighted_mean` for the
per-example ones (the other feature matches, with `per_example_weights`).
"""

import collections
import math

from keras import ops

from keras_kd import _casting, transfer
from keras_kd.backend import _keras_compat

# `weights`: float32 `(batch, ...)` to multiply per-position values by, or
# None (all 1). `valid`: float32 `(batch, ...)`, 1 where a position counts,
# or None (all count). `count`: the number of positions that count (a Python
# float when known from the static shape).
Positions = collections.namedtuple("Positions", ["weights", "valid", "count"])


def positions_of(logits, sample_weight=None, mask=None):
    """The weights and valid positions of `logits` of shape `(batch, ..., classes)`.

    Args:
        logits: The student's logits.
        sample_weight: None, per example `(batch,)`, or per position
            `(batch, ...)` (a trailing axis of 1 is allowed).
        mask: None or a boolean (or 0/1) tensor of the positions' shape;
            False marks a position that does not count.

    Returns:
        A `Positions`.

    Raises:
        ValueError: if `sample_weight` or `mask` does not fit the positions.
    """
    positions_shape = tuple(logits.shape[:-1])
    weights = valid = None
    if sample_weight is not None:
        weights = _per_position_weights(sample_weight, logits)
        if len(positions_shape) > 1 and len(sample_weight.shape) > 1:
            valid = ops.cast(ops.not_equal(weights, 0.0), "float32")
    if mask is not None:
        mask = ops.cast(_fitted("mask", mask, positions_shape), "float32")
        valid = mask if valid is None else valid * mask
        weights = mask if weights is None else weights * mask
    if valid is None:
        count = _static_count(positions_shape)
        if count is None:
            count = ops.cast(ops.prod(ops.shape(logits)[:-1]), "float32")
    else:
        count = ops.sum(valid)
    return Positions(weights, valid, count)


def mean_over_positions(values, positions, counted=None):
    """`sum(values * weights) / count`: the mean over the valid positions.

    `counted` (1 where a position counts for this term, e.g. where it is
    labelled; `values` must already be 0 elsewhere) replaces the count by
    the number of valid positions it marks. A term without any position
    that counts gives 0.
    """
    return divided_by_count(sum_over_positions(values, positions), positions, counted)


def sum_over_positions(values, positions):
    """`sum(values * weights)`: the weighted sum over the positions, float32."""
    values = _casting.float32(values)
    if positions.weights is not None:
        values = values * positions.weights
    return ops.sum(values)


def divided_by_count(total, positions, counted=None):
    """`total` over the number of valid positions (those `counted` marks, if given), 0 for none."""
    count = positions.count
    if counted is not None:
        count = ops.sum(counted if positions.valid is None else counted * positions.valid)
    if isinstance(count, float):
        return total / max(count, 1.0)
    return total / ops.maximum(count, 1.0)


def labeled_positions(labels, logits):
    """1.0 where a position has a label, 0.0 where it is `keras_kd.transfer.UNLABELED`.

    Sparse labels of shape `(batch, ...)` or `(batch, ..., 1)`, or one-hot
    rows of shape `(batch, ..., classes)` (unlabelled where any entry is
    negative). Labels of another shape (a custom hard-label loss) are read
    per example.
    """
    if not ops.is_tensor(labels):
        labels = ops.convert_to_tensor(labels)
    rank, logits_rank = len(labels.shape), len(logits.shape)
    if rank == logits_rank:
        labels = ops.min(labels, axis=-1)
    elif rank != logits_rank - 1:
        return transfer.label_mask(labels)
    # The comparison operator of the backend's tensors: one op fewer to dispatch.
    return ops.cast(labels >= 0, "float32")


def per_example_weights(positions, sample_weight, term="A feature match", why="compares whole examples"):
    """Weights of whole examples, for terms that are not per position.

    Args:
        positions: The logits' `Positions`.
        sample_weight: The batch's sample weight, or None.
        term: What the term is, for the error (e.g. the feature match).
        why: Why it is per example, for the error.

    Raises:
        ValueError: when some positions do not count (a per-position weight
            or a mask): a per-example term cannot leave them out.
    """
    if positions.valid is not None:
        raise ValueError(
            f"{term} {why}, so it cannot leave out masked or zero-weighted positions of "
            "per-position logits. Compare per position instead (the 'mse' and 'cosine' feature "
            "losses on a feature (batch, *positions, dim) whose leading axes are the logits' "
            "positions), or train without a mask or per-position sample_weight (a sample_weight "
            "of shape (batch,) works), or distil the logits alone."
        )
    return sample_weight


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


def input_padding_mask(inputs, logits):
    """The `"padding_mask"` of dict inputs (KerasHub's), when it fits the logits' positions."""
    if not isinstance(inputs, dict) or "padding_mask" not in inputs or len(logits.shape) < 3:
        return None
    return inputs["padding_mask"]


def output_mask(logits):
    """The Keras mask the student's output carries, if any."""
    return _keras_compat.keras_mask(logits)


def _static_count(positions_shape):
    """The number of positions as a Python float when the shape is static, else None.

    Known at trace time on JAX and torch (and on TensorFlow for a fixed
    batch size), it spares the step the ops that would count them.
    """
    if not all(isinstance(size, int) for size in positions_shape):
        return None
    return float(math.prod(positions_shape))


def _per_position_weights(sample_weight, logits):
    positions_shape = tuple(logits.shape[:-1])
    sample_weight = ops.cast(sample_weight, "float32")
    shape = tuple(sample_weight.shape)
    if len(shape) == len(positions_shape) + 1 and shape[-1] == 1:
        sample_weight = ops.squeeze(sample_weight, axis=-1)
        shape = shape[:-1]
    if len(shape) == 1:
        _check_batch("sample_weight", shape, positions_shape)
        if len(positions_shape) == 1:
            return sample_weight
        per_example = ops.reshape(sample_weight, (-1,) + (1,) * (len(positions_shape) - 1))
        return per_example * ops.ones_like(logits[..., 0], dtype="float32")
    return _fitted("sample_weight", sample_weight, positions_shape)


def _fitted(name, tensor, positions_shape):
    shape = tuple(tensor.shape)
    if len(shape) == len(positions_shape) + 1 and shape[-1] == 1:
        tensor = ops.squeeze(tensor, axis=-1)
        shape = shape[:-1]
    if len(shape) != len(positions_shape) or any(
        want is not None and got is not None and want != got for want, got in zip(positions_shape, shape)
    ):
        raise ValueError(_shape_message(name, shape, positions_shape))
    return tensor


def _check_batch(name, shape, positions_shape):
    if positions_shape[0] is not None and shape[0] is not None and shape[0] != positions_shape[0]:
        raise ValueError(_shape_message(name, shape, positions_shape))


def _shape_message(name, shape, positions_shape):
    valid = f"{positions_shape[:1]} (one per example)"
    if len(positions_shape) > 1:
        valid += f" or {positions_shape} (one per position)"
    return (
        f"A {name} of shape {shape} does not fit the student's logits, which have "
        f"positions of shape {positions_shape} (the logits' shape without the class axis). "
        f"Valid shapes: {valid}."
    )
