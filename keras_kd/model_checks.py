"""Checks of the teacher and student models, made when a Distiller is built or meets its first batch."""

import keras

from keras_kd import features as kd_features


def check_feature_matches(feature_matches):
    feature_matches = list(feature_matches or ())
    for match in feature_matches:
        if not isinstance(match, kd_features.FeatureMatch):
            raise TypeError(
                "`feature_matches` must be a list of keras_kd.FeatureMatch; got "
                f"{match!r} of type {type(match).__name__}."
            )
    return feature_matches


def split_outputs(outputs, feature_matches):
    """`[logits, *features]` from a view; a plain model returns logits alone."""
    if not feature_matches:
        return outputs, []
    return outputs[0], list(outputs[1:])


def build_from_teacher_inputs(student, teacher):
    """Builds a student given without an Input (e.g. a bare Sequential)."""
    teacher_shapes = io_shapes(teacher)
    if student.built or teacher_shapes is None or len(teacher_shapes[0]) != 1:
        return
    student.build(teacher_shapes[0][0])


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
    if teacher_output[1:] != student_output[1:]:
        raise ValueError(
            f"The teacher outputs logits of shape {teacher_output} but the "
            f"student outputs {student_output}. Both must predict the same "
            f"classes: give the student a last layer of "
            f"{teacher_output[-1]} units."
        )


def io_shapes(model):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return [tuple(t.shape) for t in inputs], [tuple(t.shape) for t in outputs]


def check_logits_match(teacher_logits, student_logits):
    if tuple(teacher_logits.shape[1:]) != tuple(student_logits.shape[1:]):
        raise ValueError(
            f"The teacher outputs logits of shape {tuple(teacher_logits.shape)} "
            f"but the student outputs {tuple(student_logits.shape)}. Both "
            "must predict the same classes."
        )
