"""Checks of the teacher and student models, made when a Distiller is built or meets its first batch."""

import keras

from keras_kd import features as kd_features
from keras_kd import validation
from keras_kd.model_io import io_shapes


def check_teacher_and_student(teacher, student):
    """Both must be `keras.Model`s, and two of them."""
    validation.check_model("teacher", teacher)
    validation.check_model("student", student)
    if teacher is student:
        raise ValueError(
            "The teacher and the student are the same model object. Pass a "
            "separate student, e.g. a smaller model or "
            "keras.models.clone_model(teacher)."
        )


def built_augmentation(augmentation, teacher):
    """`augmentation` (None or a layer), built for the teacher's inputs if it was not.

    Built now, not inside a compiled step: torch.compile cannot trace the
    creation of a Sequential's input layer.
    """
    augmentation = validation.check_augmentation(augmentation)
    if augmentation is not None:
        build_from_teacher_inputs(augmentation, teacher)
    return augmentation


def check_feature_matches(feature_matches):
    feature_matches = list(feature_matches or ())
    for match in feature_matches:
        if not isinstance(match, kd_features.FeatureMatch):
            raise TypeError(
                "`feature_matches` must be a list of keras_kd.FeatureMatch; got "
                f"{match!r} of type {type(match).__name__}."
            )
    return feature_matches


def build_from_teacher_inputs(layer, teacher):
    """Builds a student (or an augmentation) given without an Input, e.g. a bare Sequential."""
    teacher_shapes = io_shapes(teacher)
    if layer.built or teacher_shapes is None or len(teacher_shapes[0]) != 1:
        return
    layer.build(teacher_shapes[0][0])


def check_logit_models(teacher, student):
    """Checks what can be checked before the first batch."""
    teacher_shapes = io_shapes(teacher)
    student_shapes = io_shapes(student)
    for role, model, shapes in (("teacher", teacher, teacher_shapes), ("student", student, student_shapes)):
        if shapes is not None and len(shapes[1]) != 1:
            raise ValueError(
                f"The {role} {model.name!r} has {len(shapes[1])} outputs; a "
                "Distiller needs models with one output: the logits."
            )
        last_activation = getattr(model.layers[-1], "activation", None) if model.layers else None
        if last_activation is keras.activations.softmax:
            raise ValueError(
                f"The {role} {model.name!r} ends in a softmax, so it outputs "
                "probabilities. Distillation needs logits: build it with "
                "activation=None on the last layer."
            )
    if teacher_shapes is None or student_shapes is None:
        return  # Subclassed models: checked on the first batch instead.
    (teacher_inputs, (teacher_output,)) = teacher_shapes
    (student_inputs, (student_output,)) = student_shapes
    if [s[1:] for s in teacher_inputs] != [s[1:] for s in student_inputs]:
        raise ValueError(
            f"The teacher takes inputs of shape {teacher_inputs} but the "
            f"student takes {student_inputs}; both models receive the same x, "
            "so their input shapes must match."
        )
    if not _same_logits_shape(teacher_output, student_output):
        raise ValueError(_logits_mismatch_message(teacher_output, student_output))


def check_logits_match(teacher_logits, student_logits):
    teacher_shape, student_shape = tuple(teacher_logits.shape), tuple(student_logits.shape)
    if not _same_logits_shape(teacher_shape, student_shape):
        raise ValueError(_logits_mismatch_message(teacher_shape, student_shape))


def _same_logits_shape(teacher_shape, student_shape):
    """Same rank and sizes after the batch axis; an unknown size (None) matches any."""
    return len(teacher_shape) == len(student_shape) and all(
        t is None or s is None or t == s for t, s in zip(teacher_shape[1:], student_shape[1:])
    )


def _logits_mismatch_message(teacher_shape, student_shape):
    prefix = f"The teacher outputs logits of shape {teacher_shape} but the student outputs {student_shape}. "
    if len(teacher_shape) == len(student_shape) and teacher_shape[-1] != student_shape[-1]:
        return (
            prefix + f"Both must predict the same {teacher_shape[-1]} classes: give the student a last "
            f"layer of {teacher_shape[-1]} units (the same vocabulary, for language models). "
            "Cross-vocabulary distillation (teacher and student with different classes or "
            "tokenizers) is not supported."
        )
    return (
        prefix + "Both must give logits at the same positions (the axes between the batch and the "
        "classes: time steps, pixels), so the same inputs must give outputs of the same shape."
    )
