"""JAX's roles: stateless jitted steps, array identity as a weight's version."""

from keras_kd.backend import roles
from keras_kd.backend.jax.gradients import JaxGradientMechanics
from keras_kd.backend.jax.weight_versions import JaxWeightVersions

_gradients = JaxGradientMechanics()
ROLES = roles.BackendRoles(_gradients, JaxWeightVersions(_gradients))
