"""The search space of a distillation sweep, as a Keras Tuner `HyperModel`.

`DistillationHyperModel.build(hp)` makes a compiled `keras_kd.Distiller` for
one (temperature, alpha) (and optionally a learning rate, a temperature
decay, and the weights of an ensemble's teachers); `fit(hp, model, ...)`
trains it. The frozen teacher runs once per
sweep: its logits on the training and validation rows go into a
`keras_kd.cache.TeacherCache` at the first trial, and every trial trains
from that cache. Each trial starts from the same student weights and sees
the batches in the same order, so trials differ only in their
hyperparameters.
"""

import collections
import math
import numbers

import keras
import numpy as np

from keras_kd import ensemble, validation
from keras_kd._optional import import_optional
from keras_kd.cache import TeacherCache
from keras_kd.distiller import Distiller

keras_tuner = import_optional("keras_tuner", "keras_kd.tuning")

# What every trial is scored on: the `accuracy` metric that `build` compiles,
# on the validation rows.
OBJECTIVE = "val_accuracy"
DEFAULT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_ALPHAS = (0.1, 0.3, 0.5, 0.7, 0.9)


class Range(collections.namedtuple("Range", ["min_value", "max_value", "sampling"])):
    """A continuous search range, `Range(1.0, 20.0, "log")`, instead of a list of values.

    Args:
        min_value: Smallest value.
        max_value: Largest value (> `min_value`).
        sampling: `"linear"` or `"log"` (Keras Tuner's sampling).
    """

    __slots__ = ()

    def __new__(cls, min_value, max_value, sampling="linear"):
        return super().__new__(cls, min_value, max_value, sampling)


class DistillationHyperModel(keras_tuner.HyperModel):
    """Searches the temperature and alpha of a `keras_kd.Distiller`.

    Hyperparameters (Keras Tuner names): `temperature`, `alpha`, and, when
    given as lists or ranges, `learning_rate`; `temperature_decay` (a
    Boolean) when `temperature_decay="tune"`; for several teachers,
    `teacher_weights` (a choice among weight lists, named like `"1:1:2"`)
    or `teacher_weight_0`, `teacher_weight_1`, ... (one per teacher, from a
    `Range`).

    Args:
        teacher: The trained teacher, a `keras.Model` that outputs logits,
            or a list of them: an ensemble distilled into each student (see
            `keras_kd.Distiller`), whose teachers all run once per sweep.
        student_builder: A callable with no arguments that returns a new,
            untrained student `keras.Model` (logits out).
        train_data: `(x, y)` arrays to train each student on.
        validation_data: `(x, y)` arrays that score each trial
            (`val_accuracy`).
        temperatures: Values to try (a list) or a `Range`; all > 0.
        alphas: Values to try (a list) or a `Range`; all in [0, 1]. Alpha
            weighs the distillation term (1 = labels unused).
        learning_rate: Adam's learning rate: a float (fixed), a list or a
            `Range` (searched).
        temperature_decay: `False` (constant T), `True` (T moves linearly to
            1 over `epochs` epochs, as in seed 002's 5 -> 1), or `"tune"` (try
            both).
        teacher_weights: With several teachers: None (equal, not searched);
            one weight per teacher (fixed); a list of such weight lists
            (searched: a choice among them); or a `Range` (searched: each
            teacher's weight drawn from it on its own, `min_value` > 0).
            The Distiller normalizes the weights to sum to 1.
        ensemble_target: With several teachers, the Distiller's
            `ensemble_target` (`"probabilities"` or `"log_probabilities"`).
        epochs: Epochs per trial (Hyperband sets its own).
        batch_size: Batch size of training and validation.
        seed: Seed of the student's initial weights and of the batch order,
            the same for every trial.
        compile_options: Extra arguments of `Distiller.compile` (e.g.
            `{"jit_compile": False}`: for tiny models, compiling each
            trial's step can take longer than training it).

    Raises:
        TypeError: for a teacher that is not a `keras.Model` (or a list of
            them), teacher weights that are not numbers, a student
            builder that is not callable or does not return a `keras.Model`,
            or hyperparameter values that are not numbers.
        ValueError: for temperatures <= 0, alphas outside [0, 1], empty or
            repeated value lists, a bad `Range`, data of mismatched lengths,
            a student whose inputs or outputs do not fit the teacher,
            teachers that cannot form an ensemble, teacher weights without
            several teachers, or weight lists the Distiller refuses (not one
            weight per teacher, negative, all zero).

    Example:

    ```python
    import tempfile

    import numpy as np

    from keras_kd import models, tuning

    rng = np.random.default_rng(0)
    x, y = rng.uniform(size=(48, 8, 8, 1)).astype("float32"), np.arange(48) % 10
    teacher = models.mlp_student(input_shape=(8, 8, 1), hidden_units=(16,))
    hypermodel = tuning.DistillationHyperModel(
        teacher,
        lambda: models.mlp_student(input_shape=(8, 8, 1), hidden_units=(4,)),
        (x[:32], y[:32]),
        (x[32:], y[32:]),
        temperatures=[2.0, 4.0],
        alphas=[0.9],
        epochs=1,
        compile_options={"run_eagerly": True},  # Tiny models: compiling costs more than it saves.
    )
    tuner = tuning.make_tuner("grid", hypermodel, directory=tempfile.mkdtemp())
    tuner.search(verbose=0)
    best = tuner.get_best_hyperparameters()[0].values
    assert best["temperature"] in (2.0, 4.0) and best["alpha"] == 0.9
    ```
    """

    def __init__(
        self,
        teacher,
        student_builder,
        train_data,
        validation_data,
        *,
        temperatures=DEFAULT_TEMPERATURES,
        alphas=DEFAULT_ALPHAS,
        learning_rate=1e-3,
        temperature_decay=False,
        teacher_weights=None,
        ensemble_target="probabilities",
        epochs=5,
        batch_size=64,
        seed=0,
        compile_options=None,
        name="distillation",
    ):
        super().__init__(name=name, tunable=True)
        if isinstance(teacher, (list, tuple)):
            teacher = ensemble.check_teachers(teacher, None, ensemble_target)[0]
        else:
            validation.check_model("teacher", teacher)
        if not callable(student_builder) or isinstance(student_builder, keras.Model):
            raise TypeError(
                "`student_builder` must be a callable with no arguments that "
                f"returns a new keras.Model; got {student_builder!r} of type "
                f"{type(student_builder).__name__}."
            )
        self.teacher = teacher
        self.student_builder = student_builder
        self.train_data = _check_arrays("train_data", train_data)
        self.validation_data = _check_arrays("validation_data", validation_data)
        self.temperatures = _check_space("temperatures", temperatures, validation.check_temperature)
        self.alphas = _check_space("alphas", alphas, validation.check_alpha)
        self.learning_rate = _check_space("learning_rate", learning_rate, _check_learning_rate)
        if temperature_decay not in (False, True, "tune"):
            raise ValueError(f"`temperature_decay` must be False, True or 'tune'; got {temperature_decay!r}.")
        self.temperature_decay = temperature_decay
        self.ensemble_target = ensemble_target
        self.teacher_weights = _check_teacher_weights(teacher_weights, teacher, ensemble_target)
        self.epochs = validation.check_positive_int("epochs", epochs)
        self.batch_size = validation.check_positive_int("batch_size", batch_size)
        self.seed = seed
        self.compile_options = dict(compile_options or {})
        self._caches = None
        # Fail now, not inside a trial (Keras Tuner would log and retry it).
        self._make_distiller(_first_value(self.temperatures), _first_value(self.alphas), False, self._weights(None))

    # ------------------------------------------------------------ keras_tuner API

    def build(self, hp):
        """A compiled Distiller for the hyperparameters drawn in `hp`."""
        temperature = _declare(hp, "temperature", self.temperatures)
        alpha = _declare(hp, "alpha", self.alphas)
        learning_rate = _declare(hp, "learning_rate", self.learning_rate)
        decay = self.temperature_decay
        if decay == "tune":
            decay = hp.Boolean("temperature_decay", default=False)
        distiller = self._make_distiller(temperature, alpha, decay, self._weights(hp))
        distiller.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            metrics=["accuracy"],
            **self.compile_options,
        )
        return distiller

    def fit(self, hp, model, *args, **kwargs):
        """Trains `model` on the cached training data; returns the History.

        Keras Tuner passes its callbacks (and, for Hyperband, `epochs` and
        `initial_epoch`) here; other `search(...)` keyword arguments go to
        `Distiller.fit`. The data were given to the constructor.

        Raises:
            TypeError: if `search` was given data (`x`, `y`,
                `validation_data`).
        """
        if args or {"x", "y", "validation_data"} & set(kwargs):
            # Fatal: Keras Tuner would otherwise log it and retry the trial.
            raise keras_tuner.errors.FatalTypeError(
                "DistillationHyperModel trains on the data given to its "
                "constructor; call tuner.search() without x, y or validation_data."
            )
        train_cache, validation_cache = self._teacher_caches()
        kwargs.setdefault("epochs", self.epochs)
        train = train_cache.dataset(*self.train_data, batch_size=self.batch_size, shuffle=True, seed=self.seed)
        validation_set = validation_cache.dataset(*self.validation_data, batch_size=self.batch_size, shuffle=False)
        return model.fit(train, validation_data=validation_set, **kwargs)

    # ------------------------------------------------------------ helpers

    def make_student(self):
        """A new student from `student_builder`, with the sweep's initial weights."""
        keras.utils.set_random_seed(self.seed)
        student = self.student_builder()
        if not isinstance(student, keras.Model):
            raise keras_tuner.errors.FatalTypeError(
                "`student_builder` must return a keras.Model; it returned "
                f"{student!r} of type {type(student).__name__}."
            )
        return student

    def _weights(self, hp):
        """The teacher weights of a trial, declared in `hp`; the first choice for `hp=None`."""
        space = self.teacher_weights
        if isinstance(space, Range):
            if hp is None:
                return [space.min_value] * len(self.teacher)
            return [
                hp.Float(f"teacher_weight_{index}", space.min_value, space.max_value, sampling=space.sampling)
                for index in range(len(self.teacher))
            ]
        if isinstance(space, dict):
            labels = tuple(space)
            return space[labels[0] if hp is None else _declare(hp, "teacher_weights", labels)]
        return space  # None (equal weights) or one fixed list.

    def _make_distiller(self, temperature, alpha, decay, teacher_weights):
        if decay:
            steps = self.epochs * math.ceil(len(self.train_data[0]) / self.batch_size)
            temperature = keras.optimizers.schedules.PolynomialDecay(
                temperature, decay_steps=steps, end_learning_rate=min(temperature, 1.0)
            )
        options = {}
        if isinstance(self.teacher, list):
            options = {"teacher_weights": teacher_weights, "ensemble_target": self.ensemble_target}
        return Distiller(self.teacher, self.make_student(), temperature=temperature, alpha=alpha, **options)

    def _teacher_caches(self):
        """The teacher's outputs on the training and validation rows, computed once."""
        if self._caches is None:
            self._caches = tuple(
                TeacherCache.build(self.teacher, x, batch_size=max(self.batch_size, 256))
                for x, _ in (self.train_data, self.validation_data)
            )
        return self._caches


def _check_arrays(name, data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"`{name}` must be a pair (x, y) of arrays; got {type(data).__name__}.")
    x, y = (np.asarray(part) for part in data)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(
            f"`{name}` must hold as many labels as inputs (and at least one); got {len(x)} inputs and {len(y)} labels."
        )
    return x, y


def _check_space(name, values, check):
    """A validated `Range`, a tuple of floats (a choice), or one float (fixed)."""
    if isinstance(values, Range):
        low = check(values.min_value, name=f"{name}.min_value")
        high = check(values.max_value, name=f"{name}.max_value")
        if not low < high:
            raise ValueError(f"`{name}` is {values}: min_value must be < max_value.")
        if values.sampling not in ("linear", "log"):
            raise ValueError(f"`{name}.sampling` must be 'linear' or 'log'; got {values.sampling!r}.")
        return Range(low, high, values.sampling)
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        return check(values, name=name)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"`{name}` must be a list of numbers or a keras_kd.tuning.Range; got "
            f"{values!r} of type {type(values).__name__}."
        )
    checked = tuple(check(value, name=f"{name}[{index}]") for index, value in enumerate(values))
    if not checked:
        raise ValueError(f"`{name}` is empty; give at least one value.")
    if len(set(checked)) != len(checked):
        raise ValueError(f"`{name}` repeats a value: {list(checked)}.")
    return checked


def _check_teacher_weights(space, teacher, target):
    """None, one checked weight list, a `Range` of each weight, or `{label: weight list}` to choose from."""
    if space is None:
        return None
    if not isinstance(teacher, list):
        raise ValueError(f"teacher_weights={space!r} given with one teacher; pass the teachers as a list.")
    if isinstance(space, Range):
        return _check_space("teacher_weights", space, _check_positive_weight)
    if isinstance(space, (str, bytes)) or not hasattr(space, "__iter__"):
        raise TypeError(
            f"`teacher_weights` must be a list of {len(teacher)} weights, a list of such lists, or a "
            f"keras_kd.tuning.Range; got {space!r} of type {type(space).__name__}."
        )
    space = list(space)
    if space and all(isinstance(weight, numbers.Real) for weight in space):
        ensemble.check_teachers(teacher, space, target)
        return [float(weight) for weight in space]
    if not space:
        raise ValueError("`teacher_weights` is empty; give at least one list of weights, or None.")
    choices = {}
    for index, weights in enumerate(space):
        try:
            ensemble.check_teachers(teacher, weights, target)
        except (TypeError, ValueError) as error:
            raise type(error)(f"`teacher_weights[{index}]`: {error}") from None
        label = ":".join(f"{float(weight):g}" for weight in weights)
        if label in choices:
            raise ValueError(f"`teacher_weights` repeats the weights {label}.")
        choices[label] = [float(weight) for weight in weights]
    return choices


def _check_positive_weight(value, name):
    value = validation.check_real_number(name, value, schedulable=False)
    if value <= 0:
        raise ValueError(
            f"`{name}` must be > 0 (each teacher's weight is drawn from the range); got {value!r}. "
            "To try dropping a teacher, list weight lists with a 0 instead."
        )
    return value


def _check_learning_rate(value, name="learning_rate"):
    value = validation.check_real_number(name, value, schedulable=False)
    if value <= 0:
        raise ValueError(f"`{name}` must be > 0 (typically 1e-4 to 1e-2); got {value!r}.")
    return value


def _declare(hp, name, space):
    """Declares `name` in `hp` from a checked space; returns its current value."""
    if isinstance(space, Range):
        return hp.Float(name, space.min_value, space.max_value, sampling=space.sampling)
    if isinstance(space, tuple):
        if len(space) == 1:
            return hp.Fixed(name, space[0])
        return hp.Choice(name, list(space))  # Ordered for numbers (Keras Tuner infers it), not for labels.
    return space  # A fixed float: not a hyperparameter of the search.


def _first_value(space):
    if isinstance(space, Range):
        return space.min_value
    return space[0] if isinstance(space, tuple) else space
