"""What `Distiller.fit` and `evaluate` check about their data and schedules, and when.

Before training starts (no step has run, no callback has written a file):

- the data's first batch, whatever form the data take: NumPy arrays and
  dicts of them (all rows), a `keras.utils.PyDataset` (batch 0, read by
  index; the cached datasets of `keras_kd.cache` are PyDatasets), a Python
  generator (its first batch, which `fit` then replays, so nothing is
  lost), and a `tf.data.Dataset` (its element spec: shapes and dtypes, as
  reading a batch could fill a shuffle buffer). Checked: the input shapes,
  missing labels, and the labels' shape, dtype and class ids.
- the temperature and alpha schedules at every step the fit will run, when
  that number is known (`planned_steps`).

At each step, before the batch changes any weight (`StepChecks`):

- the labels of the batch: on the host on JAX and PyTorch, before the
  batch enters the (compiled) step; inside the graph on TensorFlow, whose
  batches never leave it (`tf.debugging.Assert`). XLA drops assertions, so
  under `jit_compile=True` (TensorFlow's default on a GPU) a
  `tf.data.Dataset`'s labels are checked in its pipeline instead, and
  other data up to their first batch only;
- the schedules, by chunks of `hyperparameters.CHECK_CHUNK_STEPS` steps.

Each failure is a `ValueError` naming the value and what is valid, and the
Distiller stays trainable and savable (`keras_kd.backend.keeping_state`).
"""

import collections
import contextlib
import inspect
import math
import re

import keras
import numpy as np

from keras_kd import cache as kd_cache
from keras_kd import validation

# What fit can see of its data before training: `data` to pass on in place
# of the user's (a generator is replaced by one that replays its first
# batch); `inputs`, `labels` and `sample_weight` of the first batch (arrays,
# or the `tf.TensorSpec`s of a dataset; None when absent); `seen` False
# for data whose first batch cannot be read without consuming it.
FirstBatch = collections.namedtuple("FirstBatch", ["data", "inputs", "labels", "sample_weight", "seen"])

# What the models need of the data. `input_shapes`: {input name: shape},
# None for models without a static input; `logits_shape`: the student's
# output shape when its labels are checked (the default hard-label loss),
# else None; `missing_labels`: the error for absent labels, None when
# labels may be absent.
Requirements = collections.namedtuple("Requirements", ["input_shapes", "logits_shape", "missing_labels"])


def first_batch(x, y, sample_weight=None):
    """Reads the first batch of `x` (and `y`, `sample_weight`) without consuming the user's data."""
    if inspect.isgenerator(x):
        try:
            batch = next(x)
        except StopIteration:
            return FirstBatch(_replay((), x), None, None, None, False)
        return FirstBatch(_replay((batch,), x), *keras.utils.unpack_x_y_sample_weight(_as_tuple(batch)), True)
    if isinstance(x, keras.utils.PyDataset):
        if x.num_batches == 0:
            return FirstBatch(x, None, None, None, False)
        return FirstBatch(x, *keras.utils.unpack_x_y_sample_weight(_as_tuple(x[0])), True)
    if hasattr(x, "element_spec"):  # A tf.data.Dataset.
        return FirstBatch(x, *keras.utils.unpack_x_y_sample_weight(_as_tuple(x.element_spec)), True)
    if isinstance(x, (np.ndarray, dict)):
        labels = y if isinstance(y, np.ndarray) else None
        return FirstBatch(x, x, labels, sample_weight, y is None or isinstance(y, np.ndarray))
    return FirstBatch(x, None, None, None, False)


def check_first_batch(batch, requirements):
    """Raises for a first batch that the models cannot train on."""
    if batch.inputs is not None:
        inputs, _ = kd_cache.split_cached(batch.inputs)
        _check_inputs(inputs, requirements.input_shapes)
    if not batch.seen:
        return
    if batch.labels is None:
        if requirements.missing_labels is not None:
            raise requirements.missing_labels
        return
    if requirements.logits_shape is not None:
        _check_labels(batch.labels, requirements.logits_shape)


def planned_steps(x, fit_arguments):
    """How many train steps `fit(x, ...)` runs, when that is known; else None.

    Never more than it runs: a schedule checked up front over these steps
    must not be refused for a value it would never reach.
    """
    epochs = fit_arguments.get("epochs", 1) - fit_arguments.get("initial_epoch", 0)
    steps_per_epoch = fit_arguments.get("steps_per_epoch")
    if steps_per_epoch is None:
        steps_per_epoch = _batches_per_epoch(x, fit_arguments)
    if steps_per_epoch is None or epochs <= 0:
        return None
    return steps_per_epoch * epochs


def _batches_per_epoch(x, fit_arguments):
    if isinstance(x, keras.utils.PyDataset):
        return x.num_batches
    if hasattr(x, "cardinality"):
        cardinality = int(x.cardinality())
        return cardinality if cardinality >= 0 else None
    leaves = keras.tree.flatten(x) if isinstance(x, (np.ndarray, dict, list, tuple)) else []
    if not leaves or not all(isinstance(leaf, np.ndarray) for leaf in leaves):
        return None
    # As Keras splits off validation rows and batches the rest.
    rows = math.ceil(len(leaves[0]) * (1.0 - (fit_arguments.get("validation_split") or 0.0)))
    return math.ceil(rows / (fit_arguments.get("batch_size") or 32))


def _check_inputs(inputs, input_shapes):
    if input_shapes is None:
        return
    if isinstance(inputs, dict):
        if set(inputs) != set(input_shapes):
            raise ValueError(
                f"The inputs are a dict with keys {sorted(inputs)}, but the teacher "
                f"and the student take inputs named {sorted(input_shapes)}. Valid: "
                "a dict with exactly those keys, or an array for a model with one input."
            )
        for name, shape in input_shapes.items():
            if _shape_of(inputs[name]) is not None:
                validation.check_input_shape(_shape_of(inputs[name]), shape, name=name)
        return
    if len(input_shapes) == 1 and _shape_of(inputs) is not None:
        validation.check_input_shape(_shape_of(inputs), next(iter(input_shapes.values())))


def _check_labels(labels, logits_shape):
    if isinstance(labels, np.ndarray):
        validation.check_label_array(labels, logits_shape)
        return
    shape, dtype = _shape_of(labels), getattr(labels, "dtype", None)
    if shape is None or not hasattr(dtype, "as_numpy_dtype"):
        return
    # A tf.TensorSpec: its shape and dtype now, its values in the steps.
    kind = "U" if dtype.name == "string" else np.dtype(dtype.as_numpy_dtype).kind
    validation.check_label_form(shape, kind, dtype.name, logits_shape)


def _shape_of(value):
    """The shape of an array or `tf.TensorSpec` as a tuple; None if unknown."""
    shape = getattr(value, "shape", None)
    if shape is None or getattr(shape, "rank", 0) is None:
        return None
    return tuple(shape)


def _as_tuple(batch):
    return tuple(batch) if isinstance(batch, list) else batch


def _replay(first_batches, generator):
    """A generator of `first_batches`, then the rest of `generator`."""
    yield from first_batches
    yield from generator


class StepChecks:
    """The checks of each batch's labels and each step's schedules.

    A Distiller holds one. `fit` calls `begin`, passes its data through
    `checked_data` and runs inside `clear_errors`; the step functions Keras
    makes are wrapped (`keras_kd.backend.checked_step_function`) to call
    `before_train_call` before each train call.

    Labels are checked where the data are still on the host, before they
    reach a device: a generator's and a PyDataset's batches as Python
    reads them, a `tf.data.Dataset`'s in its pipeline (an assertion). So no
    step waits for a device, and nothing in a compiled step changes.

    Args:
        schedules: The `hyperparameters.ScheduledValue`s that change with
            the step (temperature, alpha).

    Attributes:
        enabled: False skips the per-batch and per-step checks of later
            fits (the checks before training stay); `bench/step_checks.py`
            measures their cost this way.
    """

    def __init__(self, schedules):
        self.enabled = True
        self.schedules = [value for value in schedules if not value.is_constant]
        self.steps_per_call = 1
        self.completed_calls = 0
        self._next_step = None
        self._labels = _LabelCheck(None)

    def begin(self, first_step, planned, logits_shape, steps_per_call):
        """Starts a fit at `first_step`; checks the schedules over `planned` steps."""
        self._next_step = first_step
        self._labels = _LabelCheck(logits_shape)
        self.steps_per_call = steps_per_call
        if planned:
            self._check_schedules(first_step, first_step + planned)

    def begin_evaluation(self, logits_shape):
        self._labels = _LabelCheck(logits_shape)

    def checked_data(self, data):
        """`data` whose batches' labels are checked as they are read.

        Arrays (checked whole before training) and other data are returned
        as they are; the user's objects are never changed.
        """
        if not self.enabled or self._labels.logits_shape is None:
            return data
        if inspect.isgenerator(data):
            return _checked_batches(data, self._labels)
        if isinstance(data, keras.utils.PyDataset):
            return _CheckedPyDataset(data, self._labels)
        if hasattr(data, "element_spec"):
            import tensorflow as tf

            # Parallel map calls keep the order of the batches.
            return data.map(self._labels.in_graph, num_parallel_calls=tf.data.AUTOTUNE)
        return data

    @contextlib.contextmanager
    def clear_errors(self):
        """Turns a label check failing inside a data pipeline into its ValueError.

        TensorFlow reports an error raised in a pipeline (a failed
        assertion, an exception of a generator it wraps) as its own
        `InvalidArgumentError`; the check's ValueError replaces it.
        """
        labels = self._labels
        labels.error = None
        try:
            yield
        except Exception as error:
            clear = labels.error or _failed_assertion(error, labels)
            if clear is None or clear is error:
                raise
            raise clear from None

    def before_train_call(self):
        if not self.enabled or self._next_step is None or not self.schedules:
            return
        step = self._next_step
        self._next_step += self.steps_per_call
        self._check_schedules(step, step + self.steps_per_call)

    def _check_schedules(self, start, stop):
        for value in self.schedules:
            value.check_steps(start, stop)


# Tags the assertion of a tf.data pipeline's labels, so that its failure
# can be told from other errors.
_BAD_LABEL = "keras_kd: label out of the classes"
_BAD_LABEL_VALUE = re.compile(re.escape(_BAD_LABEL) + r"\] \[([^\]]+)\]")


class _LabelCheck:
    """Checks the labels of batches against the student's `logits_shape` (None: no check).

    Plain data, so that a PyDataset's worker processes can take it; `error`
    keeps the last error raised, for `StepChecks.clear_errors`.
    """

    def __init__(self, logits_shape):
        self.logits_shape = logits_shape
        self.error = None

    def __call__(self, batch):
        _, labels, _ = keras.utils.unpack_x_y_sample_weight(_as_tuple(batch))
        if labels is None:
            return
        try:
            validation.check_label_array(np.asarray(labels), self.logits_shape)
        except (TypeError, ValueError) as error:
            self.error = error
            raise

    def in_graph(self, *batch):
        """The batch of a `tf.data.Dataset`, its labels asserted in the pipeline."""
        import tensorflow as tf

        batch = batch if len(batch) > 1 else batch[0]
        x, labels, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        if labels is None or validation.check_label_form(
            tuple(labels.shape), np.dtype(labels.dtype.as_numpy_dtype).kind, labels.dtype.name, self.logits_shape
        ):
            return batch  # No labels, or one-hot rows.
        # TensorFlow ops, not keras.ops: the pipeline is TensorFlow on every backend.
        # As check_label_array: ids >= the classes, or not whole, are bad.
        flat = tf.reshape(labels, (-1,))
        values = tf.cast(flat, "float32")
        bad = tf.logical_or(values >= float(self.logits_shape[-1]), values != tf.floor(values))
        first_bad = tf.gather(flat, tf.argmax(tf.cast(bad, "int32")))
        with tf.control_dependencies(
            [tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [_BAD_LABEL, first_bad])]
        ):
            labels = tf.identity(labels)
        return keras.utils.pack_x_y_sample_weight(x, labels, sample_weight)


def _failed_assertion(error, labels):
    """The ValueError for a failed `_LabelCheck.in_graph` assertion, else None."""
    match = _BAD_LABEL_VALUE.search(str(error))
    if match is None or labels.logits_shape is None:
        return None
    value = float(match[1])
    return validation.label_value_error(int(value) if value.is_integer() else value, labels.logits_shape[-1])


def _checked_batches(generator, check):
    for batch in generator:
        check(batch)
        yield batch


class _CheckedPyDataset(keras.utils.PyDataset):
    """A PyDataset's batches, each checked as it is read; the PyDataset itself is untouched."""

    def __init__(self, dataset, check):
        super().__init__(
            workers=dataset.workers,
            use_multiprocessing=dataset.use_multiprocessing,
            max_queue_size=dataset.max_queue_size,
        )
        self._dataset, self._check = dataset, check

    def __len__(self):
        return len(self._dataset)

    @property
    def num_batches(self):
        return self._dataset.num_batches

    def __getitem__(self, index):
        batch = self._dataset[index]
        self._check(batch)
        return batch

    def on_epoch_begin(self):
        self._dataset.on_epoch_begin()

    def on_epoch_end(self):
        self._dataset.on_epoch_end()
