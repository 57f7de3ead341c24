"""The one preparation of `Distiller.fit` and `Distiller.evaluate`.

`prepare` binds the call's arguments to `keras.Model.fit`'s (or
`evaluate`'s) signature once, hands cached data (`TeacherCache.dataset(...)`)
to Keras as arrays where it can, checks the data and `validation_data` before
anything runs (see `keras_kd.fit_checks` for what is checked when), starts the
checks of each step, and returns the arguments to call Keras with beside the
context that must hold during the call.
"""

import collections
import contextlib
import inspect

import keras
from keras import ops

from keras_kd import backend as kd_backend
from keras_kd import fit_checks
from keras_kd import losses as kd_losses
from keras_kd.cache import datasets as cached_datasets
from keras_kd.cache import fingerprints as kd_fingerprints
from keras_kd.model_io import io_shapes

# `arguments`: every argument of `keras.Model.fit` (or `evaluate`) by name,
# defaults included, the data as Keras is to receive them. `context`: the
# context the call runs in (`during_call`), not yet entered.
Plan = collections.namedtuple("Plan", ["arguments", "context"])


def prepare(distiller, method, x, args, kwargs):
    """The plan of `distiller.fit(x, *args, **kwargs)` (`method` is `keras.Model.fit`) or of `evaluate`.

    Raises:
        keras_kd.cache.CacheMismatchError: for cached data of another
            teacher, or without the features the feature matches read.
        ValueError: for cached data given to a Distiller that transforms
            its inputs, `y`, `sample_weight` or another `batch_size` beside
            cached rows, or as `fit_checks.check_first_batch` and
            `StepChecks.begin`.
        TypeError: for arguments `method` does not take, or as
            `fit_checks.check_first_batch`.
    """
    training = method is keras.Model.fit
    arguments = _bound_arguments(method, distiller, x, args, kwargs)
    _unpack_cached_data(distiller, arguments, training)
    requirements = _requirements(distiller, training)
    batch = fit_checks.first_batch(arguments["x"], arguments["y"], arguments["sample_weight"])
    fit_checks.check_first_batch(batch, requirements)
    checks = distiller.step_checks
    if training:
        distiller.check_training_batch(batch)
        planned = fit_checks.planned_steps(arguments["x"], arguments)
        checks.begin(_current_step(distiller), planned, requirements.logits_shape, distiller.steps_per_execution)
        arguments["validation_data"] = _checked_validation_data(distiller, arguments["validation_data"])
    else:
        checks.begin_evaluation(requirements.logits_shape)
    arguments["x"] = checks.checked_data(batch.data)
    return Plan(arguments, during_call(distiller, checks))


@contextlib.contextmanager
def during_call(distiller, checks):
    """What holds while Keras runs a fit or evaluate of `distiller`.

    A failed call leaves the variables usable (`keras_kd.backend.keeping_state`),
    a label check failing in a data pipeline raises its own ValueError
    (`StepChecks.clear_errors`), and a teacher the call left unchanged is
    not fingerprinted again (`keras_kd.cache.fingerprints.teacher_kept_through`).
    """
    with (
        kd_backend.keeping_state(distiller, checks),
        checks.clear_errors(),
        kd_fingerprints.teacher_kept_through(distiller),
    ):
        yield


def _bound_arguments(method, distiller, x, args, kwargs):
    """The arguments of `method(distiller, x, *args, **kwargs)` by name, defaults included."""
    bound = inspect.signature(method).bind(distiller, x, *args, **kwargs)
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop("self")
    arguments.update(arguments.pop("kwargs", {}))
    return arguments


def _unpack_cached_data(distiller, arguments, training):
    """Checks cached data against `distiller`; cached rows in memory become arrays for Keras's adapter.

    Keras's array adapter then shuffles and batches the inputs, the cached
    outputs, the labels and the weights together, as it batches the
    student's own arrays. Other cached data stay PyDatasets. A fit also
    gets the callbacks the data need (`CachedData.fit_callbacks`).
    """
    data, validation_data = arguments["x"], arguments.get("validation_data")
    for cached in (data, validation_data):
        if isinstance(cached, cached_datasets.CachedData):
            cached.check_distiller(distiller)
    if training and isinstance(data, cached_datasets.CachedData):
        _add_callbacks(arguments, data.fit_callbacks())
    arrays = data.keras_arrays() if isinstance(data, cached_datasets.CachedRows) else None
    if arrays is not None:
        for name in ("y", "sample_weight"):
            if arguments[name] is not None:
                raise ValueError(
                    f"The cached dataset holds the labels and sample weights; pass "
                    f"{name}=None here (give them to cache.dataset(x, y, sample_weight=...))."
                )
        if arguments["batch_size"] not in (None, data.batch_size):
            raise ValueError(
                f"The cached dataset makes batches of {data.batch_size} rows; got "
                f"batch_size={arguments['batch_size']!r}. Set it in cache.dataset(batch_size=...)."
            )
        arguments["x"], arguments["y"], arguments["sample_weight"] = arrays
        arguments["batch_size"] = data.batch_size
        if training:
            arguments["shuffle"] = data.shuffle and arguments["shuffle"]
    if isinstance(validation_data, cached_datasets.CachedRows):
        validation_arrays = validation_data.keras_arrays()
        if validation_arrays is not None:
            arguments["validation_data"] = validation_arrays
            if arguments["validation_batch_size"] is None:
                arguments["validation_batch_size"] = validation_data.batch_size


def _add_callbacks(arguments, callbacks):
    if not callbacks:
        return
    given = arguments["callbacks"]
    if isinstance(given, keras.callbacks.CallbackList):
        for callback in callbacks:
            given.append(callback)
    else:
        arguments["callbacks"] = list(given or []) + list(callbacks)


def _checked_validation_data(distiller, validation_data):
    """`validation_data` checked as `evaluate` checks data: its labels per batch where they are read."""
    if validation_data is None:
        return None
    requirements = _requirements(distiller, training=False)
    if isinstance(validation_data, tuple):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(validation_data)
        fit_checks.check_first_batch(fit_checks.first_batch(x, y), requirements)
        return validation_data
    batch = fit_checks.first_batch(validation_data, None)
    fit_checks.check_first_batch(batch, requirements)
    return distiller.step_checks.checked_data(batch.data)


def _requirements(distiller, training):
    """What `fit_checks.check_first_batch` checks the data of `distiller` against."""
    try:
        inputs = distiller.teacher.inputs
    except (AttributeError, ValueError):
        inputs = None
    input_shapes = {tensor.name: tuple(tensor.shape) for tensor in inputs} if inputs else None
    missing_labels = distiller._missing_labels_error() if training and distiller.uses_labels else None
    return fit_checks.Requirements(input_shapes, _checked_logits_shape(distiller), missing_labels)


def _checked_logits_shape(distiller):
    """The student's logits shape if its labels are checked, else None.

    Labels are checked for the default hard-label loss, which takes class
    ids or one-hot rows; another loss may take other labels.
    """
    student_shapes = io_shapes(distiller.student)
    if distiller.hard_loss is not kd_losses.label_cross_entropy or student_shapes is None:
        return None
    return student_shapes[1][0]


def _current_step(distiller):
    optimizer = getattr(distiller, "optimizer", None)
    if optimizer is None or not optimizer.built:
        return 0
    return int(ops.convert_to_numpy(optimizer.iterations))
