"""PyTorch's roles: autograd steps, tensor versions."""

from keras_kd.backend import roles
from keras_kd.backend.torch.gradients import TorchGradientMechanics
from keras_kd.backend.torch.weight_versions import TorchWeightVersions

ROLES = roles.BackendRoles(TorchGradientMechanics(), TorchWeightVersions())
