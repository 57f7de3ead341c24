"""Decoupled knowledge distillation (Zhao et al., CVPR 2022), per example.

The KD loss split into a target-class term and a non-target term, each a KL
divergence between logit-derived distributions computed from logsumexps.
"""

from keras import ops

from keras_kd import _casting, validation
from keras_kd.losses._logits import kl_from_log_probs

# Excluded classes get a logit this far below the row's smallest one, so that
# exp() of their shifted value underflows to exactly 0 at any logit scale.
_EXCLUDED_LOGIT_GAP = 1e3


def _exclude_classes(logits, excluded):
    """Pushes the `excluded` logits far below the others (finite, unlike -inf).

    A softmax or logsumexp of the result ignores the excluded classes exactly,
    at any logit scale, and no inf or NaN enters the values or gradients.
    """
    lowest = ops.min(logits, axis=-1, keepdims=True)
    return ops.where(excluded, lowest - _EXCLUDED_LOGIT_GAP, logits)


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
    teacher_logits, student_logits = _casting.floats32(teacher_logits, student_logits)
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
    target_kl = kl_from_log_probs(teacher_binary, student_binary)
    non_target_kl = kl_from_log_probs(teacher_non_target, student_non_target, excluded=is_target)
    return (alpha * target_kl + beta * non_target_kl) * ops.square(temperature)
