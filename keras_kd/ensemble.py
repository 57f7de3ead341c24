"""Several teachers distilled into one student: their logits on a teacher axis, and the target they make together.

`teacher_ensemble` wraps the teachers in one functional model that runs each
of them once and stacks their logits, `(batch, ..., teachers, classes)`. The
Distiller treats it as its teacher (frozen, outside the gradient
computation, cached like any teacher: the cache then holds every teacher's
own outputs), and turns the stacked logits into one target at the step's
temperature with `ensemble_logits`:

- `"probabilities"` (the default, Hinton et al.'s): the weighted mean of the
  teachers' softened distributions, `sum_i w_i softmax(z_i / T)`. It keeps
  every class any teacher believes in; prefer it when the teachers are
  calibrated and disagree usefully (independently trained members).
- `"log_probabilities"`: the weighted mean of their log-probabilities, the
  normalized `prod_i softmax(z_i / T) ** w_i`. Sharper: a class counts only
  where all teachers give it mass; prefer it to damp one overconfident or
  poor member.

Either is returned as logits whose softmax at `T` is the target, so every
distillation loss of `keras_kd.losses` takes it unchanged.
"""

import keras
import numpy as np
from keras import ops

from keras_kd import model_checks, validation
from keras_kd.model_io import io_shapes

TARGETS = ("probabilities", "log_probabilities")


@keras.saving.register_keras_serializable(package="keras_kd")
class StackedLogits(keras.layers.Layer):
    """Stacks a list of logits `(batch, ..., classes)` into `(batch, ..., teachers, classes)`."""

    def call(self, logits):
        return ops.stack(list(logits), axis=-2)

    def compute_output_shape(self, input_shapes):
        first = tuple(input_shapes[0])
        return first[:-1] + (len(input_shapes), first[-1])


def resolve_teacher(teacher, student, teacher_weights, target):
    """`(the teacher model a Distiller runs, the teachers' normalized weights or None for one teacher)`.

    A list of teachers (checked by `check_teachers`) becomes one
    `teacher_ensemble`; each must fit the student as a single teacher must.
    """
    _checked_target(target)
    if not isinstance(teacher, (list, tuple)):
        if teacher_weights is not None:
            raise ValueError(
                f"teacher_weights={teacher_weights!r} given with one teacher; pass the teachers as a list."
            )
        model_checks.check_teacher_and_student(teacher, student)
        return teacher, None
    teachers, weights, _ = check_teachers(teacher, teacher_weights, target)
    for member in teachers:
        model_checks.check_teacher_and_student(member, student)
    return teacher_ensemble(teachers), weights


def teacher_ensemble(teachers, name="teacher_ensemble"):
    """One functional model of `teachers` (checked by `check_teachers`), outputting their stacked logits."""
    first = teachers[0]
    try:
        structure = first.input  # A dict for KerasHub's models.
    except AttributeError:  # A Sequential has only its list of inputs.
        structure = first.inputs[0] if len(first.inputs) == 1 else first.inputs
    inputs = keras.tree.map_structure(
        lambda tensor: keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype), structure
    )
    outputs = StackedLogits(name="stacked_logits")([teacher(inputs) for teacher in teachers])
    return keras.Model(inputs, outputs, name=name)


def members(model):
    """The teachers of a `teacher_ensemble` model, in order; None for another model."""
    if not model.layers or not isinstance(model.layers[-1], StackedLogits):
        return None
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def check_teachers(teachers, teacher_weights=None, target=TARGETS[0]):
    """The teachers as a list and their weights normalized to sum to 1.

    Raises:
        TypeError: for a teacher that is not a `keras.Model`.
        ValueError: for no teachers, a teacher given twice, two teachers of
            one name, teachers without an `Input`, teachers whose input or
            output shapes differ, weights that do not match the teachers in
            number or are negative, not finite or all zero, or an unknown
            `target`.
    """
    teachers = list(teachers)
    if not teachers:
        raise ValueError("`teacher` is an empty list; give one keras.Model or a list of at least one.")
    for index, teacher in enumerate(teachers):
        validation.check_model(f"teacher[{index}]", teacher)
    for index, teacher in enumerate(teachers):
        for other in range(index):
            if teachers[other] is teacher:
                raise ValueError(
                    f"teacher[{other}] and teacher[{index}] are the same model {teacher.name!r}; "
                    "give each teacher once (weigh it with teacher_weights instead)."
                )
            if teachers[other].name == teacher.name:
                raise ValueError(
                    f"teacher[{other}] and teacher[{index}] are both named {teacher.name!r}; the teachers "
                    "of an ensemble need distinct names (pass name=... when building them)."
                )
    shapes = [io_shapes(teacher) for teacher in teachers]
    for index, teacher_shapes in enumerate(shapes):
        if teacher_shapes is None:
            raise ValueError(
                f"teacher[{index}] {teachers[index].name!r} has no Input (a subclassed or unbuilt model); "
                "the teachers of an ensemble must be Functional or Sequential models with an Input."
            )
        for part, what in ((0, "inputs"), (1, "logits")):
            first, this = shapes[0][part], teacher_shapes[part]
            if [s[1:] for s in this] != [s[1:] for s in first]:
                raise ValueError(
                    f"teacher[{index}] {teachers[index].name!r} has {what} of shape {this} but teacher[0] "
                    f"{teachers[0].name!r} has {first}; the teachers of an ensemble take the same inputs and "
                    "predict the same classes at the same positions."
                )
    return teachers, _normalized_weights(teacher_weights, len(teachers)), _checked_target(target)


def serialize_teacher(teacher, teacher_weights):
    """A Distiller's teacher for its config: the list of teachers of an ensemble, else the model."""
    if teacher_weights is None:
        return keras.saving.serialize_keras_object(teacher)
    return [keras.saving.serialize_keras_object(member) for member in members(teacher)]


def deserialize_teacher(config):
    """The inverse of `serialize_teacher` (and of any Keras object's config)."""
    if isinstance(config, list):
        return [keras.saving.deserialize_keras_object(member) for member in config]
    return keras.saving.deserialize_keras_object(config)


def _normalized_weights(teacher_weights, count):
    if teacher_weights is None:
        return [1.0 / count] * count
    try:
        weights = np.asarray(teacher_weights, dtype="float64")
    except (TypeError, ValueError):
        raise TypeError(f"teacher_weights must be a list of {count} numbers; got {teacher_weights!r}.") from None
    if weights.shape != (count,):
        raise ValueError(
            f"teacher_weights={list(np.atleast_1d(teacher_weights))} has {weights.size} weights for {count} "
            "teachers; give one weight per teacher."
        )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"teacher_weights={weights.tolist()} must be finite and non-negative.")
    if weights.sum() == 0:
        raise ValueError(f"teacher_weights={weights.tolist()} are all zero; at least one teacher must count.")
    return (weights / weights.sum()).tolist()


def _checked_target(target):
    if target not in TARGETS:
        raise ValueError(f"ensemble_target={target!r} is not one of {list(TARGETS)}.")
    return target


def ensemble_logits(stacked_logits, weights, temperature, target="probabilities"):
    """Logits `(batch, ..., classes)` whose softmax at `temperature` is the teachers' combined target.

    Args:
        stacked_logits: `(batch, ..., teachers, classes)`.
        weights: One weight per teacher, summing to 1.
        temperature: The step's temperature (a scalar).
        target: `"probabilities"`: `T * log(sum_i w_i softmax(z_i / T))`;
            `"log_probabilities"`: `T * sum_i w_i log_softmax(z_i / T)`.
    """
    temperature = ops.cast(temperature, "float32")
    log_probabilities = ops.log_softmax(ops.cast(stacked_logits, "float32") / temperature, axis=-1)
    weights = ops.reshape(ops.convert_to_tensor(weights, "float32"), (-1, 1))
    if target == "probabilities":
        # log of the weighted mean, in log space (a zero weight gives -inf, which logsumexp skips).
        combined = ops.logsumexp(log_probabilities + ops.log(weights), axis=-2)
    else:
        combined = ops.sum(log_probabilities * weights, axis=-2)
    return combined * temperature
