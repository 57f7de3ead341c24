"""Casting that costs nothing when there is nothing to cast.

`keras.ops.cast` dispatches through Keras's operation machinery even when the
tensor already has the dtype, which an eager backend (torch) pays at every
call, and the Distiller's step casts a dozen times.
"""

import keras
from keras import ops


def float32(value):
    """`value` as a float32 tensor: itself if it already is one."""
    if isinstance(value, keras.Variable):
        # Its backend value: TensorFlow counts a Keras variable as a tensor,
        # but `tf.stack` cannot read its dtype.
        value = value.value
    if ops.is_tensor(value) and keras.backend.standardize_dtype(value.dtype) == "float32":
        return value
    return ops.cast(value, "float32")


def floats32(*values):
    """`float32` of each value, as a tuple."""
    return tuple(float32(value) for value in values)
