"""PyTorch's roles: autograd steps, the logs' arithmetic in torch ops, tensor versions."""

from keras_kd.backend import roles
from keras_kd.backend.torch.gradients import TorchGradientMechanics
from keras_kd.backend.torch.metric_ops import TorchMetricOps
from keras_kd.backend.torch.weight_versions import TorchWeightVersions

ROLES = roles.BackendRoles(TorchGradientMechanics(), TorchMetricOps(), TorchWeightVersions())
