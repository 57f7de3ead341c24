"""Transfer sets (labels marked missing) and function matching (augmentation, mixup)."""

import math

import keras
import numpy as np
import pytest

import keras_kd
from conftest import make_data, make_mlp
from keras_kd import mixup, transfer


def _cross_entropy(logits, labels):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels]


def _soft_target_kl(teacher_logits, student_logits, temperature):
    def log_softmax(logits):
        shifted = logits / temperature
        shifted = shifted - shifted.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    teacher_log_probs = log_softmax(teacher_logits)
    student_log_probs = log_softmax(student_logits)
    kl = (np.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs)).sum(axis=-1)
    return temperature**2 * kl


def test_with_transfer_set_marks_the_unlabeled_rows():
    x_labeled, y_labeled = make_data(rows=10)
    x_unlabeled, _ = make_data(rows=6, seed=1)
    x, y = transfer.with_transfer_set(x_labeled, y_labeled, x_unlabeled)
    np.testing.assert_array_equal(x, np.concatenate([x_labeled, x_unlabeled]))
    np.testing.assert_array_equal(y[:10], y_labeled)
    np.testing.assert_array_equal(y[10:], -1)
    _, one_hot = transfer.with_transfer_set(x_labeled, np.eye(3)[y_labeled], x_unlabeled)
    assert one_hot.shape == (16, 3) and (one_hot[10:] == -1).all()


@pytest.mark.parametrize(
    "labeled_rows, unlabeled_dim, labels_fix, message",
    [
        (10, 5, None, r"shape \(8,\) per example but unlabelled ones \(5,\)"),
        (10, 8, lambda y: y[:7], r"10 labelled inputs but 7 labels"),
        (10, 8, lambda y: y - 5, r"Labels must be >= 0; got -5"),
    ],
)
def test_with_transfer_set_refuses_bad_inputs(labeled_rows, unlabeled_dim, labels_fix, message):
    x_labeled, y_labeled = make_data(rows=labeled_rows)
    x_unlabeled, _ = make_data(rows=4, input_dim=unlabeled_dim)
    if labels_fix is not None:
        y_labeled = labels_fix(y_labeled)
    with pytest.raises(ValueError, match=message):
        transfer.with_transfer_set(x_labeled, y_labeled, x_unlabeled)


@pytest.mark.parametrize("one_hot", [False, True], ids=["sparse", "one_hot"])
def test_the_hard_loss_and_metrics_skip_unlabeled_examples(one_hot):
    x, y = make_data(rows=32)
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(4, name="student", batchnorm=False)
    labeled = np.arange(32) % 3 != 0
    labels = np.where(labeled, y, -1)
    if one_hot:
        labels = np.where(labeled[:, None], np.eye(3)[y], -1.0).astype("float32")
    distiller = keras_kd.Distiller(teacher, student, temperature=2.0, alpha=0.3)
    distiller.compile(optimizer="sgd", metrics=["accuracy"])
    logs = distiller.evaluate(x, labels, batch_size=32, return_dict=True, verbose=0)

    teacher_logits = teacher.predict(x, verbose=0)
    student_logits = student.predict(x, verbose=0)
    hard = np.where(labeled, _cross_entropy(student_logits, y), 0.0)
    soft = _soft_target_kl(teacher_logits, student_logits, 2.0)
    assert logs["student_loss"] == pytest.approx(hard.sum() / labeled.sum(), rel=1e-4)
    assert logs["loss"] == pytest.approx(np.mean(0.3 * soft + 0.7 * hard), rel=1e-4)
    accuracy = np.mean(np.argmax(student_logits, -1)[labeled] == y[labeled])
    assert logs["accuracy"] == pytest.approx(accuracy)


def test_a_transfer_set_trains_from_unlabeled_rows_through_the_teacher_only():
    x, y = make_data(rows=32)
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(4, name="student", batchnorm=False)
    twin = keras.models.clone_model(student)
    twin.set_weights(student.get_weights())
    all_unlabeled = np.full_like(y, -1)
    # Labels of unlabelled rows never reach the student: with alpha=0 and no
    # labels at all, nothing moves.
    keras_kd.Distiller(teacher, student, alpha=0.0).compile(optimizer="sgd").fit(
        x, all_unlabeled, epochs=1, batch_size=16, verbose=0
    )
    for before, after in zip(twin.get_weights(), student.get_weights()):
        np.testing.assert_array_equal(before, after)
    # ...while with alpha > 0 the teacher teaches on them.
    keras_kd.Distiller(teacher, student, alpha=0.5).compile(optimizer="sgd").fit(
        x, all_unlabeled, epochs=1, batch_size=16, verbose=0
    )
    assert any(not np.array_equal(before, after) for before, after in zip(twin.get_weights(), student.get_weights()))


def test_a_training_batch_of_unlabelled_rows_adds_no_hard_loss():
    x, y = make_data(rows=32)
    distiller = keras_kd.Distiller(make_mlp(16, name="teacher"), make_mlp(4, name="student"), alpha=0.5)
    distiller.compile(optimizer="sgd")
    logs = distiller.train_on_batch(x, np.full_like(y, transfer.UNLABELED), return_dict=True)
    assert logs["student_loss"] == 0.0
    history = distiller.fit(x, np.where(np.arange(32) < 16, y, transfer.UNLABELED), batch_size=32, verbose=0)
    assert 0.0 < history.history["student_loss"][0]


def test_mix_batch_mixes_each_example_with_a_partner():
    x, _ = make_data(rows=16)
    mixed, partner, weight = mixup.mix_batch(keras.ops.convert_to_tensor(x), 0.4, keras.random.SeedGenerator(3))
    mixed, partner, weight = (keras.ops.convert_to_numpy(t) for t in (mixed, partner, weight))
    assert sorted(partner) == list(range(16))
    assert ((weight >= 0) & (weight <= 1)).all()
    np.testing.assert_allclose(mixed, weight[:, None] * x + (1 - weight[:, None]) * x[partner], rtol=1e-5, atol=1e-6)


def test_mixup_keeps_its_documented_path_in_transfer():
    assert transfer.mix_batch is mixup.mix_batch and transfer.sample_gamma is mixup.sample_gamma


@pytest.mark.parametrize("concentration", [0.3, 1.0, 4.0])
def test_sample_gamma_has_the_gamma_mean_and_variance(concentration):
    values = keras.ops.convert_to_numpy(mixup.sample_gamma((40000,), concentration, keras.random.SeedGenerator(0)))
    assert (values > 0).all()
    # Mean and variance of Gamma(c, 1) are both c; 40,000 draws put the
    # sample mean within about 4 standard errors.
    assert values.mean() == pytest.approx(concentration, rel=0.05)
    assert values.var() == pytest.approx(concentration, rel=0.1)


def _function_matching_distiller(seed, mixup=0.5, **kwargs):
    keras.utils.set_random_seed(0)
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = make_mlp(4, name="student", batchnorm=False)
    augmentation = keras.Sequential([keras.layers.GaussianNoise(0.3, seed=seed)])
    return keras_kd.FunctionMatchingDistiller(
        teacher, student, augmentation=augmentation, mixup=mixup, seed=seed, **kwargs
    )


@pytest.mark.parametrize("jit_compile", [True, False], ids=["jit", "eager_graph"])
def test_function_matching_is_label_free_and_deterministic_under_a_seed(jit_compile):
    x, _ = make_data(rows=48)

    def final_weights(seed):
        distiller = _function_matching_distiller(seed)
        assert distiller.alpha.numpy() == 1.0 and distiller.transforms_inputs
        distiller.compile(optimizer="adam", jit_compile=jit_compile)
        history = distiller.fit(x, epochs=1, batch_size=16, verbose=0)
        assert all(math.isfinite(value) for value in history.history["loss"])
        return distiller.student.get_weights()

    first, again = final_weights(1), final_weights(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    if not jit_compile:  # Compiling a third time (torch.compile: ~30 s) adds nothing here.
        other_seed = final_weights(2)
        assert any(not np.array_equal(a, b) for a, b in zip(first, other_seed))


def test_teacher_and_student_see_the_same_transformed_batch():
    # A student identical to the teacher has zero KL only if both saw the
    # same augmented and mixed inputs.
    x, _ = make_data(rows=32)
    teacher = make_mlp(16, name="teacher", batchnorm=False)
    student = keras.models.clone_model(teacher)
    student.set_weights(teacher.get_weights())
    augmentation = keras.Sequential([keras.layers.GaussianNoise(1.0, seed=4)])
    distiller = keras_kd.FunctionMatchingDistiller(
        teacher, student, augmentation=augmentation, mixup=1.0, seed=0
    ).compile(optimizer=keras.optimizers.SGD(0.0))
    history = distiller.fit(x, epochs=1, batch_size=32, verbose=0)
    assert history.history["distillation_loss"][0] == pytest.approx(0.0, abs=1e-5)
    # The check can fail: a differently augmented student input gives KL > 0.
    noisy = x + np.random.default_rng(0).normal(size=x.shape).astype("float32")
    kl = _soft_target_kl(teacher.predict(x, verbose=0), student.predict(noisy, verbose=0), 4.0)
    assert kl.mean() > 1e-3


def test_evaluation_sees_the_inputs_unchanged():
    x, y = make_data(rows=32)
    distiller = _function_matching_distiller(seed=0, alpha=0.5).compile(optimizer="adam")
    plain = keras_kd.Distiller(distiller.teacher, distiller.student, alpha=0.5).compile(optimizer="adam")
    assert distiller.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        plain.evaluate(x, y, verbose=0, return_dict=True)
    )


def test_mixup_mixes_the_labels_with_the_same_weights():
    x, y = make_data(rows=32)
    distiller = _function_matching_distiller(seed=0, alpha=0.0).compile(optimizer="adam", metrics=["accuracy"])
    logs = distiller.fit(x, y, epochs=1, batch_size=32, verbose=0).history
    # One mixed batch whose labels are mixed too: a finite hard loss and a
    # (larger share's label) accuracy in [0, 1].
    assert math.isfinite(logs["student_loss"][0])
    assert 0.0 <= logs["accuracy"][0] <= 1.0


def test_function_matching_survives_save_and_load(tmp_path):
    x, _ = make_data(rows=32)
    distiller = _function_matching_distiller(seed=5).compile(optimizer="adam")
    distiller.fit(x, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "function_matching.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, keras_kd.FunctionMatchingDistiller)
    assert loaded.mixup == 0.5 and loaded.seed == 5
    assert isinstance(loaded.augmentation, keras.Sequential)
    # The random states continue where they were: the next epoch matches.
    distiller.fit(x, epochs=1, batch_size=16, shuffle=False, verbose=0)
    loaded.fit(x, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(distiller.student.get_weights(), loaded.student.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"mixup": 0.0}, ValueError, r"needs an `augmentation` layer, a `mixup`"),
        ({"mixup": -0.5, "augmentation": None}, ValueError, r"`mixup` must be >= 0.*got -0.5"),
        ({"mixup": math.inf}, ValueError, r"`mixup` must be finite; got inf"),
        ({"mixup": "strong"}, TypeError, r"`mixup` must be a real number; got 'strong'"),
        ({"augmentation": "flip"}, TypeError, r"`augmentation` must be None or a keras.layers.Layer.*'flip'"),
    ],
)
def test_bad_function_matching_arguments_are_clear_errors(kwargs, error, message):
    teacher = make_mlp(16, name="teacher")
    student = make_mlp(4, name="student")
    with pytest.raises(error, match=message):
        keras_kd.FunctionMatchingDistiller(teacher, student, **kwargs)
