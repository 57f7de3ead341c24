import keras
import numpy as np
import pytest
from keras import ops

from keras_kd import losses


def numpy_soft_target_kl(teacher, student, temperature):
    def log_softmax(z):
        z = z / temperature
        z = z - z.max(-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(teacher.astype("float64")), log_softmax(student.astype("float64"))
    return (np.exp(log_p) * (log_p - log_q)).sum(-1) * temperature**2


def as_numpy(tensor):
    return ops.convert_to_numpy(tensor)


def test_soft_target_kl_matches_an_independent_value():
    # scipy.special.rel_entr(softmax(t / 2), softmax(s / 2)).sum() * 2 ** 2
    teacher = np.array([[1.0, 2.0, 3.0]], "float32")
    student = np.array([[3.0, 2.0, 1.0]], "float32")
    assert as_numpy(losses.soft_target_kl(teacher, student, 2.0))[0] == pytest.approx(
        1.2806266713192258, rel=1e-5
    )
    assert as_numpy(losses.soft_target_kl(teacher, student, 1.0))[0] == pytest.approx(
        1.1504207652088825, rel=1e-5
    )


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_soft_target_kl_matches_numpy_per_example_with_t_squared(temperature):
    rng = np.random.default_rng(1)
    teacher = rng.normal(scale=3, size=(16, 10)).astype("float32")
    student = rng.normal(scale=3, size=(16, 10)).astype("float32")
    values = as_numpy(losses.soft_target_kl(teacher, student, temperature))
    assert values.shape == (16,)
    np.testing.assert_allclose(
        values, numpy_soft_target_kl(teacher, student, temperature), rtol=1e-4, atol=1e-6
    )


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
    np.testing.assert_allclose(
        values, numpy_soft_target_kl(teacher, student, temperature), rtol=1e-4
    )


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
    keras_value = keras.losses.MeanSquaredError()(
        np.zeros((4, 1)), np.sqrt(values)[:, None], sample_weight=weights
    )
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
