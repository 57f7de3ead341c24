"""JAX: the logs' values read with NumPy outside the jitted step."""

import jax
import numpy as np

from keras_kd.backend import roles


class JaxMetricOps(roles.MetricOps):
    def concrete_numpy(self, value):
        # Inside the jitted step a variable's value (in the active
        # StatelessScope) is a tracer.
        if isinstance(value, jax.core.Tracer):
            return None
        return np.array(value)
