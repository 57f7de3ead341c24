"""Feature matching on token sequences: per-token projections, and feature terms over the valid positions only."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_kd
from keras_kd import losses

BATCH, TIME, CLASSES, VOCAB = 6, 5, 4, 12
LENGTHS = [5, 3, 1, 4, 2, 5]


def token_model(width, name, padding_input=False):
    """Per-token logits `(batch, time, classes)`; the hidden state `<name>_hidden` at a token depends on that token only.

    With `padding_input`, KerasHub-style dict inputs `{"token_ids", "padding_mask"}`; the padding mask zeroes
    the logits at padded positions (the hidden states there are left as they are).
    """
    tokens = keras.Input((TIME,), dtype="int32", name="token_ids")
    embedded = keras.layers.Embedding(VOCAB, 8, name=f"{name}_embedding")(tokens)
    hidden = keras.layers.Dense(width, activation="tanh", name=f"{name}_hidden")(embedded)
    logits = keras.layers.Dense(CLASSES, name=f"{name}_logits")(hidden)
    if not padding_input:
        return keras.Model(tokens, logits, name=name)
    padding = keras.Input((TIME,), dtype="int32", name="padding_mask")
    logits = logits * ops.expand_dims(ops.cast(padding, "float32"), -1)
    return keras.Model({"token_ids": tokens, "padding_mask": padding}, logits, name=name)


def token_data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, VOCAB, (BATCH, TIME)).astype("int32"), rng.integers(0, CLASSES, (BATCH, TIME))


def padding_of(lengths=LENGTHS):
    return (np.arange(TIME)[None, :] < np.asarray(lengths)[:, None]).astype("int32")


def sequence_distiller(loss, padding_input=False):
    teacher, student = token_model(16, "t", padding_input), token_model(8, "s", padding_input)
    match = keras_kd.FeatureMatch("t_hidden", "s_hidden", loss=loss, name="hidden")
    return keras_kd.Distiller(teacher, student, feature_matches=[match]).compile(optimizer=keras.optimizers.Adam(0.01))


def feature_term(distiller, x, y, sample_weight=None):
    """The feature term of one batch holding all rows, as `evaluate` logs it."""
    logs = distiller.evaluate(x, y, sample_weight=sample_weight, batch_size=BATCH, verbose=0, return_dict=True)
    return logs["hidden"]


def hidden_states(distiller, tokens):
    """The teacher's hidden states and the student's after the adapter, as NumPy float64."""
    teacher, student = distiller.teacher, distiller.student
    teacher_hidden = keras.Model(teacher.inputs, teacher.get_layer("t_hidden").output).predict(tokens, verbose=0)
    student_hidden = keras.Model(student.inputs, student.get_layer("s_hidden").output).predict(tokens, verbose=0)
    adapted = distiller.adapters[0](student_hidden)
    return np.asarray(teacher_hidden, "float64"), np.asarray(keras.ops.convert_to_numpy(adapted), "float64")


def numpy_per_token(loss, teacher, student):
    if loss == "mse":
        return np.mean((student - teacher) ** 2, axis=-1)
    cosine = np.sum(teacher * student, -1) / (np.linalg.norm(teacher, axis=-1) * np.linalg.norm(student, axis=-1))
    return 1.0 - cosine


@pytest.mark.parametrize("padding_input", [False, True], ids=["per_token_sample_weight", "padding_mask_input"])
def test_mse_and_cosine_matches_on_padded_token_sequences_train_a_per_token_dense_adapter(padding_input):
    teacher, student = token_model(16, "t", padding_input), token_model(8, "s", padding_input)
    matches = [
        keras_kd.FeatureMatch("t_hidden", "s_hidden", loss="mse"),
        keras_kd.FeatureMatch("t_hidden", "s_hidden", loss="cosine"),
    ]
    distiller = keras_kd.Distiller(teacher, student, feature_matches=matches)
    distiller.compile(optimizer=keras.optimizers.Adam(0.01))
    assert all(isinstance(adapter, keras.layers.Dense) and adapter.units == 16 for adapter in distiller.adapters)
    assert tuple(distiller.adapters[0].kernel.shape) == (8, 16)
    x, y = token_data()
    padding = padding_of()
    if padding_input:
        x, sample_weight = {"token_ids": x, "padding_mask": padding}, None
    else:
        sample_weight = padding.astype("float32")
    before = [np.array(adapter.kernel) for adapter in distiller.adapters]
    history = distiller.fit(x, y, sample_weight=sample_weight, batch_size=3, epochs=2, verbose=0).history
    for name in ("loss", "mse_s_hidden", "cosine_s_hidden"):
        assert np.isfinite(history[name]).all(), name
    for kernel, adapter in zip(before, distiller.adapters):
        assert not np.allclose(kernel, np.array(adapter.kernel))


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_a_padded_position_leaves_the_feature_term_unchanged_and_a_valid_one_changes_it(loss):
    distiller = sequence_distiller(loss)
    x, y = token_data()
    padding = padding_of()
    term = feature_term(distiller, x, y, padding)

    # Other tokens at the padded positions: other hidden states there, the same term.
    x_padded_changed = np.where(padding > 0, x, (x + 1) % VOCAB).astype("int32")
    assert (x_padded_changed != x).any()
    teacher_hidden, _ = hidden_states(distiller, x)
    changed_hidden, _ = hidden_states(distiller, x_padded_changed)
    assert not np.allclose(teacher_hidden, changed_hidden)
    assert feature_term(distiller, x_padded_changed, y, padding) == pytest.approx(term, rel=1e-5)

    # Another token at one valid position: another term.
    x_valid_changed = x.copy()
    x_valid_changed[0, 0] = x[0, 0] % (VOCAB - 1) + 1
    assert feature_term(distiller, x_valid_changed, y, padding) != pytest.approx(term, rel=1e-4)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_the_feature_term_is_the_per_token_loss_averaged_over_the_valid_tokens(loss):
    distiller = sequence_distiller(loss)
    x, y = token_data(seed=3)
    per_token = numpy_per_token(loss, *hidden_states(distiller, x))

    # No mask: the mean over every token.
    assert feature_term(distiller, x, y) == pytest.approx(np.mean(per_token), rel=1e-5)

    # A per-token weight (0 on padding): the weighted sum over the valid tokens, divided by their number.
    weights = padding_of().astype("float32")
    weights[1, 0] = 0.5
    expected = np.sum(per_token * weights) / np.count_nonzero(weights)
    assert feature_term(distiller, x, y, weights) == pytest.approx(expected, rel=1e-5)

    # The padding mask of dict inputs leaves out the same positions.
    padded = sequence_distiller(loss, padding_input=True)
    padded.set_weights(distiller.get_weights())
    padding = padding_of()
    masked = feature_term(padded, {"token_ids": x, "padding_mask": padding}, y)
    assert masked == pytest.approx(np.sum(per_token * padding) / padding.sum(), rel=1e-5)


def test_unmasked_per_token_mse_is_the_per_example_hint_loss_weighted_as_before():
    distiller = sequence_distiller("mse")
    x, y = token_data(seed=4)
    teacher, student = hidden_states(distiller, x)
    example_weights = np.linspace(0.5, 2.0, BATCH).astype("float32")
    per_example = losses.weighted_mean(losses.hint_mse(teacher, student), example_weights)
    assert feature_term(distiller, x, y, example_weights) == pytest.approx(float(per_example), rel=1e-5)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_per_position_feature_losses_match_numpy_and_leave_the_per_example_values_as_they_were(loss):
    rng = np.random.default_rng(5)
    teacher, student = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    loss_object = losses.get_feature_loss(loss)
    assert loss_object.supports_positions
    per_position = np.asarray(keras.ops.convert_to_numpy(loss_object.per_position(teacher, student)))
    np.testing.assert_allclose(per_position, numpy_per_token(loss, teacher, student), rtol=1e-5)
    flat_teacher, flat_student = teacher.reshape(2, 1, -1), student.reshape(2, 1, -1)
    per_example = np.asarray(keras.ops.convert_to_numpy(loss_object(teacher, student)))
    np.testing.assert_allclose(per_example, numpy_per_token(loss, flat_teacher, flat_student)[:, 0], rtol=1e-5)


@pytest.mark.parametrize("loss", ["attention", "rkd", "pkt"])
def test_whole_example_feature_losses_have_no_per_position_form(loss):
    loss_object = losses.get_feature_loss(loss)
    assert not loss_object.supports_positions
    with pytest.raises(NotImplementedError, match=f"{type(loss_object).__name__} compares whole examples only"):
        loss_object.per_position(np.ones((2, 3, 4)), np.ones((2, 3, 4)))


def strided_student():
    """A student whose layer `s_strided` has half the tokens, `(batch, 3, 8)`, while its logits have them all."""
    tokens = keras.Input((TIME + 1,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 8)(tokens)
    strided = keras.layers.Conv1D(8, 2, strides=2, name="s_strided")(hidden)
    logits = keras.layers.Dense(CLASSES)(keras.layers.UpSampling1D(2)(strided))
    return keras.Model(tokens, logits, name="s")


def test_sequence_features_with_other_positions_are_refused_with_both_shapes():
    teacher = keras.Sequential(
        [
            keras.Input((TIME + 1,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 8),
            keras.layers.Dense(16, name="t_hidden"),
            keras.layers.Dense(CLASSES),
        ]
    )
    match = keras_kd.FeatureMatch("t_hidden", "s_strided")
    with pytest.raises(ValueError, match=r"\(None, 3, 8\).*\(None, 6, 16\) have different positions.*last axis"):
        keras_kd.Distiller(teacher, strided_student(), feature_matches=[match])


def pooled_model(width, name):
    tokens = keras.Input((TIME,), dtype="int32")
    hidden = keras.layers.Dense(width, name=f"{name}_hidden")(keras.layers.Embedding(VOCAB, 8)(tokens))
    pooled = keras.layers.GlobalAveragePooling1D(name=f"{name}_pooled")(hidden)
    logits = keras.layers.Dense(CLASSES)(hidden + ops.expand_dims(pooled, 1))
    return keras.Model(tokens, logits, name=name)


@pytest.mark.parametrize(
    "loss, layer, message",
    [
        ("rkd", "hidden", r"'hidden'.*loss 'rkd' \(RelationalKD\) has no per-position form"),
        ("attention", "hidden", r"loss 'attention' \(AttentionTransfer\) has no per-position form"),
        ("mse", "pooled", r"teacher feature \(\w+, 16\) does not have the logits' positions \(\w+, 5\)"),
    ],
)
def test_whole_example_feature_terms_on_masked_sequences_are_refused_naming_the_loss(loss, layer, message):
    teacher, student = pooled_model(16, "t"), pooled_model(8, "s")
    match = keras_kd.FeatureMatch(f"t_{layer}", f"s_{layer}", loss=loss, name="hidden")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match]).compile(optimizer="sgd")
    x, y = token_data()
    assert np.isfinite(distiller.fit(x, y, batch_size=BATCH, verbose=0).history["loss"]).all()  # no mask: per example
    with pytest.raises(ValueError, match=message + r".*cannot leave out masked or zero-weighted positions"):
        distiller.fit(x, y, sample_weight=padding_of(), batch_size=BATCH, verbose=0)
