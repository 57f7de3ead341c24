"""Output kinds: how a cache stores the teacher's logits, and how a batch gives them back.

A cache holds one kind object. The kind names and types the arrays the
teacher's logits are stored in, gives the model the teacher runs as while
the cache is built (so that only the stored arrays leave the device), lays
those arrays out in a cached batch, and turns a batch back into the dense
logits every distillation loss reads. Features (`feature_layers`) are stored
as the teacher gives them, whatever the kind.

A new kind is one subclass of `OutputKind`: it sets `batch_key` and
`array_names`; implements `metadata`, `describe`, `teacher_logits`,
`batch_entry` and `logits_from_batch`; and overrides `teacher_model` (to
turn the teacher's logits into its arrays on the device), `storage_dtype`,
`teacher_top_k` and `check_distiller` where the defaults (the teacher's own
outputs and dtypes; no top-k; no check) do not fit. `KINDS` and
`from_metadata` list it. A cached batch must describe itself: the step sees
only the batch, so whatever a kind needs to decode it (a top-k batch's class
count) travels inside the batch's arrays, where every Keras data adapter
carries it.
"""

import abc

import keras
import numpy as np

from keras_kd import validation
from keras_kd.cache import files, topk


class OutputKind(abc.ABC):
    """How a cache stores the teacher's logits.

    Attributes:
        batch_key: The key under which a cached batch carries this kind's
            arrays (prefixed so that it cannot clash with a model's input names).
        array_names: The names of the stored arrays, as in the cache's files,
            in the order the teacher model (`teacher_model`) outputs them.
        num_classes: The teacher's number of classes (None while a cache is
            built, until the teacher's output is known).
        top_k: Classes kept per position, or None when every class is kept.
        tail_temperature: The temperature at which a top-k cache's rest mass
            is exact, or None.
    """

    batch_key = None
    array_names = ()
    top_k = None
    tail_temperature = None

    def __init__(self, num_classes=None):
        self.num_classes = num_classes

    @abc.abstractmethod
    def metadata(self):
        """This kind's entries in a cache's `metadata.json` (read back by `from_metadata`)."""

    @abc.abstractmethod
    def describe(self):
        """What the cache stores, for `repr`: e.g. `"dense logits"`."""

    def teacher_model(self, feature_extractor, inputs):
        """The model the teacher runs as while the cache is built.

        Args:
            feature_extractor: The teacher, or a model sharing its layers that
                returns `[logits, *features]`.
            inputs: The first batch it will run on, for checks that must
                pass before the teacher runs.

        Returns:
            A model whose outputs are this kind's arrays (in `array_names`
            order), then the features.
        """
        return feature_extractor

    def storage_dtype(self, name, dtype):
        """The dtype array `name` is stored in, given the dtype the teacher model outputs."""
        return dtype

    def stored_arrays(self, arrays):
        """This kind's arrays of a cache's `arrays` (all stored arrays by name), in `array_names` order."""
        return tuple(arrays[name] for name in self.array_names)

    @abc.abstractmethod
    def teacher_logits(self, arrays):
        """`TeacherCache.teacher_logits` of a cache holding `arrays`."""

    def teacher_top_k(self, arrays):
        """`TeacherCache.teacher_top_k` of a cache holding `arrays`: None unless the kind keeps the top-k."""
        return None

    @abc.abstractmethod
    def batch_entry(self, arrays):
        """What a cached batch carries under `batch_key`, for all rows of a cache holding `arrays`.

        Every leaf has the rows on its first axis (rows and views in a cache
        of views), so that taking rows of each leaf gives a batch's entry.
        """

    @classmethod
    @abc.abstractmethod
    def logits_from_batch(cls, entry):
        """The dense teacher logits `(batch, ..., classes)` of a batch's entry under `batch_key`.

        Runs inside the training step, on tensors.
        """

    def check_distiller(self, distiller):
        """Raises or warns when `distiller` would train badly from this kind's logits."""
        return  # Exact logits suit every Distiller.


class DenseLogits(OutputKind):
    """Every logit, as the teacher outputs it: one array `(rows, ..., classes)`."""

    batch_key = "keras_kd_teacher_logits"
    array_names = (files.LOGITS,)

    def metadata(self):
        return {"top_k": None, "tail_temperature": None}

    def describe(self):
        return "dense logits"

    def teacher_logits(self, arrays):
        return arrays[files.LOGITS]

    def batch_entry(self, arrays):
        return arrays[files.LOGITS]

    @classmethod
    def logits_from_batch(cls, entry):
        return entry


# The entry of a top-k batch that carries the class count: an empty array of
# shape `(rows, ..., 0, num_classes)`. The step rebuilds dense logits from
# the batch alone, and a static shape passes through every Keras data
# adapter and every backend's compiled step (a Python int would be refused).
CLASS_COUNT = "class_count"


class TopKLogits(OutputKind):
    """Per position, the `top_k` largest logits, their class ids and one tail logit (`keras_kd.cache.topk`).

    Args:
        top_k: Classes kept per position, `1 <= top_k < num_classes`.
        tail_temperature: The temperature at which the rest mass is exact.
        num_classes: The teacher's number of classes; None until the
            teacher's output is known (`teacher_model`).
    """

    batch_key = "keras_kd_teacher_top_k"
    array_names = topk.ARRAY_NAMES

    def __init__(self, top_k, tail_temperature=1.0, num_classes=None):
        super().__init__(num_classes)
        self.top_k = top_k
        self.tail_temperature = tail_temperature

    def metadata(self):
        entries = {"top_k": self.top_k, "tail_temperature": self.tail_temperature}
        if self.num_classes is not None:
            entries["num_classes"] = self.num_classes
        return entries

    def describe(self):
        return f"top-{self.top_k} of {self.num_classes} classes"

    def teacher_model(self, feature_extractor, inputs):
        """The teacher whose logits are compressed to the top-k arrays on the device.

        Checks `top_k` against the teacher's number of classes (from a
        symbolic call) first, here rather than inside the model's call,
        where Keras would wrap the message in the call's arguments.
        """
        specs = keras.tree.map_structure(
            lambda leaf: keras.KerasTensor(np.shape(leaf), dtype=str(np.asarray(leaf).dtype)), inputs
        )
        logits = keras.tree.flatten(feature_extractor.compute_output_spec(specs))[0]
        if len(logits.shape) < 2:
            raise ValueError(
                f"A top-k cache needs teacher logits of shape (batch, ..., classes); the teacher "
                f"outputs shape {tuple(logits.shape)}."
            )
        topk.check_top_k_classes(self.top_k, logits.shape[-1])
        self.num_classes = logits.shape[-1]
        return TopKExtractor(feature_extractor, self.top_k, self.tail_temperature)

    def storage_dtype(self, name, dtype):
        if name == topk.TOP_K_CLASS_IDS:
            return topk.class_id_dtype(self.num_classes)
        return dtype

    def teacher_logits(self, arrays):
        raise ValueError(
            f"This is a top-{self.top_k} cache: it holds no dense logits. Read its arrays "
            "with cache.teacher_top_k, or rebuild dense logits with "
            "keras_kd.cache.topk.dense_logits(*cache.teacher_top_k, cache.num_classes)."
        )

    def teacher_top_k(self, arrays):
        return self.stored_arrays(arrays)

    def batch_entry(self, arrays):
        entry = dict(zip(self.array_names, self.stored_arrays(arrays)))
        entry[CLASS_COUNT] = np.empty(entry[topk.TAIL_LOGIT].shape + (0, self.num_classes), "int8")
        return entry

    @classmethod
    def logits_from_batch(cls, entry):
        num_classes = entry[CLASS_COUNT].shape[-1]
        if num_classes is None:
            raise ValueError(
                "A top-k cached batch lost its class count: the last axis of its "
                f"{CLASS_COUNT!r} entry must have a static size."
            )
        return topk.dense_logits(*(entry[name] for name in topk.ARRAY_NAMES), int(num_classes))

    def check_distiller(self, distiller):
        topk.warn_unless_tail_temperature(distiller, self.top_k, self.tail_temperature)


# Every kind, in the order a cached batch is searched for one.
KINDS = (DenseLogits, TopKLogits)


def from_arguments(top_k, tail_temperature):
    """The kind `TeacherCache.build(top_k=..., tail_temperature=...)` asks for, both checked."""
    top_k = topk.check_top_k(top_k)
    tail_temperature = validation.check_temperature(tail_temperature, "tail_temperature", schedulable=False)
    if top_k is None:
        if tail_temperature != 1.0:
            raise ValueError(
                f"`tail_temperature` ({tail_temperature!r}) applies to a top-k cache only; pass `top_k` too."
            )
        return DenseLogits()
    return TopKLogits(top_k, tail_temperature)


def from_metadata(metadata, arrays):
    """The kind of a cache with `metadata` and stored `arrays` (by name)."""
    top_k = metadata.get("top_k")  # Absent in caches written before top-k caches.
    if top_k is None:
        return DenseLogits(arrays[files.LOGITS].shape[-1])
    return TopKLogits(top_k, metadata.get("tail_temperature", 1.0), metadata["num_classes"])


def kind_of_batch(batch):
    """The `OutputKind` subclass whose arrays the dict `batch` carries, or None."""
    return next((kind for kind in KINDS if kind.batch_key in batch), None)


class TopKExtractor(keras.Model):
    """A feature extractor whose logits leave the device as their top-k arrays.

    `[logits, *features]` becomes `[top_k_logits, top_k_class_ids,
    tail_logit, *features]` (`topk.compress`), inside the compiled inference
    function, so that the dense logits never reach host memory.
    """

    def __init__(self, feature_extractor, top_k, tail_temperature=1.0):
        super().__init__(name=f"{feature_extractor.name}_top_{top_k}")
        self.feature_extractor = feature_extractor
        self.top_k = top_k
        self.tail_temperature = tail_temperature
        self.built = True

    def call(self, inputs, training=False):
        outputs = self.feature_extractor(inputs, training=training)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return [*topk.compress(outputs[0], self.top_k, self.tail_temperature), *outputs[1:]]
