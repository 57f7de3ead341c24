"""Teacher-output cache: run the frozen teacher once, then distil from its outputs.

Without augmentation, the teacher's outputs are the same in every epoch and in
every trial of a sweep, yet an ordinary distillation step recomputes them.
`TeacherCache.build` runs the teacher once (with `training=False`, streamed in
batches) over the training rows and keeps its logits, and the intermediate
features that feature matching needs, in memory or on disk as memory-mapped
`.npy` files. `TeacherCache.dataset` then yields each batch of inputs together
with the teacher's outputs for exactly those rows, and a `keras_kd.Distiller`
given that dataset takes the outputs from the batch instead of calling the
teacher.

A cache records a fingerprint of the teacher (a hash of all its weights) and of
the data (row count, shapes, dtypes and a hash of a sample of rows); a
Distiller refuses a cache made by another teacher, `dataset()` refuses other
data, and `load()` refuses truncated or corrupted files, so stale outputs are
never used silently.
"""

import hashlib
import json
import math
import os
import shutil
import tempfile

import keras
import numpy as np

from keras_kd import features as kd_features

FORMAT = "keras_kd.TeacherCache"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
LOGITS = "teacher_logits"
# How many rows of the data are hashed into its fingerprint.
SAMPLE_ROWS = 64
# Keys of the input dict that carries cached outputs through Keras's data
# pipeline; prefixed so that they cannot clash with a model's own input names.
INPUTS_KEY = "keras_kd_inputs"
LOGITS_KEY = "keras_kd_teacher_logits"
FEATURES_KEY = "keras_kd_teacher_features"
_CHUNK_BYTES = 1 << 24


class CacheMismatchError(ValueError):
    """A cache does not belong to this teacher, these data, or this Distiller."""


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
        teacher_fingerprint: Hash of the teacher's weights.
        data_fingerprint: Hash of the data's shape, dtype and sampled rows.
        path: The cache directory, or None for an in-memory cache.

    Example:

    ```python
    cache = keras_kd.TeacherCache.build(teacher, x_train, path="cache/")
    for temperature in (2.0, 4.0, 8.0):
        distiller = keras_kd.Distiller(teacher, make_student(), temperature=temperature)
        distiller.compile(optimizer="adam").fit(cache.dataset(x_train, y_train), epochs=5)
    ```
    """

    def __init__(self, arrays, metadata, path=None):
        self._arrays = arrays
        self._metadata = metadata
        self.path = path

    # ------------------------------------------------------------ creation

    @classmethod
    def build(cls, teacher, x, *, feature_layers=(), batch_size=256, path=None, overwrite=False):
        """Runs `teacher` once over `x` and keeps its outputs.

        Args:
            teacher: The trained teacher, a `keras.Model` that outputs logits.
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

        Returns:
            A `TeacherCache`.

        Raises:
            TypeError: for a teacher that is not a `keras.Model`, or `x` of
                an unsupported type.
            ValueError: for a dataset whose batches change between two reads
                (random augmentation or shuffling), arrays of different
                lengths, empty data, a bad `batch_size`, or a layer name the
                teacher lacks.
            FileExistsError: if `path` exists and `overwrite` is False.
        """
        if not isinstance(teacher, keras.Model):
            raise TypeError(
                f"`teacher` must be a keras.Model; got {teacher!r} of type "
                f"{type(teacher).__name__}."
            )
        feature_layers = [kd_features._layer_name("feature_layers", layer) for layer in feature_layers]
        if len(set(feature_layers)) != len(feature_layers):
            raise ValueError(f"`feature_layers` repeats a layer: {feature_layers}.")
        batch_size = _check_batch_size(batch_size)
        source = _make_source(x)
        view = kd_features.multi_output_view(teacher, "teacher", feature_layers)
        if path is not None:
            path = os.path.abspath(os.fspath(path))
            _check_writable(path, overwrite)
        metadata = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "teacher": {"name": teacher.name, "fingerprint": teacher_fingerprint(teacher)},
            "feature_layers": feature_layers,
            "data": None,
            "arrays": {},
        }
        directory = None if path is None else _temporary_directory(path)
        try:
            arrays = _run_teacher(view, source, feature_layers, directory, metadata, batch_size)
            if directory is None:
                return cls(arrays, metadata)
            arrays = None  # Close the writable memory maps before renaming.
            _finish_directory(directory, metadata)
            _replace_directory(directory, path)
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
            **kwargs: `batch_size`, `path`, `overwrite`, as for `build`.

        Raises:
            ValueError: if the Distiller transforms its inputs inside the
                training step (augmentation, mixup), where the teacher must
                see each new version of the inputs.
        """
        _refuse_input_transforms(distiller)
        feature_layers = [match.teacher_layer for match in distiller.feature_matches]
        return cls.build(distiller.teacher, x, feature_layers=feature_layers, **kwargs)

    @classmethod
    def load(cls, path, *, verify=True):
        """Reopens a cache saved by `build(..., path=path)`, memory-mapped.

        Args:
            path: The cache directory.
            verify: Whether to check each file's SHA-256 against the one
                recorded when it was written (reads every byte once). Sizes,
                shapes and dtypes are always checked.

        Raises:
            FileNotFoundError: if `path` or one of its files is missing.
            ValueError: for unreadable metadata, or a file that is truncated,
                corrupted, or not the shape and dtype recorded.
        """
        path = os.path.abspath(os.fspath(path))
        metadata_path = os.path.join(path, METADATA_FILE)
        if not os.path.isfile(metadata_path):
            raise FileNotFoundError(
                f"No teacher cache at {path!r}: {METADATA_FILE} is missing. "
                "Create one with keras_kd.TeacherCache.build(teacher, x, path=...)."
            )
        try:
            with open(metadata_path, encoding="utf-8") as file:
                metadata = json.load(file)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"The cache metadata {metadata_path!r} is unreadable: {error}.") from error
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise ValueError(f"{metadata_path!r} does not describe a keras_kd teacher cache.")
        if metadata.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"The cache at {path!r} has format version {metadata.get('version')!r}; "
                f"this keras_kd reads version {FORMAT_VERSION}. Rebuild the cache."
            )
        arrays = {name: _open_array(path, name, record, verify) for name, record in metadata["arrays"].items()}
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
    def teacher_logits(self):
        """The cached logits, shape `(num_rows, ...)` (memory-mapped on disk)."""
        return self._arrays[LOGITS]

    def teacher_features(self, layer):
        """The cached outputs of the teacher layer named `layer`."""
        if layer not in self._metadata["feature_layers"]:
            raise KeyError(
                f"The cache holds no features of layer {layer!r}; it holds "
                f"{self.feature_layers}."
            )
        return self._arrays[_feature_key(layer)]

    def __repr__(self):
        where = "in memory" if self.path is None else f"at {self.path!r}"
        return (
            f"TeacherCache({self.num_rows} rows of {self._metadata['teacher']['name']!r}, "
            f"features={self.feature_layers}, {where})"
        )

    # ------------------------------------------------------------ checks

    def check_teacher(self, teacher):
        """Raises `CacheMismatchError` unless `teacher` has the weights cached."""
        fingerprint = teacher_fingerprint(teacher)
        if fingerprint != self.teacher_fingerprint:
            raise CacheMismatchError(
                f"This cache was computed by a teacher with other weights "
                f"(cached {self._metadata['teacher']['name']!r}, fingerprint "
                f"{self.teacher_fingerprint[:12]}; this teacher {teacher.name!r}, "
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
        """
        _refuse_input_transforms(distiller)
        self.check_teacher(distiller.teacher)
        available = self.feature_layers if feature_layers is None else list(feature_layers)
        missing = [
            match.teacher_layer
            for match in distiller.feature_matches
            if match.teacher_layer not in available
        ]
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
            seed: Seed of that order.
            sample_weight: Per-row weights aligned with `x` (arrays only).
            feature_layers: Which cached features to yield; defaults to all.
                Fewer means less to copy per batch.
            workers: Threads that assemble batches ahead of the training
                step (as for `keras.utils.PyDataset`); 1 assembles each batch
                when it is needed.
            max_queue_size: Batches prepared ahead when `workers` > 1.

        Returns:
            A `keras.utils.PyDataset` to pass as `x` to `Distiller.fit` or
            `Distiller.evaluate` (no `y` there: the dataset holds it).

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
        feature_layers = [kd_features._layer_name("feature_layers", layer) for layer in feature_layers]
        missing = [name for name in feature_layers if name not in self.feature_layers]
        if missing:
            raise CacheMismatchError(
                f"`feature_layers` {missing} are not cached; the cache holds {self.feature_layers}."
            )
        if isinstance(x, keras.utils.PyDataset):
            if y is not None or sample_weight is not None:
                raise ValueError(
                    "With a PyDataset as `x`, its batches carry the labels and "
                    "sample weights; pass y=None and sample_weight=None."
                )
            return _CachedBatches(self, x, feature_layers, shuffle, seed, workers, max_queue_size)
        if sample_weight is not None and y is None:
            raise ValueError(
                "`sample_weight` needs `y` in a cached dataset: Keras's "
                "TensorFlow pipeline cannot carry a batch of (x, None, "
                "sample_weight) from a PyDataset. Pass the labels (they are "
                "unused by the loss when alpha=1.0)."
            )
        if _is_tf_dataset(x):
            raise TypeError(
                "cache.dataset() needs data it can index by row or batch, so that "
                "each batch stays aligned with its cached teacher outputs however "
                "Keras orders the batches; a tf.data.Dataset cannot be indexed. "
                "Pass the arrays, or a keras.utils.PyDataset batched as at build time."
            )
        return _CachedRows(
            self,
            x,
            y,
            sample_weight,
            feature_layers,
            _check_batch_size(batch_size),
            shuffle,
            seed,
            workers,
            max_queue_size,
        )

    def _check_rows(self, source):
        """Raises unless an array source matches the data fingerprint."""
        expected = self._metadata["data"]
        if source.num_rows != expected["rows"] or source.leaf_specs() != expected["leaves"]:
            raise CacheMismatchError(
                f"These data are not the data the cache was built from: the cache "
                f"holds {expected['rows']} rows of {_describe_leaves(expected['leaves'])}; "
                f"got {source.num_rows} rows of {_describe_leaves(source.leaf_specs())}."
            )
        rows = expected["sample_rows"]
        hashes = [_row_hash(source.rows(np.array([row]))) for row in rows]
        self._compare_sample_hashes(rows, hashes)

    def _compare_sample_hashes(self, rows, hashes):
        expected = dict(zip(self._metadata["data"]["sample_rows"], self._metadata["data"]["sample_hashes"]))
        changed = [row for row, digest in zip(rows, hashes) if expected[row] != digest]
        if changed:
            raise CacheMismatchError(
                f"These data differ from the data the cache was built from (rows "
                f"{changed[:5]} changed, among the {len(expected)} sampled). The "
                "cached teacher outputs would belong to other inputs: rebuild the "
                "cache, or pass the original data in the original order."
            )


# ---------------------------------------------------------------- fingerprints


def teacher_fingerprint(model):
    """SHA-256 of a model's weights: names, shapes, dtypes and every byte.

    Args:
        model: A `keras.Model` (or layer).

    Returns:
        A hex string; equal for models with equal weights.
    """
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value))
        digest.update(f"{weight.path}|{value.shape}|{value.dtype}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def sample_rows(num_rows):
    """The row indices whose bytes enter the data fingerprint (evenly spread)."""
    return sorted({int(row) for row in np.linspace(0, num_rows - 1, min(SAMPLE_ROWS, num_rows)).round()})


def _row_hash(leaves):
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def _data_metadata(num_rows, leaf_specs, rows, hashes):
    digest = hashlib.sha256(json.dumps([num_rows, leaf_specs, hashes]).encode()).hexdigest()
    return {
        "rows": num_rows,
        "leaves": leaf_specs,
        "sample_rows": rows,
        "sample_hashes": hashes,
        "digest": digest,
        "batch_rows": None,
    }


def _describe_leaves(leaf_specs):
    return ", ".join(f"{spec['dtype']}{tuple(spec['shape'])}" for spec in leaf_specs)


# ---------------------------------------------------------------- data sources


class _ArraySource:
    """Arrays (or a dict/list of them) with one row per example."""

    def __init__(self, x, name="x"):
        leaves = keras.tree.flatten(x)
        if not leaves:
            raise ValueError(f"`{name}` holds no arrays.")
        self.structure = x
        self.leaves = [leaf if isinstance(leaf, np.ndarray) else np.asarray(leaf) for leaf in leaves]
        lengths = {len(leaf) if leaf.ndim else None for leaf in self.leaves}
        if len(lengths) != 1 or None in lengths:
            raise ValueError(
                f"The arrays in `{name}` must all have one row per example; got "
                f"shapes {[leaf.shape for leaf in self.leaves]}."
            )
        self.num_rows = lengths.pop()
        if self.num_rows == 0:
            raise ValueError(f"`{name}` has no rows.")

    def leaf_specs(self):
        return [{"shape": list(leaf.shape[1:]), "dtype": str(leaf.dtype)} for leaf in self.leaves]

    def rows(self, indices):
        """The leaves at `indices` (a sorted array reads a memory map in order)."""
        return [leaf[indices] for leaf in self.leaves]

    def gather(self, indices):
        return keras.tree.pack_sequence_as(self.structure, self.rows(indices))

    def batches(self, batch_size):
        for start in range(0, self.num_rows, batch_size):
            rows = np.arange(start, min(start + batch_size, self.num_rows))
            yield self.gather(rows)


class _DatasetSource:
    """A PyDataset or tf.data.Dataset read batch by batch, in its own order."""

    def __init__(self, dataset):
        self.dataset = dataset
        first = _inputs_of(self._first_batch())
        again = _inputs_of(self._first_batch())
        if not _same_batch(first, again):
            raise ValueError(
                "The dataset gave a different first batch when read twice, so it "
                "shuffles or augments at random. Cached teacher outputs would "
                "then belong to other inputs than the student sees. Cache the "
                "data without augmentation or shuffling (cache.dataset() "
                "shuffles rows itself), or distil without a cache, with the "
                "augmentation inside the Distiller."
            )
        self.structure = first
        self._specs = None
        self.batch_rows = [len(keras.tree.flatten(batch)[0]) for batch in self.batches()]
        self.num_rows = sum(self.batch_rows)
        if self.num_rows == 0:
            raise ValueError("The dataset has no rows.")

    def _first_batch(self):
        if isinstance(self.dataset, keras.utils.PyDataset):
            if not self.dataset.num_batches:
                raise ValueError(
                    "A cache needs a finite, non-empty PyDataset; this one has "
                    f"num_batches={self.dataset.num_batches!r}."
                )
            return self.dataset[0]
        for batch in self.dataset.as_numpy_iterator():
            return batch
        raise ValueError("The dataset has no batches.")

    def leaf_specs(self):
        return [
            {"shape": list(np.shape(leaf)[1:]), "dtype": str(np.asarray(leaf).dtype)}
            for leaf in keras.tree.flatten(self.structure)
        ]

    def batches(self, batch_size=None):
        """Batches as the dataset gives them (`batch_size` is unused)."""
        if isinstance(self.dataset, keras.utils.PyDataset):
            iterator = (self.dataset[index] for index in range(self.dataset.num_batches))
        else:
            iterator = self.dataset.as_numpy_iterator()
        for batch in iterator:
            yield _inputs_of(batch)


def _make_source(x):
    if isinstance(x, keras.utils.PyDataset) or _is_tf_dataset(x):
        return _DatasetSource(x)
    if x is None:
        raise TypeError("`x` is None; pass the inputs the teacher should see.")
    return _ArraySource(x)


def _is_tf_dataset(x):
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "as_numpy_iterator")


def _inputs_of(batch):
    """`x` of a batch given as `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`."""
    if isinstance(batch, list):
        batch = tuple(batch)
    x, _, _ = keras.utils.unpack_x_y_sample_weight(batch)
    return x


def _same_batch(first, second):
    first, second = keras.tree.flatten(first), keras.tree.flatten(second)
    return len(first) == len(second) and all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, second)
    )


def _check_batch_size(batch_size):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
    return batch_size


# ---------------------------------------------------------------- building


def _feature_key(layer):
    return f"feature:{layer}"


def _run_teacher(view, source, feature_layers, directory, metadata, batch_size):
    """Streams `source` through `view`, filling arrays and `metadata`."""
    num_rows = source.num_rows
    wanted_rows = sample_rows(num_rows)
    names = [LOGITS] + [_feature_key(layer) for layer in feature_layers]
    arrays, hashes, first_row_hashes, leaf_specs, start = None, [], [], None, 0
    predict = _batch_predictor(view)
    for batch in source.batches(batch_size):
        leaves = [np.asarray(leaf) for leaf in keras.tree.flatten(batch)]
        rows = len(leaves[0])
        if start + rows > num_rows:
            raise ValueError(
                f"The dataset gave more rows on its second read than on its first "
                f"({num_rows}); it must give the same rows in the same order every time."
            )
        if leaf_specs is None:
            leaf_specs = [{"shape": list(leaf.shape[1:]), "dtype": str(leaf.dtype)} for leaf in leaves]
        outputs = predict(batch, rows)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if arrays is None:
            arrays = {
                name: _allocate(directory, name, (num_rows,) + output.shape[1:], output.dtype, metadata)
                for name, output in zip(names, outputs)
            }
        for name, output in zip(names, outputs):
            arrays[name][start : start + rows] = output
        for row in wanted_rows:
            if start <= row < start + rows:
                hashes.append(_row_hash([leaf[row - start] for leaf in leaves]))
        first_row_hashes.append(_row_hash([leaf[0] for leaf in leaves]))
        start += rows
    if start != num_rows:
        raise ValueError(
            f"The dataset gave {start} rows on its second read but {num_rows} on "
            "its first; it must give the same rows in the same order every time."
        )
    metadata["data"] = _data_metadata(num_rows, leaf_specs, wanted_rows, hashes)
    if isinstance(source, _DatasetSource):
        # Lets a dataset's batches be checked one by one as they are read.
        metadata["data"]["batch_rows"] = source.batch_rows
        metadata["data"]["batch_first_row_hashes"] = first_row_hashes
    for array in arrays.values():
        if isinstance(array, np.memmap):
            array.flush()
    return arrays


def _batch_predictor(view):
    """`(batch, rows) -> outputs` of the compiled inference function."""
    strategy = getattr(view, "distribute_strategy", None)  # TensorFlow only
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # Under tf.distribute, predict_on_batch runs the whole batch on every
        # replica and concatenates the copies; predict splits it instead.
        return lambda batch, rows: view.predict(batch, batch_size=rows, verbose=0)
    return lambda batch, rows: view.predict_on_batch(batch)


def _allocate(directory, name, shape, dtype, metadata):
    if directory is None:
        return np.empty(shape, dtype)
    filename = f"{len(metadata['arrays']):03d}.npy"
    metadata["arrays"][name] = {"file": filename, "shape": list(shape), "dtype": str(np.dtype(dtype))}
    return np.lib.format.open_memmap(os.path.join(directory, filename), mode="w+", dtype=dtype, shape=shape)


def _file_sha256(filename):
    digest = hashlib.sha256()
    with open(filename, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_writable(path, overwrite):
    if not os.path.exists(path):
        return
    if not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace the cache there.")
    if not os.path.isfile(os.path.join(path, METADATA_FILE)):
        raise FileExistsError(
            f"{path!r} exists and is not a teacher cache (no {METADATA_FILE}); "
            "refusing to replace it. Choose another path."
        )


def _temporary_directory(path):
    parent, basename = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{basename}.partial-", dir=parent)


def _finish_directory(directory, metadata):
    """Records sizes and checksums, then writes the metadata last."""
    for record in metadata["arrays"].values():
        filename = os.path.join(directory, record["file"])
        record["bytes"] = os.path.getsize(filename)
        record["sha256"] = _file_sha256(filename)
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as file:
        json.dump(metadata, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


def _replace_directory(directory, path):
    """Moves the finished `directory` to `path`, replacing an old cache there."""
    if not os.path.exists(path):
        os.rename(directory, path)
        return
    retired = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=os.path.dirname(path))
    os.rmdir(retired)
    os.rename(path, retired)
    os.rename(directory, path)
    shutil.rmtree(retired, ignore_errors=True)


def _open_array(path, name, record, verify):
    filename = os.path.join(path, record["file"])
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"The cache at {path!r} lacks {record['file']} ({name}).")
    size = os.path.getsize(filename)
    if size != record["bytes"]:
        raise ValueError(
            f"{filename!r} ({name}) has {size} bytes but {record['bytes']} were "
            "written: the file is truncated or was replaced. Rebuild the cache."
        )
    try:
        array = np.load(filename, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{filename!r} ({name}) is not a readable .npy file: {error}.") from error
    if list(array.shape) != record["shape"] or str(array.dtype) != record["dtype"]:
        raise ValueError(
            f"{filename!r} ({name}) holds {array.dtype}{array.shape}, but the "
            f"metadata says {record['dtype']}{tuple(record['shape'])}. Rebuild the cache."
        )
    if verify and _file_sha256(filename) != record["sha256"]:
        raise ValueError(
            f"{filename!r} ({name}) is corrupted: its SHA-256 differs from the "
            "one recorded when it was written. Rebuild the cache."
        )
    return array


# ---------------------------------------------------------------- datasets


class _CachedData(keras.utils.PyDataset):
    """Batches whose inputs carry the teacher's cached outputs for their rows."""

    def __init__(self, cache, feature_layers, shuffle, seed, workers, max_queue_size):
        # Threads only: processes would need the cache pickled.
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.cache = cache
        self.feature_layers = list(feature_layers)
        self.shuffle = shuffle
        self._random = np.random.default_rng(seed)

    def check_distiller(self, distiller):
        """Raises unless `distiller` can train from these batches."""
        self.cache.check_distiller(distiller, self.feature_layers)

    def __getitem__(self, index):
        if not 0 <= index < len(self):
            raise IndexError(f"Batch {index} of {len(self)}.")
        return self._batch(index)

    def on_epoch_end(self):
        self._order = self._new_order()

    def _new_order(self):
        """This epoch's order of rows (or batches), as indices."""
        if self.shuffle:
            return self._random.permutation(self._num_units())
        return np.arange(self._num_units())

    def _with_outputs(self, x, rows):
        cached = {INPUTS_KEY: x, LOGITS_KEY: np.asarray(self.cache.teacher_logits[rows])}
        if self.feature_layers:
            cached[FEATURES_KEY] = {
                layer: np.asarray(self.cache.teacher_features(layer)[rows])
                for layer in self.feature_layers
            }
        return cached


class _CachedRows(_CachedData):
    """Rows of arrays, reshuffled every epoch, with their cached outputs."""

    def __init__(self, cache, x, y, sample_weight, feature_layers, batch_size, shuffle, seed, workers, max_queue_size):
        super().__init__(cache, feature_layers, shuffle, seed, workers, max_queue_size)
        self._x = _ArraySource(x)
        cache._check_rows(self._x)
        self._y = self._aligned("y", y)
        self._sample_weight = self._aligned("sample_weight", sample_weight)
        self.batch_size = batch_size
        self._order = self._new_order()

    def _aligned(self, name, values):
        if values is None:
            return None
        source = _ArraySource(values, name)
        if source.num_rows != self._x.num_rows:
            raise ValueError(
                f"`{name}` has {source.num_rows} rows but `x` has {self._x.num_rows}."
            )
        return source

    def _num_units(self):
        return self._x.num_rows

    def __len__(self):
        return math.ceil(self._x.num_rows / self.batch_size)

    def _batch(self, index):
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        if self.shuffle:
            rows = np.sort(rows)  # Memory maps read faster in order.
        batch = (self._with_outputs(self._x.gather(rows), rows),)
        if self._y is not None:
            batch += (self._y.gather(rows),)
        if self._sample_weight is not None:
            batch += (self._sample_weight.gather(rows),)
        return batch


class _CachedBatches(_CachedData):
    """A PyDataset's batches, each with the outputs for the rows it held at build time.

    The source's own `on_epoch_end` is not called: its batch `i` must stay the
    batch it was at build time, and this class orders the batches.
    """

    def __init__(self, cache, dataset, feature_layers, shuffle, seed, workers, max_queue_size):
        super().__init__(cache, feature_layers, shuffle, seed, workers, max_queue_size)
        batch_rows = cache._metadata["data"]["batch_rows"]
        if batch_rows is None or dataset.num_batches != len(batch_rows):
            built_from = "arrays" if batch_rows is None else f"{len(batch_rows)} batches"
            raise CacheMismatchError(
                f"The cache was built from {built_from}; this PyDataset has "
                f"{dataset.num_batches} batches. Pass the data as they were "
                "given to TeacherCache.build."
            )
        self._dataset = dataset
        self._offsets = np.concatenate([[0], np.cumsum(batch_rows)])
        self._first_row_hashes = cache._metadata["data"]["batch_first_row_hashes"]
        self._order = self._new_order()
        self[0]  # Checks the first batch now rather than mid-epoch.

    def _num_units(self):
        return len(self._offsets) - 1

    def __len__(self):
        return len(self._offsets) - 1

    def _batch(self, index):
        source_index = int(self._order[index])
        batch = self._dataset[source_index]
        if isinstance(batch, list):
            batch = tuple(batch)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
        start, stop = int(self._offsets[source_index]), int(self._offsets[source_index + 1])
        leaves = [np.asarray(leaf) for leaf in keras.tree.flatten(x)]
        if len(leaves[0]) != stop - start or (
            _row_hash([leaf[0] for leaf in leaves]) != self._first_row_hashes[source_index]
        ):
            raise CacheMismatchError(
                f"Batch {source_index} of the PyDataset ({len(leaves[0])} rows) is not "
                f"the batch it gave when the cache was built ({stop - start} rows, "
                "another first row). Give the same batches in the same order."
            )
        sampled = [row for row in self.cache._metadata["data"]["sample_rows"] if start <= row < stop]
        self.cache._compare_sample_hashes(
            sampled, [_row_hash([leaf[row - start] for leaf in leaves]) for row in sampled]
        )
        cached = (self._with_outputs(x, np.arange(start, stop)),)
        if y is None and sample_weight is None:
            return cached
        if sample_weight is None:
            return cached + (y,)
        return cached + (y, sample_weight)


# ---------------------------------------------------------------- Distiller side


def _refuse_input_transforms(distiller):
    if getattr(distiller, "transforms_inputs", False):
        raise ValueError(
            "This Distiller transforms its inputs inside the training step "
            "(augmentation or mixup), so the teacher must see each new version "
            "of every batch: cached teacher outputs would belong to other "
            "inputs than the student sees. Train it without a cache, or move "
            "the augmentation out and cache un-augmented data."
        )


def check_data(distiller, data):
    """Validates `data` for `distiller.fit`/`evaluate` if it carries a cache."""
    if isinstance(data, _CachedData):
        data.check_distiller(distiller)


def split_cached(x):
    """`(inputs, cached_outputs)`; `cached_outputs` is None for ordinary inputs."""
    if isinstance(x, dict) and LOGITS_KEY in x:
        return x[INPUTS_KEY], x
    return x, None


def cached_teacher_outputs(cached_outputs, feature_layers):
    """The cached `(teacher_logits, [features in feature_layers order])`."""
    features = cached_outputs.get(FEATURES_KEY, {})
    missing = [layer for layer in feature_layers if layer not in features]
    if missing:
        raise CacheMismatchError(
            f"The batch carries no cached features of teacher layers {missing} "
            f"(it carries {sorted(features)}). Build the cache with those feature_layers."
        )
    return cached_outputs[LOGITS_KEY], [features[layer] for layer in feature_layers]
