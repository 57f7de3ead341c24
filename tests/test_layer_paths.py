"""Feature matches on layers inside nested models, named by a path: one forward pass per model per step."""

import collections

import keras
import numpy as np
import pytest

import keras_kd
from test_features import CallCounter, image_data, moving_statistics, nested_classifier, tiny_hub_classifier


def numpy(tensor):
    return keras.ops.convert_to_numpy(keras.ops.stop_gradient(tensor))


def test_a_layer_inside_a_nested_backbone_runs_each_model_once_per_step(tmp_path):
    # The backbone's Input is the classifier's, as in KerasHub (tests/test_features.py also counts the other case).
    teacher, student = nested_classifier("teacher", 8, False), nested_classifier("student", 4, False)
    twin = nested_classifier("twin", 4, False)
    twin.set_weights(student.get_weights())
    match = keras_kd.FeatureMatch("teacher_backbone/teacher_conv", "student_backbone/student_bn")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    x, y = image_data(rows=16, size=8)
    CallCounter.calls.clear()
    history = distiller.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert CallCounter.calls == {
        f"{model}_{part}_counter": 4 for model in ("teacher", "student") for part in ("backbone", "head")
    }
    # The student's BatchNormalization moved as four forward passes move it.
    for start in range(0, 16, 4):
        twin(x[start : start + 4], training=True)
    moved = moving_statistics(student.get_layer("student_backbone").get_layer("student_bn"))
    for value, expected in zip(moved, moving_statistics(twin.get_layer("twin_backbone").get_layer("twin_bn"))):
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(history.history["mse_student_backbone_student_bn"][-1])
    # A 1x1 convolution adapts 4 channels to 8; the feature term is the MSE of the inner layers' outputs.
    teacher_backbone = teacher.get_layer("teacher_backbone")
    teacher_conv = keras.Model(teacher_backbone.input, teacher_backbone.get_layer("teacher_conv").output)(x[:4])
    student_bn = keras.Model(
        student.get_layer("student_backbone").input,
        student.get_layer("student_backbone").get_layer("student_bn").output,
    )(x[:4])
    expected = np.mean(np.square(numpy(distiller.adapters[0](student_bn)) - numpy(teacher_conv)))
    logs = distiller.evaluate(x[:4], y[:4], batch_size=4, return_dict=True, verbose=0)
    assert logs["mse_student_backbone_student_bn"] == pytest.approx(float(expected), rel=1e-4)
    distiller.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras", custom_objects={"CallCounter": CallCounter})
    reloaded_logs = loaded.evaluate(x[:4], y[:4], batch_size=4, return_dict=True, verbose=0)
    assert reloaded_logs["mse_student_backbone_student_bn"] == pytest.approx(float(expected), rel=1e-4)


def two_levels_deep(name):
    """A classifier around a block around a stage: the path `<name>_block/<name>_stage/<name>_dense` is two deep."""
    inputs = keras.Input((6,))
    stage_out = keras.layers.Dense(5, activation="tanh", name=f"{name}_dense")(inputs)
    stage = keras.Model(inputs, keras.layers.Dense(5, name=f"{name}_after")(stage_out), name=f"{name}_stage")
    block_inputs = keras.Input((6,))
    block = keras.Model(block_inputs, stage(block_inputs) * 2.0, name=f"{name}_block")
    outer_inputs = keras.Input((6,))
    return keras.Model(outer_inputs, keras.layers.Dense(3)(block(outer_inputs)), name=name)


def test_a_path_two_levels_deep_reads_the_layer_in_the_same_pass():
    teacher, student = two_levels_deep("teacher"), two_levels_deep("student")
    match = keras_kd.FeatureMatch(
        "teacher_block/teacher_stage/teacher_dense", "student_block/student_stage/student_dense"
    )
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    x = np.random.default_rng(1).normal(size=(8, 6)).astype("float32")
    logits, feature = distiller._student_extractor(x)
    np.testing.assert_allclose(numpy(logits), numpy(student(x)), rtol=1e-5, atol=1e-6)
    dense = student.get_layer("student_block").get_layer("student_stage").get_layer("student_dense")
    np.testing.assert_allclose(numpy(feature), numpy(dense(x)), rtol=1e-5, atol=1e-6)
    history = distiller.compile(optimizer="adam").fit(x, np.zeros(8, "int32"), epochs=2, verbose=0)
    assert history.history["mse_student_block_student_stage_student_dense"][-1] > 0


def test_a_keras_hub_backbone_layer_runs_once_per_step_and_caches(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    calls = collections.Counter()
    teacher = tiny_hub_classifier(keras_hub, "teacher", calls)
    student = tiny_hub_classifier(keras_hub, "student", calls)
    match = keras_kd.FeatureMatch("teacher_backbone/stack0_block0_add", "student_backbone/stack0_block0_add")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.SGD(0.01), run_eagerly=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 8)
    calls.clear()
    distiller.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert calls == {f"{model}_{part}": 2 for model in ("teacher", "student") for part in ("conv", "head")}
    cache = keras_kd.TeacherCache.build(teacher, x, feature_layers=[match.teacher_layer], path=tmp_path / "cache")
    calls.clear()
    history = distiller.fit(cache.dataset(x, y, batch_size=4, shuffle=False), epochs=1, verbose=0)
    assert calls == {"student_conv": 2, "student_head": 2}
    assert np.isfinite(history.history[match.name][-1])
    add = teacher.backbone.get_layer("stack0_block0_add")
    expected = keras.Model(teacher.backbone.input, add.output)(x)
    np.testing.assert_allclose(cache.teacher_features(match.teacher_layer), numpy(expected), rtol=1e-4, atol=1e-5)


def test_a_keras_hub_transformer_layer_is_read_in_the_same_pass_and_padding_is_left_out():
    pytest.importorskip("keras_hub")
    from hub_support import llama3_lm

    teacher, student = llama3_lm(4, 16, "teacher", 32), llama3_lm(2, 8, "student", 32)
    match = keras_kd.FeatureMatch(
        f"{teacher.backbone.name}/transformer_layer_3", f"{student.backbone.name}/transformer_layer_1"
    )
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match], temperature=1.0)
    assert isinstance(distiller.adapters[0], keras.layers.Dense)  # 8 -> 16 at each token
    rng = np.random.default_rng(0)
    padding_mask = np.arange(6) < np.array([[6], [4], [5], [3]])
    x = {"token_ids": rng.integers(1, 32, (4, 6)), "padding_mask": padding_mask}
    y = rng.integers(0, 32, (4, 6))
    logits, feature = distiller._teacher_extractor(x)
    np.testing.assert_allclose(numpy(logits), numpy(teacher(x)), rtol=1e-5, atol=1e-5)
    layer = teacher.backbone.get_layer("transformer_layer_3")
    expected = keras.Model(teacher.backbone.input, layer.output)(x)
    np.testing.assert_allclose(numpy(feature), numpy(expected), rtol=1e-5, atol=1e-5)
    history = distiller.compile(optimizer="adam").fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(history.history[match.name]).all()

    def feature_term(token_ids):
        batch = {"token_ids": token_ids, "padding_mask": padding_mask}
        return distiller.evaluate(batch, y, batch_size=4, return_dict=True, verbose=0)[match.name]

    # Other tokens where the padding is leave the term as it is; another token at a valid position does not.
    padded_changed, valid_changed = x["token_ids"].copy(), x["token_ids"].copy()
    padded_changed[~padding_mask] = (padded_changed[~padding_mask] + 7) % 31 + 1
    valid_changed[1, 0] = valid_changed[1, 0] % 31 + 1
    assert feature_term(padded_changed) == pytest.approx(feature_term(x["token_ids"]), rel=1e-5)
    assert feature_term(valid_changed) != pytest.approx(feature_term(x["token_ids"]), rel=1e-3)


def test_bad_layer_paths_say_what_exists():
    teacher, student = two_levels_deep("teacher"), two_levels_deep("student")

    def distiller(teacher_layer):
        keras_kd.Distiller(teacher, student, feature_matches=[keras_kd.FeatureMatch(teacher_layer, "student_block")])

    with pytest.raises(
        ValueError, match=r"'teacher_block' has no layer named 'stag'\. Its layers: \[.*'teacher_stage'"
    ):
        distiller("teacher_block/stag")
    with pytest.raises(ValueError, match=r"goes inside 'teacher_block/teacher_stage/teacher_dense', a Dense"):
        distiller("teacher_block/teacher_stage/teacher_dense/kernel")
    with pytest.raises(ValueError, match=r"empty name.*joined by '/'"):
        distiller("teacher_block//teacher_stage")
    inputs = keras.Input((6,))
    two_outputs = keras.Model(inputs, [keras.layers.Dense(2)(inputs), keras.layers.Dense(3)(inputs)], name="pair")
    outer_inputs = keras.Input((6,))
    first, second = two_outputs(outer_inputs)
    paired = keras.Model(outer_inputs, keras.layers.Dense(3)(keras.layers.Concatenate()([first, second])))
    with pytest.raises(ValueError, match=r"layer 'pair' is a list, not one tensor"):
        keras_kd.Distiller(paired, student, feature_matches=[keras_kd.FeatureMatch("pair", "student_block")])
