"""JAX: an immutable array per value, and the teacher writes the steps recorded."""

import weakref

from keras_kd.backend import roles


class JaxWeightVersions(roles.WeightVersions):
    def __init__(self, gradients):
        # The `JaxGradientMechanics` whose steps record teacher writes.
        self._gradients = gradients

    def value_version(self, variable):
        # A JAX array is immutable: while a variable holds the same array
        # object, its value is unchanged. Every assign gives it a new one.
        return weakref.ref(variable.value), 0

    def kept_frozen_values(self, distiller):
        # The steps hand back each variable they did not assign as it came in
        # (`_current_values`), so a fit whose traced steps never assigned a
        # teacher weight ends with the teacher's values of its start, in new
        # array objects (Keras's `jax_state_sync`).
        return distiller not in self._gradients.teacher_written
