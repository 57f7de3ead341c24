"""Hyperparameters that are constants or schedules of the training step.

A `Distiller` keeps the current temperature and alpha in non-trainable
`keras.Variable`s, and evaluates schedules *inside* the compiled train step
from `optimizer.iterations`. So a schedule moves the values identically on
every backend, under jit too (core Keras's Distiller reads Python floats that
a callback changes, which JAX's jit silently ignores).

A schedule's values are checked on the host, before the steps that use them
run (`ScheduledValue.check_steps`): the whole of a `fit` whose length is
known, otherwise a chunk of steps at a time, so no step pays for the check.
"""

import keras
import numpy as np
from keras import ops

from keras_kd import validation

# Steps evaluated at once when a fit's length is unknown (or for a schedule
# that only runs one step at a time): one host evaluation per chunk.
CHECK_CHUNK_STEPS = 1024


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
        valid: The same check over a NumPy array of values, elementwise
            (e.g. `keras_kd.validation.valid_temperatures`); with it,
            `check_steps` checks a schedule's later steps too.
    """

    def __init__(self, name, value, check, valid=None):
        self.name = name
        self._check = check
        self._valid = valid
        # (first step, the values from that step on, the offsets among them
        # of the values that are not valid), from the last evaluation.
        self._evaluated = (0, np.zeros(0, "float32"), np.zeros(0, "int64"))
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

    def check_steps(self, start, stop):
        """Raises unless the value is valid at every step in `[start, stop)`.

        Values are computed on the host, for the whole range at once where
        the schedule takes a vector of steps (Keras's schedules do), and
        remembered, so the steps of a long fit cost one evaluation per
        `CHECK_CHUNK_STEPS` at most. A schedule that takes one step at a
        time is checked on its first `CHECK_CHUNK_STEPS` steps from `start`.

        Raises:
            ValueError: naming the first step in the range where the
                schedule leaves the valid range, and its value there.
        """
        if self.schedule is None or self._valid is None or stop <= start:
            return
        first, values, invalid = self._evaluated
        if not first <= start or stop > first + len(values):
            first = start
            values = self._values(first, max(stop - start, CHECK_CHUNK_STEPS))
            invalid = np.flatnonzero(~self._valid(values))
            self._evaluated = (first, values, invalid)
        index = np.searchsorted(invalid, start - first)
        if index < len(invalid) and invalid[index] < stop - first:
            step = first + int(invalid[index])
            self._raise_out_of_range(step, float(values[step - first]))
        # A schedule evaluated one step at a time covers CHECK_CHUNK_STEPS
        # only: the later steps are checked when the fit reaches them.

    def _raise_out_of_range(self, step, value):
        try:
            self._check(value, name=f"{self.name}(step={step})")
            message = f"`{self.name}(step={step})` is not valid; got {value!r}."
        except ValueError as error:
            message = str(error)
        raise ValueError(
            f"The `{self.name}` schedule leaves its valid range at training step "
            f"{step}: {message} Change the schedule (for a decay, its end value) "
            "or train for fewer steps."
        )

    def _values(self, first, count):
        """The schedule's values at steps `first ...`, as a float32 array.

        All `count` at once when the schedule accepts a vector of steps;
        otherwise (e.g. a schedule with `ops.cond`) one at a time, then at
        most `CHECK_CHUNK_STEPS` of them.
        """
        steps = np.arange(first, first + count, dtype="float32")
        try:
            values = ops.convert_to_numpy(ops.cast(self.schedule(ops.convert_to_tensor(steps)), "float32"))
            return np.broadcast_to(values, steps.shape)
        except Exception:  # noqa: BLE001 -- any failure means "not vectorizable"; the scalar path re-raises real errors.
            steps = steps[:CHECK_CHUNK_STEPS]
            return np.array(
                [ops.convert_to_numpy(self.at_step(ops.convert_to_tensor(step))) for step in steps],
                "float32",
            ).reshape(-1)

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


def temperature(value):
    """A Distiller's temperature as a `ScheduledValue`: > 0 and finite at every step."""
    return ScheduledValue("temperature", value, validation.check_temperature, validation.valid_temperatures)


def alpha(value):
    """A Distiller's alpha as a `ScheduledValue`: in [0, 1] at every step."""
    return ScheduledValue("alpha", value, validation.check_alpha, validation.valid_alphas)


def deserialize(config):
    """Inverse of `ScheduledValue.serialize`: a float or a schedule object."""
    if isinstance(config, dict):
        return keras.saving.deserialize_keras_object(config)
    return config


def _is_safely_serializable(schedule):
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return True
    registered = keras.saving.get_registered_name(schedule if hasattr(schedule, "__name__") else type(schedule))
    return registered != getattr(schedule, "__name__", type(schedule).__name__)


def _as_python_float(name, array):
    if array.size != 1:
        raise ValueError(
            f"The `{name}` schedule must return a scalar; at step 0 it returned shape {tuple(array.shape)}."
        )
    return float(array.reshape(()))
