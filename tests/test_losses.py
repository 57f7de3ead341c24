"""Tests of keras_kd.losses.

Every loss is checked against a NumPy float64 reference written
independently of Keras (ports of the authors' code where one exists), for
finite values at extreme inputs, for a serialization round trip, and for
jitted == eager on the current backend.
"""

import functools
import math

import hypothesis
import keras
import numpy as np
import pytest
from hypothesis import strategies as st
from keras import ops
from scipy.special import logsumexp

import keras_kd
from keras_kd import losses

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def as_numpy(tensor):
    return ops.convert_to_numpy(tensor)


def jit_compile(fn):
    """`fn` compiled the way the current backend compiles a train step.

    jax: `jax.jit`; tensorflow: `tf.function(jit_compile=True)` (XLA). On
    torch, `fn` runs eagerly: `torch.compile` takes tens of seconds per
    function on CPU, too slow for unit tests (the Distiller's own tests cover
    compiled torch training).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True)
    return fn


def compute(fn, *args):
    """`fn(*args)` as NumPy.

    On jax it runs under `jax.jit`, cached per `fn`: eager jax compiles each
    primitive for each new shape, several times slower than compiling the
    whole loss once, and this keeps the file fast. Eager jax is covered by
    the `*_jitted_equal_eager` tests. Other backends run eagerly.
    """
    if keras.backend.backend() == "jax":
        return as_numpy(_jax_jit(fn)(*args))
    return as_numpy(fn(*args))


@functools.cache
def _jax_jit(fn):
    import jax

    return jax.jit(fn)


def values_and_student_gradient(fn, *args):
    """`fn(*args)` and d sum(fn(*args)) / d args[1] (the student), as NumPy."""
    backend = keras.backend.backend()
    args = list(args)
    args[1] = np.asarray(args[1], "float32")
    if backend == "jax":
        gradient, values = _jax_values_and_student_gradient(fn)(*args)
        return np.asarray(values), np.asarray(gradient)
    if backend == "tensorflow":
        import tensorflow as tf

        args[1] = tf.constant(args[1])
        with tf.GradientTape() as tape:
            tape.watch(args[1])
            values = fn(*args)
            total = tf.reduce_sum(values)
        return values.numpy(), tape.gradient(total, args[1]).numpy()
    import torch

    args[1] = torch.tensor(args[1], requires_grad=True)
    values = fn(*args)
    values.sum().backward()
    return values.detach().numpy(), args[1].grad.numpy()


@functools.cache
def _jax_values_and_student_gradient(fn):
    import jax

    def total_and_values(*args):
        values = fn(*args)
        return jax.numpy.sum(values), values

    return jax.jit(jax.grad(total_and_values, argnums=1, has_aux=True))


def tensors(*arrays):
    return [ops.convert_to_tensor(np.asarray(array, "float32")) for array in arrays]


# One shape for the random-logit tests (each new shape is a new compile).
LOGITS_SHAPE = (8, 5)


def random_logits(shape, seed, scale=3.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype("float32")


# Logits of +-1e4: saturated softmaxes, ties, and a row of equal logits.
EXTREME_TEACHER = np.array([[1e4, -1e4, 0.0, 5.0], [-1e4, -1e4, 1e4, 1e4], [3.0, 3.0, 3.0, 3.0]], "float32")
EXTREME_STUDENT = np.array([[-1e4, 1e4, 0.0, -5.0], [1e4, -1e4, -1e4, 0.0], [1e4, -1e4, 2.0, 3.0]], "float32")

# --------------------------------------------------------------------------
# NumPy float64 references
# --------------------------------------------------------------------------


def numpy_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def numpy_kl(log_p, log_q):
    """sum p (log p - log q), with 0 log 0 = 0 (as torch's kl_div)."""
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        return np.where(p > 0, p * (log_p - log_q), 0.0).sum(-1)


def numpy_soft_target_kl(teacher, student, temperature):
    log_p = numpy_log_softmax(teacher.astype("float64") / temperature)
    log_q = numpy_log_softmax(student.astype("float64") / temperature)
    return (np.exp(log_p) * (log_p - log_q)).sum(-1) * temperature**2


def numpy_reverse_kl(teacher, student, temperature):
    log_p = numpy_log_softmax(teacher.astype("float64") / temperature)
    log_q = numpy_log_softmax(student.astype("float64") / temperature)
    return numpy_kl(log_q, log_p) * temperature**2


def numpy_generalized_jsd(teacher, student, temperature, beta):
    """GKD's eq. (1) from its definition, the mixture by scipy's logsumexp (0 < beta < 1)."""
    log_p = numpy_log_softmax(teacher.astype("float64") / temperature)
    log_q = numpy_log_softmax(student.astype("float64") / temperature)
    log_m = logsumexp(np.stack([log_p + np.log(beta), log_q + np.log1p(-beta)]), axis=0)
    return (beta * numpy_kl(log_p, log_m) + (1 - beta) * numpy_kl(log_q, log_m)) * temperature**2


def trl_generalized_jsd(teacher, student, temperature, beta):
    """Port of TRL's GKDTrainer.generalized_jsd_loss, reduction="none" summed over the vocabulary.

    `F.kl_div(input, target, log_target=True)` is `exp(target) * (target -
    input)`, i.e. KL(target || input). TRL does not multiply by T^2; the
    port does, as keras_kd's losses do.
    """
    student_log_probs = numpy_log_softmax(student.astype("float64") / temperature)
    teacher_log_probs = numpy_log_softmax(teacher.astype("float64") / temperature)

    def kl_div(input_log_probs, target_log_probs):
        return np.exp(target_log_probs) * (target_log_probs - input_log_probs)

    if beta == 0:
        jsd = kl_div(student_log_probs, teacher_log_probs)
    elif beta == 1:
        jsd = kl_div(teacher_log_probs, student_log_probs)
    else:
        mixture_log_probs = logsumexp(
            np.stack([student_log_probs + np.log1p(-beta), teacher_log_probs + np.log(beta)]), axis=0
        )
        kl_teacher = kl_div(mixture_log_probs, teacher_log_probs)
        kl_student = kl_div(mixture_log_probs, student_log_probs)
        jsd = beta * kl_teacher + (1 - beta) * kl_student
    return jsd.sum(-1) * temperature**2


def numpy_total_variation(teacher, student, temperature):
    p = np.exp(numpy_log_softmax(teacher.astype("float64") / temperature))
    q = np.exp(numpy_log_softmax(student.astype("float64") / temperature))
    return 0.5 * np.abs(p - q).sum(-1)


def numpy_standardize(z, epsilon=1e-7):
    z = z.astype("float64")
    return (z - z.mean(-1, keepdims=True)) / (z.std(-1, keepdims=True) + epsilon)


def numpy_decoupled_kd(teacher, student, temperature, alpha, beta, target=None):
    """DKD in log space with scipy's logsumexp (valid at any logit scale)."""
    t, s = teacher.astype("float64") / temperature, student.astype("float64") / temperature
    rows = np.arange(len(t))
    target = t.argmax(-1) if target is None else np.asarray(target).reshape(-1)
    others = np.ones(t.shape, bool)
    others[rows, target] = False

    def split(z):
        log_all = logsumexp(z, axis=-1)
        log_rest = logsumexp(np.where(others, z, -np.inf), axis=-1)
        binary = np.stack([z[rows, target] - log_all, log_rest - log_all], -1)
        return binary, np.where(others, z - log_rest[:, None], -np.inf)

    (t_binary, t_rest), (s_binary, s_rest) = split(t), split(s)
    tckd = numpy_kl(t_binary, s_binary)
    nckd = numpy_kl(t_rest, s_rest)
    return (alpha * tckd + beta * nckd) * temperature**2


def mdistiller_dkd(teacher, student, temperature, alpha, beta, target):
    """Port of mdistiller's dkd_loss (probability space, -1000 mask), per example."""
    t, s = teacher.astype("float64"), student.astype("float64")
    gt = np.zeros(t.shape)
    gt[np.arange(len(t)), target] = 1.0

    def softmax(z):
        return np.exp(numpy_log_softmax(z))

    def cat_mask(p):
        return np.stack([(p * gt).sum(1), (p * (1 - gt)).sum(1)], 1)

    p_t, p_s = cat_mask(softmax(t / temperature)), cat_mask(softmax(s / temperature))
    tckd = (p_t * (np.log(p_t) - np.log(p_s))).sum(1)
    q_t = softmax(t / temperature - 1000.0 * gt)
    log_q_s = numpy_log_softmax(s / temperature - 1000.0 * gt)
    nckd = (q_t * (np.log(np.maximum(q_t, 1e-300)) - log_q_s)).sum(1)
    return (alpha * tckd + beta * nckd) * temperature**2


def numpy_hint_mse(teacher, student):
    return ((student.astype("float64") - teacher) ** 2).reshape(len(teacher), -1).mean(1)


def numpy_attention_transfer(teacher, student, p=2.0):
    """The authors' at/at_loss, channels-last: per-example mean of squares."""

    def at(x):
        a = (np.abs(x.astype("float64")) ** p).mean(-1).reshape(len(x), -1)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    return ((at(student) - at(teacher)) ** 2).mean(1)


def numpy_cosine(teacher, student):
    t = teacher.reshape(len(teacher), -1).astype("float64")
    s = student.reshape(len(student), -1).astype("float64")
    return 1 - (t * s).sum(1) / (np.linalg.norm(t, axis=1) * np.linalg.norm(s, axis=1))


def numpy_smooth_l1(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def numpy_rkd_distance_matrix(teacher, student):
    """Port of the RKD authors' RkdDistance: the (n, n) smooth-L1 matrix."""

    def normalized_pdist(e):
        e = e.reshape(len(e), -1).astype("float64")
        squared = (e**2).sum(1)
        d = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * e @ e.T, 1e-12, None))
        np.fill_diagonal(d, 0)
        return d / d[d > 0].mean()

    return numpy_smooth_l1(normalized_pdist(student) - normalized_pdist(teacher))


def numpy_rkd_angle_tensor(teacher, student):
    """Port of the RKD authors' RKdAngle: the (n, n, n) smooth-L1 tensor."""

    def angles(e):
        e = e.reshape(len(e), -1).astype("float64")
        d = e[None, :, :] - e[:, None, :]
        d = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
        return d @ d.transpose(0, 2, 1)

    return numpy_smooth_l1(angles(student) - angles(teacher))


def numpy_pkt_matrix(teacher, student, eps=1e-7):
    """Port of Passalis & Tefas' cosine_similarity_loss: the (n, n) KL terms."""

    def probabilities(x):
        x = x.reshape(len(x), -1).astype("float64")
        x = x / (np.sqrt((x**2).sum(1, keepdims=True)) + eps)
        kernel = (x @ x.T + 1) / 2
        return kernel / kernel.sum(1, keepdims=True)

    p, q = probabilities(teacher), probabilities(student)
    return p * np.log((p + eps) / (q + eps))


# Each feature loss with the shapes it is tested on, its per-example NumPy
# reference, and the scalar the authors' code would report for the batch.
FEATURE_CASES = {
    "mse": (
        losses.HintMSE(),
        (4, 3, 3, 5),
        (4, 3, 3, 5),
        numpy_hint_mse,
    ),
    "attention": (
        losses.AttentionTransfer(p=3.0),
        (4, 5, 5, 6),
        (4, 5, 5, 2),
        lambda t, s: numpy_attention_transfer(t, s, p=3.0),
    ),
    "cosine": (
        losses.CosineFeatureLoss(name="cos"),
        (4, 10),
        (4, 10),
        numpy_cosine,
    ),
    "rkd": (
        losses.RelationalKD(distance_weight=2.0, angle_weight=3.0),
        (5, 2, 2, 3),
        (5, 4),
        lambda t, s: 2.0 * numpy_rkd_distance_matrix(t, s).mean(1) + 3.0 * numpy_rkd_angle_tensor(t, s).mean((1, 2)),
    ),
    "pkt": (
        losses.ProbabilisticKT(),
        (6, 8),
        (6, 3),
        lambda t, s: numpy_pkt_matrix(t, s).sum(1) / len(t),
    ),
}


def feature_pair(case, seed=0, scale=1.0, same_shapes=False):
    """Random teacher and student features for a FEATURE_CASES entry.

    `same_shapes` gives the student the teacher's shape: half the compiles,
    for the tests that run eagerly on every backend.
    """
    _, teacher_shape, student_shape, _ = FEATURE_CASES[case]
    if same_shapes:
        student_shape = teacher_shape
    rng = np.random.default_rng(seed)
    teacher = (scale * rng.normal(size=teacher_shape)).astype("float32")
    student = (scale * rng.normal(size=student_shape)).astype("float32")
    return teacher, student


# One partial object (jax compiles once per function object).
generalized_jsd_beta_0_1 = functools.partial(losses.generalized_jsd, beta=0.1)

# Logit losses as the Distiller builds them.
LOGIT_LOSSES = {
    "soft_target_kl": losses.SoftTargetKL(),
    "soft_target_kl_standardized": losses.SoftTargetKL(standardize=True, name="lskd"),
    "decoupled_kd": losses.DecoupledKD(alpha=0.5, beta=2.0, warmup_steps=10),
    "decoupled_kd_standardized": losses.DecoupledKD(standardize=True),
    "reverse_kl": losses.ReverseKL(),
    "generalized_jsd": losses.GeneralizedJSD(beta=0.3, name="gkd"),
    "generalized_jsd_standardized": losses.GeneralizedJSD(standardize=True),
    "total_variation": losses.TotalVariation(),
}


# --------------------------------------------------------------------------
# Soft-target KL (Hinton et al.)
# --------------------------------------------------------------------------


def test_soft_target_kl_matches_an_independent_value():
    # scipy.special.rel_entr(softmax(t / 2), softmax(s / 2)).sum() * 2 ** 2
    teacher = np.array([[1.0, 2.0, 3.0]], "float32")
    student = np.array([[3.0, 2.0, 1.0]], "float32")
    assert as_numpy(losses.soft_target_kl(teacher, student, 2.0))[0] == pytest.approx(1.2806266713192258, rel=1e-5)
    assert as_numpy(losses.soft_target_kl(teacher, student, 1.0))[0] == pytest.approx(1.1504207652088825, rel=1e-5)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_soft_target_kl_matches_numpy_per_example_with_t_squared(temperature):
    rng = np.random.default_rng(1)
    teacher = rng.normal(scale=3, size=(16, 10)).astype("float32")
    student = rng.normal(scale=3, size=(16, 10)).astype("float32")
    values = as_numpy(losses.soft_target_kl(teacher, student, temperature))
    assert values.shape == (16,)
    np.testing.assert_allclose(values, numpy_soft_target_kl(teacher, student, temperature), rtol=1e-4, atol=1e-6)


def test_soft_target_kl_t_squared_factor():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(2, 4, 5)).astype("float32")
    at_t = as_numpy(losses.soft_target_kl(teacher, student, 3.0))
    # The same softened distributions at T=1, times T**2.
    at_one = as_numpy(losses.soft_target_kl(teacher / 3.0, student / 3.0, 1.0))
    np.testing.assert_allclose(at_t, 9.0 * at_one, rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 1.0, 100.0])
def test_soft_target_kl_is_finite_for_extreme_logits(temperature):
    teacher = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], "float32")
    student = np.array([[-1e4, 1e4, 0.0], [1e4, -1e4, -1e4]], "float32")
    values = as_numpy(losses.soft_target_kl(teacher, student, temperature))
    assert np.all(np.isfinite(values))
    assert np.all(values > 0)
    np.testing.assert_allclose(values, numpy_soft_target_kl(teacher, student, temperature), rtol=1e-4)


def test_soft_target_kl_is_zero_for_identical_logits_and_float32_for_float16():
    logits = np.random.default_rng(3).normal(size=(8, 6)).astype("float16")
    values = losses.soft_target_kl(logits, logits, 4.0)
    assert keras.backend.standardize_dtype(values.dtype) == "float32"
    np.testing.assert_array_equal(as_numpy(values), np.zeros(8, "float32"))


def test_label_cross_entropy_sparse_and_one_hot_agree():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(12, 5)).astype("float32")
    labels = rng.integers(0, 5, 12)
    sparse = as_numpy(losses.label_cross_entropy(labels, logits))
    column = as_numpy(losses.label_cross_entropy(labels[:, None], logits))
    one_hot = as_numpy(losses.label_cross_entropy(np.eye(5, dtype="float32")[labels], logits))
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(12), labels]
    np.testing.assert_allclose(sparse, expected, rtol=1e-5)
    np.testing.assert_allclose(column, expected, rtol=1e-5)
    np.testing.assert_allclose(one_hot, expected, rtol=1e-5)


def test_label_cross_entropy_rejects_labels_of_the_wrong_shape():
    logits = np.zeros((4, 5), "float32")
    with pytest.raises(ValueError, match=r"Labels of shape \(4, 3\).*one-hot rows of shape \(4, 5\)"):
        losses.label_cross_entropy(np.zeros((4, 3), "float32"), logits)


def test_weighted_mean_follows_keras_sum_over_batch_size():
    values = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    assert float(losses.weighted_mean(values)) == pytest.approx(2.5)
    assert float(losses.weighted_mean(values, weights)) == pytest.approx((1 + 6 + 2) / 4)
    keras_value = keras.losses.MeanSquaredError()(np.zeros((4, 1)), np.sqrt(values)[:, None], sample_weight=weights)
    assert float(losses.weighted_mean(values, weights)) == pytest.approx(float(keras_value), rel=1e-6)


def test_soft_target_kl_class_round_trips_through_serialization():
    loss = losses.SoftTargetKL(name="kd")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, losses.SoftTargetKL) and restored.name == "kd"
    teacher, student = np.random.default_rng(5).normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_allclose(
        as_numpy(restored(teacher, student, 2.0)),
        as_numpy(losses.soft_target_kl(teacher, student, 2.0)),
    )
    assert losses.SoftTargetKL().name == "soft_target_kl"


def test_resolve_hard_loss_reads_strings_from_logits():
    logits = np.array([[2.0, -1.0, 0.5]], "float32")
    labels = np.array([0])
    expected = as_numpy(losses.label_cross_entropy(labels, logits))
    fn = losses.resolve_hard_loss("sparse_categorical_crossentropy")
    np.testing.assert_allclose(as_numpy(fn(labels, logits)), expected, rtol=1e-6)
    fn = losses.resolve_hard_loss("categorical_crossentropy")
    np.testing.assert_allclose(as_numpy(fn(np.eye(3)[labels], logits)), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "loss, error, message",
    [
        ("kl_divergence", ValueError, "Unknown hard-label loss 'kl_divergence'"),
        (keras.losses.SparseCategoricalCrossentropy(), ValueError, "from_logits=False"),
        (3, TypeError, "got 3 of type int"),
    ],
)
def test_resolve_hard_loss_rejects_bad_losses(loss, error, message):
    with pytest.raises(error, match=message):
        losses.resolve_hard_loss(loss)


def test_get_rejects_a_non_loss():
    with pytest.raises(TypeError, match="distillation_loss must be"):
        losses.get("kl_divergence")


def test_soft_target_kl_class_loads_a_config_saved_before_standardize_existed():
    loss = losses.SoftTargetKL.from_config({"name": "kd"})
    assert loss.get_config() == {"name": "kd", "standardize": False}


# --------------------------------------------------------------------------
# Logit standardization (Sun et al.)
# --------------------------------------------------------------------------


def test_standardize_logits_matches_numpy():
    logits = random_logits(LOGITS_SHAPE, seed=10)
    np.testing.assert_allclose(
        compute(losses.standardize_logits, logits), numpy_standardize(logits), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("loss_name", ["soft_target_kl_standardized", "decoupled_kd_standardized"])
def test_standardize_is_invariant_to_shifting_and_scaling_the_logits(loss_name):
    loss = LOGIT_LOSSES[loss_name]
    teacher, student = random_logits(LOGITS_SHAPE, seed=11), random_logits(LOGITS_SHAPE, seed=12)
    shift = np.random.default_rng(13).normal(scale=50, size=(LOGITS_SHAPE[0], 1)).astype("float32")
    reference = compute(loss, teacher, student, 2.0)
    moved = compute(loss, 7.0 * teacher + shift, 0.25 * student - shift, 2.0)
    assert np.all(reference > 0)
    np.testing.assert_allclose(moved, reference, rtol=1e-3, atol=1e-5)


def test_standardize_applies_to_both_models_before_the_loss():
    teacher, student = random_logits(LOGITS_SHAPE, seed=14), random_logits(LOGITS_SHAPE, seed=15)
    expected = numpy_soft_target_kl(numpy_standardize(teacher), numpy_standardize(student), 3.0)
    values = compute(LOGIT_LOSSES["soft_target_kl_standardized"], teacher, student, 3.0)
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss_name", ["soft_target_kl_standardized", "decoupled_kd_standardized"])
def test_standardize_has_a_finite_gradient_for_a_row_of_equal_logits(loss_name):
    # A zero-initialised head gives equal logits; torch.std's gradient is NaN there.
    loss = LOGIT_LOSSES[loss_name]
    student = np.zeros_like(EXTREME_TEACHER)
    step = ops.convert_to_tensor(5.0)  # the arguments of the extreme-logit test: one compile on jax
    values, gradient = values_and_student_gradient(loss, EXTREME_TEACHER, student, 4.0, step)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradient))


# --------------------------------------------------------------------------
# Decoupled KD (Zhao et al.)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("alpha, beta", [(1.0, 8.0), (0.5, 0.0), (0.0, 2.0)])
def test_decoupled_kd_matches_numpy_and_the_mdistiller_port(temperature, alpha, beta):
    teacher, student = random_logits(LOGITS_SHAPE, seed=20), random_logits(LOGITS_SHAPE, seed=21)
    values = compute(losses.decoupled_kd, teacher, student, temperature, alpha, beta)
    assert values.shape == LOGITS_SHAPE[:1]
    expected = numpy_decoupled_kd(teacher, student, temperature, alpha, beta)
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)
    mdistiller = mdistiller_dkd(teacher, student, temperature, alpha, beta, teacher.argmax(-1))
    np.testing.assert_allclose(values, mdistiller, rtol=1e-4, atol=1e-6)


def test_decoupled_kd_takes_ground_truth_targets_as_in_the_paper():
    teacher, student = random_logits(LOGITS_SHAPE, seed=22), random_logits(LOGITS_SHAPE, seed=23)
    labels = np.random.default_rng(24).integers(0, LOGITS_SHAPE[1], LOGITS_SHAPE[0])
    assert np.any(labels != teacher.argmax(-1))
    expected = mdistiller_dkd(teacher, student, 4.0, 1.0, 8.0, labels)
    for target_classes in (labels, labels[:, None]):
        values = compute(losses.decoupled_kd, teacher, student, 4.0, 1.0, 8.0, target_classes)
        np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("temperature, expected", [(1.0, 0.8287249104088973), (2.0, 1.029612658427565)])
def test_decoupled_kd_two_classes_is_the_binary_kl(temperature, expected):
    # Two classes, teacher [2, 0] (target: class 0), student [0, 1]. TCKD is the
    # KL between Bernoulli(p) and Bernoulli(q), p = sigmoid(2 / T) and
    # q = sigmoid(-1 / T), times T^2; with one non-target class, NCKD is 0.
    p, q = 1 / (1 + math.exp(-2 / temperature)), 1 / (1 + math.exp(1 / temperature))
    by_hand = temperature**2 * (p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q)))
    assert by_hand == pytest.approx(expected, rel=1e-12)
    teacher, student = np.array([[2.0, 0.0]], "float32"), np.array([[0.0, 1.0]], "float32")
    tckd = compute(losses.decoupled_kd, teacher, student, temperature, 1.0, 0.0)
    nckd = compute(losses.decoupled_kd, teacher, student, temperature, 0.0, 1.0)
    assert tckd[0] == pytest.approx(expected, rel=1e-5)
    assert nckd[0] == pytest.approx(0.0, abs=1e-6)


def test_decoupled_kd_reassembles_kd_as_in_the_paper():
    # Zhao et al., eq. (3): KD = TCKD + (1 - p_t) * NCKD, p_t the teacher's target probability.
    teacher, student = random_logits(LOGITS_SHAPE, seed=25), random_logits(LOGITS_SHAPE, seed=26)
    temperature = 3.0
    tckd = compute(losses.decoupled_kd, teacher, student, temperature, 1.0, 0.0)
    nckd = compute(losses.decoupled_kd, teacher, student, temperature, 0.0, 1.0)
    p_target = np.exp(numpy_log_softmax(teacher / temperature)).max(-1)
    kd = numpy_soft_target_kl(teacher, student, temperature)
    np.testing.assert_allclose(tckd + (1 - p_target) * nckd, kd, rtol=1e-4)


@pytest.mark.parametrize("temperature", [0.05, 1.0, 100.0])
def test_decoupled_kd_is_finite_and_right_for_extreme_logits(temperature):
    values = compute(losses.decoupled_kd, EXTREME_TEACHER, EXTREME_STUDENT, temperature, 1.0, 8.0)
    assert np.all(np.isfinite(values)) and np.all(values > 0)
    expected = numpy_decoupled_kd(EXTREME_TEACHER, EXTREME_STUDENT, temperature, 1.0, 8.0)
    np.testing.assert_allclose(values, expected, rtol=1e-4)


def test_decoupled_kd_warm_up_weight():
    loss = losses.DecoupledKD(warmup_steps=100)
    teacher, student = random_logits(LOGITS_SHAPE, seed=27), random_logits(LOGITS_SHAPE, seed=28)
    full = as_numpy(losses.decoupled_kd(teacher, student, 4.0, alpha=1.0, beta=8.0))

    def at_step(step):
        step = None if step is None else ops.convert_to_tensor(step, "float32")
        return as_numpy(loss(teacher, student, 4.0, step=step))

    np.testing.assert_allclose(at_step(0.0), 0.0 * full)
    np.testing.assert_allclose(at_step(50.0), 0.5 * full, rtol=1e-6)
    np.testing.assert_allclose(at_step(100.0), full, rtol=1e-6)
    np.testing.assert_allclose(at_step(1e6), full, rtol=1e-6)
    np.testing.assert_allclose(at_step(None), full, rtol=1e-6)
    no_warm_up = losses.DecoupledKD()
    np.testing.assert_allclose(
        as_numpy(no_warm_up(teacher, student, 4.0, step=ops.convert_to_tensor(0.0))), full, rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"alpha": -1.0}, ValueError, r"`alpha` must be >= 0; got -1.0"),
        ({"beta": "8"}, TypeError, r"`beta` must be a real number.*got '8'"),
        ({"warmup_steps": 1.5}, ValueError, r"`warmup_steps` must be an integer >= 0.*got 1.5"),
        ({"warmup_steps": -1}, ValueError, r"got -1"),
        ({"standardize": "yes"}, TypeError, r"`standardize` must be True or False; got 'yes'"),
    ],
)
def test_decoupled_kd_rejects_bad_hyperparameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        losses.DecoupledKD(**kwargs)


def test_decoupled_kd_needs_two_classes():
    with pytest.raises(ValueError, match=r"at least 2 classes.*\(3, 1\)"):
        losses.decoupled_kd(np.zeros((3, 1)), np.zeros((3, 1)), 1.0)


# --------------------------------------------------------------------------
# The divergence family: reverse KL, generalized JSD (GKD), total variation
# --------------------------------------------------------------------------

# Each divergence with its NumPy float64 reference, `(teacher, student, T) -> values`.
DIVERGENCES = {
    "reverse_kl": (losses.reverse_kl, numpy_reverse_kl),
    "generalized_jsd_0.5": (losses.generalized_jsd, lambda t, s, T: numpy_generalized_jsd(t, s, T, 0.5)),
    "generalized_jsd_0.1": (
        generalized_jsd_beta_0_1,
        lambda t, s, T: numpy_generalized_jsd(t, s, T, 0.1),
    ),
    "total_variation": (losses.total_variation, numpy_total_variation),
}


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
def test_divergences_match_numpy(name, temperature):
    loss, reference = DIVERGENCES[name]
    teacher, student = random_logits(LOGITS_SHAPE, seed=50), random_logits(LOGITS_SHAPE, seed=51)
    values = compute(loss, teacher, student, temperature)
    assert values.shape == LOGITS_SHAPE[:1]
    np.testing.assert_allclose(values, reference(teacher, student, temperature), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
@pytest.mark.parametrize("temperature", [0.05, 1.0, 100.0])
def test_divergences_are_finite_and_right_for_extreme_logits(name, temperature):
    loss, reference = DIVERGENCES[name]
    values = compute(loss, EXTREME_TEACHER, EXTREME_STUDENT, temperature)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    expected = reference(EXTREME_TEACHER, EXTREME_STUDENT, temperature)
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6 * max(temperature**2, 1.0))


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_generalized_jsd_matches_a_port_of_trl(beta, temperature):
    teacher, student = random_logits(LOGITS_SHAPE, seed=52), random_logits(LOGITS_SHAPE, seed=53)
    values = as_numpy(losses.generalized_jsd(teacher, student, temperature, beta=beta))
    expected = trl_generalized_jsd(teacher, student, temperature, beta)
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6)


def test_generalized_jsd_endpoints_are_trls_forward_and_reverse_kl():
    teacher, student = random_logits(LOGITS_SHAPE, seed=54), random_logits(LOGITS_SHAPE, seed=55)
    forward = as_numpy(losses.soft_target_kl(teacher, student, 2.0))
    reverse = as_numpy(losses.reverse_kl(teacher, student, 2.0))
    np.testing.assert_array_equal(as_numpy(losses.generalized_jsd(teacher, student, 2.0, beta=0)), forward)
    np.testing.assert_array_equal(as_numpy(losses.generalized_jsd(teacher, student, 2.0, beta=1)), reverse)
    # The formula itself tends to 0 at both ends, as beta * forward and (1 - beta) * reverse.
    near_zero = as_numpy(losses.generalized_jsd(teacher, student, 2.0, beta=1e-4))
    near_one = as_numpy(losses.generalized_jsd(teacher, student, 2.0, beta=1 - 1e-4))
    np.testing.assert_allclose(near_zero, 1e-4 * forward, rtol=0.02)
    np.testing.assert_allclose(near_one, 1e-4 * reverse, rtol=0.02)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.8])
def test_generalized_jsd_is_symmetric_under_swapping_the_models_and_beta(beta):
    teacher, student = random_logits(LOGITS_SHAPE, seed=56), random_logits(LOGITS_SHAPE, seed=57)
    values = as_numpy(losses.generalized_jsd(teacher, student, 3.0, beta=beta))
    swapped = as_numpy(losses.generalized_jsd(student, teacher, 3.0, beta=1 - beta))
    np.testing.assert_allclose(values, swapped, rtol=1e-5, atol=1e-7)
    # Bounded by the entropy of (beta, 1 - beta), reached for disjoint supports; times T^2.
    bound = -(beta * math.log(beta) + (1 - beta) * math.log(1 - beta)) * 3.0**2
    assert np.all(values <= bound * (1 + 1e-6))
    disjoint = as_numpy(losses.generalized_jsd(EXTREME_TEACHER[:1], EXTREME_STUDENT[:1], 3.0, beta=beta))
    np.testing.assert_allclose(disjoint, bound, rtol=1e-5)


def test_reverse_kl_is_the_forward_kl_with_the_models_swapped():
    teacher, student = random_logits(LOGITS_SHAPE, seed=58), random_logits(LOGITS_SHAPE, seed=59)
    np.testing.assert_array_equal(
        as_numpy(losses.reverse_kl(teacher, student, 3.0)), as_numpy(losses.soft_target_kl(student, teacher, 3.0))
    )
    # A student that covers only one of the teacher's two modes: cheap for the reverse KL (mode
    # seeking), expensive for the forward KL (mass covering).
    teacher = np.array([[5.0, 5.0, -5.0]], "float32")
    one_mode = np.array([[5.0, -5.0, -5.0]], "float32")
    assert as_numpy(losses.reverse_kl(teacher, one_mode, 1.0))[0] < 0.7
    assert as_numpy(losses.soft_target_kl(teacher, one_mode, 1.0))[0] > 3.0


def test_total_variation_is_a_bounded_symmetric_distance_without_t_squared():
    teacher, student = random_logits(LOGITS_SHAPE, seed=60), random_logits(LOGITS_SHAPE, seed=61)
    values = as_numpy(losses.total_variation(teacher, student, 1.0))
    np.testing.assert_allclose(values, as_numpy(losses.total_variation(student, teacher, 1.0)), rtol=1e-6)
    assert np.all((values > 0) & (values <= 1))
    # Pinsker's inequality: TV <= sqrt(KL / 2).
    kl = as_numpy(losses.soft_target_kl(teacher, student, 1.0))
    assert np.all(values <= np.sqrt(kl / 2) + 1e-6)
    # Disjoint distributions are at distance 1 at any temperature: no T^2 factor.
    for temperature in (0.05, 1.0):
        disjoint = as_numpy(losses.total_variation(EXTREME_TEACHER[:1], EXTREME_STUDENT[:1], temperature))
        np.testing.assert_allclose(disjoint, [1.0], atol=1e-6)


@pytest.mark.parametrize(
    "beta, error, message",
    [
        (-0.1, ValueError, r"`beta` of the generalized Jensen-Shannon divergence must be in \[0, 1\].*got -0.1"),
        (1.5, ValueError, r"must be in \[0, 1\] \(0: forward KL, 1: reverse KL, 0.5: the symmetric JSD\); got 1.5"),
        (float("nan"), ValueError, r"`beta` must be finite; got nan"),
        ("0.5", TypeError, r"`beta` must be a real number; got '0.5' of type str"),
    ],
)
def test_generalized_jsd_rejects_a_beta_outside_zero_one(beta, error, message):
    with pytest.raises(error, match=message):
        losses.GeneralizedJSD(beta=beta)
    with pytest.raises(error, match=message):
        losses.generalized_jsd(np.zeros((1, 2)), np.zeros((1, 2)), 1.0, beta=beta)


@pytest.mark.parametrize("name", sorted(DIVERGENCES))
def test_divergences_take_logits_of_any_rank_per_position(name):
    loss, reference = DIVERGENCES[name]
    teacher, student = random_logits((2, 3, 4, 5), seed=62), random_logits((2, 3, 4, 5), seed=63)
    values = compute(loss, teacher, student, 2.0)
    assert values.shape == (2, 3, 4)
    rows = reference(teacher.reshape(-1, 5), student.reshape(-1, 5), 2.0)
    np.testing.assert_allclose(values, rows.reshape(2, 3, 4), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", [losses.reverse_kl, losses.generalized_jsd, losses.total_variation])
def test_divergences_reject_logits_of_different_shapes(loss):
    with pytest.raises(
        ValueError, match=r"needs teacher and student logits of the same shape.*\(2, 3, 5\).*\(2, 3, 4\)"
    ):
        loss(np.zeros((2, 3, 5)), np.zeros((2, 3, 4)), 1.0)


# Large enough (4.2M elements, above the 2**22 at which the logit losses go through
# chunks of positions) to take the chunked path, as a language model's logits do.
LARGE_LOGITS_SHAPE = (2, 4, 2**19 + 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["soft_target_kl", "reverse_kl", "generalized_jsd_0.5", "total_variation"])
def test_large_vocabularies_give_the_values_and_gradients_of_each_position_alone(name):
    loss = losses.soft_target_kl if name == "soft_target_kl" else DIVERGENCES[name][0]
    rng = np.random.default_rng(64)
    teacher = rng.standard_normal(LARGE_LOGITS_SHAPE, dtype="float32") * 3
    student = rng.standard_normal(LARGE_LOGITS_SHAPE, dtype="float32") * 3
    values, gradient = values_and_student_gradient(loss, teacher, student, 2.0)
    assert values.shape == LARGE_LOGITS_SHAPE[:2] and gradient.shape == LARGE_LOGITS_SHAPE
    assert np.all(np.isfinite(gradient))
    for batch, time in [(0, 0), (1, 3)]:  # one position: small enough to go through at once
        position = (slice(batch, batch + 1), slice(time, time + 1))
        alone, alone_gradient = values_and_student_gradient(loss, teacher[position], student[position], 2.0)
        np.testing.assert_allclose(values[position], alone, rtol=1e-5)
        np.testing.assert_allclose(gradient[position], alone_gradient, rtol=1e-4, atol=1e-9)


def test_a_distiller_with_generalized_jsd_saves_and_loads(tmp_path):
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    distiller = keras_kd.Distiller(
        teacher, student, temperature=2.0, distillation_loss=losses.GeneralizedJSD(beta=0.25, name="gkd")
    )
    distiller.compile(optimizer="sgd")
    x, y = np.ones((4, 4), "float32"), np.zeros(4, "int32")
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    assert isinstance(loaded.distillation_loss, losses.GeneralizedJSD)
    assert loaded.distillation_loss.get_config() == {"name": "gkd", "standardize": False, "beta": 0.25}


# --------------------------------------------------------------------------
# Every logit loss: extremes, gradients, serialization, jit
# --------------------------------------------------------------------------


@pytest.mark.parametrize("loss_name", sorted(LOGIT_LOSSES))
@pytest.mark.parametrize("temperature", [0.05, 100.0])
def test_logit_losses_are_finite_with_finite_gradients_for_extreme_logits(loss_name, temperature):
    loss = LOGIT_LOSSES[loss_name]
    step = ops.convert_to_tensor(5.0)
    values, gradient = values_and_student_gradient(loss, EXTREME_TEACHER, EXTREME_STUDENT, temperature, step)
    assert values.shape == (3,)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(np.isfinite(gradient))


@pytest.mark.parametrize("loss_name", sorted(LOGIT_LOSSES))
def test_logit_losses_round_trip_through_serialization(loss_name):
    loss = LOGIT_LOSSES[loss_name]
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert losses.get(config).get_config() == loss.get_config()
    # Eager, on the shapes the eager tests use (cheap on jax: compiled ops are cached by shape).
    teacher, student = random_logits(LOGITS_SHAPE, seed=30), random_logits(LOGITS_SHAPE, seed=31)
    step = ops.convert_to_tensor(3.0)
    np.testing.assert_array_equal(
        as_numpy(restored(teacher, student, 2.0, step=step)),
        as_numpy(loss(teacher, student, 2.0, step=step)),
    )


@pytest.mark.parametrize("loss_name", sorted(LOGIT_LOSSES))
def test_logit_losses_jitted_equal_eager(loss_name):
    loss = LOGIT_LOSSES[loss_name]
    teacher, student, temperature, step = tensors(
        random_logits(LOGITS_SHAPE, seed=32), random_logits(LOGITS_SHAPE, seed=33), 2.5, 4.0
    )
    jitted = jit_compile(lambda t, s, temp, st: loss(t, s, temp, step=st))
    np.testing.assert_allclose(
        as_numpy(jitted(teacher, student, temperature, step)),
        as_numpy(loss(teacher, student, temperature, step=step)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_get_returns_distillation_losses_and_names_valid_choices():
    assert isinstance(losses.get(None), losses.SoftTargetKL)
    dkd = losses.DecoupledKD(beta=2.0)
    assert losses.get(dkd) is dkd
    with pytest.raises(TypeError, match=r"distillation_loss must be.*DecoupledKD.*got 'dkd' of type str"):
        losses.get("dkd")
    feature_config = keras.saving.serialize_keras_object(losses.HintMSE())
    with pytest.raises(TypeError, match=r"distillation_loss must be.*got HintMSE"):
        losses.get(feature_config)


def test_distillation_loss_base_class_needs_call():
    message = r"call\(teacher_logits, student_logits, temperature, step=None\)"
    with pytest.raises(NotImplementedError, match=message):
        losses.DistillationLoss()(np.zeros((1, 2)), np.zeros((1, 2)), 1.0)


# --------------------------------------------------------------------------
# Property tests (hypothesis)
# --------------------------------------------------------------------------

# Logits are integers in [-1e4, 1e4] (exact in float32, extremes included)
# and shifts are integers, so `logits + shift` is exact: any difference comes
# from rounding inside the loss, bounded by `float32_slack`.
_logit_values = st.one_of(st.integers(-10_000, 10_000), st.sampled_from([-10_000, 10_000, 0]))


@st.composite
def logit_problems(draw):
    # Two shapes (each new shape is a new compile): the smallest problem, and
    # the extreme-logit tests' shape.
    batch, classes = draw(st.sampled_from([(1, 2), EXTREME_TEACHER.shape]))
    matrix = st.lists(st.lists(_logit_values, min_size=classes, max_size=classes), min_size=batch, max_size=batch)
    teacher = np.array(draw(matrix), "float32")
    student = np.array(draw(matrix), "float32")
    temperature = draw(st.floats(0.05, 100.0))
    shifts = np.array(draw(st.lists(st.integers(-1000, 1000), min_size=batch, max_size=batch)), "float32")
    return teacher, student, temperature, shifts[:, None]


def float32_slack(temperature, *logits):
    # Rounding of z / T (relative 1e-7 of max|z| / T), times T^2 for the loss.
    largest = max(float(np.abs(z).max()) for z in logits)
    return 1e-6 * temperature * (largest + 1.0) * 8


PROPERTY_LOSSES = {
    "soft_target_kl": losses.soft_target_kl,
    "decoupled_kd": losses.decoupled_kd,
    "reverse_kl": losses.reverse_kl,
    "generalized_jsd": losses.generalized_jsd,
    "generalized_jsd_0.1": generalized_jsd_beta_0_1,
    "total_variation": losses.total_variation,
}


@pytest.mark.parametrize("loss_name", sorted(PROPERTY_LOSSES))
@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(problem=logit_problems())
def test_logit_loss_properties(loss_name, problem):
    loss = PROPERTY_LOSSES[loss_name]
    teacher, student, temperature, shifts = problem
    values = compute(loss, teacher, student, temperature)
    assert values.shape == (len(teacher),)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert np.all(compute(loss, teacher, teacher, temperature) == 0)
    shifted = compute(loss, teacher + shifts, student - 2 * shifts, temperature)
    # DKD weighs its two KLs by alpha + beta = 1 + 8, and their rounding with them.
    weight = 9.0 if loss_name == "decoupled_kd" else 1.0
    slack = weight * float32_slack(temperature, teacher + shifts, student - 2 * shifts)
    np.testing.assert_allclose(shifted, values, rtol=1e-4, atol=slack)


# --------------------------------------------------------------------------
# Feature losses
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_feature_losses_match_numpy(case):
    loss, _, _, reference = FEATURE_CASES[case]
    teacher, student = feature_pair(case, seed=40)
    values = compute(loss, teacher, student)
    assert values.shape == (len(teacher),)
    np.testing.assert_allclose(values, reference(teacher, student), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "case, loss, authors_batch_value",
    [
        ("rkd", losses.rkd_distance, lambda t, s: numpy_rkd_distance_matrix(t, s).mean()),
        ("rkd", losses.rkd_angle, lambda t, s: numpy_rkd_angle_tensor(t, s).mean()),
        ("pkt", losses.pkt, lambda t, s: numpy_pkt_matrix(t, s).mean()),
    ],
)
def test_batch_level_losses_average_to_the_authors_batch_values(case, loss, authors_batch_value):
    teacher, student = feature_pair(case, seed=41)
    assert compute(loss, teacher, student).mean() == pytest.approx(authors_batch_value(teacher, student), rel=1e-4)


def test_attention_transfer_compares_maps_not_magnitudes_or_channel_counts():
    loss, teacher_shape, student_shape, _ = FEATURE_CASES["attention"]
    rng = np.random.default_rng(42)
    base = rng.normal(size=teacher_shape[:-1] + (1,)).astype("float32")
    # mean_c |f|^p is |base|^p for the teacher and 5^p |base|^p for the
    # student: the same map once normalized, whatever the channel counts.
    teacher = base.repeat(teacher_shape[-1], -1)
    student = (-5 * base).repeat(student_shape[-1], -1)
    np.testing.assert_allclose(compute(loss, teacher, student), 0.0, atol=1e-7)
    teacher, student = feature_pair("attention", seed=43)
    p2 = compute(losses.attention_transfer, teacher, student, 2.0)
    p4 = compute(losses.attention_transfer, teacher, student, 4.0)
    np.testing.assert_allclose(p2, numpy_attention_transfer(teacher, student, p=2.0), rtol=1e-4)
    np.testing.assert_allclose(p4, numpy_attention_transfer(teacher, student, p=4.0), rtol=1e-4)
    assert not np.allclose(p2, p4)


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
@pytest.mark.parametrize("scale", [1e-12, 1e4, 1e12])
def test_feature_losses_are_finite_and_scale_as_expected_for_large_and_small_features(case, scale):
    loss = FEATURE_CASES[case][0]
    teacher, student = feature_pair(case, seed=44)
    values = compute(loss, scale * teacher, scale * student)
    reference = compute(loss, teacher, student)
    assert np.all(np.isfinite(values))
    # Only the hint loss sees magnitudes; the others compare directions or relations.
    expected = reference * scale**2 if case == "mse" else reference
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def degenerate_pair(case, kind):
    """Feature batches with what breaks naive code: zero vectors, duplicates, one example."""
    teacher, student = feature_pair(case, seed=45)
    if kind == "zeros_and_duplicates":
        student[0] = 0.0  # a dead student feature against a live teacher one
        teacher[1] = 0.0
        student[1] = 0.0
        teacher[3], student[3] = teacher[2], student[2]
    elif kind == "all_identical":
        teacher, student = np.repeat(teacher[:1], len(teacher), 0), np.repeat(student[:1], len(student), 0)
    else:
        teacher, student = teacher[:1], student[:1]
    return teacher, student


@pytest.mark.parametrize(
    "case, kind",
    [(case, "zeros_and_duplicates") for case in sorted(FEATURE_CASES)]
    # Whole-batch degeneracies only matter to the batch-level losses.
    + [(case, kind) for case in ("pkt", "rkd") for kind in ("all_identical", "single_example")],
)
def test_feature_losses_have_finite_values_and_gradients_for_degenerate_batches(case, kind):
    loss = FEATURE_CASES[case][0]
    teacher, student = degenerate_pair(case, kind)
    values, gradient = values_and_student_gradient(loss, teacher, student)
    assert values.shape == (len(teacher),)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradient))


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_feature_losses_round_trip_through_serialization(case):
    loss = FEATURE_CASES[case][0]
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert losses.get_feature_loss(config).get_config() == loss.get_config()
    # Eager, on the shapes the eager tests use (cheap on jax: compiled ops are cached by shape).
    teacher, student = feature_pair(case, seed=46, same_shapes=True)
    np.testing.assert_array_equal(as_numpy(restored(teacher, student)), as_numpy(loss(teacher, student)))


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_feature_losses_jitted_equal_eager(case):
    loss = FEATURE_CASES[case][0]
    teacher, student = tensors(*feature_pair(case, seed=47, same_shapes=True))
    np.testing.assert_allclose(
        as_numpy(jit_compile(lambda t, s: loss(t, s))(teacher, student)),
        as_numpy(loss(teacher, student)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_get_feature_loss_strings_names_and_errors():
    names = ("mse", "hint", "attention", "cosine", "rkd", "pkt")
    loaded = {name: losses.get_feature_loss(name) for name in names}
    assert {name: type(loss).__name__ for name, loss in loaded.items()} == {
        "mse": "HintMSE",
        "hint": "HintMSE",
        "attention": "AttentionTransfer",
        "cosine": "CosineFeatureLoss",
        "rkd": "RelationalKD",
        "pkt": "ProbabilisticKT",
    }
    # The default names are the short strings: they name the Distiller's log entries.
    assert {name: loss.name for name, loss in loaded.items()} == {**{n: n for n in names}, "hint": "mse"}
    assert (loaded["rkd"].distance_weight, loaded["rkd"].angle_weight) == (25.0, 50.0)
    assert loaded["attention"].p == 2.0
    instance = losses.AttentionTransfer(p=4)
    assert losses.get_feature_loss(instance) is instance
    valid = r"\['attention', 'cosine', 'hint', 'mse', 'pkt', 'rkd'\]"
    with pytest.raises(ValueError, match=rf"Unknown feature loss 'l7'. Valid strings: {valid}"):
        losses.get_feature_loss("l7")
    with pytest.raises(TypeError, match=rf"one of the strings {valid}.*got None of type NoneType"):
        losses.get_feature_loss(None)
    with pytest.raises(TypeError, match=r"got SoftTargetKL"):
        losses.get_feature_loss(keras.saving.serialize_keras_object(losses.SoftTargetKL()))


def test_feature_losses_declare_whether_they_need_matching_shapes():
    needs = {
        name: losses.get_feature_loss(name).requires_matching_shapes
        for name in ("mse", "attention", "cosine", "rkd", "pkt")
    }
    assert needs == {"mse": True, "attention": True, "cosine": True, "rkd": False, "pkt": False}


@pytest.mark.parametrize(
    "loss, teacher_shape, student_shape, message",
    [
        (
            losses.hint_mse,
            (2, 4),
            (2, 3),
            r"hint_mse needs .* same shape; got teacher \(2, 4\) and student \(2, 3\)",
        ),
        (losses.cosine_feature_loss, (2, 2, 2), (2, 4), r"cosine_feature_loss needs"),
        (losses.attention_transfer, (2, 4, 4, 3), (2, 2, 2, 3), r"same spatial shape"),
        (losses.attention_transfer, (2, 4), (2, 4), r"needs feature maps with spatial axes"),
    ],
)
def test_feature_losses_reject_mismatched_shapes(loss, teacher_shape, student_shape, message):
    with pytest.raises(ValueError, match=message):
        loss(np.zeros(teacher_shape, "float32"), np.zeros(student_shape, "float32"))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: losses.AttentionTransfer(p=0.5), ValueError, r"`p` of AttentionTransfer must be >= 1"),
        (lambda: losses.RelationalKD(distance_weight=-1), ValueError, r"`distance_weight` must be >= 0"),
        (lambda: losses.RelationalKD(angle_weight=None), TypeError, r"`angle_weight` must be a real number"),
    ],
)
def test_feature_losses_reject_bad_hyperparameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_relational_kd_without_angle_is_the_weighted_distance_loss():
    teacher, student = feature_pair("rkd", seed=48)
    loss = losses.RelationalKD(distance_weight=3.0, angle_weight=0.0)
    np.testing.assert_allclose(
        compute(loss, teacher, student), 3.0 * numpy_rkd_distance_matrix(teacher, student).mean(1), rtol=1e-4
    )
