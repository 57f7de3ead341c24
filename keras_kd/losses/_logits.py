"""Divergences between teacher and student logits, one value per position.

`soft_target_kl` (Hinton et al., 2015) and the divergences used to distil
language models, `reverse_kl`, `generalized_jsd` (Agarwal et al., 2024) and
`total_variation`, all computed in log space from float32 logits of shape
`(batch, ..., classes)`, in chunks of positions for large vocabularies; and
`standardize_logits`, the logit standardization of Sun et al. (2024).
"""

import functools
import math

import keras
from keras import ops

from keras_kd import _casting, validation
from keras_kd.losses._numerics import TINY

# Logits with more elements than this (16 MiB of float32; language-model
# vocabularies) go through the divergences in chunks of positions of at most
# `_CHUNK_ELEMENTS` elements (4 MiB) each; see `_per_position`.
_CHUNKING_THRESHOLD = 2**22
_CHUNK_ELEMENTS = 2**20


def kl_from_log_probs(teacher_log_probs, student_log_probs, excluded=None):
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
        return row_loss(*_casting.floats32(teacher_logits, student_logits), temperature)
    classes = shape[-1]
    # A tensor, not a variable: TensorFlow cannot differentiate the loop
    # below through a variable read inside it.
    temperature = ops.copy(temperature)
    # Equal chunks (a remainder handled apart costs jax two copies of the logits).
    rows = _largest_divisor_at_most(positions, max(_CHUNK_ELEMENTS // classes, 1))
    chunked_shape = (positions // rows, rows, classes)

    @keras.remat
    def chunk_loss(chunk):
        return row_loss(*_casting.floats32(*chunk), temperature)

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
    return centered / (ops.sqrt(ops.maximum(variance, TINY)) + epsilon)


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
    kl = kl_from_log_probs(
        ops.log_softmax(teacher_logits / temperature, axis=-1),
        ops.log_softmax(student_logits / temperature, axis=-1),
    )
    return kl * (temperature * temperature)


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


def check_beta(beta):
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
    beta = check_beta(beta)
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
