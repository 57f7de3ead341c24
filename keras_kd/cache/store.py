"""`TeacherCache`: the frozen teacher's outputs over a fixed set of rows, computed once."""

import os
import shutil

import keras

from keras_kd import atomic, ensemble, validation
from keras_kd import features as kd_features
from keras_kd.cache import datasets, files, fingerprints, kinds, sources, teacher_pass
from keras_kd.cache import views as view_cache
from keras_kd.cache.batches import FEATURES_KEY
from keras_kd.cache.errors import CacheMismatchError


class TeacherCache:
    """The frozen teacher's outputs over a fixed set of rows, computed once.

    Create one with `TeacherCache.build` (or `for_distiller`), reopen one
    saved on disk with `TeacherCache.load`, and train with
    `distiller.fit(cache.dataset(x, y))`. Any number of Distillers that share
    the teacher can train from one cache (the sweep case): the teacher runs
    once for all of them.

    Attributes:
        num_rows: Number of cached rows.
        feature_layers: Names of the teacher layers whose outputs are cached.
        teacher_fingerprint: Hash of the teacher's weights (of every
            teacher's, for an ensemble).
        teacher_names: The names of the cached teachers: one, or each
            teacher of an ensemble in order.
        data_fingerprint: Hash of the data's shape, dtype and sampled rows.
        top_k: Classes kept per position in a top-k cache, or None (dense).
        tail_temperature: The temperature at which a top-k cache's rest mass is exact.
        num_classes: The teacher's number of classes.
        nbytes: Bytes of the stored outputs (logits or top-k arrays, and features).
        teacher_nbytes: Bytes of each teacher's stored outputs, by name.
        num_views: Augmented views cached per row (`build(augmentation=...,
            views=K)`), or None.
        augmented_inputs: Those views, `(num_rows, num_views, ...)`, or None.
        path: The cache directory, or None for an in-memory cache.

    Example:

    ```python
    import numpy as np
    import keras_kd

    def classifier(width, name):
        return keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(width,), name=name)

    rng = np.random.default_rng(0)
    x_train, y_train = rng.random((64, 8), dtype="float32"), rng.integers(0, 3, 64)
    teacher = classifier(32, "teacher")
    cache = keras_kd.TeacherCache.build(teacher, x_train, path="cache/")  # on disk
    for temperature in (2.0, 4.0, 8.0):
        distiller = keras_kd.Distiller(teacher, classifier(8, "student"), temperature=temperature)
        distiller.compile(optimizer="adam").fit(
            cache.dataset(x_train, y_train, batch_size=16), epochs=2, verbose=0
        )
    assert keras_kd.TeacherCache.load("cache/").num_rows == 64
    ```
    """

    def __init__(self, arrays, metadata, path=None):
        self._arrays = arrays
        self._metadata = metadata
        self._kind = kinds.from_metadata(metadata, arrays)
        self.path = path

    # ------------------------------------------------------------ creation

    @classmethod
    def build(
        cls,
        teacher,
        x,
        *,
        feature_layers=(),
        batch_size=256,
        path=None,
        overwrite=False,
        top_k=None,
        tail_temperature=1.0,
        augmentation=None,
        views=None,
        seed=None,
        view_dtype=None,
    ):
        """Runs `teacher` once over `x` and keeps its outputs.

        Args:
            teacher: The trained teacher, a `keras.Model` that outputs logits,
                or a list of them (an ensemble, as `keras_kd.Distiller` takes
                it): the cache then holds every teacher's own outputs, stacked
                on a teacher axis `(rows, ..., teachers, classes)`, and the
                ensemble's target is formed from them in each step at the
                step's temperature. It is the cache `for_distiller` builds for
                a Distiller of these teachers.
            x: The training inputs: an array (a `np.memmap` works, for inputs
                larger than memory) or a dict/list of arrays, or a
                `keras.utils.PyDataset` or `tf.data.Dataset` yielding batches
                of `x` or `(x, y[, sample_weight])` in a fixed order. A
                dataset is read twice: once to count its rows and check that
                it is deterministic, once through the teacher.
            feature_layers: Names (or layers) of teacher layers whose outputs
                are cached too, for feature matching.
            batch_size: Rows per teacher call when `x` is an array.
            path: Directory to store the cache in as memory-mapped `.npy`
                files plus `metadata.json`; `None` keeps it in memory.
            overwrite: Whether to replace an existing cache at `path`.
            top_k: None stores the dense logits. An int `k` stores, per
                position, the `k` largest logits, their class ids and one
                tail logit for the rest of the mass (`keras_kd.cache.topk`,
                `keras_kd.cache.kinds.TopKLogits`);
                each batch is rebuilt into dense logits in the step, so every
                distillation loss works unchanged. Exact at temperature 1
                (top-k probabilities and the rest mass); at other
                temperatures the tail's unknown shape makes it approximate.
            tail_temperature: With `top_k`, the distillation temperature at
                which the rest mass of a top-k cache is exact (its tail
                logit is set for it); give the Distiller's temperature.
            augmentation: A Keras image preprocessing layer, or a
                `keras.Sequential` of them (`keras_kd.cache.views.SUPPORTED_LAYERS`),
                to cache `views` augmented views of every row with the
                teacher's outputs on each (Fast Knowledge Distillation, Shen &
                Xing, ECCV 2022); `dataset()` then gives each row in one of
                its views per epoch. `x` must be one array of images.
            views: How many augmented views per row (with `augmentation`).
            seed: Seed of the views' random transformations (None: drawn
                at random and recorded).
            view_dtype: None stores the views as the augmentation makes them
                (float32: exact); e.g. `"float16"` halves their bytes, and
                the teacher then sees the rounded views, as the student will.

        Returns:
            A `TeacherCache`.

        Raises:
            TypeError: for a teacher that is not a `keras.Model`, or `x` of
                an unsupported type.
            ValueError: for teachers that cannot form an ensemble (an empty
                list, a teacher given twice, input or output shapes that
                differ: `keras_kd.ensemble.check_teachers`); for a dataset whose batches change between two reads
                (random augmentation or shuffling), arrays of different
                lengths, empty data, a bad `batch_size`, or a layer name the
                teacher lacks, or `top_k` that is not an integer in 1..C-1 for a
                teacher with C classes; for views that cannot be replayed (a
                layer outside `SUPPORTED_LAYERS`, mixup), `views` that is not
                a positive integer, or `views` without `augmentation`.
            FileExistsError: if `path` exists and `overwrite` is False.

        A failed build leaves any cache already at `path` as it was.
        """
        teacher = _teacher_model(teacher)
        feature_layers = [kd_features.layer_name("feature_layers", layer) for layer in feature_layers]
        if len(set(feature_layers)) != len(feature_layers):
            raise ValueError(f"`feature_layers` repeats a layer: {feature_layers}.")
        batch_size = validation.check_positive_int("batch_size", batch_size)
        kind = kinds.from_arguments(top_k, tail_temperature)
        plan = None
        if augmentation is not None or views is not None:
            plan = view_cache.ViewPlan(augmentation, views, seed, view_dtype)
        source = sources.make_source(x)
        if plan is not None:
            plan.check_source(source)
        feature_extractor = kd_features.feature_extractor(teacher, "teacher", feature_layers)
        if path is not None:
            path = os.path.abspath(os.fspath(path))
            files.check_writable(path, overwrite)
        metadata = {
            "format": files.FORMAT,
            "version": files.FORMAT_VERSION,
            "teacher": _teacher_record(teacher),
            "feature_layers": feature_layers,
            **kind.metadata(),
            "data": None,
            "arrays": {},
        }
        directory = None if path is None else atomic.staging_directory(path)
        try:
            writer = files.ArrayWriter(directory, metadata)
            if plan is None:
                batches = teacher_pass.RowBatches(source, batch_size)
            else:
                batches = view_cache.ViewBatches(plan, source, batch_size, writer)
            teacher_pass.run_teacher(feature_extractor, kind, feature_layers, batches, writer)
            writer.flush()
            metadata["data"] = batches.data_record
            metadata.update(kind.metadata())  # With what the run told, e.g. the class count.
            if plan is not None:
                metadata["views"] = plan.record()
            if directory is None:
                return cls(writer.arrays, metadata)
            writer = batches = None  # Close the writable memory maps before renaming.
            files.finish_directory(directory, metadata)
            atomic.replace_directory(directory, path)
            directory = None
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        return cls.load(path, verify=False)

    @classmethod
    def for_distiller(cls, distiller, x, **kwargs):
        """`build` for `distiller`'s teacher and the layers its feature matches read.

        Args:
            distiller: A `keras_kd.Distiller`.
            x: As for `build`.
            **kwargs: `batch_size`, `path`, `overwrite`, `top_k`, as for `build`.

        Raises:
            ValueError: if the Distiller transforms its inputs inside the
                training step (augmentation, mixup), where the teacher must
                see each new version of the inputs.
        """
        _refuse_input_transforms(distiller, kwargs.get("views"))
        feature_layers = [match.teacher_layer for match in distiller.feature_matches]
        return cls.build(distiller.teacher, x, feature_layers=feature_layers, **kwargs)

    @classmethod
    def load(cls, path, *, verify=True, augmentation=None, views=None, seed=None):
        """Reopens a cache saved by `build(..., path=path)`, memory-mapped.

        Args:
            path: The cache directory.
            verify: Whether to check each file's SHA-256 against the one
                recorded when it was written (reads every byte once). Sizes,
                shapes and dtypes are always checked.
            augmentation, views, seed: When given, the cache must hold views
                made with them (`check_views`).

        Raises:
            FileNotFoundError: if `path` or one of its files is missing.
            ValueError: for unreadable metadata, or a file that is truncated,
                corrupted, or not the shape and dtype recorded.
            CacheMismatchError: for views made with another augmentation,
                count or seed than those given.
        """
        path = os.path.abspath(os.fspath(path))
        metadata = files.read_metadata(path)
        if (augmentation, views, seed) != (None, None, None):
            view_cache.check_views(metadata.get("views"), augmentation, views, seed)
        arrays = {name: files.open_array(path, name, record, verify) for name, record in metadata["arrays"].items()}
        return cls(arrays, metadata, path=path)

    # ------------------------------------------------------------ accessors

    @property
    def num_rows(self):
        return self._metadata["data"]["rows"]

    @property
    def feature_layers(self):
        return list(self._metadata["feature_layers"])

    @property
    def teacher_fingerprint(self):
        return self._metadata["teacher"]["fingerprint"]

    @property
    def data_fingerprint(self):
        return self._metadata["data"]["digest"]

    @property
    def top_k(self):
        return self._kind.top_k

    @property
    def tail_temperature(self):
        """The temperature at which a top-k cache's rest mass is exact; None for a dense cache."""
        return self._kind.tail_temperature

    @property
    def num_classes(self):
        return self._kind.num_classes

    @property
    def teacher_names(self):
        record = self._metadata["teacher"]
        return list(record.get("members") or [record["name"]])

    @property
    def nbytes(self):
        return sum(int(array.nbytes) for array in self._arrays.values())

    @property
    def teacher_nbytes(self):
        """Bytes of each teacher's stored outputs: `{teacher name: bytes}`, in `teacher_names` order.

        A teacher's share of the logits (or top-k arrays), which an ensemble's
        cache splits evenly over its teacher axis, plus its cached features:
        every feature layer of a single teacher; for an ensemble, the feature
        layer that is that teacher (`feature_layers=["teacher_1"]`). What the
        teachers share (augmented views, other feature layers) counts in
        `nbytes` only.
        """
        names = self.teacher_names
        outputs = sum(int(array.nbytes) for array in self._kind.stored_arrays(self._arrays)) // len(names)
        sizes = dict.fromkeys(names, outputs)
        for layer in self.feature_layers:
            owner = layer if "members" in self._metadata["teacher"] else names[0]
            if owner in sizes:
                sizes[owner] += int(self._arrays[files.feature_key(layer)].nbytes)
        return sizes

    @property
    def num_views(self):
        """Augmented views cached per row, or None for a cache of the rows as they are."""
        record = self._metadata.get("views")
        return None if record is None else record["count"]

    @property
    def augmented_inputs(self):
        """The cached views, shape `(num_rows, num_views, ...)` (memory-mapped on disk); None without views."""
        return None if self.num_views is None else self._arrays[view_cache.VIEWS]

    def check_views(self, augmentation, views=None, seed=None, view_dtype=None):
        """Raises `CacheMismatchError` unless this cache's views were made with these arguments of `build`."""
        view_cache.check_views(self._metadata.get("views"), augmentation, views, seed, view_dtype)

    @property
    def teacher_logits(self):
        """The cached logits, shape `(num_rows, ..., classes)` (memory-mapped on disk).

        A cache of views holds `(num_rows, num_views, ..., classes)`.

        Raises:
            ValueError: for a top-k cache, which holds no dense logits (see
                `teacher_top_k`).
        """
        return self._kind.teacher_logits(self._arrays)

    @property
    def teacher_top_k(self):
        """`(top_k_logits, top_k_class_ids, tail_logit)` of a top-k cache (see `keras_kd.cache.topk`).

        Shapes `(num_rows, ..., top_k)`, `(num_rows, ..., top_k)` and
        `(num_rows, ...)`; None for a dense cache.
        """
        return self._kind.teacher_top_k(self._arrays)

    def output_arrays(self, feature_layers=()):
        """The stored outputs as a cached batch lays them out, for all rows.

        `{kind.batch_key: entry}` for the cache's output kind
        (`keras_kd.cache.kinds`: `{LOGITS_KEY: logits}` for a dense cache),
        plus `{FEATURES_KEY: {layer: features}}` for `feature_layers`.
        `cache.dataset` takes rows of these.
        """
        arrays = {self._kind.batch_key: self._kind.batch_entry(self._arrays)}
        if feature_layers:
            arrays[FEATURES_KEY] = {layer: self.teacher_features(layer) for layer in feature_layers}
        return arrays

    def teacher_features(self, layer):
        """The cached outputs of the teacher layer named `layer`."""
        if layer not in self._metadata["feature_layers"]:
            raise KeyError(f"The cache holds no features of layer {layer!r}; it holds {self.feature_layers}.")
        return self._arrays[files.feature_key(layer)]

    def __repr__(self):
        where = "in memory" if self.path is None else f"at {self.path!r}"
        return (
            f"TeacherCache({self.num_rows} rows of {_describe_teachers(self.teacher_names)}, {self._kind.describe()}, "
            f"features={self.feature_layers}, "
            + ("" if self.num_views is None else f"{self.num_views} views per row, ")
            + f"{where})"
        )

    # ------------------------------------------------------------ checks

    def check_teacher(self, teacher):
        """Raises `CacheMismatchError` unless `teacher` (a model, or a list of teachers) has the weights cached."""
        teacher = _teacher_model(teacher)
        fingerprint = fingerprints.teacher_fingerprint(teacher)
        if fingerprint != self.teacher_fingerprint:
            names = _teacher_record(teacher, fingerprint).get("members") or [teacher.name]
            raise CacheMismatchError(
                f"This cache was computed by a teacher with other weights "
                f"(cached {_describe_teachers(self.teacher_names)}, fingerprint "
                f"{self.teacher_fingerprint[:12]}; this teacher {_describe_teachers(names)}, "
                f"fingerprint {fingerprint[:12]}). Its outputs are stale: rebuild it "
                "with keras_kd.TeacherCache.build(teacher, x)."
            )

    def check_distiller(self, distiller, feature_layers=None):
        """Raises unless `distiller` can train from this cache.

        Args:
            distiller: A `keras_kd.Distiller`.
            feature_layers: The feature layers a dataset yields; defaults to
                all that the cache holds.

        Raises:
            ValueError: if the Distiller transforms its inputs in the step.
            CacheMismatchError: for another teacher, or feature matches that
                read teacher layers the cache lacks.

        Warns (`UserWarning`) for a top-k cache and a temperature other than
        its `tail_temperature`, where its rebuilt logits are an approximation
        (`keras_kd.cache.topk`).
        """
        _refuse_input_transforms(distiller, self.num_views)
        self.check_teacher(distiller.teacher)
        self._kind.check_distiller(distiller)
        available = self.feature_layers if feature_layers is None else list(feature_layers)
        missing = [match.teacher_layer for match in distiller.feature_matches if match.teacher_layer not in available]
        if missing:
            raise CacheMismatchError(
                f"The Distiller matches features of teacher layers {missing}, "
                f"which the cached data do not hold (they hold {available}). "
                "Build the cache with keras_kd.TeacherCache.for_distiller(distiller, x) "
                "or pass those names as `feature_layers`."
            )

    # ------------------------------------------------------------ training data

    def dataset(
        self,
        x,
        y=None,
        *,
        batch_size=32,
        shuffle=True,
        seed=None,
        sample_weight=None,
        feature_layers=None,
        workers=1,
        max_queue_size=10,
    ):
        """The data for `Distiller.fit`/`evaluate`, each batch with its teacher outputs.

        Args:
            x: The same inputs the cache was built from: arrays, or a
                `keras.utils.PyDataset` batched as it was at build time.
            y: Labels aligned with the rows of `x` (arrays only), or None.
            batch_size: Rows per batch (arrays only).
            shuffle: Whether to draw a new order of rows (of batches, for a
                PyDataset) every epoch. The teacher outputs follow the rows.
            seed: Seed of that order where this dataset draws it: when it
                is indexed, and in `fit` for memory-mapped rows and PyDataset
                sources. Rows in memory are shuffled by Keras's array adapter,
                as `model.fit(x, y)` shuffles them (`keras.utils.set_random_seed`
                fixes that order; on TensorFlow it then repeats every epoch).
            sample_weight: Per-row weights aligned with `x` (arrays only).
            feature_layers: Which cached features to yield; defaults to all.
                Fewer means less to copy per batch.
            workers: Threads that assemble batches ahead of the training
                step, for the batches this dataset assembles (as for
                `keras.utils.PyDataset`); 1 assembles each batch when it is
                needed.
            max_queue_size: Batches prepared ahead when `workers` > 1.

        Returns:
            A `keras.utils.PyDataset` to pass as `x` (or `validation_data`)
            to `Distiller.fit` or `Distiller.evaluate`, without `y` or
            `batch_size` there: the dataset holds them. For rows in memory,
            the Distiller hands Keras the inputs and the cached outputs as
            arrays (`keras_arrays()`), which Keras's own adapter shuffles and
            batches together, at the cost of the student's own data path;
            memory-mapped rows and PyDataset sources are batched by the
            dataset, a batch at a time.

        Raises:
            CacheMismatchError: if `x` is not the data the cache was built
                from (row count, shapes, dtypes, or sampled rows differ).
            TypeError: for a `tf.data.Dataset` (it cannot be indexed, so its
                batches could not be kept aligned with Keras's batch
                shuffling): pass arrays or a PyDataset.
            ValueError: for `y` or `sample_weight` of another length, or
                `sample_weight` without `y`.
        """
        if feature_layers is None:
            feature_layers = self.feature_layers
        feature_layers = [kd_features.layer_name("feature_layers", layer) for layer in feature_layers]
        missing = [name for name in feature_layers if name not in self.feature_layers]
        if missing:
            raise CacheMismatchError(
                f"`feature_layers` {missing} are not cached; the cache holds {self.feature_layers}."
            )
        if isinstance(x, keras.utils.PyDataset) and self.num_views is not None:
            raise TypeError("A cache of augmented views gives its rows from arrays: pass `x` as the array of images.")
        if isinstance(x, keras.utils.PyDataset):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "With a PyDataset as `x`, its batches carry the labels and "
                    "sample weights; pass y=None and sample_weight=None."
                )
            return datasets.CachedBatches(
                self, self._metadata["data"], x, feature_layers, shuffle, seed, workers, max_queue_size
            )
        if sample_weight is not None and y is None:
            raise ValueError(
                "`sample_weight` needs `y` in a cached dataset: Keras's "
                "TensorFlow pipeline cannot carry a batch of (x, None, "
                "sample_weight) from a PyDataset. Pass the labels (they are "
                "unused by the loss when alpha=1.0)."
            )
        if sources.is_tf_dataset(x):
            raise TypeError(
                "cache.dataset() needs data it can index by row or batch, so that "
                "each batch stays aligned with its cached teacher outputs however "
                "Keras orders the batches; a tf.data.Dataset cannot be indexed. "
                "Pass the arrays, or a keras.utils.PyDataset batched as at build time."
            )
        rows = sources.ArraySource(x)
        fingerprints.check_rows(self._metadata["data"], rows)
        return (datasets.CachedRows if self.num_views is None else view_cache.CachedViews)(
            self,
            rows,
            y,
            sample_weight,
            feature_layers,
            validation.check_positive_int("batch_size", batch_size),
            shuffle,
            seed,
            workers,
            max_queue_size,
        )


def _teacher_model(teacher):
    """The model a cache runs: `teacher`, or the `keras_kd.ensemble.teacher_ensemble` of a list of teachers."""
    if isinstance(teacher, (list, tuple)):
        return ensemble.teacher_ensemble(ensemble.check_teachers(teacher)[0])
    if not isinstance(teacher, keras.Model):
        raise TypeError(f"`teacher` must be a keras.Model; got {teacher!r} of type {type(teacher).__name__}.")
    return teacher


def _teacher_record(teacher, fingerprint=None):
    """The metadata of a cache's teacher: name and fingerprint, and the teachers' names for an ensemble."""
    record = {"name": teacher.name, "fingerprint": fingerprint or fingerprints.teacher_fingerprint(teacher)}
    members = ensemble.members(teacher)
    if members is not None:
        record["members"] = [member.name for member in members]
    return record


def _describe_teachers(names):
    return repr(names[0]) if len(names) == 1 else f"{len(names)} teachers {names}"


def _refuse_input_transforms(distiller, num_views=None):
    if num_views is not None and getattr(distiller, "transforms_inputs", False):
        raise ValueError(view_cache.double_augmentation_message(distiller, num_views))
    if getattr(distiller, "transforms_inputs", False):
        reason = getattr(distiller, "input_transform_reason", "augmentation or mixup")
        raise ValueError(
            f"This {type(distiller).__name__} transforms its inputs inside the training step "
            f"({reason}), so the teacher must see each new version "
            "of every batch: cached teacher outputs would belong to other "
            "inputs than the student sees. Train it without a cache, or move "
            "the augmentation out and cache un-augmented data."
        )
