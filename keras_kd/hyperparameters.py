"""Hyperparameters that are constants or schedules of the training step.

A `Distiller` keeps the current temperature and alpha in non-trainable
`keras.Variable`s, and evaluates schedules *inside* the compiled train step
from `optimizer.iterations`. So a schedule moves the values identically on
every backend, under jit too (core Keras's Distiller reads Python floats that
a callback changes, which JAX's jit silently ignores).
"""

import keras
from keras import ops


class ScheduledValue:
    """A float hyperparameter: a constant, or a function of the training step.

    Args:
        name: Name used in errors and logs, e.g. `"temperature"`.
        value: A real number, a
            `keras.optimizers.schedules.LearningRateSchedule` (for example
            `PolynomialDecay(5.0, 1000, end_learning_rate=1.0)`), or any
            callable taking the training step as a float32 scalar tensor and
            returning a scalar written with `keras.ops`.
        check: Function validating a float and returning it; applied to a
            constant, and to a schedule's value at step 0.
    """

    def __init__(self, name, value, check):
        self.name = name
        if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or (
            callable(value) and not isinstance(value, (int, float))
        ):
            self.schedule = value
            initial = ops.convert_to_numpy(value(ops.convert_to_tensor(0.0)))
            self.initial_value = check(_as_python_float(name, initial), name=f"{name}(step=0)")
        else:
            self.schedule = None
            self.initial_value = check(value, name=name)

    @property
    def is_constant(self):
        return self.schedule is None

    def at_step(self, step):
        """The value at `step` (a tensor), as a float32 scalar tensor."""
        if self.schedule is None:
            return ops.convert_to_tensor(self.initial_value, "float32")
        return ops.cast(self.schedule(ops.cast(step, "float32")), "float32")

    def serialize(self):
        """A float, or the schedule's Keras config.

        Raises:
            ValueError: for a plain Python callable, whose code cannot be
                saved in a form that `load_model(safe_mode=True)` accepts.
        """
        if self.schedule is None:
            return self.initial_value
        if not _is_safely_serializable(self.schedule):
            raise ValueError(
                f"The `{self.name}` schedule {self.schedule!r} is a plain Python "
                "callable, which cannot be saved safely (loading it would need "
                "safe_mode=False). Use a keras.optimizers.schedules."
                "LearningRateSchedule, or decorate your function or class with "
                "@keras.saving.register_keras_serializable()."
            )
        return keras.saving.serialize_keras_object(self.schedule)


def deserialize(config):
    """Inverse of `ScheduledValue.serialize`: a float or a schedule object."""
    if isinstance(config, dict):
        return keras.saving.deserialize_keras_object(config)
    return config


def _is_safely_serializable(schedule):
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return True
    registered = keras.saving.get_registered_name(
        schedule if hasattr(schedule, "__name__") else type(schedule)
    )
    return registered != getattr(schedule, "__name__", type(schedule).__name__)


def _as_python_float(name, array):
    if array.size != 1:
        raise ValueError(
            f"The `{name}` schedule must return a scalar; at step 0 it "
            f"returned shape {tuple(array.shape)}."
        )
    return float(array.reshape(()))
