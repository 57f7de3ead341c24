"""TensorFlow's roles: steps under a `tf.GradientTape`, NumPy reads of eager logs; no weight versions."""

from keras_kd.backend import roles
from keras_kd.backend.tensorflow.gradients import TensorFlowGradientMechanics
from keras_kd.backend.tensorflow.metric_ops import TensorFlowMetricOps

# A TensorFlow variable offers no cheap version: fingerprints read the values.
ROLES = roles.BackendRoles(TensorFlowGradientMechanics(), TensorFlowMetricOps(), roles.WeightVersions())
