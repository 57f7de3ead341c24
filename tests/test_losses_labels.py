"""Tests of the hard-label term: `label_cross_entropy`, `weighted_mean` and `resolve_hard_loss`."""

import keras
import numpy as np
import pytest

from keras_kd import losses, positions
from keras_kd.backend import _keras_compat
from losses_support import as_numpy

# --------------------------------------------------------------------------
# Cross-entropy with the labels
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Reduction
# --------------------------------------------------------------------------


def test_weighted_mean_follows_keras_sum_over_batch_size():
    assert losses.weighted_mean is positions.weighted_mean  # one home for the reductions
    values = np.array([1.0, 2.0, 3.0, 4.0], "float32")
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32")
    assert float(losses.weighted_mean(values)) == pytest.approx(2.5)
    assert float(losses.weighted_mean(values, weights)) == pytest.approx((1 + 6 + 2) / 4)
    keras_value = keras.losses.MeanSquaredError()(np.zeros((4, 1)), np.sqrt(values)[:, None], sample_weight=weights)
    assert float(losses.weighted_mean(values, weights)) == pytest.approx(float(keras_value), rel=1e-6)


# --------------------------------------------------------------------------
# The losses compile accepts
# --------------------------------------------------------------------------


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


class _MeanPrediction(keras.losses.Loss):
    """A custom loss with no `from_logits` anywhere."""

    def call(self, y_true, y_pred):
        return keras.ops.mean(y_pred, axis=-1)


def test_resolve_hard_loss_reads_from_logits_among_the_arguments_a_keras_loss_passes_its_function():
    assert _keras_compat.loss_function_arguments(keras.losses.CategoricalCrossentropy(from_logits=True))["from_logits"]
    assert _keras_compat.loss_function_arguments(keras.losses.KLDivergence()) == {}
    custom = _MeanPrediction()
    assert _keras_compat.loss_function_arguments(custom) == {}
    assert losses.resolve_hard_loss(custom) == custom.call
