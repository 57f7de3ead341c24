"""TensorFlow: the logs' values read with NumPy when running eagerly."""

import numpy as np
import tensorflow as tf

from keras_kd.backend import roles


class TensorFlowMetricOps(roles.MetricOps):
    def concrete_numpy(self, value):
        if not tf.executing_eagerly():
            return None
        # A variable's value is a tf.Variable: reading it aggregates the
        # replicas' values under tf.distribute, as reading it in a step does.
        return np.array(tf.convert_to_tensor(value))
