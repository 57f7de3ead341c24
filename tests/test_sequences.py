"""Logits with a time or pixel axis: taggers and segmenters, with masked positions left out."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_kd
from keras_kd import losses

BATCH, TIME, CLASSES, VOCAB = 6, 5, 4, 12
ALPHA, T = 0.6, 2.0


def tagger(units, name, mask_zero=False, classes=CLASSES, time=TIME):
    """Per-token logits `(batch, time, classes)`; a token's logits depend on that token only."""
    tokens = keras.Input((time,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 8, mask_zero=mask_zero)(tokens)
    hidden = keras.layers.Dense(units, activation="relu")(hidden)
    return keras.Model(tokens, keras.layers.Dense(classes)(hidden), name=name)


def padded_tagger(units, name):
    """KerasHub-style inputs: `{"token_ids", "padding_mask"}`."""
    tokens = keras.Input((TIME,), dtype="int32", name="token_ids")
    padding = keras.Input((TIME,), dtype="int32", name="padding_mask")
    hidden = keras.layers.Embedding(VOCAB, 8)(tokens)
    hidden = keras.layers.Dense(units, activation="relu")(hidden)
    hidden = hidden * ops.expand_dims(ops.cast(padding, "float32"), -1)
    return keras.Model({"token_ids": tokens, "padding_mask": padding}, keras.layers.Dense(CLASSES)(hidden), name=name)


def segmenter(units, name, classes=CLASSES):
    """Per-pixel logits `(batch, 6, 6, classes)`; a 1x1 convolution, so each pixel is independent."""
    images = keras.Input((6, 6, 3))
    hidden = keras.layers.Conv2D(units, 1, activation="relu")(images)
    return keras.Model(images, keras.layers.Conv2D(classes, 1)(hidden), name=name)


def token_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (BATCH, TIME)).astype("int32")
    y = rng.integers(0, CLASSES, (BATCH, TIME))
    return x, y


def padding_of(lengths):
    return (np.arange(TIME)[None, :] < np.asarray(lengths)[:, None]).astype("int32")


def reference_loss(distiller, x, y, weights):
    """The loss by hand: per position, then the weighted sum over the valid positions."""
    teacher, student = (np.asarray(model.predict(x, verbose=0)) for model in (distiller.teacher, distiller.student))
    soft = np.asarray(losses.soft_target_kl(teacher, student, T))
    hard = np.asarray(losses.label_cross_entropy(y, student))
    per_position = ALPHA * soft + (1 - ALPHA) * hard
    return float(np.sum(per_position * weights) / np.count_nonzero(weights))


def evaluated(distiller, x, y, sample_weight=None):
    return distiller.evaluate(x, y, sample_weight=sample_weight, batch_size=BATCH, verbose=0, return_dict=True)


def compiled(distiller):
    return distiller.compile(optimizer="adam", metrics=["accuracy"])


def test_per_position_sample_weight_is_the_mean_over_valid_tokens_and_ignores_padding():
    x, y = token_data()
    weights = padding_of([5, 3, 1, 4, 2, 5]).astype("float32")
    distiller = compiled(keras_kd.Distiller(tagger(16, "t"), tagger(4, "s"), temperature=T, alpha=ALPHA))
    logs = evaluated(distiller, x, y, weights)
    assert logs["loss"] == pytest.approx(reference_loss(distiller, x, y, weights), rel=1e-5)

    # Other tokens and labels at the padded positions: the same loss and metrics.
    rng = np.random.default_rng(1)
    x_changed = np.where(weights > 0, x, rng.integers(1, VOCAB, x.shape)).astype("int32")
    y_changed = np.where(weights > 0, y, (y + 1) % CLASSES)
    assert (x_changed != x).any() and (y_changed != y).any()
    changed = evaluated(distiller, x_changed, y_changed, weights)
    for name in ("loss", "distillation_loss", "student_loss", "accuracy", "teacher_agreement"):
        assert changed[name] == pytest.approx(logs[name], rel=1e-5, abs=1e-7), name

    # Accuracy and teacher agreement count valid tokens only.
    student = np.argmax(distiller.student.predict(x, verbose=0), -1)
    teacher = np.argmax(distiller.teacher.predict(x, verbose=0), -1)
    valid = weights > 0
    assert logs["accuracy"] == pytest.approx(np.mean((student == y)[valid]), abs=1e-6)
    assert logs["teacher_agreement"] == pytest.approx(np.mean((student == teacher)[valid]), abs=1e-6)


def test_a_keras_mask_from_mask_zero_leaves_padding_tokens_out():
    x, y = token_data()
    x[:, 3:] = 0  # token 0 is padding under Embedding(mask_zero=True)
    x[0, 3:] = [4, 5]
    distiller = compiled(
        keras_kd.Distiller(tagger(16, "t", mask_zero=True), tagger(4, "s", mask_zero=True), temperature=T, alpha=ALPHA)
    )
    valid = (x != 0).astype("float32")
    logs = evaluated(distiller, x, y)
    assert logs["loss"] == pytest.approx(reference_loss(distiller, x, y, valid), rel=1e-5)
    y_changed = np.where(valid > 0, y, (y + 2) % CLASSES)
    assert evaluated(distiller, x, y_changed)["loss"] == pytest.approx(logs["loss"], rel=1e-6)


def test_a_padding_mask_input_leaves_padding_out():
    x, y = token_data()
    padding = padding_of([5, 2, 3, 1, 4, 5])
    inputs = {"token_ids": x, "padding_mask": padding}
    distiller = compiled(keras_kd.Distiller(padded_tagger(16, "t"), padded_tagger(4, "s"), temperature=T, alpha=ALPHA))
    logs = evaluated(distiller, inputs, y)
    assert logs["loss"] == pytest.approx(reference_loss(distiller, inputs, y, padding), rel=1e-5)
    y_changed = np.where(padding > 0, y, (y + 1) % CLASSES)
    assert evaluated(distiller, inputs, y_changed)["loss"] == pytest.approx(logs["loss"], rel=1e-6)


def test_unlabelled_tokens_leave_the_hard_label_term_only():
    x, y = token_data()
    y[:, :2] = keras_kd.transfer.UNLABELED
    distiller = compiled(keras_kd.Distiller(tagger(16, "t"), tagger(4, "s"), temperature=T, alpha=ALPHA))
    logs = evaluated(distiller, x, y)
    teacher, student = (np.asarray(m.predict(x, verbose=0)) for m in (distiller.teacher, distiller.student))
    soft = np.asarray(losses.soft_target_kl(teacher, student, T))
    hard = np.asarray(losses.label_cross_entropy(np.maximum(y, 0), student))
    labeled = y >= 0
    assert logs["distillation_loss"] == pytest.approx(soft.mean(), rel=1e-5)
    assert logs["student_loss"] == pytest.approx(hard[labeled].mean(), rel=1e-5)
    expected = (ALPHA * soft.sum() + (1 - ALPHA) * hard[labeled].sum()) / soft.size
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean((np.argmax(student, -1) == y)[labeled]), abs=1e-6)


def test_a_tagger_and_a_segmenter_distil():
    x, y = token_data()
    x, y = np.tile(x, (8, 1)), np.tile(y, (8, 1))
    distiller = compiled(keras_kd.Distiller(tagger(32, "t"), tagger(8, "s"), temperature=T, alpha=0.5))
    history = distiller.fit(x, y, sample_weight=np.ones(y.shape), batch_size=12, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]

    rng = np.random.default_rng(0)
    images, pixels = rng.random((24, 6, 6, 3), dtype="float32"), rng.integers(0, CLASSES, (24, 6, 6))
    weights = (rng.random((24, 6, 6)) > 0.3).astype("float32")
    distiller = compiled(keras_kd.Distiller(segmenter(16, "t"), segmenter(4, "s"), temperature=T, alpha=ALPHA))
    history = distiller.fit(images, pixels, sample_weight=weights, batch_size=8, epochs=4, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    logs = evaluated(distiller, images[:BATCH], pixels[:BATCH], weights[:BATCH])
    reference = reference_loss(distiller, images[:BATCH], pixels[:BATCH], weights[:BATCH])
    assert logs["loss"] == pytest.approx(reference, rel=1e-5)


def test_one_hot_per_pixel_labels_and_per_example_weights():
    rng = np.random.default_rng(0)
    images, pixels = rng.random((BATCH, 6, 6, 3), dtype="float32"), rng.integers(0, CLASSES, (BATCH, 6, 6))
    one_hot = np.eye(CLASSES, dtype="float32")[pixels]
    distiller = keras_kd.Distiller(segmenter(16, "t"), segmenter(4, "s"), temperature=T, alpha=ALPHA)
    distiller.compile(optimizer="adam")  # no metrics: they are built for one form of labels
    sparse = evaluated(distiller, images, pixels)
    assert evaluated(distiller, images, one_hot)["loss"] == pytest.approx(sparse["loss"], rel=1e-5)
    # Per-example weights scale whole images, Keras-style: the sum over every pixel.
    example_weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0], "float32")
    weighted = evaluated(distiller, images, pixels, example_weights)
    per_pixel = np.broadcast_to(example_weights[:, None, None], pixels.shape)
    teacher, student = (np.asarray(m.predict(images, verbose=0)) for m in (distiller.teacher, distiller.student))
    values = ALPHA * np.asarray(losses.soft_target_kl(teacher, student, T)) + (1 - ALPHA) * np.asarray(
        losses.label_cross_entropy(pixels, student)
    )
    assert weighted["loss"] == pytest.approx(np.sum(values * per_pixel) / values.size, rel=1e-5)


def test_a_cache_and_a_transfer_set_of_sequences():
    x, y = token_data()
    x_unlabeled, _ = token_data(seed=1)
    x_all, y_all = keras_kd.transfer.with_transfer_set(x, y, x_unlabeled)
    assert y_all.shape == (2 * BATCH, TIME) and (y_all[BATCH:] == keras_kd.transfer.UNLABELED).all()
    teacher = tagger(16, "t")
    cache = keras_kd.TeacherCache.build(teacher, x_all)
    assert cache.teacher_logits.shape == (2 * BATCH, TIME, CLASSES)
    cached = compiled(keras_kd.Distiller(teacher, tagger(4, "s"), temperature=T, alpha=ALPHA))
    uncached = compiled(
        keras_kd.Distiller(teacher, keras.models.clone_model(cached.student), temperature=T, alpha=ALPHA)
    )
    uncached.student.set_weights(cached.student.get_weights())
    data = cache.dataset(x_all, y_all, batch_size=BATCH, shuffle=False)
    from_cache = cached.evaluate(data, verbose=0, return_dict=True)
    direct = uncached.evaluate(x_all, y_all, batch_size=BATCH, verbose=0, return_dict=True)
    assert from_cache["loss"] == pytest.approx(direct["loss"], rel=1e-5)
    history = cached.fit(data, epochs=2, verbose=0).history
    assert np.isfinite(history["loss"]).all()


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.ones((BATCH, TIME + 1)), r"sample_weight of shape \(6, 6\).*positions of shape \(6, 5\)"),
        (np.ones((BATCH, TIME, 2)), r"sample_weight of shape \(6, 5, 2\).*\(6,\) \(one per example\)"),
    ],
)
def test_a_sample_weight_that_does_not_fit_the_positions_is_refused(weights, message):
    x, y = token_data()
    distiller = compiled(keras_kd.Distiller(tagger(16, "t"), tagger(4, "s")))
    with pytest.raises(ValueError, match=message):
        distiller.fit(x, y, sample_weight=weights, batch_size=BATCH, verbose=0)


def test_logits_of_other_classes_or_positions_are_refused():
    with pytest.raises(ValueError, match=r"same 4 classes.*Cross-vocabulary distillation .* is not supported"):
        keras_kd.Distiller(tagger(16, "t"), tagger(4, "s", classes=5))
    with pytest.raises(ValueError, match="same positions"):
        keras_kd.Distiller(segmenter(16, "t"), keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 2, 2)]))


def test_whole_example_feature_matching_with_masked_positions_is_refused_with_a_reason():
    x, y = token_data()
    teacher, student = tagger(16, "t"), tagger(16, "s")
    match = keras_kd.FeatureMatch(teacher.layers[2].name, student.layers[2].name, loss="rkd")
    distiller = compiled(keras_kd.Distiller(teacher, student, feature_matches=[match]))
    history = distiller.fit(x, y, batch_size=BATCH, verbose=0).history  # no mask: per-example terms work
    assert np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match="cannot leave out masked or zero-weighted positions"):
        distiller.fit(x, y, sample_weight=padding_of([5, 2, 3, 1, 4, 5]), batch_size=BATCH, verbose=0)
