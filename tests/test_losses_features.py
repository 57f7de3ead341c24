"""Tests of the feature losses and their classes: hint MSE, attention transfer, cosine, and lookup.

Every feature loss (the relational ones included) is checked against a
NumPy float64 reference, at large, small and degenerate features, for a
serialization round trip and for jitted == eager on the current backend.
"""

import keras
import numpy as np
import pytest

from keras_kd import losses
from losses_support import (
    FEATURE_CASES,
    as_numpy,
    compute,
    feature_pair,
    jit_compile,
    numpy_attention_transfer,
    tensors,
    values_and_student_gradient,
)

# --------------------------------------------------------------------------
# Every feature loss
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_feature_losses_match_numpy(case):
    loss, _, _, reference = FEATURE_CASES[case]
    teacher, student = feature_pair(case, seed=40)
    values = compute(loss, teacher, student)
    assert values.shape == (len(teacher),)
    np.testing.assert_allclose(values, reference(teacher, student), rtol=1e-4, atol=1e-6)


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


# --------------------------------------------------------------------------
# Attention transfer
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Lookup, shapes and hyperparameters
# --------------------------------------------------------------------------


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
