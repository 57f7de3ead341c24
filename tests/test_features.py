import collections

import keras
import numpy as np
import pytest

import keras_kd
from conftest import make_mlp


class CallCounter(keras.layers.Layer):
    """Identity layer that counts its (eager) calls by its name."""

    calls = collections.Counter()

    def call(self, inputs):
        CallCounter.calls[self.name] += 1
        return inputs


def conv_model(channels, name, size=12, counter=False):
    inputs = keras.Input((size, size, 1))
    features = inputs
    if counter:
        features = CallCounter(name=f"{name}_counter")(features)
    features = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv1")(features)
    features = keras.layers.BatchNormalization(name=f"{name}_bn")(features)
    features = keras.layers.MaxPooling2D(name=f"{name}_pool")(features)
    features = keras.layers.Conv2D(channels * 2, 3, padding="same", activation="relu", name=f"{name}_conv2")(features)
    pooled = keras.layers.GlobalAveragePooling2D(name=f"{name}_gap")(features)
    logits = keras.layers.Dense(3, name=f"{name}_logits")(pooled)
    return keras.Model(inputs, logits, name=name)


def image_data(rows=32, size=12):
    rng = np.random.default_rng(0)
    return rng.normal(size=(rows, size, size, 1)).astype("float32"), rng.integers(0, 3, rows)


def test_adapters_are_created_trained_and_kept_out_of_the_student():
    teacher, student = conv_model(8, "teacher"), conv_model(4, "student")
    matches = [
        keras_kd.FeatureMatch(teacher_layer="teacher_conv2", student_layer="student_conv2", loss="mse"),
        keras_kd.FeatureMatch(
            teacher_layer=teacher.get_layer("teacher_gap"), student_layer="student_gap", loss="cosine"
        ),
        keras_kd.FeatureMatch(teacher_layer="teacher_conv2", student_layer="student_conv1", loss="mse", name="resized"),
    ]
    student_parameters = student.count_params()
    distiller = keras_kd.Distiller(teacher, student, feature_matches=matches)
    conv_adapter, dense_adapter, resizing_adapter = distiller.adapters
    assert isinstance(dense_adapter, keras.layers.Dense) and dense_adapter.units == 16
    assert conv_adapter.layers[0].kernel.shape == (1, 1, 8, 16)
    assert [type(layer).__name__ for layer in resizing_adapter.layers] == ["Conv2D", "Resizing"]

    # The student's and the adapters' variables, as Keras would list them
    # (found without walking the teacher), and nothing of the teacher's.
    assert distiller.trainable_variables == keras.Model.trainable_variables.fget(distiller)
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables + [w for a in distiller.adapters for w in a.trainable_variables]
    }
    before = [np.array(w) for w in dense_adapter.get_weights()]
    x, y = image_data()
    history = distiller.compile(optimizer=keras.optimizers.Adam(0.01)).fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert set(history.history) >= {
        "mse_student_conv2",
        "cosine_student_gap",
        "resized",
        "distillation_loss",
        "student_loss",
    }
    assert not np.allclose(before[0], dense_adapter.get_weights()[0])
    assert student.count_params() == student_parameters
    assert all("adapter" not in layer.name for layer in student.layers)


def test_each_model_runs_once_per_step():
    teacher, student = conv_model(8, "teacher", counter=True), conv_model(4, "student", counter=True)
    match = keras_kd.FeatureMatch(teacher_layer="teacher_conv2", student_layer="student_conv2")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    distiller.compile(optimizer="sgd", run_eagerly=True)
    x, y = image_data(rows=16)
    once_each = {"teacher_counter": 1, "student_counter": 1}
    CallCounter.calls.clear()
    distiller.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert CallCounter.calls == once_each
    CallCounter.calls.clear()
    distiller.evaluate(x, y, batch_size=16, verbose=0)
    assert CallCounter.calls == once_each


def nested_classifier(name, channels, own_input):
    """A classifier whose backbone is a functional model called as one layer, as KerasHub's classifiers are.

    The classifier's input is the backbone's own (as in KerasHub) or, with
    `own_input`, an Input of its own.
    """
    inputs = keras.Input((8, 8, 1))
    features = CallCounter(name=f"{name}_backbone_counter")(inputs)
    features = keras.layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv")(features)
    features = keras.layers.BatchNormalization(name=f"{name}_bn")(features)
    backbone = keras.Model(inputs, features, name=f"{name}_backbone")
    outer_inputs = keras.Input((8, 8, 1)) if own_input else backbone.input
    pooled = keras.layers.GlobalAveragePooling2D()(backbone(outer_inputs))
    head = CallCounter(name=f"{name}_head_counter")(pooled)
    return keras.Model(outer_inputs, keras.layers.Dense(3)(head), name=name)


def moving_statistics(layer):
    return [np.array(variable) for variable in (layer.moving_mean, layer.moving_variance)]


@pytest.mark.parametrize("own_input", [False, True], ids=["backbone_input", "own_input"])
def test_a_nested_backbone_runs_once_per_step_and_moves_batchnorm_once(own_input):
    teacher, student = nested_classifier("teacher", 8, own_input), nested_classifier("student", 4, own_input)
    twin = nested_classifier("twin", 4, own_input)
    twin.set_weights(student.get_weights())
    match = keras_kd.FeatureMatch(teacher_layer=teacher.get_layer("teacher_backbone"), student_layer="student_backbone")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    x, y = image_data(rows=16, size=8)
    CallCounter.calls.clear()
    distiller.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    # Four steps, each running each model once.
    assert CallCounter.calls == {
        f"{model}_{part}_counter": 4 for model in ("teacher", "student") for part in ("backbone", "head")
    }
    # The student's statistics moved as four forward passes move them (a
    # second pass would move them further); the teacher's did not move.
    for start in range(0, 16, 4):
        twin(x[start : start + 4], training=True)
    backbone_bn = student.get_layer("student_backbone").get_layer("student_bn")
    twin_bn = twin.get_layer("twin_backbone").get_layer("twin_bn")
    for moved, expected in zip(moving_statistics(backbone_bn), moving_statistics(twin_bn)):
        np.testing.assert_allclose(moved, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(moving_statistics(backbone_bn)[0], 0.0)
    teacher_bn = teacher.get_layer("teacher_backbone").get_layer("teacher_bn")
    np.testing.assert_array_equal(moving_statistics(teacher_bn)[0], 0.0)


def tiny_hub_classifier(keras_hub, name, calls):
    """A KerasHub ResNet image classifier from a config, random weights; its stem convolution and head count calls."""
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        image_shape=(16, 16, 3),
        name=f"{name}_backbone",
    )
    classifier = keras_hub.models.ResNetImageClassifier(backbone=backbone, num_classes=3, name=name)
    # A KerasHub model has no place for a counting layer: each counted
    # layer's own call is wrapped instead.
    for key, layer in (("conv", backbone.get_layer("conv1_conv")), ("head", classifier.get_layer("predictions"))):
        original = layer.call

        def counted(*args, _original=original, _key=f"{name}_{key}", **kwargs):
            calls[_key] += 1
            return _original(*args, **kwargs)

        object.__setattr__(layer, "call", counted)
    return classifier


def test_a_keras_hub_backbone_runs_once_per_step():
    keras_hub = pytest.importorskip("keras_hub")
    calls = collections.Counter()
    teacher = tiny_hub_classifier(keras_hub, "teacher", calls)
    student = tiny_hub_classifier(keras_hub, "student", calls)
    match = keras_kd.FeatureMatch(teacher_layer=teacher.backbone, student_layer=student.backbone)
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match])
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), run_eagerly=True)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16, 16, 3)).astype("float32"), rng.integers(0, 3, 8)
    before = moving_statistics(student.backbone.get_layer("conv1_bn"))
    calls.clear()
    history = distiller.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert calls == {f"{model}_{part}": 2 for model in ("teacher", "student") for part in ("conv", "head")}
    assert f"mse_{student.backbone.name}" in history.history
    moved = moving_statistics(student.backbone.get_layer("conv1_bn"))
    assert not np.allclose(before[0], moved[0])


def test_evaluate_leaves_batchnorm_statistics_untouched():
    teacher, student = conv_model(8, "teacher"), conv_model(4, "student")
    match = keras_kd.FeatureMatch(teacher_layer="teacher_conv2", student_layer="student_conv2")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match]).compile(optimizer="sgd")
    x, y = image_data()
    distiller.fit(x, y, epochs=1, verbose=0)
    moving = [np.array(v) for v in student.get_layer("student_bn").non_trainable_weights]
    distiller.evaluate(x * 5 + 3, y, verbose=0)
    for before, after in zip(moving, student.get_layer("student_bn").non_trainable_weights):
        np.testing.assert_array_equal(before, np.array(after))


def test_a_distiller_with_adapters_round_trips_through_keras_files(tmp_path):
    teacher, student = conv_model(8, "teacher"), conv_model(4, "student")
    match = keras_kd.FeatureMatch(teacher_layer="teacher_conv2", student_layer="student_conv1", weight=0.5)
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match]).compile(optimizer="adam")
    x, y = image_data()
    distiller.fit(x, y, epochs=1, verbose=0)
    distiller.save(tmp_path / "d.keras")
    loaded = keras.saving.load_model(tmp_path / "d.keras", safe_mode=True)
    assert loaded.feature_matches[0].weight == 0.5
    for original, restored in zip(distiller.adapters[0].weights, loaded.adapters[0].weights):
        np.testing.assert_array_equal(np.array(original), np.array(restored))
    expected = distiller.evaluate(x, y, return_dict=True, verbose=0)
    assert loaded.evaluate(x, y, return_dict=True, verbose=0)["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    loaded.fit(x, y, epochs=1, verbose=0)


def test_sequential_models_work():
    teacher = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu", name="t_hidden"), keras.layers.Dense(3)]
    )
    student = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, activation="relu", name="s_hidden"), keras.layers.Dense(3)]
    )
    match = keras_kd.FeatureMatch(teacher_layer="t_hidden", student_layer="s_hidden")
    distiller = keras_kd.Distiller(teacher, student, feature_matches=[match]).compile(optimizer="adam")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    history = distiller.fit(x, np.zeros(16, "int32"), epochs=1, verbose=0)
    assert "mse_s_hidden" in history.history


class SubclassedStudent(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(4, name="hidden")
        self.head = keras.layers.Dense(3)

    def call(self, inputs):
        return self.head(self.hidden(inputs))


def test_bad_feature_matches_are_refused_with_what_to_do():
    teacher, student = make_mlp(16, name="teacher"), make_mlp(4, name="student")
    hidden = teacher.layers[1].name
    with pytest.raises(ValueError, match=r"no layer named 'missing'.*Its layers"):
        keras_kd.Distiller(teacher, student, feature_matches=[keras_kd.FeatureMatch("missing", student.layers[1].name)])
    with pytest.raises(ValueError, match="adapter=None"):
        keras_kd.Distiller(
            teacher, student, feature_matches=[keras_kd.FeatureMatch(hidden, student.layers[1].name, adapter=None)]
        )
    subclassed = SubclassedStudent()
    subclassed(np.zeros((1, 8), "float32"))
    with pytest.raises(ValueError, match="subclassed model.*functional API"):
        keras_kd.Distiller(teacher, subclassed, feature_matches=[keras_kd.FeatureMatch(hidden, "hidden")])
    image_teacher = conv_model(8, "image_teacher", size=8)
    flat_student = keras.Model(*_flat_image_student())
    with pytest.raises(ValueError, match=r"cannot adapt the student feature of shape \(None, 4\)"):
        keras_kd.Distiller(
            image_teacher, flat_student, feature_matches=[keras_kd.FeatureMatch("image_teacher_conv2", "flat_hidden")]
        )
    with pytest.raises(TypeError, match="list of keras_kd.FeatureMatch"):
        keras_kd.Distiller(teacher, student, feature_matches=[("a", "b")])
    with pytest.raises(ValueError, match="weight` of a FeatureMatch must be >= 0"):
        keras_kd.FeatureMatch("a", "b", weight=-1)
    with pytest.raises(ValueError, match="Unknown|unknown"):
        keras_kd.FeatureMatch("a", "b", loss="l7")


def _flat_image_student():
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(4, name="flat_hidden")(keras.layers.Flatten()(inputs))
    return inputs, keras.layers.Dense(3)(hidden)
