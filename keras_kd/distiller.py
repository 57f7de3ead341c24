"""The Distiller: a `keras.Model` that trains a student against a frozen teacher."""

import collections
import os

import keras
from keras import ops

from keras_kd import _casting, atomic, ensemble, fit_checks, fit_plan, hyperparameters, model_checks, transfer
from keras_kd import backend as kd_backend
from keras_kd import cache as kd_cache
from keras_kd import features as kd_features
from keras_kd import losses as kd_losses
from keras_kd import metrics as kd_metrics
from keras_kd import mixup as kd_mixup
from keras_kd import positions as kd_positions
from keras_kd.backend import _keras_compat

# What the teacher (run outside the gradient computation) hands to the loss.
# `mixing` is `(partner, weight)` when mixup mixed the batch, else None.
Batch = collections.namedtuple(
    "Batch", ["x", "y", "sample_weight", "teacher_logits", "teacher_features", "step", "mixing"]
)
# What the loss computation hands to the metrics.
# `positions`: the `keras_kd.positions.Positions` of the student's logits.
StepOutputs = collections.namedtuple("StepOutputs", ["loss", "student_logits", "terms", "positions"])


@keras.saving.register_keras_serializable(package="keras_kd")
class Distiller(_keras_compat.SymbolicBuildFromOneReplica, keras.Model):
    """Knowledge distillation from a frozen teacher into a student.

    The loss per example is

        alpha * T**2 * KL(softmax(teacher / T) || softmax(student / T))
            + (1 - alpha) * hard_label_loss(y, student)

    so **`alpha` weighs the distillation (soft) term**: `alpha=1.0` is
    label-free distillation (`fit(x)` works, and no label reaches the
    student), `alpha=0.0` is ordinary supervised training of the student.
    Both models must output logits (no final softmax). Labels of -1
    (`keras_kd.transfer.UNLABELED`) mark unlabelled examples of a transfer
    set: the hard-label term skips them, the distillation term does not.

    The teacher is frozen (`trainable=False`), always called with
    `training=False` (BatchNorm and Dropout in inference mode) and run outside
    the gradient computation. `distiller.student` is a plain `keras.Model` to
    save and deploy alone.

    Args:
        teacher: A trained `keras.Model` that outputs logits, or a list of
            them: an ensemble distilled into one student (see
            `keras_kd.ensemble`; each teacher runs once per step).
        student: A `keras.Model` with the same input and output shapes.
        teacher_weights: With several teachers, one non-negative weight per
            teacher (normalized to sum to 1); None weighs them equally.
        ensemble_target: With several teachers, `"probabilities"` (the
            weighted mean of their softened distributions, Hinton et al.'s)
            or `"log_probabilities"` (the weighted mean of their
            log-probabilities).
        temperature: Positive float, a
            `keras.optimizers.schedules.LearningRateSchedule`, or a callable of
            the training step (see `keras_kd.hyperparameters.ScheduledValue`).
        alpha: Float in [0, 1], or a schedule/callable as for `temperature`.
        distillation_loss: A `keras_kd.losses.DistillationLoss` between the
            logits; defaults to `keras_kd.losses.SoftTargetKL()`.
        feature_matches: A list of `keras_kd.FeatureMatch`: intermediate
            layers to align, each adding `weight * loss` to the total (after a
            trainable adapter where the shapes differ).
        augmentation: Function matching (see `FunctionMatchingDistiller`): a
            `keras.layers.Layer`, e.g. a `keras.Sequential` of random
            preprocessing layers, applied to each training batch inside the
            train step; the teacher and the student see the same result.
        mixup: Function matching: the Beta concentration of mixup applied to
            each training batch inside the train step (0 turns it off). With
            labels, the hard-label loss is mixed with the same weights.
        seed: Seed of the mixup draws (augmentation layers take their own).
        name: Name of the model.

    Raises:
        TypeError: if `teacher` or `student` is not a `keras.Model`, or a
            hyperparameter has the wrong type.
        ValueError: for a temperature <= 0 or not finite, an alpha outside
            [0, 1], a negative or non-finite mixup, the same model as teacher
            and student, or models whose input or output shapes differ.

    Example:

    ```python
    import numpy as np
    import keras_kd

    teacher = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(32,), name="teacher")
    student = keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(8,))
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 8), dtype="float32"), rng.integers(0, 3, 32)

    distiller = keras_kd.Distiller(teacher, student, temperature=4.0, alpha=0.9)
    distiller.compile(optimizer="adam", metrics=["accuracy"]).fit(x, y, epochs=2, verbose=0)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(
        self,
        teacher,
        student,
        *,
        teacher_weights=None,
        ensemble_target="probabilities",
        temperature=4.0,
        alpha=0.9,
        distillation_loss=None,
        feature_matches=(),
        augmentation=None,
        mixup=0.0,
        seed=None,
        name="distiller",
        **kwargs,
    ):
        teacher, teacher_weights = ensemble.resolve_teacher(teacher, student, teacher_weights, ensemble_target)
        super().__init__(name=name, **kwargs)
        self.teacher_weights, self.ensemble_target = teacher_weights, ensemble_target
        self._temperature_value = hyperparameters.temperature(temperature)
        self._alpha_value = hyperparameters.alpha(alpha)
        self.distillation_loss = kd_losses.get(distillation_loss)
        self.augmentation = model_checks.built_augmentation(augmentation, teacher)
        self.mixup = kd_mixup.check_concentration(mixup)
        self.seed = seed
        if self.mixup > 0:
            self._mixup_seed = keras.random.SeedGenerator(seed, name="mixup_seed")
        model_checks.build_from_teacher_inputs(student, teacher)
        for single_teacher in ensemble.members(teacher) or [teacher]:
            model_checks.check_logit_models(single_teacher, student)
        self.feature_matches = model_checks.check_feature_matches(feature_matches)
        self._teacher_extractor = kd_features.feature_extractor(
            teacher, "teacher", [match.teacher_layer for match in self.feature_matches]
        )
        self._student_extractor = kd_features.feature_extractor(
            student, "student", [match.student_layer for match in self.feature_matches]
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
        self.alpha = keras.Variable(self._alpha_value.initial_value, trainable=False, dtype="float32", name="alpha")
        self.hard_loss = kd_losses.label_cross_entropy
        self.adapters = kd_features.make_adapters(
            self.feature_matches, self._teacher_extractor, self._student_extractor
        )
        term_names = ["distillation_loss"]
        if self.uses_labels:
            term_names.append("student_loss")
        term_names += [match.name for match in self.feature_matches]
        if len(set(term_names)) != len(term_names):
            raise ValueError(
                f"Loss terms need distinct names for the logs; got {term_names}. Give each FeatureMatch a `name`."
            )
        # The logs of every step, kept by one metric (made in compile()).
        self._log_names = ("loss", *term_names, "teacher_agreement")
        self._step_checks = fit_checks.StepChecks([self._temperature_value, self._alpha_value])
        self.built = True

    # Attributes Keras's tracking leaves alone: the feature extractors share
    # the models' layers (tracked, they would be saved twice); the rest is
    # plain Python state.
    _UNTRACKED = frozenset(
        {"_teacher_extractor", "_student_extractor", "_log_names", "_step_checks", "teacher_weights"}
    )

    def __setattr__(self, name, value):
        if name in self._UNTRACKED:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def metrics(self):
        """The metrics of this model, as `keras.Model.metrics`, less any of the frozen teacher's layers.

        The teacher trains no metric of the Distiller's, and a trainer that
        runs eagerly (torch) lists the metrics at every step, so the walk
        leaves the teacher's layers out (docs/results/benchmarks.md).
        """
        return _keras_compat.metrics_apart_from(self, getattr(self, "teacher", None))

    @property
    def trainable_variables(self):
        """The variables the optimizer trains, as `keras.Model.trainable_variables`, found without the teacher.

        The frozen teacher has none, and the torch step reads this list at
        every step, so the walk leaves the teacher's layers out
        (docs/results/benchmarks.md).
        """
        if not self.trainable:
            return []
        return [v for v in _keras_compat.variables_apart_from(self, getattr(self, "teacher", None)) if v.trainable]

    @property
    def teachers(self):
        """The teachers, as a list (one, or the members of an ensemble)."""
        return ensemble.members(self.teacher) if self.teacher_weights is not None else [self.teacher]

    @property
    def uses_labels(self):
        """False only for label-free distillation (alpha fixed at 1.0)."""
        return not (self._alpha_value.is_constant and self._alpha_value.initial_value == 1.0)

    @property
    def transforms_inputs(self):
        """True when training batches are augmented or mixed inside the step.

        The teacher's outputs then differ at every step, so they cannot be
        cached.
        """
        return self.augmentation is not None or self.mixup > 0

    def call(self, inputs, training=False):
        inputs, _ = kd_cache.split_cached(inputs)
        return self.student(inputs, training=training)

    def fit(self, x=None, *args, **kwargs):
        """As `keras.Model.fit`; also accepts `TeacherCache.dataset(...)` as `x`.

        A cached dataset (as `x` or `validation_data`) is checked first:
        it must come from this Distiller's teacher (same weights) and hold
        the features its feature matches read, and the Distiller must not
        transform its inputs inside the step.

        The data are checked in whatever form they come (NumPy arrays,
        dicts of arrays, a `tf.data.Dataset`, a `keras.utils.PyDataset`, a
        generator, a cached dataset): their first batch before training
        starts (the input shape, missing labels while alpha < 1, and with
        the default hard-label loss the labels' shape, dtype and class ids),
        the labels of every batch before its step runs. A temperature or
        alpha schedule is checked at every step it reaches, before the step
        (at once when the number of steps is known). See
        `keras_kd.fit_checks` for what is checked when. After any of these
        errors the Distiller can be trained and saved as before.

        Raises:
            keras_kd.cache.CacheMismatchError: for a stale or mismatched cache.
            ValueError: for a cache given to a Distiller that augments or
                mixes its inputs, inputs that do not fit the models, missing
                labels, labels of the wrong shape or out of the classes, or
                a schedule that leaves its valid range.
            TypeError: for labels that are not numbers (strings, booleans).
        """
        plan = fit_plan.prepare(self, keras.Model.fit, x, args, kwargs)
        with plan.context:
            return super().fit(**plan.arguments)

    def evaluate(self, x=None, *args, **kwargs):
        """As `keras.Model.evaluate`, checking the data (and a cache) as `fit` does."""
        if _keras_compat.is_validation_within_fit(kwargs):
            # On data that fit has checked.
            return super().evaluate(x, *args, **kwargs)
        plan = fit_plan.prepare(self, keras.Model.evaluate, x, args, kwargs)
        with plan.context:
            return super().evaluate(**plan.arguments)

    @property
    def step_checks(self):
        """The `keras_kd.fit_checks.StepChecks` that run before each step."""
        return self._step_checks

    def make_train_function(self, force=False):
        super().make_train_function(force)
        self.train_function = self._checked(self.train_function, training=True)
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force)
        self.test_function = self._checked(self.test_function, training=False)
        return self.test_function

    def _checked(self, function, training):
        if function is None or getattr(function, "_keras_kd_checked", False):
            return function
        checked = kd_backend.checked_step_function(function, self._step_checks, training)
        checked._keras_kd_checked = True
        return checked

    def check_training_batch(self, batch):
        """Raises for a first training batch (a `fit_checks.FirstBatch`) this Distiller cannot train on.

        `fit_checks.check_first_batch` has checked what every Distiller needs;
        a subclass that needs more of its data checks it here.
        """

    def _missing_labels_error(self):
        return ValueError(
            f"Labels are missing, but alpha={self._describe_alpha()} gives "
            "the hard-label term a weight. Pass y to fit(), or set "
            "alpha=1.0 for label-free distillation."
        )

    def save(self, filepath, overwrite=True, **kwargs):
        """Saves like `keras.Model.save`, atomically.

        The file is written beside `filepath` under a temporary name and then
        renamed, so a save that fails (or is killed) leaves any previous file
        intact.
        """
        filepath = os.fspath(filepath)
        if not overwrite and os.path.exists(filepath):
            raise FileExistsError(f"{filepath} exists and overwrite=False.")
        with atomic.atomic_file(filepath, suffix=".keras") as temporary:
            super().save(temporary, overwrite=True, **kwargs)

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
        super().load_own_variables({key: store[key] for key in store.keys() if not key.startswith(prefix)})
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
        # In place of Keras's loss tracker, so "loss" stays the first log.
        logs = kd_metrics.DistillationLogs(self._log_names, name="loss")
        _keras_compat.set_loss_tracker(self, logs)
        return self

    def get_compile_config(self):
        config = super().get_compile_config()
        optimizer = (config or {}).get("optimizer")
        # A config saved on one backend must load on the others.
        if isinstance(optimizer, dict) and "module" in optimizer:
            optimizer["module"] = _keras_compat.public_optimizer_module(optimizer["module"])
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
        # Batches from TeacherCache.dataset() carry the teacher's outputs.
        x, cached_outputs = kd_cache.split_cached(x)
        if y is None and self.uses_labels and training:
            raise self._missing_labels_error()
        step = None
        if training:
            step = ops.cast(self.optimizer.iterations, "float32")
            if not self._temperature_value.is_constant:
                self.temperature.assign(self._temperature_value.at_step(step))
            if not self._alpha_value.is_constant:
                self.alpha.assign(self._alpha_value.at_step(step))
        mixing = None
        if training and self.augmentation is not None:
            x = self.augmentation(x, training=True)
        if training and self.mixup > 0:
            x, partner, weight = kd_mixup.mix_batch(x, self.mixup, self._mixup_seed)
            mixing = (partner, weight)
        teacher_logits, teacher_features = self._teacher_outputs(x, cached_outputs)
        return Batch(x, y, sample_weight, teacher_logits, teacher_features, step, mixing)

    def _teacher_outputs(self, x, cached_outputs):
        """The teacher's logits and matched features, from the cache if the batch has them."""
        if cached_outputs is None:
            teacher_logits, teacher_features = kd_features.split_extracted(
                self._teacher_extractor(x, training=False), self.feature_matches
            )
            teacher_logits = ops.stop_gradient(teacher_logits)
            teacher_features = [ops.stop_gradient(feature) for feature in teacher_features]
        else:
            # Cached outputs are data: no gradient reaches them.
            teacher_logits, teacher_features = kd_cache.cached_teacher_outputs(
                cached_outputs, [match.teacher_layer for match in self.feature_matches]
            )
        if self.teacher_weights is not None:
            teacher_logits = ensemble.ensemble_logits(
                teacher_logits, self.teacher_weights, self.temperature, self.ensemble_target
            )
        return teacher_logits, teacher_features

    def compute_step_loss(self, batch, training):
        """Runs the student once and returns the loss and what metrics need.

        Every logit term is computed per position of the logits `(batch,
        ..., classes)` and averaged over the valid positions (see
        `keras_kd.positions`); so is a feature term whose feature has the
        logits' positions, the others are per example
        (`keras_kd.features.feature_terms`).
        """
        student_logits, student_features = kd_features.split_extracted(
            self._student_extractor(batch.x, training=training), self.feature_matches
        )
        model_checks.check_logits_match(batch.teacher_logits, student_logits)
        positions = kd_positions.positions_of(
            student_logits, batch.sample_weight, self._position_mask(batch.x, student_logits)
        )
        # Read at every step, constant or not: a callback may assign them.
        temperature = _casting.float32(self.temperature)
        alpha = _casting.float32(self.alpha)
        soft = self.distillation_loss(batch.teacher_logits, student_logits, temperature, step=batch.step)
        terms = {"distillation_loss": kd_positions.mean_over_positions(soft, positions)}
        loss = alpha * terms["distillation_loss"]
        if self.uses_labels and batch.y is not None:
            hard, labeled = self._hard_loss_of_labeled(batch, student_logits)
            hard_sum = kd_positions.sum_over_positions(hard, positions)
            terms["student_loss"] = kd_positions.divided_by_count(hard_sum, positions, counted=labeled)
            # The mean over all valid positions of alpha * soft + (1 - alpha) * hard.
            loss = loss + (1.0 - alpha) * kd_positions.divided_by_count(hard_sum, positions)
        feature_values = kd_features.feature_terms(
            self.feature_matches, self.adapters, batch, student_features, student_logits, positions, training
        )
        for match, value in zip(self.feature_matches, feature_values):
            terms[match.name] = value
            loss = loss + match.weight * value
        regularization = self.student.losses + [
            loss_value for adapter in self.adapters if adapter is not None for loss_value in adapter.losses
        ]
        if regularization:
            loss = loss + ops.cast(ops.sum(ops.stack(regularization)), "float32")
        return StepOutputs(loss, student_logits, terms, positions)

    def _position_mask(self, x, student_logits):
        """The Keras mask of the student's output, else the inputs' `"padding_mask"`, else None."""
        mask = kd_positions.output_mask(student_logits)
        return kd_positions.input_padding_mask(x, student_logits) if mask is None else mask

    def _hard_loss_of_labeled(self, batch, student_logits):
        """The per-position hard-label loss, 0 where the label is missing.

        Returns the loss and the share of each position that is labelled
        (1 or 0; between them for a mixup of a labelled and an unlabelled
        example).
        """

        def loss_of(labels):
            labeled = kd_positions.labeled_positions(labels, student_logits)
            loss = self.hard_loss(transfer.fill_missing_labels(labels), student_logits)
            return _casting.float32(loss) * labeled, labeled

        hard, labeled = loss_of(batch.y)
        if batch.mixing is not None:
            partner, weight = batch.mixing
            weight = ops.reshape(weight, (-1,) + (1,) * (len(hard.shape) - 1))
            partner_hard, partner_labeled = loss_of(ops.take(batch.y, partner, axis=0))
            hard = weight * hard + (1.0 - weight) * partner_hard
            labeled = weight * labeled + (1.0 - weight) * partner_labeled
        return hard, labeled

    def update_metrics(self, batch, outputs):
        """Updates the loss trackers and compiled metrics; returns the logs.

        Teacher agreement and the compiled metrics count valid positions only.
        """
        # A Python number where the shape is static (JAX, torch), else a tensor.
        batch_size = outputs.student_logits.shape[0]
        if batch_size is None:
            batch_size = ops.cast(ops.shape(outputs.student_logits)[0], "float32")
        else:
            batch_size = float(batch_size)
        agreement = kd_metrics.top1_agreement_count(
            outputs.student_logits, batch.teacher_logits, outputs.positions.valid
        )
        # Means weighted by the batch size (the loss and its terms) and by
        # the valid positions (agreement).
        means = {name: (value * batch_size, batch_size) for name, value in outputs.terms.items()}
        means["loss"] = (outputs.loss * batch_size, batch_size)
        means["teacher_agreement"] = (agreement, outputs.positions.count)
        _keras_compat.loss_tracker(self).update_state(means)
        compile_metrics = _keras_compat.compile_metrics(self)
        if batch.y is not None and compile_metrics is not None:
            labels = batch.y
            if batch.mixing is not None:
                # A mixed input is scored against its larger share's label.
                partner, weight = batch.mixing
                larger_share_is_own = ops.reshape(weight >= 0.5, (-1,) + (1,) * (len(labels.shape) - 1))
                labels = ops.where(larger_share_is_own, labels, ops.take(labels, partner, axis=0))
            kd_metrics.update_compiled_metrics(compile_metrics, labels, outputs.student_logits, outputs.positions)
            return self.get_metrics_result()
        # Label-free batches log no label metrics (rather than a stale 0.0
        # once labelled validation data has built them).
        return self.get_metrics_result(exclude=(compile_metrics,))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        # Keras builds the compiled metrics through this method from the
        # first batch; label-free data leaves them for the first labelled
        # batch (e.g. validation data) to build.
        compile_metrics = _keras_compat.compile_metrics(self)
        if y is not None and compile_metrics is not None:
            positions = kd_positions.positions_of(y_pred, sample_weight, kd_positions.output_mask(y_pred))
            kd_metrics.update_compiled_metrics(compile_metrics, y, y_pred, positions)
        return self.get_metrics_result()

    def get_metrics_result(self, exclude=()):
        # Compiled metrics stay unbuilt while no labels have been seen
        # (label-free fit); leave them out rather than fail.
        results = {}
        for metric in self.metrics:
            if not getattr(metric, "built", True) or any(metric is excluded for excluded in exclude):
                continue
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        # The temperature and alpha as they are now (inside a step: as the
        # step used them), read at every call: a callback may assign them.
        # Copies, not the variables' values: the logs outlive the step, and
        # JAX donates the values' buffers to the next jitted step while
        # torch assigns into them in place.
        results["temperature"], results["alpha"] = ops.copy(self.temperature), ops.copy(self.alpha)
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
                "teacher": ensemble.serialize_teacher(self.teacher, self.teacher_weights),
                "teacher_weights": self.teacher_weights,
                "ensemble_target": self.ensemble_target,
                "student": keras.saving.serialize_keras_object(self.student),
                "temperature": self._temperature_value.serialize(),
                "alpha": self._alpha_value.serialize(),
                "distillation_loss": keras.saving.serialize_keras_object(self.distillation_loss),
                "feature_matches": [keras.saving.serialize_keras_object(match) for match in self.feature_matches],
                "augmentation": keras.saving.serialize_keras_object(self.augmentation),
                "mixup": self.mixup,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["teacher"] = ensemble.deserialize_teacher(config["teacher"])
        for key in ("student", "distillation_loss", "augmentation"):
            config[key] = keras.saving.deserialize_keras_object(config.get(key))
        config["feature_matches"] = [
            keras.saving.deserialize_keras_object(match) for match in config.get("feature_matches", [])
        ]
        for key in ("temperature", "alpha"):
            config[key] = hyperparameters.deserialize(config[key])
        for key in ("trainable", "dtype"):
            config.pop(key, None)
        return cls(**config)
