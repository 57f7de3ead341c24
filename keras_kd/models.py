"""Plain Keras model builders for the demo: a CNN teacher and an MLP student.

Both return functional `keras.Model`s that output logits (no final softmax),
as `keras_kd.Distiller` expects.
"""

import keras
from keras import layers


def mnist_cnn_teacher(
    input_shape=(28, 28, 1), num_classes=10, filters=(16, 32), dense_units=128, name="cnn_teacher"
):
    """A small convolutional network for 28x28 grey-level digits.

    3x3 convolution blocks with max pooling, then a dense layer with
    dropout. Trained for a few epochs on 4,000 MNIST images it reaches about
    97% test accuracy.

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
    inputs = keras.Input(input_shape, name="image")
    hidden = layers.Flatten()(inputs)
    for units in hidden_units:
        hidden = layers.Dense(units, activation="relu")(hidden)
    logits = layers.Dense(num_classes, name="logits")(hidden)
    return keras.Model(inputs, logits, name=name)


def describe_mlp(hidden_units):
    """A short label for an MLP, e.g. `"2x64 MLP"` or `"MLP 128-64"`."""
    if len(set(hidden_units)) == 1:
        return f"{len(hidden_units)}x{hidden_units[0]} MLP"
    return "MLP " + "-".join(str(units) for units in hidden_units)
