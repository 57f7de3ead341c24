"""The Distiller: a `keras.Model` that trains a student against a frozen teacher."""

import collections
import os
import tempfile

import keras
from keras import ops

from keras_kd import backend as kd_backend
from keras_kd import features as kd_features
from keras_kd import hyperparameters
from keras_kd import losses as kd_losses
from keras_kd import validation

# What the teacher (run outside the gradient computation) hands to the loss.
Batch = collections.namedtuple(
    "Batch", ["x", "y", "sample_weight", "teacher_logits", "teacher_features", "step"]
)
# What the loss computation hands to the metrics.
StepOutputs = collections.namedtuple("StepOutputs", ["loss", "student_logits", "terms"])


@keras.saving.register_keras_serializable(package="keras_kd")
class CurrentValue(keras.metrics.Metric):
    """A metric that reports the last value given to it (for T and alpha)."""

    def __init__(self, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def reset_state(self):
        pass  # The last value stays meaningful across epochs.

    def result(self):
        return ops.convert_to_tensor(self.value)


@keras.saving.register_keras_serializable(package="keras_kd")
class Distiller(keras.Model):
    """Knowledge distillation from a frozen teacher into a student.

    The loss per example is

        alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T))
            + (1 - alpha) * hard_label_loss(y, student)

    so **`alpha` weighs the distillation (soft) term**: `alpha=1.0` is
    label-free distillation (`fit(x)` works, and no label reaches the
    student), `alpha=0.0` is ordinary supervised training of the student.
    Both models must output logits (no final softmax).

    The teacher is frozen (`trainable=False`), always called with
    `training=False` (BatchNorm and Dropout in inference mode) and run outside
    the gradient computation. `distiller.student` is a plain `keras.Model` to
    save and deploy alone.

    Args:
        teacher: A trained `keras.Model` that outputs logits.
        student: A `keras.Model` with the same input and output shapes.
        temperature: Positive float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable of
            the training step (see `keras_kd.hyperparameters.ScheduledValue`).
        alpha: Float in [0, 1], or a schedule/callable as for `temperature`.
        distillation_loss: A `keras_kd.losses.DistillationLoss` between the
            logits; defaults to `keras_kd.losses.SoftTargetKL()`.
        feature_matches: A list of `keras_kd.FeatureMatch`: intermediate
            layers to align, each adding `weight * loss` to the total (after a
            trainable adapter where the shapes differ).
        name: Name of the model.

    Raises:
        TypeError: if `teacher` or `student` is not a `keras.Model`, or a
            hyperparameter has the wrong type.
        ValueError: for a temperature <= 0 or not finite, an alpha outside
            [0, 1], the same model as teacher and student, or models whose
            input or output shapes differ.

    Example:

    ```python
    distiller = keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.9)
    distiller.compile(optimizer="adam", metrics=["accuracy"]).fit(x, y, epochs=10)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        *,
        temperature=4.0,
        alpha=0.9,
        distillation_loss=None,
        feature_matches=(),
        name="distiller",
        **kwargs,
    ):
        validation.check_model("teacher", teacher)
        validation.check_model("student", student)
        if teacher is student:
            raise ValueError(
                "The teacher and the student are the same model object. Pass a "
                "separate student, e.g. a smaller model or "
                "keras.models.clone_model(teacher)."
            )
        super().__init__(name=name, **kwargs)
        self._temperature_value = hyperparameters.ScheduledValue(
            "temperature", temperature, validation.check_temperature
        )
        self._alpha_value = hyperparameters.ScheduledValue(
            "alpha", alpha, validation.check_alpha
        )
        self.distillation_loss = kd_losses.get(distillation_loss)
        _build_from_teacher_inputs(student, teacher)
        _check_logit_models(teacher, student)
        self.feature_matches = _check_feature_matches(feature_matches)
        # Views share the models' layers and variables; they are kept out of
        # Keras's tracking so nothing is saved twice.
        object.__setattr__(
            self,
            "_teacher_view",
            kd_features.multi_output_view(
                teacher, "teacher", [m.teacher_layer for m in self.feature_matches]
            ),
        )
        object.__setattr__(
            self,
            "_student_view",
            kd_features.multi_output_view(
                student, "student", [m.student_layer for m in self.feature_matches]
            ),
        )

        teacher.trainable = False
        self.teacher = teacher
        self.student = student
        self.temperature = keras.Variable(
            self._temperature_value.initial_value,
            trainable=False,
            dtype="float32",
            name="temperature",
        )
        self.alpha = keras.Variable(
            self._alpha_value.initial_value, trainable=False, dtype="float32", name="alpha"
        )
        self.hard_loss = kd_losses.label_cross_entropy
        self.adapters = [
            kd_features.make_adapter(
                match,
                student.get_layer(match.student_layer).output.shape,
                teacher.get_layer(match.teacher_layer).output.shape,
            )
            for match in self.feature_matches
        ]
        term_names = ["distillation_loss"]
        if self.uses_labels:
            term_names.append("student_loss")
        term_names += [match.name for match in self.feature_matches]
        if len(set(term_names)) != len(term_names):
            raise ValueError(
                f"Loss terms need distinct names for the logs; got {term_names}. "
                "Give each FeatureMatch a `name`."
            )
        self._term_trackers = {name: keras.metrics.Mean(name=name) for name in term_names}
        self._teacher_agreement = keras.metrics.Mean(name="teacher_agreement")
        self._temperature_log = CurrentValue("temperature")
        self._alpha_log = CurrentValue("alpha")
        self.built = True

    @property
    def uses_labels(self):
        """False only for label-free distillation (alpha fixed at 1.0)."""
        return not (self._alpha_value.is_constant and self._alpha_value.initial_value == 1.0)

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def save(self, filepath, overwrite=True, **kwargs):
        """Saves like `keras.Model.save`, atomically.

        The file is written beside `filepath` under a temporary name and then
        renamed, so a save that fails (or is killed) leaves any previous file
        intact.
        """
        filepath = os.fspath(filepath)
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{filepath} exists and overwrite=False.")
        directory, basename = os.path.split(os.path.abspath(filepath))
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{basename}.", suffix=".keras", dir=directory
        )
        os.close(descriptor)
        try:
            super().save(temporary, overwrite=True, **kwargs)
            os.replace(temporary, filepath)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def _random_states(self):
        # Seed-generator states (Dropout, augmentation) are variables but not
        # weights, so Keras does not save them; without them a run resumed
        # by BackupAndRestore draws other dropout masks than the original.
        weight_ids = {id(weight) for weight in self.weights}
        return [variable for variable in self.variables if id(variable) not in weight_ids]

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for index, state in enumerate(self._random_states()):
            store[f"random_state_{index}"] = state

    def load_own_variables(self, store):
        prefix = "random_state_"
        super().load_own_variables(
            {key: store[key] for key in store.keys() if not key.startswith(prefix)}
        )
        saved = {key: store[key] for key in store.keys() if key.startswith(prefix)}
        for index, state in enumerate(self._random_states()):
            if f"{prefix}{index}" in saved:
                state.assign(saved[f"{prefix}{index}"])

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Configures training; returns the Distiller so calls can chain.

        Args:
            optimizer: As for `keras.Model.compile`.
            loss: The hard-label loss: `None` (sparse or one-hot
                cross-entropy from logits, read from the labels' shape),
                `"sparse_categorical_crossentropy"` or
                `"categorical_crossentropy"` (both from logits), a
                `keras.losses.Loss`, or a per-example callable.
            metrics: Metrics computed on the student's outputs.
            **kwargs: Passed to `keras.Model.compile` (`jit_compile`,
                `run_eagerly`, `steps_per_execution`, ...).
        """
        self.hard_loss = kd_losses.resolve_hard_loss(loss)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        return self

    def get_compile_config(self):
        config = super().get_compile_config()
        optimizer = (config or {}).get("optimizer")
        # Keras records backend classes (keras.src.backend.torch.optimizers...)
        # for its own optimizers, which another backend cannot import. The
        # public name loads everywhere.
        if isinstance(optimizer, dict) and str(optimizer.get("module", "")).startswith(
            "keras.src.backend."
        ):
            optimizer["module"] = "keras.optimizers"
        return config

    def compile_from_config(self, config):
        # Keras skips compile() on load for models that override it; this
        # restores it, so a loaded Distiller continues to fit.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        self.optimizer.build(self.trainable_variables)

    # ------------------------------------------------------------------ steps
    # The gradient mechanics live in keras_kd.backend.<name>; everything they
    # call below is backend-independent keras.ops.

    def train_step(self, *args):
        return kd_backend.train_step(self, *args)

    def test_step(self, *args):
        return kd_backend.test_step(self, *args)

    def prepare_batch(self, data, training):
        """Unpacks `data`, advances schedules and runs the frozen teacher."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None and self.uses_labels and training:
            raise ValueError(
                f"Labels are missing, but alpha={self._describe_alpha()} gives "
                "the hard-label term a weight. Pass y to fit(), or set "
                "alpha=1.0 for label-free distillation."
            )
        step = None
        if training:
            step = ops.cast(self.optimizer.iterations, "float32")
            if not self._temperature_value.is_constant:
                self.temperature.assign(self._temperature_value.at_step(step))
            if not self._alpha_value.is_constant:
                self.alpha.assign(self._alpha_value.at_step(step))
        teacher_logits, teacher_features = _split_outputs(
            self._teacher_view(x, training=False), self.feature_matches
        )
        teacher_logits = ops.stop_gradient(teacher_logits)
        teacher_features = [ops.stop_gradient(feature) for feature in teacher_features]
        return Batch(x, y, sample_weight, teacher_logits, teacher_features, step)

    def compute_step_loss(self, batch, training):
        """Runs the student once and returns the loss and what metrics need."""
        student_logits, student_features = _split_outputs(
            self._student_view(batch.x, training=training), self.feature_matches
        )
        _check_same_shape(batch.teacher_logits, student_logits)
        temperature = ops.convert_to_tensor(self.temperature)
        alpha = ops.convert_to_tensor(self.alpha)
        soft = self.distillation_loss(
            batch.teacher_logits, student_logits, temperature, step=batch.step
        )
        terms = {"distillation_loss": kd_losses.weighted_mean(soft, batch.sample_weight)}
        if self.uses_labels and batch.y is not None:
            hard = ops.cast(self.hard_loss(batch.y, student_logits), "float32")
            per_example = alpha * soft + (1.0 - alpha) * hard
            terms["student_loss"] = kd_losses.weighted_mean(hard, batch.sample_weight)
        else:
            per_example = alpha * soft
        for match, adapter, teacher_feature, student_feature in zip(
            self.feature_matches, self.adapters, batch.teacher_features, student_features
        ):
            if adapter is not None:
                student_feature = adapter(student_feature, training=training)
            feature_loss = ops.cast(match.loss(teacher_feature, student_feature), "float32")
            terms[match.name] = kd_losses.weighted_mean(feature_loss, batch.sample_weight)
            per_example = per_example + match.weight * feature_loss
        loss = kd_losses.weighted_mean(per_example, batch.sample_weight)
        regularization = self.student.losses + [
            loss_value for adapter in self.adapters if adapter is not None for loss_value in adapter.losses
        ]
        if regularization:
            loss = loss + ops.cast(ops.sum(ops.stack(regularization)), "float32")
        return StepOutputs(loss, student_logits, terms)

    def update_metrics(self, batch, outputs):
        """Updates the loss trackers and compiled metrics; returns the logs."""
        batch_size = ops.shape(outputs.student_logits)[0]
        self._loss_tracker.update_state(outputs.loss, sample_weight=batch_size)
        for term_name, value in outputs.terms.items():
            self._term_trackers[term_name].update_state(value, sample_weight=batch_size)
        agreement = ops.cast(
            ops.equal(
                ops.argmax(outputs.student_logits, axis=-1),
                ops.argmax(batch.teacher_logits, axis=-1),
            ),
            "float32",
        )
        self._teacher_agreement.update_state(agreement)
        self._temperature_log.update_state(self.temperature)
        self._alpha_log.update_state(self.alpha)
        if batch.y is not None and self._compile_metrics is not None:
            self._compile_metrics.update_state(
                batch.y, outputs.student_logits, batch.sample_weight
            )
        return self.get_metrics_result()

    def get_metrics_result(self):
        # Compiled metrics stay unbuilt while no labels have been seen
        # (label-free fit); leave them out rather than fail.
        results = {}
        for metric in self.metrics:
            if not getattr(metric, "built", True):
                continue
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        return results

    def _describe_alpha(self):
        if self._alpha_value.is_constant:
            return repr(self._alpha_value.initial_value)
        return f"a schedule ({type(self._alpha_value.schedule).__name__})"

    # ---------------------------------------------------------- serialization

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "student": keras.saving.serialize_keras_object(self.student),
                "temperature": self._temperature_value.serialize(),
                "alpha": self._alpha_value.serialize(),
                "distillation_loss": keras.saving.serialize_keras_object(
                    self.distillation_loss
                ),
                "feature_matches": [
                    keras.saving.serialize_keras_object(match) for match in self.feature_matches
                ],
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("teacher", "student", "distillation_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        config["feature_matches"] = [
            keras.saving.deserialize_keras_object(match)
            for match in config.get("feature_matches", [])
        ]
        for key in ("temperature", "alpha"):
            config[key] = hyperparameters.deserialize(config[key])
        for key in ("trainable", "dtype"):
            config.pop(key, None)
        return cls(**config)


def _check_feature_matches(feature_matches):
    feature_matches = list(feature_matches or ())
    for match in feature_matches:
        if not isinstance(match, kd_features.FeatureMatch):
            raise TypeError(
                "`feature_matches` must be a list of keras_kd.FeatureMatch; got "
                f"{match!r} of type {type(match).__name__}."
            )
    return feature_matches


def _split_outputs(outputs, feature_matches):
    """`[logits, *features]` from a view; a plain model returns logits alone."""
    if not feature_matches:
        return outputs, []
    return outputs[0], list(outputs[1:])


def _build_from_teacher_inputs(student, teacher):
    """Builds a student given without an Input (e.g. a bare Sequential)."""
    teacher_shapes = _io_shapes(teacher)
    if student.built or teacher_shapes is None or len(teacher_shapes[0]) != 1:
        return
    student.build(teacher_shapes[0][0])


def _check_logit_models(teacher, student):
    """Checks what can be checked before the first batch."""
    teacher_shapes = _io_shapes(teacher)
    student_shapes = _io_shapes(student)
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


def _io_shapes(model):
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    return [tuple(t.shape) for t in inputs], [tuple(t.shape) for t in outputs]


def _check_same_shape(teacher_logits, student_logits):
    if tuple(teacher_logits.shape[1:]) != tuple(student_logits.shape[1:]):
        raise ValueError(
            f"The teacher outputs logits of shape {tuple(teacher_logits.shape)} "
            f"but the student outputs {tuple(student_logits.shape)}. Both "
            "must predict the same classes."
        )
