"""Distillation losses.

Each loss is a pure `keras.ops` function that returns one value per example,
so the caller decides how to reduce (and how to honour sample weights), plus a
thin serializable class on top. All math runs in float32, even when the models
run in a mixed-precision policy, and probabilities are handled in log space.

Two families:

* Logit losses (`DistillationLoss`): `loss(teacher_logits, student_logits,
  temperature, step=None)`. `SoftTargetKL` (Hinton et al., 2015),
  `DecoupledKD` (Zhao et al., 2022), and the divergences used to distil
  language models: `ReverseKL`, `GeneralizedJSD` (Agarwal et al., 2024) and
  `TotalVariation`. Each takes `standardize=True` for the logit
  standardization of Sun et al. (2024).
* Feature losses (`FeatureLoss`): `loss(teacher_feature, student_feature)`.
  `HintMSE` (FitNets), `AttentionTransfer`, `CosineFeatureLoss`, and the
  batch-level relational losses `RelationalKD` and `ProbabilisticKT`.

Where a paper and its reference code disagree, the docstrings say which one
is followed, so that hyperparameters published with the code carry over.
"""

import functools
import math
import numbers
import re

import keras
from keras import ops

from keras_kd import _casting, validation

# A positive floor far below any meaningful float32 value: keeps square roots
# and divisions away from 0 (and their gradients finite) without changing
# any result that is not degenerate.
_TINY = 1e-30

# Excluded classes get a logit this far below the row's smallest one, so that
# exp() of their shifted value underflows to exactly 0 at any logit scale.
_EXCLUDED_LOGIT_GAP = 1e3

# Logits with more elements than this (16 MiB of float32; language-model
# vocabularies) go through the divergences in chunks of positions of at most
# `_CHUNK_ELEMENTS` elements (4 MiB) each; see `_per_position`.
_CHUNKING_THRESHOLD = 2**22
_CHUNK_ELEMENTS = 2**20


# --------------------------------------------------------------------------
# Shared math
# --------------------------------------------------------------------------


_as_float32 = _casting.floats32


def _kl_from_log_probs(teacher_log_probs, student_log_probs, excluded=None):
    """`sum_i p_i (log p_i - log q_i)` over the last axis, from log-probabilities.

    Entries where `excluded` is True contribute nothing. Rounding can leave a
    KL of -1e-8 for identical distributions; the true value is never negative.
    """
    return _expected_log_ratio(teacher_log_probs, teacher_log_probs - student_log_probs, excluded=excluded)


def _expected_log_ratio(log_probs, log_ratio, excluded=None):
    """`sum_i p_i * log_ratio_i` over the last axis, clipped at 0 (a KL divergence)."""
    terms = ops.exp(log_probs) * log_ratio
    if excluded is not None:
        terms = ops.where(excluded, 0.0, terms)
    # relu: max(x, 0) in one op (ops.maximum converts the 0 at every call).
    return ops.relu(ops.sum(terms, axis=-1))


def _exclude_classes(logits, excluded):
    """Pushes the `excluded` logits far below the others (finite, unlike -inf).

    A softmax or logsumexp of the result ignores the excluded classes exactly,
    at any logit scale, and no inf or NaN enters the values or gradients.
    """
    lowest = ops.min(logits, axis=-1, keepdims=True)
    return ops.where(excluded, lowest - _EXCLUDED_LOGIT_GAP, logits)


def _per_position(function_name, row_loss, teacher_logits, student_logits, temperature):
    """`row_loss` at every position of `(..., classes)` logits, in bounded memory.

    `row_loss(teacher_logits, student_logits, temperature)` takes float32
    logits of shape `(..., classes)` and returns shape `(...)`. Logits of up
    to `_CHUNKING_THRESHOLD` elements go through it at once. Larger ones
    (e.g. `(4, 256, 128_000)` from a language model) go through it in chunks
    of positions, with `keras.ops.map` over a `keras.remat` function:
    autodiff then keeps none of a chunk's intermediates for the backward pass
    but recomputes them there, one chunk at a time, and jax writes each
    chunk's gradient in place. The float32 cast is per chunk too, so
    bfloat16 logits are never upcast all at once. `bench/loss_memory.py`
    measures the peak. Chunking needs the static shape; with an unknown
    dimension the logits go through at once.
    """
    validation.check_same_logits_shape(function_name, teacher_logits, student_logits)
    temperature = _casting.float32(validation.check_loss_temperature(temperature))
    shape = tuple(teacher_logits.shape)
    positions = math.prod(shape[:-1]) if None not in shape else None
    if positions is None or positions * shape[-1] <= _CHUNKING_THRESHOLD:
        return row_loss(*_as_float32(teacher_logits, student_logits), temperature)
    classes = shape[-1]
    # Equal chunks (a remainder handled apart costs jax two copies of the logits).
    rows = _largest_divisor_at_most(positions, max(_CHUNK_ELEMENTS // classes, 1))
    chunked_shape = (positions // rows, rows, classes)

    @keras.remat
    def chunk_loss(chunk):
        return row_loss(*_as_float32(*chunk), temperature)

    values = ops.map(
        chunk_loss,
        (ops.reshape(teacher_logits, chunked_shape), ops.reshape(student_logits, chunked_shape)),
    )
    return ops.reshape(values, shape[:-1])


def _largest_divisor_at_most(number, limit):
    divisors = set()
    for candidate in range(1, math.isqrt(number) + 1):
        if number % candidate == 0:
            divisors.update((candidate, number // candidate))
    return max(divisor for divisor in divisors if divisor <= limit)


def _log_ratios_to_mixture(teacher_log_probs, student_log_probs, beta):
    """`(log p - log m, log q - log m)` for the mixture `m = beta p + (1 - beta) q`.

    From `delta = log q - log p`: `log(m / p) = log1p((1 - beta) expm1(delta))`
    and `log(m / q) = log1p(beta expm1(-delta))`, each evaluated where its
    expm1 argument is <= 0 (no overflow, and log1p's argument stays above -1
    for 0 < beta < 1), the other one following by adding `delta`. This is the
    logsumexp of `log p + log beta` and `log q + log(1 - beta)` taken
    relative to one of them, so that equal distributions give `delta = 0` and
    both ratios exactly 0: a plain logsumexp leaves a rounding error of about
    `1e-7 * |log p|` there, which the `T ** 2` factor magnifies.
    """
    delta = student_log_probs - teacher_log_probs
    mixture_over_teacher = ops.log1p((1.0 - beta) * ops.expm1(ops.minimum(delta, 0.0)))
    mixture_over_student = ops.log1p(beta * ops.expm1(-ops.maximum(delta, 0.0)))
    student_is_larger = delta > 0.0
    log_mixture_over_teacher = ops.where(student_is_larger, mixture_over_student + delta, mixture_over_teacher)
    log_mixture_over_student = ops.where(student_is_larger, mixture_over_student, mixture_over_teacher - delta)
    return -log_mixture_over_teacher, -log_mixture_over_student


def _flatten_per_example(tensor):
    """`(batch, ...)` -> `(batch, features)`."""
    return ops.reshape(tensor, (ops.shape(tensor)[0], -1))


def _divide_by_max_abs(tensor, axis=None):
    """Scales `tensor` so that its largest magnitude (along `axis`) is 1.

    Only for quantities that are invariant to a positive rescaling (normalized
    vectors, normalized distances): it keeps their squares from overflowing
    float32 for large inputs. The scale is a constant for autodiff, which is
    exact because the final quantity does not depend on it.
    """
    scale = ops.max(ops.abs(tensor), axis=axis, keepdims=True)
    return tensor / ops.stop_gradient(ops.maximum(scale, _TINY))


def _l2_normalize(tensor, axis=-1):
    """`x / ||x||` along `axis`, overflow-safe; a zero vector gives 0.

    As `torch.nn.functional.normalize` (used by the reference code) for
    every nonzero vector. At an all-zero vector the direction is undefined:
    the result is 0 with a zero gradient (torch's gradient there is
    1 / 1e-12, which blows up an optimizer step).
    """
    is_zero = ops.all(ops.equal(tensor, 0.0), axis=axis, keepdims=True)
    tensor = _divide_by_max_abs(tensor, axis=axis)
    # After the rescaling the squared norm is >= 1 for a nonzero vector, so
    # the floor of 0.5 only acts (keeping values finite) at zero vectors.
    squared_norm = ops.maximum(ops.sum(ops.square(tensor), axis=axis, keepdims=True), 0.5)
    return ops.where(is_zero, 0.0, tensor / ops.sqrt(squared_norm))


def _safe_sqrt(value):
    """`sqrt(max(value, 0))` with a zero (not infinite) gradient at 0."""
    positive = value > _TINY
    return ops.where(positive, ops.sqrt(ops.where(positive, value, 1.0)), 0.0)


def _smooth_l1(difference):
    """Huber loss with threshold 1 (`torch.nn.functional.smooth_l1_loss`)."""
    magnitude = ops.abs(difference)
    return ops.where(magnitude < 1.0, 0.5 * ops.square(difference), magnitude - 0.5)


def _off_diagonal_mask(batch_size):
    """Float `(batch, batch)` matrix: 1 off the diagonal, 0 on it."""
    index = ops.arange(batch_size)
    return ops.cast(ops.not_equal(ops.expand_dims(index, 1), ops.expand_dims(index, 0)), "float32")


def _check_same_feature_shape(loss_name, teacher_feature, student_feature, axes=None):
    """Raises if the static shapes differ (on `axes`, default: all but batch)."""
    teacher_shape = tuple(teacher_feature.shape)
    student_shape = tuple(student_feature.shape)
    if axes is None:
        compared = (teacher_shape[1:], student_shape[1:])
        what = "shape"
    else:
        compared = (teacher_shape[axes], student_shape[axes])
        what = "spatial shape"
    if len(compared[0]) != len(compared[1]) or any(
        t is not None and s is not None and t != s for t, s in zip(*compared)
    ):
        raise ValueError(
            f"{loss_name} needs teacher and student features of the same {what}; "
            f"got teacher {teacher_shape} and student {student_shape}. Give the "
            "FeatureMatch an adapter (adapter='auto' projects the student's "
            "feature to the teacher's shape) or match other layers."
        )


def _check_non_negative(name, value):
    value = validation.check_real_number(name, value, schedulable=False)
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0; got {value!r}.")
    return value


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}.")
    return value


# --------------------------------------------------------------------------
# Logit losses: functions
# --------------------------------------------------------------------------


def standardize_logits(logits, epsilon=1e-7):
    """Z-score of each example's logits: `(z - mean(z)) / (std(z) + epsilon)`.

    Sun, Ren, Li, Wang & Cao, "Logit Standardization in Knowledge
    Distillation", CVPR 2024. Applied to teacher and student logits before a
    logit loss, it lets the student match the teacher's logit *relations*
    rather than their range and scale. The result is invariant to adding a
    constant to a row and (up to `epsilon`) to scaling it by a positive factor.

    Paper vs code: the paper's standard deviation is the population one
    (divide by K); the authors' code uses `torch.std`, which divides by K - 1,
    i.e. its standardized logits are larger by `sqrt(K / (K - 1))`, like a
    slightly lower temperature. We follow the paper, with the code's
    `epsilon = 1e-7`. Unlike `torch.std`, the gradient stays finite for a
    row of equal logits (e.g. a freshly zero-initialised head).

    Args:
        logits: Tensor of shape `(batch, ..., classes)`.
        epsilon: Added to the standard deviation.

    Returns:
        Float32 tensor of the same shape.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import standardize_logits

    z = standardize_logits(np.array([[1.0, 2.0, 3.0]], "float32"))
    assert [round(float(v), 4) for v in z[0]] == [-1.2247, 0.0, 1.2247]
    ```
    """
    logits = ops.cast(logits, "float32")
    centered = logits - ops.mean(logits, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    return centered / (ops.sqrt(ops.maximum(variance, _TINY)) + epsilon)


def soft_target_kl(teacher_logits, student_logits, temperature):
    """Temperature-scaled KL divergence between teacher and student.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network"
    (NIPS 2014 Deep Learning Workshop; arXiv 2015), section 2: both sets of
    logits are softened by `temperature`, and the result is multiplied by
    `temperature ** 2` so that the gradient magnitudes stay comparable to the
    hard-label term as `temperature` changes.

    `KL(softmax(teacher / T) || softmax(student / T)) * T ** 2`, computed from
    `log_softmax` so that logits of any magnitude (1e4 included) stay finite.

    Paper vs code: the paper writes the soft term as a cross-entropy with the
    teacher's soft targets; most code (and this function) uses the KL
    divergence, which differs by the teacher's entropy, a constant for the
    student: same gradients, but the KL is 0 when the student matches.

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`; raw logits,
            not probabilities.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).

    Returns:
        Tensor of shape `(batch, ...)`: the per-example loss, float32.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import soft_target_kl

    teacher = np.array([[2.0, 0.0, -1.0]], "float32")
    assert float(soft_target_kl(teacher, teacher, 4.0)[0]) == 0.0
    ```
    """
    return _per_position("soft_target_kl", _soft_target_kl_rows, teacher_logits, student_logits, temperature)


def _soft_target_kl_rows(teacher_logits, student_logits, temperature):
    kl = _kl_from_log_probs(
        ops.log_softmax(teacher_logits / temperature, axis=-1),
        ops.log_softmax(student_logits / temperature, axis=-1),
    )
    return kl * (temperature * temperature)


def _target_and_non_target_log_probs(scaled_logits, is_target):
    """The two distributions DKD compares, as log-probabilities.

    Returns `(binary, non_target)`: `binary[..., 0]` is log p(target) and
    `binary[..., 1]` log(1 - p(target)); `non_target` is the log-softmax over
    the non-target classes only (its target entry is meaningless; exclude it).
    Everything comes from logsumexps, so p(target) = 1 in float32 still gives
    a finite log(1 - p(target)).
    """
    # Relative to the row's maximum, the log-probabilities of the likely
    # classes are differences of small numbers, exact enough in float32 even
    # for logits / T of 2e5 (softmax does not depend on the shift).
    scaled_logits = scaled_logits - ops.stop_gradient(ops.max(scaled_logits, axis=-1, keepdims=True))
    log_normalizer = ops.logsumexp(scaled_logits, axis=-1, keepdims=True)
    non_target_logits = _exclude_classes(scaled_logits, is_target)
    non_target_log_normalizer = ops.logsumexp(non_target_logits, axis=-1, keepdims=True)
    target_logit = ops.sum(ops.where(is_target, scaled_logits, 0.0), axis=-1, keepdims=True)
    binary = ops.concatenate([target_logit - log_normalizer, non_target_log_normalizer - log_normalizer], axis=-1)
    return binary, ops.log_softmax(non_target_logits, axis=-1)


def decoupled_kd(teacher_logits, student_logits, temperature, alpha=1.0, beta=8.0, target_classes=None):
    """Decoupled knowledge distillation, per example.

    Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR
    2022. The KD loss splits exactly as `KD = TCKD + (1 - p_t) * NCKD`, where
    `p_t` is the teacher's probability of the target class, TCKD the KL
    between the binary (target, rest) distributions and NCKD the KL between
    the distributions over the non-target classes. DKD weighs the two freely:
    `(alpha * TCKD + beta * NCKD) * T ** 2`.

    Target class: the paper uses the ground-truth label. By default this
    function uses the *teacher's argmax* instead, a deliberate difference: it
    needs no labels (so it works for label-free distillation), and it equals
    the paper whenever the teacher classifies the example correctly. Pass
    `target_classes` for the paper's version.

    Paper vs code: the `T ** 2` factor and the defaults (`alpha=1`, `beta=8`,
    T=4 on CIFAR-100; ImageNet uses other values, e.g. `beta=0.5`) come from
    the authors' reference code (mdistiller), which this function follows.
    mdistiller takes the log of summed probabilities for TCKD (-inf when a
    probability underflows) and hides the target class from NCKD by
    subtracting 1000 from its logit (ineffective once |logits / T| reaches
    ~1000); here both are computed from logsumexps with a mask relative to
    each row, so logits of +-1e4 at T = 0.05 stay finite. The warm-up of the
    original lives in `DecoupledKD`.

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`, classes >= 2.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).
        alpha: Weight of TCKD.
        beta: Weight of NCKD.
        target_classes: Optional integer class ids of shape `(batch, ...)` (or
            with a trailing axis of 1); `None` uses the teacher's argmax.

    Returns:
        Float32 tensor of shape `(batch, ...)`.

    Raises:
        ValueError: for fewer than 2 classes.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import decoupled_kd

    teacher = np.array([[3.0, 1.0, 0.0]], "float32")
    student = np.array([[1.0, 1.0, 1.0]], "float32")
    loss = decoupled_kd(teacher, student, 4.0, alpha=1.0, beta=8.0)
    assert tuple(loss.shape) == (1,)
    ```
    """
    teacher_logits, student_logits = _as_float32(teacher_logits, student_logits)
    validation.check_same_logits_shape("decoupled_kd", teacher_logits, student_logits)
    num_classes = teacher_logits.shape[-1]
    if num_classes is not None and num_classes < 2:
        raise ValueError(
            f"decoupled_kd needs at least 2 classes (a target and a non-target "
            f"class); got logits of shape {tuple(teacher_logits.shape)}."
        )
    temperature = ops.cast(validation.check_loss_temperature(temperature), "float32")
    if target_classes is None:
        target_classes = ops.argmax(teacher_logits, axis=-1)
    else:
        target_classes = ops.convert_to_tensor(target_classes)
        if len(target_classes.shape) == len(teacher_logits.shape):
            target_classes = ops.squeeze(target_classes, axis=-1)
    is_target = ops.cast(ops.one_hot(ops.cast(target_classes, "int32"), num_classes), "bool")
    teacher_binary, teacher_non_target = _target_and_non_target_log_probs(teacher_logits / temperature, is_target)
    student_binary, student_non_target = _target_and_non_target_log_probs(student_logits / temperature, is_target)
    target_kl = _kl_from_log_probs(teacher_binary, student_binary)
    non_target_kl = _kl_from_log_probs(teacher_non_target, student_non_target, excluded=is_target)
    return (alpha * target_kl + beta * non_target_kl) * ops.square(temperature)


def reverse_kl(teacher_logits, student_logits, temperature):
    """Temperature-scaled reverse KL divergence: `KL(student || teacher) * T ** 2`.

    The reverse (mode-seeking) KL of on-policy language-model distillation:
    Gu, Dong, Wei & Huang, "MiniLLM: Knowledge Distillation of Large Language
    Models", ICLR 2024, and Agarwal et al., "On-Policy Distillation of
    Language Models: Learning from Self-Generated Mistakes" (GKD), ICLR 2024.
    Where the forward KL (`soft_target_kl`) makes the student cover every
    class the teacher gives mass to, the reverse KL lets a small student put
    its mass on the teacher's main modes. Both distributions are softened by
    `temperature`, and the result is multiplied by `temperature ** 2` as in
    `soft_target_kl`; it equals `soft_target_kl(student_logits,
    teacher_logits, temperature)`.

    Logits of any rank are taken per position; large ones are processed in
    chunks of positions, so that forward and backward passes need no more
    than the gradient as an extra copy of the logits (see
    `bench/loss_memory.py`).

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`; raw logits.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).

    Returns:
        Float32 tensor of shape `(batch, ...)`: one value per position.

    Raises:
        ValueError: if the shapes differ, or for a temperature that is not > 0.

    Example:

    ```python
    import numpy as np
    from keras_kd import losses

    teacher = np.array([[[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]]], "float32")  # (batch, time, classes)
    student = np.zeros_like(teacher)
    values = losses.reverse_kl(teacher, student, 2.0)
    assert tuple(values.shape) == (1, 2)
    np.testing.assert_allclose(values, losses.soft_target_kl(student, teacher, 2.0))
    ```
    """
    return _per_position("reverse_kl", _reverse_kl_rows, teacher_logits, student_logits, temperature)


def _reverse_kl_rows(teacher_logits, student_logits, temperature):
    return _soft_target_kl_rows(student_logits, teacher_logits, temperature)


def _check_beta(beta):
    beta = validation.check_real_number("beta", beta, schedulable=False)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(
            "`beta` of the generalized Jensen-Shannon divergence must be in "
            "[0, 1] (0: forward KL, 1: reverse KL, 0.5: the symmetric JSD); "
            f"got {beta!r}."
        )
    return beta


def generalized_jsd(teacher_logits, student_logits, temperature, beta=0.5):
    """Generalized Jensen-Shannon divergence of GKD, times `T ** 2`.

    Agarwal, Vieillard, Zhou, Stanczyk, Ramos, Geist & Bachem, "On-Policy
    Distillation of Language Models: Learning from Self-Generated Mistakes"
    (GKD), ICLR 2024, eq. (1), with `p` the teacher's and `q` the student's
    distribution (both softened by `temperature`):

        m = beta * p + (1 - beta) * q
        JSD(beta) = beta * KL(p || m) + (1 - beta) * KL(q || m)

    multiplied by `temperature ** 2` as in `soft_target_kl`. `beta=0.5` is
    the symmetric Jensen-Shannon divergence, bounded by `log 2 * T ** 2`.
    The mixture is formed in log space (a logsumexp of the two weighted
    log-probabilities, written so that equal distributions give exactly 0).

    Paper vs code: `beta` runs the same way as in TRL's
    `GKDTrainer.generalized_jsd_loss` (and its `DistillationTrainer`), which
    this function follows, endpoints included: TRL computes `beta=0` as the
    forward KL, `KL(teacher || student)` (`soft_target_kl`), and `beta=1` as
    the reverse KL, `KL(student || teacher)` (`reverse_kl`). The formula
    itself tends to 0 at both ends (as `beta -> 0` it is about `beta` times
    the forward KL; as `beta -> 1`, about `1 - beta` times the reverse KL),
    so the value jumps at exactly 0 and 1: a small `beta` behaves like a
    down-scaled forward KL, a `beta` near 1 like a down-scaled reverse KL.
    TRL does not multiply by `T ** 2`; at its default `temperature=1` the
    two agree.

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`; raw logits.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).
        beta: Real number in [0, 1]: the teacher's weight in the mixture.

    Returns:
        Float32 tensor of shape `(batch, ...)`: one value per position.

    Raises:
        ValueError: for a `beta` outside [0, 1], shapes that differ, or a
            temperature that is not > 0.
        TypeError: for a `beta` that is not a real number.

    Example:

    ```python
    import numpy as np
    from keras_kd import losses

    teacher = np.array([[4.0, 0.0, -2.0]], "float32")
    student = np.array([[-2.0, 0.0, 4.0]], "float32")
    symmetric = losses.generalized_jsd(teacher, student, 1.0, beta=0.5)
    assert 0.0 < float(symmetric[0]) < np.log(2.0)
    np.testing.assert_allclose(  # beta=0 is TRL's forward KL
        losses.generalized_jsd(teacher, student, 1.0, beta=0.0),
        losses.soft_target_kl(teacher, student, 1.0),
    )
    ```
    """
    beta = _check_beta(beta)
    return _per_position(
        "generalized_jsd",
        functools.partial(_generalized_jsd_rows, beta=beta),
        teacher_logits,
        student_logits,
        temperature,
    )


def _generalized_jsd_rows(teacher_logits, student_logits, temperature, beta):
    if beta == 0.0:
        return _soft_target_kl_rows(teacher_logits, student_logits, temperature)
    if beta == 1.0:
        return _reverse_kl_rows(teacher_logits, student_logits, temperature)
    teacher_log_probs = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probs = ops.log_softmax(student_logits / temperature, axis=-1)
    teacher_over_mixture, student_over_mixture = _log_ratios_to_mixture(teacher_log_probs, student_log_probs, beta)
    divergence = beta * _expected_log_ratio(teacher_log_probs, teacher_over_mixture) + (
        1.0 - beta
    ) * _expected_log_ratio(student_log_probs, student_over_mixture)
    return divergence * ops.square(temperature)


def total_variation(teacher_logits, student_logits, temperature):
    """Total variation distance `0.5 * sum_i |p_i - q_i|`, not scaled by `T ** 2`.

    The total variation distance between the teacher's and the student's
    distributions softened by `temperature`, one of the f-divergences for
    distilling language models compared by Wen, Li, Du & Mou, "f-Divergence
    Minimization for Sequence-Level Knowledge Distillation", ACL 2023. It is
    symmetric and bounded: 0 for equal distributions, 1 for disjoint ones.

    No `T ** 2` factor, unlike the KL losses: Hinton et al. multiply by
    `T ** 2` because the KL's gradient shrinks like `1 / T ** 2` at high
    temperature, while the total variation and its gradient shrink only like
    `1 / T`, so the factor would make them grow with `T`. The value stays a
    distance in [0, 1] at every temperature; scale the loss's weight when
    changing `temperature` (by `T` to keep the high-temperature gradient
    constant).

    Args:
        teacher_logits: Tensor of shape `(batch, ..., classes)`; raw logits.
        student_logits: Tensor of the same shape.
        temperature: Positive scalar (Python float or tensor).

    Returns:
        Float32 tensor of shape `(batch, ...)`, values in [0, 1].

    Raises:
        ValueError: if the shapes differ, or for a temperature that is not > 0.

    Example:

    ```python
    import numpy as np
    from keras_kd import losses

    teacher = np.array([[20.0, 0.0], [0.0, 0.0]], "float32")
    student = np.array([[0.0, 20.0], [0.0, 0.0]], "float32")
    np.testing.assert_allclose(losses.total_variation(teacher, student, 1.0), [1.0, 0.0], atol=1e-6)
    ```
    """
    return _per_position("total_variation", _total_variation_rows, teacher_logits, student_logits, temperature)


def _total_variation_rows(teacher_logits, student_logits, temperature):
    # exp(log_softmax), not softmax: jax's jitted softmax rounds differently
    # for two copies of the same logits, leaving a distance of ~1e-9 between
    # identical distributions.
    teacher_probs = ops.exp(ops.log_softmax(teacher_logits / temperature, axis=-1))
    student_probs = ops.exp(ops.log_softmax(student_logits / temperature, axis=-1))
    return 0.5 * ops.sum(ops.abs(teacher_probs - student_probs), axis=-1)


# --------------------------------------------------------------------------
# Hard-label loss
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Feature losses: functions
# --------------------------------------------------------------------------


def hint_mse(teacher_feature, student_feature):
    """FitNets hint loss: mean squared error over all feature dimensions.

    Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin
    Deep Nets", ICLR 2015. The student's feature (after a regressor, here the
    FeatureMatch's adapter) is pulled towards the teacher's.

    Paper vs code: the paper writes `1/2 * ||teacher - student||^2` (a sum)
    and trains the hint in a separate first stage; common code (e.g.
    RepDistiller's `HintLoss`, `nn.MSELoss`) and this function take the mean
    over elements and add it to the KD loss in one stage. Scale the weight
    by `0.5 * feature_size` to recover the paper's sum.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of the same shape.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Raises:
        ValueError: if the static shapes differ.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import hint_mse

    assert float(hint_mse(np.zeros((1, 2, 2)), np.ones((1, 2, 2)))[0]) == 1.0
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    _check_same_feature_shape("hint_mse", teacher_feature, student_feature)
    difference = _flatten_per_example(student_feature) - _flatten_per_example(teacher_feature)
    return ops.mean(ops.square(difference), axis=-1)


def attention_map(feature, p=2.0):
    """Spatial attention map of a channels-last feature, flattened and L2-normalized.

    Zagoruyko & Komodakis, "Paying More Attention to Attention: Improving the
    Performance of Convolutional Neural Networks via Attention Transfer",
    ICLR 2017: `Q = vec(mean_c |f_c| ** p)`, then `Q / ||Q||_2`.

    Paper vs code: the paper sums over channels; the authors' code averages
    (the same after normalization). The feature is rescaled per example
    before the power (the map is scale-invariant), so large activations do
    not overflow float32.

    Args:
        feature: Tensor of shape `(batch, height, width, channels)` (or any
            `(batch, ..., channels)`, e.g. `(batch, tokens, channels)`).
        p: Exponent, >= 1.

    Returns:
        Float32 tensor of shape `(batch, height * width)`, rows of unit norm
        (or zero for an all-zero feature).

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import attention_map

    assert tuple(attention_map(np.ones((2, 4, 4, 3), "float32")).shape) == (2, 16)
    ```
    """
    feature = ops.cast(feature, "float32")
    if len(feature.shape) < 3:
        raise ValueError(
            "Attention transfer needs feature maps with spatial axes, e.g. "
            f"(batch, height, width, channels); got shape {tuple(feature.shape)}. "
            "For vectors use 'mse' or 'cosine'."
        )
    feature = _divide_by_max_abs(feature, axis=tuple(range(1, len(feature.shape))))
    energy = ops.mean(ops.power(ops.abs(feature), p), axis=-1)
    return _l2_normalize(_flatten_per_example(energy))


def attention_transfer(teacher_feature, student_feature, p=2.0):
    """Attention transfer: squared distance between normalized attention maps.

    Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017;
    see `attention_map`. Channel counts may differ; spatial sizes must match.

    Paper vs code: the paper's loss is the (unsquared) p-norm of the
    difference of the normalized maps, with weight beta/2 and beta = 1000;
    the authors' code, followed here, takes the *mean of the squared*
    difference (`(at(x) - at(y)).pow(2).mean()`). This function returns the
    mean over spatial positions per example, so the batch mean equals the
    code's value; use a FeatureMatch weight of 500 (= beta / 2) to match it.

    Args:
        teacher_feature: Tensor `(batch, height, width, channels_t)`.
        student_feature: Tensor `(batch, height, width, channels_s)`.
        p: Exponent of the attention map, >= 1 (the paper uses 2).

    Returns:
        Float32 tensor of shape `(batch,)`.

    Raises:
        ValueError: if the spatial shapes differ, or a feature has no spatial axes.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import attention_transfer

    feature = np.random.default_rng(0).normal(size=(2, 4, 4, 3))
    assert bool(attention_transfer(feature, 3 * feature)[0] < 1e-6)
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    _check_same_feature_shape("attention_transfer", teacher_feature, student_feature, axes=slice(1, -1))
    teacher_map = attention_map(teacher_feature, p)
    student_map = attention_map(student_feature, p)
    return ops.mean(ops.square(student_map - teacher_map), axis=-1)


def cosine_feature_loss(teacher_feature, student_feature):
    """One minus the cosine similarity of the flattened features, per example.

    Cosine (direction) matching has no single source paper; it is, e.g., the
    direction-alignment feature loss of Chen, Wang, Liu, Xu, de Hoog & Huang,
    "Improved Feature Distillation via Projector Ensemble", NeurIPS 2022,
    written there as half the squared distance between L2-normalized
    features, which equals `1 - cos`. It ignores the features' magnitude.
    An all-zero feature has cosine 0 with everything (loss 1), as with
    `torch.nn.functional.cosine_similarity`.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of the same shape.

    Returns:
        Float32 tensor of shape `(batch,)`, in [0, 2].

    Raises:
        ValueError: if the static shapes differ.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import cosine_feature_loss

    assert float(cosine_feature_loss(np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]]))[0]) == 1.0
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    _check_same_feature_shape("cosine_feature_loss", teacher_feature, student_feature)
    similarity = ops.sum(
        _l2_normalize(_flatten_per_example(teacher_feature)) * _l2_normalize(_flatten_per_example(student_feature)),
        axis=-1,
    )
    return 1.0 - similarity


def _normalized_pairwise_distances(embeddings):
    """Euclidean distances between the rows, divided by their mean off the diagonal.

    Uses the Gram matrix (as the RKD code does) on centered, rescaled rows:
    the normalized distances do not depend on either, and both keep float32
    from cancelling or overflowing.
    """
    embeddings = embeddings - ops.mean(embeddings, axis=0, keepdims=True)
    embeddings = _divide_by_max_abs(embeddings)
    squared_norms = ops.sum(ops.square(embeddings), axis=-1)
    squared = (
        ops.expand_dims(squared_norms, 1)
        + ops.expand_dims(squared_norms, 0)
        - 2.0 * ops.matmul(embeddings, ops.transpose(embeddings))
    )
    off_diagonal = _off_diagonal_mask(ops.shape(embeddings)[0])
    distances = _safe_sqrt(squared) * off_diagonal
    mean_distance = ops.sum(distances) / ops.maximum(ops.sum(off_diagonal), 1.0)
    # After the rescaling, a batch that is not all duplicates has a mean
    # distance far above the floor, which only keeps 0 / 0 away.
    return distances / ops.maximum(mean_distance, 1e-12)


def _pairwise_angles(embeddings):
    """`cos` of the angle at each anchor i between (j - i) and (k - i): `(n, n, n)`."""
    directions = _l2_normalize(ops.expand_dims(embeddings, 0) - ops.expand_dims(embeddings, 1))
    return ops.matmul(directions, ops.transpose(directions, (0, 2, 1)))


def rkd_distance(teacher_feature, student_feature):
    """RKD distance loss: match the batch's normalized pairwise distances.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
    RKD-D: `huber(d_s(i, j) / mu_s - d_t(i, j) / mu_t)` over pairs, where `mu`
    is the mean distance between distinct examples in the batch.

    A batch-level loss: example i's value is the mean over j of its row of
    the pairwise loss matrix, so the batch mean equals the authors' code
    (mean over all n x n entries, the zero diagonal included). Features are
    flattened; teacher and student sizes may differ.

    Paper vs code: the paper sums over pairs; the code averages over the
    n x n matrix, and computes `mu` over the distances > 0 (distinct
    examples, barring exact duplicates). The weights of `RelationalKD`
    (25 and 50) go with the code's averaging, which is followed here.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import rkd_distance

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(rkd_distance(points, 5 * points + 1)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    difference = _normalized_pairwise_distances(_flatten_per_example(student_feature)) - _normalized_pairwise_distances(
        _flatten_per_example(teacher_feature)
    )
    return ops.mean(_smooth_l1(difference), axis=-1)


def rkd_angle(teacher_feature, student_feature):
    """RKD angle loss: match the angles formed by every triplet of the batch.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019,
    RKD-A: `huber(cos angle_s(i, j, k) - cos angle_t(i, j, k))`, the angle at
    example i between the directions to j and to k.

    A batch-level loss: example i's value is the mean over (j, k) of the
    triplets with i as the vertex, so the batch mean equals the authors' code
    (mean over all n^3 triplets; degenerate ones, j or k equal to i, give a
    zero direction and cosine 0 for both models). Costs n^2 * feature_size
    floats of memory, as in the code: pool large feature maps first.

    Paper vs code: the paper sums over triplets of distinct examples; the
    code, followed here, averages over all n^3 (see `rkd_distance`).

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import rkd_angle

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(rkd_angle(points, 2 * points - 1)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    difference = _pairwise_angles(_flatten_per_example(student_feature)) - _pairwise_angles(
        _flatten_per_example(teacher_feature)
    )
    return ops.mean(_smooth_l1(difference), axis=(1, 2))


def _cosine_kernel_probabilities(embeddings):
    """Row-stochastic matrix of the cosine kernel `(1 + cos) / 2` (self included)."""
    directions = _l2_normalize(embeddings)
    kernel = (ops.matmul(directions, ops.transpose(directions)) + 1.0) / 2.0
    return kernel / ops.sum(kernel, axis=-1, keepdims=True)


def pkt(teacher_feature, student_feature, epsilon=1e-7):
    """Probabilistic knowledge transfer: match the batch's similarity distributions.

    Passalis & Tefas, "Learning Deep Representations with Probabilistic
    Knowledge Transfer", ECCV 2018. Each example's cosine-kernel similarities
    to the batch, normalized to a distribution, are matched by
    `KL(teacher || student)`.

    A batch-level loss: example i's value is the KL of row i divided by the
    batch size, so the batch mean equals the authors' code (a mean over all
    n x n entries). Features are flattened; sizes may differ.

    Paper vs code: the paper's conditional probabilities leave out the
    example itself (k != i) and its loss sums over the batch; the authors'
    code, followed here so that published weights carry over (e.g.
    RepDistiller's 30000 at batch size 64), keeps the self-similarity in
    the normalization, averages over n x n entries, and adds
    `epsilon = 1e-7` inside the log ratio.

    Args:
        teacher_feature: Tensor of shape `(batch, ...)`.
        student_feature: Tensor of shape `(batch, ...)`.
        epsilon: Added to both probabilities inside the log.

    Returns:
        Float32 tensor of shape `(batch,)`.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd.losses import pkt

    points = np.random.default_rng(0).normal(size=(4, 3))
    assert bool(keras.ops.max(pkt(points, 3 * points)) < 1e-6)
    ```
    """
    teacher_feature, student_feature = _as_float32(teacher_feature, student_feature)
    teacher_probs = _cosine_kernel_probabilities(_flatten_per_example(teacher_feature))
    student_probs = _cosine_kernel_probabilities(_flatten_per_example(student_feature))
    row_kl = ops.sum(
        teacher_probs * (ops.log(teacher_probs + epsilon) - ops.log(student_probs + epsilon)),
        axis=-1,
    )
    return row_kl / ops.cast(ops.shape(teacher_probs)[0], "float32")


# --------------------------------------------------------------------------
# Serializable classes
# --------------------------------------------------------------------------


class _ConfiguredLoss:
    """Name and config plumbing shared by the logit and feature loss classes.

    Subclasses hold only plain-Python hyperparameters, so `get_config` /
    `from_config` round-trip them; `default_name` (or else the class name in
    snake_case) names the loss in the logs.
    """

    default_name = None

    def __init__(self, name=None):
        self.name = name or self.default_name or _snake_case(type(self).__name__)

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLoss(_ConfiguredLoss):
    """Base class of the losses between teacher and student logits.

    The Distiller calls `loss(teacher_logits, student_logits, temperature,
    step=step)`, with `temperature` a float32 scalar tensor and `step` the
    training step as a float32 scalar tensor (`None` outside training).
    `__call__` casts the logits to float32, applies the optional logit
    standardization, and passes everything to `call`, which subclasses
    implement and which returns one value per example.

    A subclass whose `call` ignores `step` sets `uses_step = False`: the
    Distiller then passes `step=None` where no schedule needs the step
    either, and spares the step the op that reads it.

    Args:
        standardize: Standardize each example's teacher and student logits
            first (Sun et al., "Logit Standardization in Knowledge
            Distillation", CVPR 2024; see `standardize_logits`).
        name: Name of the loss; defaults to the class name in snake_case.
    """

    uses_step = True

    def __init__(self, *, standardize=False, name=None):
        super().__init__(name)
        self.standardize = _check_bool("standardize", standardize)

    def __call__(self, teacher_logits, student_logits, temperature, step=None):
        teacher_logits, student_logits = _as_float32(teacher_logits, student_logits)
        if self.standardize:
            teacher_logits = standardize_logits(teacher_logits)
            student_logits = standardize_logits(student_logits)
        temperature = validation.check_loss_temperature(temperature)
        return self.call(teacher_logits, student_logits, _casting.float32(temperature), step=step)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        raise NotImplementedError(
            f"{type(self).__name__} must implement call(teacher_logits, student_logits, temperature, step=None)."
        )

    def get_config(self):
        return {**super().get_config(), "standardize": self.standardize}


@keras.saving.register_keras_serializable(package="keras_kd")
class SoftTargetKL(DistillationLoss):
    """Hinton et al. (2015) soft-target loss; see `soft_target_kl`.

    Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network",
    arXiv 2015. The Distiller's default distillation loss. The temperature
    comes from the Distiller (a constant or a schedule); `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import SoftTargetKL

    logits = np.array([[2.0, 0.0, -1.0]], "float32")
    loss = SoftTargetKL(standardize=True)(logits, 2 * logits + 1, 4.0)
    assert bool(loss[0] < 1e-4)  # float32 rounding only: the standardized logits agree
    ```
    """

    uses_step = False

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return soft_target_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class DecoupledKD(DistillationLoss):
    """Decoupled KD (Zhao et al., CVPR 2022) with its linear warm-up; see `decoupled_kd`.

    Zhao, Cui, Song, Qiu & Liang, "Decoupled Knowledge Distillation", CVPR
    2022. The target class is the teacher's argmax (the paper uses the label;
    see `decoupled_kd`). The whole DKD loss is multiplied by
    `min(step / warmup_steps, 1)` during training, and by 1 when `step` is
    `None` (evaluation) or `warmup_steps` is 0.

    Paper vs code: the reference code (mdistiller) warms up over epochs (20
    on CIFAR-100) counted from 1, so its first epoch already has weight
    1/20; here the warm-up counts optimizer steps from 0, so the very first
    step has weight 0. mdistiller also uses its own temperature (4 on
    CIFAR-100); here the Distiller's temperature is used.

    Args:
        alpha: Weight of the target-class term TCKD, >= 0.
        beta: Weight of the non-target term NCKD, >= 0 (8 is mdistiller's
            CIFAR-100 value).
        warmup_steps: Steps of linear warm-up, integer >= 0 (0: none).
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import keras_kd

    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))
    distiller = keras_kd.Distiller(
        teacher, student, temperature=4.0,
        distillation_loss=keras_kd.losses.DecoupledKD(beta=8.0, warmup_steps=2000))
    ```
    """

    def __init__(self, alpha=1.0, beta=8.0, warmup_steps=0, standardize=False, name=None):
        super().__init__(standardize=standardize, name=name)
        self.alpha = _check_non_negative("alpha", alpha)
        self.beta = _check_non_negative("beta", beta)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, numbers.Integral) or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0 (0 turns the warm-up off); got {warmup_steps!r}.")
        self.warmup_steps = int(warmup_steps)

    @property
    def uses_step(self):
        """Only the warm-up reads the step."""
        return self.warmup_steps > 0

    def warmup_weight(self, step):
        """`min(step / warmup_steps, 1)`, or 1.0 without a step or a warm-up."""
        if step is None or self.warmup_steps == 0:
            return 1.0
        return ops.minimum(ops.cast(step, "float32") / float(self.warmup_steps), 1.0)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        loss = decoupled_kd(teacher_logits, student_logits, temperature, alpha=self.alpha, beta=self.beta)
        return loss * self.warmup_weight(step)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "warmup_steps": self.warmup_steps,
        }


@keras.saving.register_keras_serializable(package="keras_kd")
class ReverseKL(DistillationLoss):
    """Reverse KL, `KL(student || teacher) * T ** 2`; see `reverse_kl`.

    Gu et al., "MiniLLM: Knowledge Distillation of Large Language Models",
    ICLR 2024. The temperature comes from the Distiller; `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    import keras
    from keras_kd import losses

    loss = losses.ReverseKL(name="rkl")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    logits = np.array([[2.0, 0.0, -1.0]], "float32")
    assert restored.name == "rkl" and float(restored(logits, logits, 2.0)[0]) == 0.0
    ```
    """

    uses_step = False

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return reverse_kl(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class GeneralizedJSD(DistillationLoss):
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al., ICLR 2024); see `generalized_jsd`.

    Agarwal et al., "On-Policy Distillation of Language Models: Learning from
    Self-Generated Mistakes", ICLR 2024. `beta` is the teacher's weight in
    the mixture, as in TRL: 0 gives the forward KL (`SoftTargetKL`), 1 the
    reverse KL (`ReverseKL`), 0.5 (the default, as TRL's) the symmetric JSD.

    Args:
        beta: Real number in [0, 1].
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Raises:
        ValueError: for a `beta` outside [0, 1].

    Example:

    ```python
    import keras
    import numpy as np
    import keras_kd

    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(5)])
    distiller = keras_kd.Distiller(
        teacher, student, temperature=1.0, alpha=0.5,
        distillation_loss=keras_kd.losses.GeneralizedJSD(beta=0.9))
    distiller.compile(optimizer="adam")
    distiller.fit(np.ones((4, 8), "float32"), np.zeros(4, "int32"), epochs=1, verbose=0)
    ```
    """

    uses_step = False

    def __init__(self, beta=0.5, standardize=False, name=None):
        super().__init__(standardize=standardize, name=name)
        self.beta = _check_beta(beta)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return generalized_jsd(teacher_logits, student_logits, temperature, beta=self.beta)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta}


@keras.saving.register_keras_serializable(package="keras_kd")
class TotalVariation(DistillationLoss):
    """Total variation distance, in [0, 1] and not scaled by `T ** 2`; see `total_variation`.

    Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge
    Distillation", ACL 2023. The temperature comes from the Distiller;
    `step` is ignored.

    Args:
        standardize: Logit standardization first (Sun et al., CVPR 2024).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd import losses

    teacher = np.array([[20.0, 0.0]], "float32")
    assert abs(float(losses.TotalVariation()(teacher, -teacher, 1.0)[0]) - 1.0) < 1e-6
    ```
    """

    uses_step = False

    def call(self, teacher_logits, student_logits, temperature, step=None):
        return total_variation(teacher_logits, student_logits, temperature)


@keras.saving.register_keras_serializable(package="keras_kd")
class FeatureLoss(_ConfiguredLoss):
    """Base class of the losses between a teacher and a student feature.

    `loss(teacher_feature, student_feature)` casts both to float32 and
    returns `call(...)`: one value per example. When
    `requires_matching_shapes` is True, the Distiller projects the student's
    feature to the teacher's shape with an adapter whenever they differ;
    relational losses (False) compare the two batches' internal structure
    and take features of any sizes.
    """

    requires_matching_shapes = True

    def __call__(self, teacher_feature, student_feature):
        return self.call(*_as_float32(teacher_feature, student_feature))

    def call(self, teacher_feature, student_feature):
        raise NotImplementedError(f"{type(self).__name__} must implement call(teacher_feature, student_feature).")


@keras.saving.register_keras_serializable(package="keras_kd")
class HintMSE(FeatureLoss):
    """FitNets hint loss (Romero et al., ICLR 2015); see `hint_mse`.

    Romero, Ballas, Kahou, Chassang, Gatta & Bengio, "FitNets: Hints for Thin
    Deep Nets", ICLR 2015. String names: `"mse"`, `"hint"`.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import HintMSE

    assert float(HintMSE()(np.zeros((1, 3)), np.full((1, 3), 2.0))[0]) == 4.0
    ```
    """

    default_name = "mse"

    def call(self, teacher_feature, student_feature):
        return hint_mse(teacher_feature, student_feature)


@keras.saving.register_keras_serializable(package="keras_kd")
class AttentionTransfer(FeatureLoss):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017); see `attention_transfer`.

    Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
    String name: `"attention"`. Only the spatial sizes need to match; the
    channel counts may differ (the paper uses no adapter). The Distiller's
    adapter, declared through `requires_matching_shapes`, also maps the
    channels, which is harmless but adds a learned projection.

    Args:
        p: Exponent of the attention map, >= 1 (p < 1 has an infinite
            gradient at the zero activations ReLUs produce). The paper uses 2.
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import AttentionTransfer

    feature = np.ones((2, 4, 4, 3), "float32")
    assert tuple(AttentionTransfer(p=2)(feature, feature).shape) == (2,)
    ```
    """

    default_name = "attention"

    def __init__(self, p=2.0, name=None):
        super().__init__(name)
        self.p = validation.check_real_number("p", p, schedulable=False)
        if self.p < 1:
            raise ValueError(f"`p` of AttentionTransfer must be >= 1 (the paper uses 2); got {p!r}.")

    def call(self, teacher_feature, student_feature):
        return attention_transfer(teacher_feature, student_feature, p=self.p)

    def get_config(self):
        return {**super().get_config(), "p": self.p}


@keras.saving.register_keras_serializable(package="keras_kd")
class CosineFeatureLoss(FeatureLoss):
    """`1 - cos(teacher, student)` of flattened features; see `cosine_feature_loss`.

    Cosine matching as in, e.g., Chen et al., "Improved Feature Distillation
    via Projector Ensemble", NeurIPS 2022. String name: `"cosine"`.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import CosineFeatureLoss

    loss = CosineFeatureLoss()(np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]))
    assert bool(loss[0] < 1e-6)
    ```
    """

    default_name = "cosine"

    def call(self, teacher_feature, student_feature):
        return cosine_feature_loss(teacher_feature, student_feature)


@keras.saving.register_keras_serializable(package="keras_kd")
class RelationalKD(FeatureLoss):
    """Relational KD (Park et al., CVPR 2019): distance and angle terms.

    Park, Kim, Lu & Cho, "Relational Knowledge Distillation", CVPR 2019.
    `distance_weight * rkd_distance + angle_weight * rkd_angle`, with the
    paper's weights 25 and 50 (for the code's averaging; see `rkd_distance`).
    Batch-level; string name `"rkd"`; features of any sizes.

    Args:
        distance_weight: Weight of RKD-D, >= 0.
        angle_weight: Weight of RKD-A, >= 0 (0 skips its n^3 computation).
        name: Name of the loss.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import RelationalKD

    teacher = np.random.default_rng(0).normal(size=(4, 8))
    student = np.random.default_rng(1).normal(size=(4, 3))
    assert tuple(RelationalKD()(teacher, student).shape) == (4,)
    ```
    """

    default_name = "rkd"
    requires_matching_shapes = False

    def __init__(self, distance_weight=25.0, angle_weight=50.0, name=None):
        super().__init__(name)
        self.distance_weight = _check_non_negative("distance_weight", distance_weight)
        self.angle_weight = _check_non_negative("angle_weight", angle_weight)

    def call(self, teacher_feature, student_feature):
        loss = self.distance_weight * rkd_distance(teacher_feature, student_feature)
        if self.angle_weight:
            loss = loss + self.angle_weight * rkd_angle(teacher_feature, student_feature)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "distance_weight": self.distance_weight,
            "angle_weight": self.angle_weight,
        }


@keras.saving.register_keras_serializable(package="keras_kd")
class ProbabilisticKT(FeatureLoss):
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018); see `pkt`.

    Passalis & Tefas, "Learning Deep Representations with Probabilistic
    Knowledge Transfer", ECCV 2018. Batch-level; string name `"pkt"`;
    features of any sizes.

    Example:

    ```python
    import numpy as np
    from keras_kd.losses import ProbabilisticKT

    teacher = np.random.default_rng(0).normal(size=(4, 8))
    assert tuple(ProbabilisticKT()(teacher, teacher[:, :3]).shape) == (4,)
    ```
    """

    default_name = "pkt"
    requires_matching_shapes = False

    def call(self, teacher_feature, student_feature):
        return pkt(teacher_feature, student_feature)


# --------------------------------------------------------------------------
# Lookup
# --------------------------------------------------------------------------


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
        if getattr(loss, "from_logits", True) is False or (getattr(loss, "_fn_kwargs", {}).get("from_logits") is False):
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
    """Returns a DistillationLoss from an instance, a config dict or None.

    Args:
        identifier: `None` (gives `SoftTargetKL()`), a `DistillationLoss`
            instance, or a dict from `keras.saving.serialize_keras_object`.

    Returns:
        A `DistillationLoss`.

    Raises:
        TypeError: for anything else, naming the value and the valid choices.

    Example:

    ```python
    from keras_kd.losses import get

    assert get(None).name == 'soft_target_kl'
    ```
    """
    if identifier is None:
        return SoftTargetKL()
    if isinstance(identifier, DistillationLoss):
        return identifier
    if isinstance(identifier, dict):
        loss = keras.saving.deserialize_keras_object(identifier)
        if isinstance(loss, DistillationLoss):
            return loss
        identifier = loss
    raise TypeError(
        "distillation_loss must be None (for SoftTargetKL()), a "
        "keras_kd.losses.DistillationLoss instance (e.g. "
        "keras_kd.losses.SoftTargetKL() or keras_kd.losses.DecoupledKD()) or "
        f"its serialized config dict; got {identifier!r} of type "
        f"{type(identifier).__name__}."
    )


_FEATURE_LOSS_STRINGS = {
    "mse": HintMSE,
    "hint": HintMSE,
    "attention": AttentionTransfer,
    "cosine": CosineFeatureLoss,
    "rkd": RelationalKD,
    "pkt": ProbabilisticKT,
}


def get_feature_loss(identifier):
    """Returns a FeatureLoss from an instance, a config dict or a string.

    Args:
        identifier: A `FeatureLoss` instance, a dict from
            `keras.saving.serialize_keras_object`, or one of the strings
            `"mse"` (alias `"hint"`: `HintMSE`), `"attention"`
            (`AttentionTransfer`), `"cosine"` (`CosineFeatureLoss`), `"rkd"`
            (`RelationalKD`), `"pkt"` (`ProbabilisticKT`), each with its
            default hyperparameters.

    Returns:
        A `FeatureLoss`.

    Raises:
        ValueError: for an unknown string, naming it and the valid strings.
        TypeError: for anything else.

    Example:

    ```python
    from keras_kd.losses import get_feature_loss

    assert get_feature_loss("hint").name == 'mse'
    ```
    """
    if isinstance(identifier, FeatureLoss):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _FEATURE_LOSS_STRINGS:
            raise ValueError(
                f"Unknown feature loss {identifier!r}. Valid strings: "
                f"{sorted(_FEATURE_LOSS_STRINGS)}; or pass a "
                "keras_kd.losses.FeatureLoss instance."
            )
        return _FEATURE_LOSS_STRINGS[identifier]()
    if isinstance(identifier, dict):
        loss = keras.saving.deserialize_keras_object(identifier)
        if isinstance(loss, FeatureLoss):
            return loss
        identifier = loss
    raise TypeError(
        f"A feature loss must be one of the strings {sorted(_FEATURE_LOSS_STRINGS)}, "
        "a keras_kd.losses.FeatureLoss instance or its serialized config dict; "
        f"got {identifier!r} of type {type(identifier).__name__}."
    )


def _snake_case(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


__all__ = [
    "AttentionTransfer",
    "CosineFeatureLoss",
    "DecoupledKD",
    "DistillationLoss",
    "FeatureLoss",
    "GeneralizedJSD",
    "HintMSE",
    "ProbabilisticKT",
    "RelationalKD",
    "ReverseKL",
    "SoftTargetKL",
    "TotalVariation",
    "attention_map",
    "attention_transfer",
    "cosine_feature_loss",
    "decoupled_kd",
    "generalized_jsd",
    "get",
    "get_feature_loss",
    "hint_mse",
    "is_one_hot",
    "label_cross_entropy",
    "pkt",
    "resolve_hard_loss",
    "reverse_kl",
    "rkd_angle",
    "rkd_distance",
    "soft_target_kl",
    "standardize_logits",
    "total_variation",
    "weighted_mean",
]
