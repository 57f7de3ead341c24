"""TensorFlow's roles: steps under a `tf.GradientTape`; no weight versions."""

from keras_kd.backend import roles
from keras_kd.backend.tensorflow.gradients import TensorFlowGradientMechanics

# A TensorFlow variable offers no cheap version: fingerprints read the values.
ROLES = roles.BackendRoles(TensorFlowGradientMechanics(), roles.WeightVersions())
