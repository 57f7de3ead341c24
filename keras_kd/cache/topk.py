"""Top-k teacher caches: per position, the k largest logits, their class ids and one tail logit.

A dense cache stores `num_classes` float32 logits per position: 128 KB per
token for a 32,000-token vocabulary. A top-k cache (`TeacherCache.build(...,
top_k=k)`) stores, per position, the `k` largest teacher logits, their class
ids (int16 up to 32,768 classes, uint16 up to 65,536, else int32) and one
float32 *tail logit*: at temperature 1, the log-mean-exp of the
`num_classes - k` other logits,

    tail_logit = logsumexp(z_j for j not in top-k) - log(num_classes - k).

Each batch is turned back into dense logits on the device, in the step
(`dense_logits`): the `k` stored logits at their class ids, and `tail_logit`
for every other class. So every distillation loss (`SoftTargetKL`,
`DecoupledKD`, `ReverseKL`, `GeneralizedJSD`, `TotalVariation`, with or
without `standardize`) runs unchanged on them.

What is exact: at temperature 1 the rebuilt distribution gives back the
teacher's top-k probabilities exactly (to float32 rounding) and the remaining
mass `1 - sum(top-k probabilities)` exactly, spread uniformly over the
other classes; the normalizer (logsumexp over all classes) is the teacher's.
What is approximate: the shape of the tail, which is unknown. At a
temperature T != 1 the tail's softened mass depends on that shape: the
uniform tail gives `(num_classes - k) * exp(tail_logit / T)` where the
teacher has `sum_j exp(z_j / T)`; by the power-mean inequality it
over-estimates the tail's mass for T > 1 and under-estimates it for T < 1,
by far when the teacher's tail sits on a few classes (what that does to a
student is measured in docs/results/cache-studies.md, "Top-k teacher cache").
So the tail logit is set for one temperature, `tail_temperature` (default 1):
`tail_logit = T * (logsumexp(z_j / T) - log(num_classes - k))`, which makes
the softened rest mass exact at that T. Build the cache for the Distiller's
temperature; a Distiller at another one gets a warning. The top-k classes'
probabilities relative to each other stay exact at any T. A loss that is not
invariant to the logits' shape in the tail (logit standardization, which
z-scores all logits) sees a uniform tail too.

Why store a tail logit rather than the teacher's normalizer: the two hold the
same information (`normalizer = logaddexp(logsumexp(top-k), tail_logit +
log(num_classes - k))`), but rebuilding the tail from the normalizer means
computing `1 - sum(top-k probabilities)`, which cancels catastrophically in
float32 when the top-k hold nearly all the mass (a confident teacher: a rest
mass below about 6e-8 rounds to 0, and its log to -inf). The tail logit is
computed at build time with the top-k entries masked out of the logsumexp, so
a rest mass of 1e-30 is kept as exactly as one of 0.5.

The alternative DistillKit uses by default (arcee-ai/DistillKit,
`MissingProbabilityHandling.ZERO`) renormalizes the teacher over its top-k
only: the teacher's probability is 0 outside the top-k, and the KL divergence
runs over the k stored classes. That pushes all of the student's mass into
the teacher's top-k and discards the rest mass; with the uniform tail the
student also learns how much mass the teacher leaves outside them (its
confidence), at the cost of being pulled towards a flat tail.
`bench/topk_cache.py` compares both with a dense cache.

How a cache stores these arrays and gives them to the step is its output
kind, `keras_kd.cache.kinds.TopKLogits`.
"""

import math
import numbers
import warnings

from keras import ops

# The arrays of a top-k cache, as named in its files and in its batches.
TOP_K_LOGITS = "top_k_logits"
TOP_K_CLASS_IDS = "top_k_class_ids"
TAIL_LOGIT = "tail_logit"
ARRAY_NAMES = (TOP_K_LOGITS, TOP_K_CLASS_IDS, TAIL_LOGIT)


def check_top_k(top_k):
    """Returns `top_k` as an int (or None for a dense cache), refusing non-integers and values < 1."""
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
        raise ValueError(
            f"`top_k` must be an integer in 1..C-1, where C is the number of classes the "
            f"teacher outputs (or None for a dense cache); got {top_k!r}."
        )
    return int(top_k)


def check_top_k_classes(top_k, num_classes):
    """Raises unless `top_k` keeps fewer classes than the teacher's `num_classes`."""
    if num_classes is None:
        raise ValueError(
            "A top-k cache needs the teacher's number of classes, the last axis of its "
            "logits, to be known when it is built; it is not (None)."
        )
    if not 1 <= top_k <= num_classes - 1:
        raise ValueError(
            f"`top_k` must be in 1..{num_classes - 1} for a teacher with {num_classes} "
            f"classes; got top_k={top_k}. To keep every class, build a dense cache (top_k=None)."
        )


def warn_unless_tail_temperature(distiller, top_k, tail_temperature):
    """Warns when `distiller` would distil from a top-k cache at another temperature than its tail's.

    The rebuilt logits hold the teacher's rest mass exactly at the cache's
    `tail_temperature` only; at a higher temperature the uniform tail holds
    far more of the softened mass than the teacher's own tail does.
    """
    temperature = float(ops.convert_to_numpy(distiller.temperature))
    if math.isclose(temperature, tail_temperature, rel_tol=1e-6):
        return
    warnings.warn(
        f"This Distiller trains at temperature {temperature:g} from a top-{top_k} teacher cache "
        f"whose tail is exact at temperature {tail_temperature:g} only: the other classes share "
        "the rest of the mass evenly, which at a higher temperature gives them far more of the "
        "softened mass than the teacher's own tail (at a lower one, less); a student can then do "
        "worse than one trained on labels alone (see docs/guides/cache.md, 'Top-k caches for large "
        "vocabularies', and docs/results/cache-studies.md). Build the cache with tail_temperature "
        "equal to the Distiller's temperature, or use a dense cache.",
        UserWarning,
        stacklevel=2,
    )


def class_id_dtype(num_classes):
    """The smallest integer dtype that holds the class ids 0..num_classes-1."""
    if num_classes <= 2**15:
        return "int16"
    if num_classes <= 2**16:
        return "uint16"
    return "int32"


def compress(logits, top_k, tail_temperature=1.0):
    """`(top_k_logits, top_k_class_ids, tail_logit)` of `(..., classes)` logits.

    The tail logit `t` is set so that at `tail_temperature` T the other
    classes hold exactly the teacher's softened rest mass:
    `(num_classes - top_k) * exp(t / T) = sum_j exp(z_j / T)` over the
    classes j outside the top-k, i.e. `t = T * (logsumexp(z_j / T) -
    log(num_classes - top_k))`.

    Args:
        logits: Tensor of shape `(..., num_classes)`.
        top_k: Number of classes to keep per position, `1 <= top_k < num_classes`.
        tail_temperature: The temperature at which the rest mass is exact.

    Returns:
        The `top_k` largest logits per position, in descending order, in the
        logits' dtype, shape `(..., top_k)`; their class ids, int32, same
        shape; and the tail logit, float32, shape `(...)`.
    """
    num_classes = logits.shape[-1]
    check_top_k_classes(top_k, num_classes)
    values, class_ids = ops.top_k(logits, top_k, sorted=True)
    # The top-k masked out exactly (by id, not by value: ties stay apart),
    # so that the tail's logsumexp keeps a rest mass of any size.
    without_top_k = _put(ops.cast(logits, "float32"), class_ids, float("-inf"))
    tail_logit = tail_temperature * (
        ops.logsumexp(without_top_k / tail_temperature, axis=-1) - math.log(num_classes - top_k)
    )
    return values, ops.cast(class_ids, "int32"), tail_logit


def dense_logits(top_k_logits, top_k_class_ids, tail_logit, num_classes):
    """Dense float32 logits `(..., num_classes)` rebuilt from a top-k cache's arrays.

    The `top_k` stored logits at their class ids, `tail_logit` everywhere else:
    softmax of the result gives back the teacher's top-k probabilities and
    spreads the rest of the mass uniformly over the other classes.

    Args:
        top_k_logits: Tensor `(..., top_k)`.
        top_k_class_ids: Integer tensor `(..., top_k)`, distinct ids per position.
        tail_logit: Tensor `(...)`.
        num_classes: The teacher's number of classes (a Python int).

    Returns:
        Float32 tensor of shape `(..., num_classes)`.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_kd.cache import topk

    logits = np.array([[3.0, 1.0, 0.5, -1.0, 2.0]], "float32")
    values, class_ids, tail_logit = topk.compress(logits, 2)  # classes 0 and 4
    dense = ops.convert_to_numpy(topk.dense_logits(values, class_ids, tail_logit, 5))
    teacher, rebuilt = (np.exp(z) / np.exp(z).sum() for z in (logits[0], dense[0]))
    assert np.allclose(rebuilt[[0, 4]], teacher[[0, 4]])  # the top-k probabilities
    assert np.allclose(rebuilt[1:4], teacher[1:4].sum() / 3)  # the rest of the mass, spread evenly
    ```
    """
    tail_logit = ops.cast(tail_logit, "float32")
    dense = ops.repeat(ops.expand_dims(tail_logit, -1), num_classes, axis=-1)
    return _put(dense, ops.cast(top_k_class_ids, "int32"), ops.cast(top_k_logits, "float32"))


def _put(dense, class_ids, values):
    """`dense` (..., C) with `values` (..., k, or a scalar) written at `class_ids` (..., k) along the last axis."""
    num_classes, top_k = dense.shape[-1], class_ids.shape[-1]
    inner_shape = tuple(dense.shape[1:])
    rows = ops.reshape(dense, (-1, num_classes))
    ids = ops.reshape(class_ids, (-1, top_k))
    # The row of each id, without the row count (dynamic under tf.function).
    row_ids = ops.cumsum(ops.ones_like(ids), axis=0) - 1
    indices = ops.stack([ops.reshape(row_ids, (-1,)), ops.reshape(ids, (-1,))], axis=1)
    if isinstance(values, float):
        updates = ops.full_like(ops.reshape(ids, (-1,)), values, dtype=dense.dtype)
    else:
        updates = ops.reshape(values, (-1,))
    rows = ops.scatter_update(rows, indices, updates)
    if None in inner_shape:
        return ops.reshape(rows, ops.shape(dense))
    return ops.reshape(rows, (-1,) + inner_shape)
