"""The base classes of the serializable losses, and their argument checks.

A loss class holds only plain-Python hyperparameters (so that `get_config` /
`from_config` round-trip them) and calls a pure function of its family.
"""

import re

import keras

from keras_kd import _casting, validation
from keras_kd.losses._logits import standardize_logits


def check_non_negative(name, value):
    value = validation.check_real_number(name, value, schedulable=False)
    if value < 0:
        raise ValueError(f"`{name}` must be >= 0; got {value!r}.")
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False; got {value!r}.")
    return value


def deserialized(identifier):
    """A config dict from `keras.saving.serialize_keras_object` as its object; anything else as itself."""
    if isinstance(identifier, dict):
        return keras.saving.deserialize_keras_object(identifier)
    return identifier


class _ConfiguredLoss:
    """Name and config plumbing shared by the logit and feature loss classes.

    Subclasses hold only plain-Python hyperparameters, so `get_config` /
    `from_config` round-trip them; `default_name` (or else the class name in
    snake_case) names the loss in the logs.
    """

    default_name = None

    def __init__(self, name=None):
        self.name = name or self.default_name or _snake_case(type(self).__name__)

    def get_config(self):
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


@keras.saving.register_keras_serializable(package="keras_kd")
class DistillationLoss(_ConfiguredLoss):
    """Base class of the losses between teacher and student logits.

    The Distiller calls `loss(teacher_logits, student_logits, temperature,
    step=step)`, with `temperature` a float32 scalar tensor and `step` the
    training step as a float32 scalar tensor (`None` outside training).
    `__call__` casts the logits to float32, applies the optional logit
    standardization, and passes everything to `call`, which subclasses
    implement and which returns one value per example.

    Args:
        standardize: Standardize each example's teacher and student logits
            first (Sun et al., "Logit Standardization in Knowledge
            Distillation", CVPR 2024; see `standardize_logits`).
        name: Name of the loss; defaults to the class name in snake_case.
    """

    def __init__(self, *, standardize=False, name=None):
        super().__init__(name)
        self.standardize = check_bool("standardize", standardize)

    def __call__(self, teacher_logits, student_logits, temperature, step=None):
        teacher_logits, student_logits = _casting.floats32(teacher_logits, student_logits)
        if self.standardize:
            teacher_logits = standardize_logits(teacher_logits)
            student_logits = standardize_logits(student_logits)
        temperature = validation.check_loss_temperature(temperature)
        return self.call(teacher_logits, student_logits, _casting.float32(temperature), step=step)

    def call(self, teacher_logits, student_logits, temperature, step=None):
        raise NotImplementedError(
            f"{type(self).__name__} must implement call(teacher_logits, student_logits, temperature, step=None)."
        )

    def get_config(self):
        return {**super().get_config(), "standardize": self.standardize}


@keras.saving.register_keras_serializable(package="keras_kd")
class FeatureLoss(_ConfiguredLoss):
    """Base class of the losses between a teacher and a student feature.

    `loss(teacher_feature, student_feature)` casts both to float32 and
    returns `call(...)`: one value per example. When
    `requires_matching_shapes` is True, the Distiller projects the student's
    feature to the teacher's shape with an adapter whenever they differ;
    relational losses (False) compare the two batches' internal structure
    and take features of any sizes.

    A loss with `supports_positions = True` also compares features position
    by position: `loss.per_position(teacher_feature, student_feature)`
    casts both to float32 and returns `call_per_position(...)`, one value per
    position `(batch, ...)`, reduced over the last (feature) axis only. The
    Distiller uses it for features whose leading axes are the positions of
    per-position logits (hidden states `(batch, tokens, dim)` of a model
    with logits `(batch, tokens, classes)`), and averages it over the valid
    positions, as it does the logit terms, so padding and per-position
    sample weights leave positions out.
    """

    requires_matching_shapes = True
    supports_positions = False

    def __call__(self, teacher_feature, student_feature):
        return self.call(*_casting.floats32(teacher_feature, student_feature))

    def call(self, teacher_feature, student_feature):
        raise NotImplementedError(f"{type(self).__name__} must implement call(teacher_feature, student_feature).")

    def per_position(self, teacher_feature, student_feature):
        """The loss at each position `(batch, ...)`: features `(batch, ..., dim)` compared over `dim` only."""
        return self.call_per_position(*_casting.floats32(teacher_feature, student_feature))

    def call_per_position(self, teacher_feature, student_feature):
        raise NotImplementedError(
            f"{type(self).__name__} compares whole examples only (supports_positions is False); a loss "
            "with supports_positions = True implements call_per_position(teacher_feature, student_feature)."
        )


def _snake_case(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
