"""A cache of augmented views: K views per row, each with the teacher's outputs on it.

Fast Knowledge Distillation (Shen & Xing, "A Fast Knowledge Distillation
Framework for Visual Recognition", ECCV 2022) stores, per image, a few
augmentations with the teacher's soft labels for each and replays one per
epoch, so that a consistent teacher (Beyer et al., "Knowledge distillation: A
good teacher is patient and consistent", CVPR 2022) costs no teacher pass in
training. `TeacherCache.build(teacher, x, augmentation=layer, views=K)` does
this with Keras's image preprocessing layers, and `cache.dataset(x, y)` gives
each row in one of its K views per epoch.

What is stored is the augmented inputs themselves, shape `(rows, K, ...)`,
rather than the layers' random transformation parameters. The parameters are
smaller (a few numbers per view against a whole image), but replaying them is
neither exact nor free: on Keras 3.15's torch backend, `transform_images` of
`RandomRotation` and `RandomBrightness` gives another image when called twice
with one transformation, and a replay would run the interpolation in every
training step (see docs/guides/cache.md, "A cache of augmented views", and
docs/results/cache-studies.md for what the cache costs and gains). Stored
inputs are exact by construction: the teacher's outputs are computed on the
very array the student later reads (rounded first to `view_dtype`, when one
is given, so both see the rounded view).
"""

import hashlib
import json
import numbers

import keras
import numpy as np

from keras_kd.cache import datasets, fingerprints, sources
from keras_kd.cache.batches import INPUTS_KEY
from keras_kd.cache.errors import CacheMismatchError

# The name of the stored views in a cache's arrays (`files.allocate`).
VIEWS = "augmented_inputs"

# Keras image preprocessing layers whose random draws follow the seed given
# to `get_random_transformation` and act on each image alone (checked on
# torch, TensorFlow and JAX with Keras 3.15, tests/test_view_cache.py);
# Resizing and CenterCrop draw nothing.
SUPPORTED_LAYERS = (
    "CenterCrop",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomContrast",
    "RandomCrop",
    "RandomErasing",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterization",
    "RandomRotation",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "RandomTranslation",
    "RandomZoom",
    "Resizing",
    "Solarization",
)

_MIXING = (
    "mixes each image with another row of its batch, so a mixed view belongs to two rows: its "
    "label is the mix of both labels, and the teacher's output on it is not the mix of the two "
    "rows' outputs, so it cannot be replayed as a view of one row beside that row's label. "
    "Distil with mixup uncached, keras_kd.FunctionMatchingDistiller(teacher, student, mixup=...)"
)
_OWN_GENERATOR = (
    "draws some of its randomness from its own seed generator rather than from the seed "
    "passed to get_random_transformation, so the cache's views could not be rebuilt from "
    "its seed. Compose the supported layers it is made of instead"
)
REFUSED_LAYERS = {
    "MixUp": _MIXING,
    "CutMix": _MIXING,
    "RandAugment": _OWN_GENERATOR,
    "AugMix": _OWN_GENERATOR,
    "RandomColorJitter": _OWN_GENERATOR,
    "RandomElasticTransform": _OWN_GENERATOR,
}


class ViewPlan:
    """How a cache's views are made: the augmentation's layers, how many views, the seed.

    Built (and every argument checked) before anything is written, so a bad
    argument leaves an existing cache as it was.
    """

    def __init__(self, augmentation, views, seed, view_dtype):
        if augmentation is None:
            raise ValueError(
                f"`views={views!r}` needs an `augmentation` to make the views with, e.g. "
                "augmentation=keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1)])."
            )
        if views is None:
            raise ValueError(
                "An `augmentation` needs `views`, the number of augmented views cached per row "
                "(a positive integer, e.g. views=16)."
            )
        if isinstance(views, bool) or not isinstance(views, numbers.Integral) or views < 1:
            raise ValueError(
                f"`views` must be a positive integer, the number of augmented views cached per "
                f"row (e.g. 16); got {views!r}."
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
            raise ValueError(f"`seed` must be None or a non-negative integer; got {seed!r}.")
        self.layers = _image_layers(augmentation)
        self.count = int(views)
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.dtype = None if view_dtype is None else _float_dtype(view_dtype)
        self.configs = [_layer_config(layer) for layer in self.layers]

    def check_source(self, source):
        """Raises unless `source` (`keras_kd.cache.sources`) is one array of images, as the views need."""
        if not isinstance(source, sources.ArraySource) or keras.tree.is_nested(source.structure):
            raise TypeError("A cache of augmented views is built from one array of images; pass `x` as that array.")
        (images,) = source.leaves
        if images.ndim != 4:
            raise ValueError(
                "A cache of augmented views needs images: `x` of shape (rows, height, width, "
                f"channels) for Keras's image preprocessing layers; got shape {images.shape}."
            )

    def record(self):
        """The views' entry in a cache's metadata; `digest` is the augmentation's fingerprint."""
        fields = {"count": self.count, "seed": self.seed, "dtype": self.dtype, "augmentation": self.configs}
        return dict(fields, digest=_digest(fields))

    def augment(self, images, generator):
        """One augmented view of each image of the batch, as a NumPy array (`view_dtype` if set)."""
        images = keras.ops.convert_to_tensor(images)
        for layer in self.layers:
            transformation = layer.get_random_transformation(images, training=True, seed=generator)
            images = layer.transform_images(images, transformation, training=True)
        images = keras.ops.convert_to_numpy(images)
        return images if self.dtype is None else images.astype(self.dtype)


def check_views(record, augmentation, views=None, seed=None, view_dtype=None):
    """Raises `CacheMismatchError` unless the views of `record` were made so.

    Args:
        record: A cache's views record (`ViewPlan.record()`), or None for a
            cache of un-augmented rows.
        augmentation, views, seed, view_dtype: As given to
            `TeacherCache.build`; each is compared when not None.
    """
    if record is None:
        raise CacheMismatchError(
            "This cache holds the teacher's outputs on un-augmented rows, no views; "
            "build one with TeacherCache.build(teacher, x, augmentation=..., views=K)."
        )
    problems = []
    expected = None if augmentation is None else [_layer_config(layer) for layer in _image_layers(augmentation)]
    if expected is not None and expected != record["augmentation"]:
        problems.append(
            f"augmentation {_describe(record['augmentation'])} (cached) against {_describe(expected)} (given)"
        )
    for name, value in (("views", views), ("seed", seed)):
        cached = record["count" if name == "views" else name]
        if value is not None and value != cached:
            problems.append(f"{name}={cached!r} (cached) against {value!r} (given)")
    if view_dtype is not None and _float_dtype(view_dtype) != record["dtype"]:
        problems.append(f"view_dtype={record['dtype']!r} (cached) against {view_dtype!r} (given)")
    if problems:
        raise CacheMismatchError(
            "This cache's views were made otherwise: " + "; ".join(problems) + ". Its teacher "
            "outputs belong to those views: rebuild it with TeacherCache.build(teacher, x, "
            "augmentation=..., views=..., seed=...)."
        )


class ViewBatches:
    """`plan.count` augmented views of every row of `source`, in batches for the teacher.

    Iterating yields `(views, (rows, view_index))`, a batch of views and
    where the teacher's outputs on them go, and stores each batch of views
    in the cache's `augmented_inputs` array (allocated from `writer` at the
    first one), so that the student later reads the very views the teacher
    saw.

    Attributes:
        leading_shape: `(num_rows, plan.count)`.
        data_record: The data's record in the cache's metadata (the
            fingerprint of the un-augmented rows).
    """

    def __init__(self, plan, source, batch_size, writer):
        self.plan = plan
        self.source = source
        self.batch_size = batch_size
        self.writer = writer
        self.leading_shape = (source.num_rows, plan.count)
        wanted_rows = fingerprints.sample_rows(source.num_rows)
        hashes = [fingerprints.row_hash(source.rows(np.array([row]))) for row in wanted_rows]
        self.data_record = fingerprints.data_metadata(source.num_rows, source.leaf_specs(), wanted_rows, hashes)

    def __iter__(self):
        (images,) = self.source.leaves
        num_rows, count = self.source.num_rows, self.plan.count
        generator, stored = keras.random.SeedGenerator(self.plan.seed), None
        for start in range(0, num_rows, self.batch_size):
            stop = min(start + self.batch_size, num_rows)
            batch = np.asarray(images[start:stop])
            for view_index in range(count):
                view = self.plan.augment(batch, generator)
                if stored is None:
                    stored = self.writer.allocate(VIEWS, (num_rows, count) + view.shape[1:], view.dtype)
                stored[start:stop, view_index] = view
                yield view, (slice(start, stop), view_index)


class CachedViews(datasets.CachedRows):
    """Rows, each in one of its cached views per epoch, with the teacher's outputs on that view.

    The view of every row is drawn afresh each epoch, from `(seed, epoch)`
    alone, so a run is repeatable and a resumed one (`initial_epoch`) draws
    what it would have drawn. `Distiller.fit` redraws at the start of each
    epoch (the callback of `fit_callbacks()`); reading the batches by hand,
    `on_epoch_end()` moves to the next epoch.
    """

    def __init__(self, cache, x, y, sample_weight, feature_layers, batch_size, shuffle, seed, workers, max_queue_size):
        super().__init__(cache, x, y, sample_weight, feature_layers, batch_size, shuffle, seed, workers, max_queue_size)
        self.num_views = cache.num_views
        self._view_seed = np.random.SeedSequence().entropy if seed is None else seed
        self.epoch, self._choice, self._buffers = None, None, None
        self.set_epoch(0)

    @property
    def current_views(self):
        """The view (0 to K-1) each row is given in this epoch, shape `(rows,)`."""
        return self._choice.copy()

    def set_epoch(self, epoch):
        """Draws the views of epoch `epoch` (the same `epoch` always draws the same views)."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self._choice = np.random.default_rng([self._view_seed, epoch]).integers(0, self.num_views, self._x.num_rows)
        if self._buffers is not None:
            self._fill(self._buffers)

    def fit_callbacks(self):
        return [_DrawViews(self)]

    def on_epoch_end(self):
        super().on_epoch_end()
        self.set_epoch(self.epoch + 1)

    def _stored(self):
        """The cached batch's structure for all rows and views: arrays of shape `(rows, K, ...)`."""
        return {INPUTS_KEY: self.cache.augmented_inputs, **self.cache.output_arrays(self.feature_layers)}

    def keras_arrays(self):
        """This epoch's views and outputs as arrays for Keras's adapter, refilled in place each epoch.

        None on TensorFlow, whose array adapter copies the arrays into its
        `tf.data` pipeline once per `fit`, so a redraw would not reach it: the
        batches are assembled here instead.
        """
        if keras.config.backend() == "tensorflow":
            return None
        if self._arrays is None:
            floatx = keras.config.floatx()

            def buffer(stored):
                # Keras's adapter copies floats that are not floatx, and a copy would not see the refills.
                dtype = floatx if np.issubdtype(stored.dtype, np.floating) else stored.dtype
                return np.empty((self._x.num_rows,) + stored.shape[2:], dtype)

            buffers = keras.tree.map_structure(buffer, self._stored())
            self._fill(buffers)
            self._buffers = buffers
            self._arrays = tuple(
                [buffers]
                + [
                    None if source is None else keras.tree.map_structure(np.array, source.gather(slice(None)))
                    for source in (self._y, self._sample_weight)
                ]
            )
        return self._arrays

    def _fill(self, buffers):
        flat_index = np.arange(self._x.num_rows) * self.num_views + self._choice
        for buffer, stored in zip(keras.tree.flatten(buffers), keras.tree.flatten(self._stored())):
            rows_and_views = stored.reshape((stored.shape[0] * stored.shape[1],) + stored.shape[2:])
            buffer[...] = np.take(rows_and_views, flat_index, axis=0)

    def _batch(self, index):
        rows = np.sort(self._order[index * self.batch_size : (index + 1) * self.batch_size])
        choice = self._choice[rows]
        inputs = np.asarray(self.cache.augmented_inputs[rows, choice])
        batch = (self._outputs_beside(inputs, lambda array: np.asarray(array[rows, choice])),)
        for source in (self._y, self._sample_weight):
            if source is not None:
                batch += (source.gather(rows),)
        return batch


class _DrawViews(keras.callbacks.Callback):
    """Draws the views of each epoch before its first batch is read."""

    def __init__(self, data):
        super().__init__()
        self.data = data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.set_epoch(epoch)


def _image_layers(augmentation):
    """The layers of `augmentation` in order, each checked to be replayable."""
    if isinstance(augmentation, keras.Sequential):
        return [layer for sublayer in augmentation.layers for layer in _image_layers(sublayer)]
    if not isinstance(augmentation, keras.layers.Layer):
        raise TypeError(
            "`augmentation` must be a Keras image preprocessing layer or a keras.Sequential of "
            f"them; got {augmentation!r} of type {type(augmentation).__name__}."
        )
    name = type(augmentation).__name__
    if name in REFUSED_LAYERS and isinstance(augmentation, getattr(keras.layers, name)):
        raise ValueError(f"{name} ({augmentation.name!r}) cannot make cached views: it {REFUSED_LAYERS[name]}.")
    if not any(isinstance(augmentation, getattr(keras.layers, supported)) for supported in SUPPORTED_LAYERS):
        raise ValueError(
            f"{name} ({augmentation.name!r}) cannot make cached views: a view is replayed from "
            "the random transformation Keras's image preprocessing layers draw for a given seed "
            "(get_random_transformation / transform_images). Supported layers: "
            f"{', '.join(SUPPORTED_LAYERS)} (alone or in a keras.Sequential)."
        )
    return [augmentation]


def _layer_config(layer):
    """What decides a layer's views: its class and config, without its name and own seed."""
    config = {key: value for key, value in layer.get_config().items() if key not in ("name", "seed", "trainable")}
    return {"class_name": type(layer).__name__, "config": json.loads(json.dumps(config, sort_keys=True, default=str))}


def _describe(configs):
    return "[" + ", ".join(f"{entry['class_name']}({_short(entry['config'])})" for entry in configs) + "]"


def _short(config):
    return ", ".join(f"{key}={value!r}" for key, value in sorted(config.items()) if key not in ("dtype",))


def _digest(fields):
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _float_dtype(view_dtype):
    try:
        dtype = np.dtype(view_dtype)
    except TypeError as error:
        raise ValueError(f"`view_dtype` must be None or a NumPy float dtype name; got {view_dtype!r}.") from error
    if dtype.kind != "f":
        raise ValueError(
            f"`view_dtype` must be None (the augmentation's own dtype, exact) or a float dtype "
            f"such as 'float16' (half the bytes); got {view_dtype!r}."
        )
    return str(dtype)


def double_augmentation_message(distiller, num_views):
    """Why a Distiller that augments or mixes in its step cannot train from a cache of views."""
    reasons = []
    if getattr(distiller, "augmentation", None) is not None:
        reasons.append(
            f"it augments every batch again inside the step (augmentation={distiller.augmentation.name!r}): "
            "the student would see an augmented view of a view, while the cached outputs are the "
            "teacher's on the view itself"
        )
    if getattr(distiller, "mixup", 0) > 0:
        reasons.append(
            f"it mixes every batch inside the step (mixup={distiller.mixup!r}): the teacher's output on a "
            "mix of two views is not the mix of their cached outputs"
        )
    return (
        f"This cache holds {num_views} augmented views per row, but this Distiller transforms its "
        f"inputs in the training step: {'; and '.join(reasons) or 'the cached outputs would not fit them'}. "
        "Distil from a cache of views with a Distiller without `augmentation` and `mixup` "
        "(keras_kd.Distiller(teacher, student, ...)): the cached views replace the in-step augmentation."
    )
