"""PyTorch: a tensor's version counter as its value's version."""

import weakref

from keras_kd.backend import roles


class TorchWeightVersions(roles.WeightVersions):
    def value_version(self, variable):
        # Every in-place change of a tensor (`copy_` in `Variable.assign`,
        # `add_`, an optimizer's update) advances its `_version`, as autograd
        # relies on; writes through `.data` or a NumPy view of it do not.
        value = variable.value
        return weakref.ref(value), value._version
