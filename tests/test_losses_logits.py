"""Tests of the logit losses: soft-target KL, standardization and the divergence family.

Each loss is checked against a NumPy float64 reference, for finite values
and gradients at extreme logits, for a serialization round trip of its
class, for jitted == eager on the current backend, and (hypothesis) for the
properties every divergence has.
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
from losses_support import (
    EXTREME_STUDENT,
    EXTREME_TEACHER,
    LOGITS_SHAPE,
    as_numpy,
    compute,
    jit_compile,
    numpy_kl,
    numpy_log_softmax,
    numpy_soft_target_kl,
    random_logits,
    tensors,
    values_and_student_gradient,
)

# --------------------------------------------------------------------------
# NumPy float64 references
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# The losses under test
# --------------------------------------------------------------------------


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
