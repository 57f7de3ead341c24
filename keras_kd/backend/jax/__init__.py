"""JAX's roles: stateless jitted steps, NumPy reads of the logs, array identity as a weight's version."""

from keras_kd.backend import roles
from keras_kd.backend.jax.gradients import JaxGradientMechanics
from keras_kd.backend.jax.metric_ops import JaxMetricOps
from keras_kd.backend.jax.weight_versions import JaxWeightVersions

_gradients = JaxGradientMechanics()
ROLES = roles.BackendRoles(_gradients, JaxMetricOps(), JaxWeightVersions(_gradients))
