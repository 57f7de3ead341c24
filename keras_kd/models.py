"""Plain Keras model builders: the demo's, Hinton et al.'s, and the seeds'.

`get(name)` returns a builder by name and `names()` lists them. All return
functional `keras.Model`s that output logits (no final softmax),
as `keras_kd.Distiller` expects.
"""

import os

import keras
from keras import layers

from keras_kd.backend import _keras_compat


def mnist_cnn_teacher(input_shape=(28, 28, 1), num_classes=10, filters=(16, 32), dense_units=128, name="cnn_teacher"):
    """A small convolutional network for 28x28 grey-level digits.

    3x3 convolution blocks with max pooling, then a dense layer with
    dropout: the demo's teacher (its accuracy is in docs/results/demo.md).

    Args:
        input_shape: Shape of one image, `(height, width, channels)`.
        num_classes: Number of classes (logits) to output.
        filters: Number of filters of each convolution block, in order.
        dense_units: Width of the dense layer before the logits.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.
    """
    inputs = keras.Input(input_shape, name="image")
    hidden = inputs
    for block_filters in filters:
        hidden = layers.Conv2D(block_filters, 3, activation="relu")(hidden)
        hidden = layers.MaxPooling2D()(hidden)
    hidden = layers.Flatten()(hidden)
    hidden = layers.Dropout(0.5)(hidden)
    hidden = layers.Dense(dense_units, activation="relu")(hidden)
    logits = layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name=name)


def mlp_student(input_shape=(28, 28, 1), num_classes=10, hidden_units=(64, 64), name="mlp_student"):
    """A multilayer perceptron: Flatten, ReLU dense layers, then logits.

    With the default `hidden_units=(64, 64)` (a "2x64 MLP") it has about
    55,000 parameters.

    Args:
        input_shape: Shape of one input, e.g. `(28, 28, 1)`.
        num_classes: Number of classes (logits) to output.
        hidden_units: Width of each hidden layer, in order.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.
    """
    return _dense_net(input_shape, num_classes, hidden_units, 0.0, 0.0, name)


def describe_mlp(hidden_units):
    """A short label for an MLP, e.g. `"2x64 MLP"` or `"MLP 128-64"`."""
    if len(set(hidden_units)) == 1:
        return f"{len(hidden_units)}x{hidden_units[0]} MLP"
    return "MLP " + "-".join(str(units) for units in hidden_units)


def hinton_mnist_teacher(
    input_shape=(28, 28, 1),
    num_classes=10,
    hidden_units=(1200, 1200),
    input_dropout=0.2,
    hidden_dropout=0.5,
    name="hinton_mnist_teacher",
):
    """Hinton et al.'s MNIST teacher: two 1200-unit ReLU layers with dropout.

    The "single large neural net with two hidden layers of 1200 rectified
    linear hidden units", "strongly regularized using dropout" of Hinton,
    Vinyals and Dean, "Distilling the Knowledge in a Neural Network" (2015),
    section 3; the dropout rates (20% of the pixels, 50% of the hidden units)
    are those of Hinton et al. (2012), which the paper cites. The paper also
    constrains the weights (max-norm) and jitters the inputs; neither is part
    of the model (jitter the data, e.g. with
    `keras_kd.datasets.add_shifted_copies`). 2,395,210 parameters.

    Args:
        input_shape: Shape of one input, e.g. `(28, 28, 1)`; it is flattened.
        num_classes: Number of classes (logits) to output.
        hidden_units: Width of each hidden layer, in order.
        input_dropout: Dropout rate on the flattened input.
        hidden_dropout: Dropout rate after each hidden layer.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Example:

    ```python
    import keras_kd

    teacher = keras_kd.models.hinton_mnist_teacher()
    assert teacher.count_params() == 2_395_210
    ```
    """
    return _dense_net(input_shape, num_classes, hidden_units, input_dropout, hidden_dropout, name)


def hinton_mnist_student(input_shape=(28, 28, 1), num_classes=10, hidden_units=(800, 800), name="hinton_mnist_student"):
    """Hinton et al.'s MNIST student: two 800-unit ReLU layers, no dropout.

    The "smaller net with two hidden layers of 800 rectified linear hidden
    units and no regularization" of Hinton, Vinyals and Dean (2015), section
    3: 146 test errors trained on the labels alone, 74 distilled at T=20 (on
    the full 60,000 MNIST training images). 1,276,810 parameters.

    Args:
        input_shape: Shape of one input, e.g. `(28, 28, 1)`; it is flattened.
        num_classes: Number of classes (logits) to output.
        hidden_units: Width of each hidden layer, in order.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Example:

    ```python
    import keras_kd

    student = keras_kd.models.hinton_mnist_student()
    assert student.count_params() == 1_276_810
    ```
    """
    return _dense_net(input_shape, num_classes, hidden_units, 0.0, 0.0, name)


def _dense_net(input_shape, num_classes, hidden_units, input_dropout, hidden_dropout, name):
    """Flatten, optional input dropout, ReLU dense layers (+ dropout), logits."""
    inputs = keras.Input(input_shape, name="image")
    hidden = layers.Flatten()(inputs)
    if input_dropout:
        hidden = layers.Dropout(input_dropout)(hidden)
    for units in hidden_units:
        hidden = layers.Dense(units, activation="relu")(hidden)
        if hidden_dropout:
            hidden = layers.Dropout(hidden_dropout)(hidden)
    logits = layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name=name)


def small_cnn_student(
    input_shape=(32, 32, 3), num_classes=10, filters=(16, 32, 64, 128), dense_units=64, name="small_cnn_student"
):
    """A compact 4-block CNN: seed 003's ~107K-parameter CIFAR-10 student.

    Each block is a 3x3 convolution, BatchNormalization, ReLU and 2x2 max
    pooling; then global average pooling, a ReLU dense layer and the logits.
    With the defaults and 10 classes it has 106,826 trainable parameters, the
    count seed 003 reports for its student (its exact layers are not
    published; this layout reproduces the count). Keras also counts the 480
    BatchNormalization moving statistics, so `count_params()` is 107,306.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`; height
            and width must be at least 16 (four poolings).
        num_classes: Number of classes (logits) to output.
        filters: Number of filters of each block, in order.
        dense_units: Width of the dense layer before the logits.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Example:

    ```python
    import numpy as np
    import keras_kd

    student = keras_kd.models.small_cnn_student()
    assert sum(int(np.prod(w.shape)) for w in student.trainable_weights) == 106_826
    ```
    """
    return _conv_net(input_shape, num_classes, filters, 1, dense_units, name)


def small_cnn_teacher(input_shape=(32, 32, 3), num_classes=10, filters=(64, 128, 256, 512), name="small_cnn_teacher"):
    """A VGG-style CNN of ~4.7M parameters: the size of seed 003's teacher.

    Four blocks of two 3x3 convolutions, each followed by
    BatchNormalization and ReLU, with 2x2 max pooling after each block; then
    global average pooling and the logits. With the defaults and 10 classes it
    has 4,694,346 trainable parameters; seed 003's teacher has 4,664,970 (its
    layers are not published), so this one is 0.6% larger.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`; height
            and width must be at least 16 (four poolings).
        num_classes: Number of classes (logits) to output.
        filters: Number of filters of each block, in order.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Example:

    ```python
    import keras_kd

    teacher = keras_kd.models.small_cnn_teacher()
    ```
    """
    return _conv_net(input_shape, num_classes, filters, 2, 0, name)


def _conv_net(input_shape, num_classes, filters, convs_per_block, dense_units, name):
    """Blocks of (3x3 conv, BatchNorm, ReLU) x convs_per_block + max pooling."""
    inputs = keras.Input(input_shape, name="image")
    hidden = inputs
    for block, block_filters in enumerate(filters, start=1):
        for index in range(1, convs_per_block + 1):
            hidden = layers.Conv2D(block_filters, 3, padding="same", name=f"block{block}_conv{index}")(hidden)
            hidden = layers.BatchNormalization(name=f"block{block}_bn{index}")(hidden)
            hidden = layers.ReLU(name=f"block{block}_relu{index}")(hidden)
        hidden = layers.MaxPooling2D(name=f"block{block}_pool")(hidden)
    hidden = layers.GlobalAveragePooling2D(name="pool")(hidden)
    if dense_units:
        hidden = layers.Dense(dense_units, activation="relu", name="dense")(hidden)
    logits = layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name=name)


def resnet18(input_shape=(32, 32, 3), num_classes=10, name="resnet18"):
    """ResNet-18 with the CIFAR stem (He et al., 2016).

    "Deep Residual Learning for Image Recognition", CVPR 2016: BasicBlocks of
    two 3x3 convolutions, [2, 2, 2, 2] blocks in stages of 64, 128, 256 and
    512 filters, the last three starting with stride 2 (1x1 projection
    shortcuts there). The CIFAR stem is a 3x3 stride-1 convolution with no
    max pooling, as in the widely used CIFAR versions of ResNet-18 (the
    paper's ImageNet stem, a 7x7 stride-2 convolution and a max pooling,
    would shrink a 32x32 image to 8x8 at once). BatchNormalization uses
    PyTorch's defaults (momentum 0.9 in Keras's convention, epsilon 1e-5);
    convolutions use He initialization. Then global average pooling and the
    logits. With 10 classes: 11,173,962 trainable parameters.

    Layers are named like `keras.applications.ResNet50`'s: block outputs are
    `conv2_block1_out` ... `conv5_block2_out`, handy for feature matching.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`.
        num_classes: Number of classes (logits) to output.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Raises:
        ValueError: for an `input_shape` that is not three positive sizes, or
            a `num_classes` below 1.

    Example:

    ```python
    # not run: builds 11M weights, too many for a docstring example; tests/test_models_resnet.py builds and checks resnet18
    import keras_kd

    student = keras_kd.models.resnet18(input_shape=(32, 32, 3), num_classes=10)
    assert tuple(student.get_layer("conv5_block2_out").output.shape) == (None, 4, 4, 512)
    ```
    """
    return _cifar_resnet((2, 2, 2, 2), input_shape, num_classes, name)


def resnet34(input_shape=(32, 32, 3), num_classes=10, name="resnet34"):
    """ResNet-34 with the CIFAR stem: as `resnet18`, with [3, 4, 6, 3] blocks.

    With 10 classes: 21,282,122 trainable parameters.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`.
        num_classes: Number of classes (logits) to output.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Raises:
        ValueError: for an `input_shape` that is not three positive sizes, or
            a `num_classes` below 1.

    Example:

    ```python
    # not run: builds 21M weights, too many for a docstring example; tests/test_models_resnet.py builds and checks resnet34
    import keras_kd

    teacher = keras_kd.models.resnet34(num_classes=100)
    ```
    """
    return _cifar_resnet((3, 4, 6, 3), input_shape, num_classes, name)


def resnet50(input_shape=(32, 32, 3), num_classes=10, weights=None, name="resnet50"):
    """ResNet-50 from `keras.applications`, with new logits.

    `keras.applications.ResNet50(include_top=False)` (the ImageNet stem: on
    32x32 images its last feature map is 1x1x2048), then global average
    pooling and a Dense layer of `num_classes` logits. The backbone's layers
    are flattened into the returned model, so `get_layer("conv3_block4_out")`
    works for feature matching. With 10 classes: 23,555,082 trainable
    parameters.

    ImageNet weights expect `keras.applications.resnet50.preprocess_input`
    applied to images in [0, 255] (BGR, mean-subtracted); apply it to the data
    when fine-tuning them.

    Args:
        input_shape: Shape of one image, `(height, width, channels)`; height
            and width at least 32 (Keras's minimum for ResNet50).
        num_classes: Number of classes (logits) to output.
        weights: `None` (random initialization), `"imagenet"` (from the Keras
            cache, downloaded there on first use), or the path of a
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5` file.
        name: Name of the model.

    Returns:
        An uncompiled `keras.Model` that outputs logits.

    Raises:
        ValueError: for a bad `input_shape`, `num_classes` or `weights`.
        FileNotFoundError: for a weights path that does not exist.
        ConnectionError: for `weights="imagenet"` when the file is neither in
            the Keras cache nor downloadable (no network); the message gives
            the cache path to copy it to.

    Example:

    ```python
    # not run: builds 24M weights, too many for a docstring example; tests/test_models_resnet.py builds and checks resnet50
    import keras_kd

    teacher = keras_kd.models.resnet50(input_shape=(32, 32, 3), num_classes=10)
    ```
    """
    _check_resnet_arguments(input_shape, num_classes)
    if weights == "imagenet":
        weights = _imagenet_resnet50_notop_weights()
    elif weights is not None:
        if not isinstance(weights, (str, os.PathLike)):
            raise ValueError(
                "`weights` must be None, 'imagenet' or the path of a weights file; "
                f"got {weights!r} of type {type(weights).__name__}."
            )
        if not os.path.isfile(weights):
            raise FileNotFoundError(
                f"ResNet-50 weights file {os.fspath(weights)!r} does not exist. Pass "
                "weights=None (random), 'imagenet', or an existing "
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5."
            )
        weights = os.fspath(weights)
    backbone = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=tuple(input_shape))
    features = layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(backbone.input, logits, name=name)


_RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _imagenet_resnet50_notop_weights():
    """The local path of the ImageNet ResNet-50 (no top) weights; may download."""
    keras_home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    cached = os.path.join(keras_home, "models", _RESNET50_NOTOP_FILE)
    url, file_hash = _keras_compat.resnet50_notop_weights_source(_RESNET50_NOTOP_FILE)
    try:
        return keras.utils.get_file(_RESNET50_NOTOP_FILE, url, cache_subdir="models", file_hash=file_hash)
    except Exception as error:  # Keras raises a bare Exception for URL/HTTP failures.
        raise ConnectionError(
            f"ResNet-50 ImageNet weights are not in the Keras cache ({cached}) "
            f"and could not be downloaded from {url}: {error}. Download the file "
            "on a machine with network access and copy it to that path (or pass "
            "its path as `weights=`), or use weights=None for a random "
            "initialization."
        ) from error


def _check_resnet_arguments(input_shape, num_classes):
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in shape)
    ):
        raise ValueError(
            "`input_shape` must be (height, width, channels) with three positive "
            f"integers, e.g. (32, 32, 3); got {input_shape!r}."
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer; got {num_classes!r}.")


def _cifar_resnet(blocks_per_stage, input_shape, num_classes, name):
    """A ResNet of BasicBlocks with the CIFAR stem (3x3 stride-1, no pooling)."""
    _check_resnet_arguments(input_shape, num_classes)
    inputs = keras.Input(tuple(input_shape), name="image")
    hidden = _conv_bn(inputs, 64, 3, 1, "conv1")
    hidden = layers.ReLU(name="conv1_relu")(hidden)
    for stage, blocks in enumerate(blocks_per_stage):
        filters = 64 * 2**stage
        for block in range(blocks):
            hidden = _basic_block(
                hidden,
                filters,
                strides=2 if stage > 0 and block == 0 else 1,
                name=f"conv{stage + 2}_block{block + 1}",
            )
    features = layers.GlobalAveragePooling2D(name="avg_pool")(hidden)
    logits = layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, logits, name=name)


def _basic_block(inputs, filters, strides, name):
    """Two 3x3 convolutions plus a shortcut (a 1x1 projection where shapes change)."""
    shortcut = inputs
    if strides != 1 or inputs.shape[-1] != filters:
        shortcut = _conv_bn(inputs, filters, 1, strides, f"{name}_0")
    hidden = _conv_bn(inputs, filters, 3, strides, f"{name}_1")
    hidden = layers.ReLU(name=f"{name}_1_relu")(hidden)
    hidden = _conv_bn(hidden, filters, 3, 1, f"{name}_2")
    hidden = layers.Add(name=f"{name}_add")([shortcut, hidden])
    return layers.ReLU(name=f"{name}_out")(hidden)


def _conv_bn(inputs, filters, kernel_size, strides, name):
    hidden = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(inputs)
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(hidden)


# Builders that `get` returns by name (for the CLI's `--student ARCH`).
_BUILDER_NAMES = (
    "mnist_cnn_teacher",
    "mlp_student",
    "hinton_mnist_teacher",
    "hinton_mnist_student",
    "small_cnn_student",
    "small_cnn_teacher",
    "resnet18",
    "resnet34",
    "resnet50",
)


def names():
    """The names that `get` accepts, sorted."""
    return sorted(_BUILDER_NAMES)


def get(name):
    """Returns the model builder called `name`, e.g. `get("resnet18")`.

    Args:
        name: The name of a builder of this module; `names()` lists them.

    Returns:
        The builder function; call it (with its own arguments, e.g.
        `input_shape` and `num_classes`) to get an uncompiled `keras.Model`.

    Raises:
        TypeError: if `name` is not a string.
        ValueError: for an unknown name; the message lists the valid ones.

    Example:

    ```python
    import keras_kd

    student = keras_kd.models.get("small_cnn_student")(input_shape=(32, 32, 3), num_classes=10)
    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"A model name must be a string; got {name!r} of type {type(name).__name__}.")
    valid = names()
    if name not in valid:
        raise ValueError(f"Unknown model {name!r}. Valid names: {', '.join(valid)}.")
    return globals()[name]
