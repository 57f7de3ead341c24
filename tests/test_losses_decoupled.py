"""Tests of decoupled KD (Zhao et al., CVPR 2022): `decoupled_kd` and `DecoupledKD`.

Checked against a NumPy float64 reference and a port of the authors' code
(mdistiller), at extreme logits, and for the warm-up of the class.
"""

import math

import numpy as np
import pytest
from keras import ops
from scipy.special import logsumexp

from keras_kd import losses
from losses_support import (
    EXTREME_STUDENT,
    EXTREME_TEACHER,
    LOGITS_SHAPE,
    as_numpy,
    compute,
    numpy_kl,
    numpy_log_softmax,
    numpy_soft_target_kl,
    random_logits,
)

# --------------------------------------------------------------------------
# NumPy float64 references
# --------------------------------------------------------------------------


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
