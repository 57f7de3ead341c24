"""The reference model builders: parameter counts, shapes, one training step, `get`.

The ResNets have their own tests (tests/test_resnets.py, helper B's); here
they only appear through `models.get`.
"""

import keras
import numpy as np
import pytest

import keras_kd
from keras_kd import models
from recipes.support import parameter_count


def trainable_count(model):
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


@pytest.mark.parametrize(
    "builder, trainable, total",
    [
        # 784*1200 + 1200 + 1200*1200 + 1200 + 1200*10 + 10
        (models.hinton_mnist_teacher, 2_395_210, 2_395_210),
        # 784*800 + 800 + 800*800 + 800 + 800*10 + 10
        (models.hinton_mnist_student, 1_276_810, 1_276_810),
        # Seed 003's student count; Keras adds 2 * (16 + 32 + 64 + 128) BatchNorm statistics.
        (models.small_cnn_student, 106_826, 107_306),
        (models.small_cnn_teacher, 4_694_346, 4_698_186),
    ],
)
def test_parameter_counts(builder, trainable, total):
    model = builder()
    assert trainable_count(model) == trainable
    assert model.count_params() == total
    assert parameter_count(model) == trainable


def test_parameter_count_of_a_frozen_model_still_counts_its_weights():
    model = models.small_cnn_student()
    model.trainable = False
    assert trainable_count(model) == 0
    assert parameter_count(model) == 106_826


@pytest.mark.parametrize(
    "builder, input_shape",
    [
        (models.hinton_mnist_teacher, (28, 28, 1)),
        (models.hinton_mnist_student, (28, 28, 1)),
        (models.small_cnn_student, (32, 32, 3)),
        (models.small_cnn_teacher, (16, 16, 3)),
    ],
)
def test_builders_output_logits_of_the_requested_classes(builder, input_shape):
    model = builder(input_shape=input_shape, num_classes=7)
    images = np.random.default_rng(0).uniform(size=(3, *input_shape)).astype("float32")
    logits = keras.ops.convert_to_numpy(model(images, training=False))
    assert logits.shape == (3, 7)
    # Logits, not probabilities: no final softmax, rows do not sum to 1.
    assert model.layers[-1].activation is keras.activations.linear
    assert not np.allclose(logits.sum(axis=-1), 1.0)


def test_hinton_teacher_has_dropout_and_the_student_none():
    def dropout_rates(model):
        return [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]

    assert dropout_rates(models.hinton_mnist_teacher()) == [0.2, 0.5, 0.5]
    assert dropout_rates(models.hinton_mnist_student()) == []


def assert_one_distillation_step_trains_only_the_student(teacher, student, input_shape):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, *input_shape)).astype("float32")
    y = rng.integers(0, 10, size=8)
    teacher_before = [np.array(w) for w in teacher.get_weights()]
    student_before = [np.array(keras.ops.convert_to_numpy(w)) for w in student.trainable_weights]
    distiller = keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.7)
    history = distiller.compile(optimizer="adam").fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(student_before, student.trainable_weights):
        assert not np.allclose(before, keras.ops.convert_to_numpy(after))


def test_one_distillation_step_small_cnns():
    # Narrow versions (same layers, fewer filters) keep the step cheap.
    teacher = models.small_cnn_teacher(input_shape=(16, 16, 3), filters=(4, 4, 4, 4))
    student = models.small_cnn_student(input_shape=(16, 16, 3), filters=(2, 2, 2, 2), dense_units=4)
    assert_one_distillation_step_trains_only_the_student(teacher, student, (16, 16, 3))


def test_one_distillation_step_hinton_nets():
    teacher = models.hinton_mnist_teacher(input_shape=(8, 8, 1), hidden_units=(12, 12))
    student = models.hinton_mnist_student(input_shape=(8, 8, 1), hidden_units=(8, 8))
    assert_one_distillation_step_trains_only_the_student(teacher, student, (8, 8, 1))


def test_get_returns_every_builder_by_name():
    expected = {
        "mnist_cnn_teacher",
        "mlp_student",
        "hinton_mnist_teacher",
        "hinton_mnist_student",
        "small_cnn_student",
        "small_cnn_teacher",
        "resnet18",
        "resnet34",
        "resnet50",
    }
    assert set(models.names()) == expected
    for name in expected:
        assert models.get(name) is getattr(models, name)


def test_get_builds_what_its_name_says():
    model = models.get("hinton_mnist_student")(input_shape=(8, 8, 1), num_classes=3)
    assert model.name == "hinton_mnist_student"
    assert model.output.shape == (None, 3)


def test_get_rejects_an_unknown_name_and_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'resnet19'.*hinton_mnist_student.*resnet18"):
        models.get("resnet19")


def test_get_rejects_a_non_string():
    with pytest.raises(TypeError, match="must be a string"):
        models.get(models.resnet18)
