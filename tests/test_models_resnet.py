"""ResNet builders: shapes, parameter counts, one training step, clear errors."""

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND
from keras_kd import models


def test_backend_is_the_requested_one():
    assert keras.config.backend() == REQUESTED_BACKEND


def _trainable_parameters(model):
    return int(sum(np.prod(weight.shape) for weight in model.trainable_weights))


def _train_one_step(model, input_shape):
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = np.random.default_rng(0).random((4, *input_shape), dtype=np.float32)
    y = np.array([0, 1, 2, 0])
    before = [keras.ops.convert_to_numpy(weight).copy() for weight in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    after = [keras.ops.convert_to_numpy(weight) for weight in model.trainable_weights]
    return loss, before, after


def test_resnet18_cifar_stem_shapes_parameters_and_one_step():
    # 8x8 images keep the step fast; the layers (and so the parameters)
    # do not depend on the image size.
    model = models.resnet18(input_shape=(8, 8, 3), num_classes=3)
    # The CIFAR stem: stride 1, no pooling, so the first stage keeps 8x8.
    assert model.get_layer("conv1_conv").strides == (1, 1)
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    assert tuple(model.get_layer("conv2_block2_out").output.shape) == (None, 8, 8, 64)
    assert tuple(model.get_layer("conv5_block2_out").output.shape) == (None, 1, 1, 512)
    assert tuple(model.output.shape) == (None, 3)
    # 11,173,962 with 10 classes (the usual CIFAR ResNet-18), minus 7 x 513.
    assert _trainable_parameters(model) == 11_173_962 - 7 * 513
    assert model.get_layer("logits").activation is keras.activations.linear

    loss, before, after = _train_one_step(model, (8, 8, 3))
    assert np.isfinite(loss)
    changed = [not np.array_equal(old, new) for old, new in zip(before, after)]
    assert all(changed), "every trainable weight gets a gradient"


def test_resnet34_block_layout_and_parameters():
    model = models.resnet34(input_shape=(8, 8, 3), num_classes=10)
    block_outputs = [layer.name for layer in model.layers if layer.name.endswith("_out")]
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        assert f"conv{stage}_block{blocks}_out" in block_outputs
        assert f"conv{stage}_block{blocks + 1}_out" not in block_outputs
    assert 21_000_000 < _trainable_parameters(model) < 21_500_000


@pytest.mark.slow
def test_resnet50_keras_applications_backbone_and_one_step():
    model = models.resnet50(input_shape=(32, 32, 3), num_classes=3)
    # The backbone's layers are in the model itself, for feature matching.
    assert tuple(model.get_layer("conv3_block4_out").output.shape) == (None, 4, 4, 512)
    assert tuple(model.get_layer("conv5_block3_out").output.shape) == (None, 1, 1, 2048)
    assert tuple(model.output.shape) == (None, 3)
    assert _trainable_parameters(model) == 23_534_592 + 2048 * 3 + 3
    loss, _, _ = _train_one_step(model, (32, 32, 3))
    assert np.isfinite(loss)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (32, 0, 3)}, "input_shape"),
        ({"input_shape": "32x32x3"}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
    ],
)
@pytest.mark.parametrize("builder", [models.resnet18, models.resnet34, models.resnet50])
def test_bad_arguments_are_refused_before_building(builder, arguments, message):
    with pytest.raises(ValueError, match=message):
        builder(**arguments)


def test_resnet50_bad_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="weights"):
        models.resnet50(weights=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.resnet50(weights=str(tmp_path / "missing.h5"))


def test_resnet50_imagenet_without_network_or_cache_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline_get_file(fname, origin, **kwargs):
        # What keras.utils.get_file raises when the download fails.
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", offline_get_file)
    with pytest.raises(ConnectionError) as error:
        models.resnet50(weights="imagenet")
    text = str(error.value)
    assert str(tmp_path / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5") in text
    assert "weights=None" in text


def test_builders_are_listed_by_name():
    for name in ("resnet18", "resnet34", "resnet50"):
        assert models.get(name) is getattr(models, name)
