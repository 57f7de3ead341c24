"""The training data of a cached Distiller: batches that carry their teacher outputs.

Rows in memory take Keras's own path: `keras_arrays()` gives `fit` and
`evaluate` the inputs and the cached outputs as one structure of arrays, which
Keras's array adapter shuffles and batches together, as it batches the
student's own arrays. Rows in memory-mapped arrays, and batches of a
PyDataset, are assembled here, by the PyDatasets below, so that data larger
than memory are read a batch at a time. `fit_callbacks()` gives the callbacks
`fit` needs beside the data.
"""

import math

import keras
import numpy as np

from keras_kd.cache import fingerprints
from keras_kd.cache.batches import INPUTS_KEY
from keras_kd.cache.errors import CacheMismatchError
from keras_kd.cache.sources import ArraySource


class CachedData(keras.utils.PyDataset):
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

    def fit_callbacks(self):
        """Callbacks `fit` needs beside these data (a cache of views redraws its views each epoch)."""
        return []

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
        """The cached-batch dict of inputs `x` and the cached outputs at `rows`."""
        return self._outputs_beside(x, lambda array: np.asarray(array[rows]))

    def _outputs_beside(self, x, take):
        # Dense logits or a top-k cache's arrays, and the features.
        return {INPUTS_KEY: x, **keras.tree.map_structure(take, self.cache.output_arrays(self.feature_layers))}


class CachedRows(CachedData):
    """Rows of arrays, reshuffled every epoch, with their cached outputs."""

    def __init__(self, cache, x, y, sample_weight, feature_layers, batch_size, shuffle, seed, workers, max_queue_size):
        super().__init__(cache, feature_layers, shuffle, seed, workers, max_queue_size)
        self._x = x
        self._y = self._aligned("y", y)
        self._sample_weight = self._aligned("sample_weight", sample_weight)
        self.batch_size = batch_size
        self._order = self._new_order()
        self._arrays = None

    def keras_arrays(self):
        """`(x, y, sample_weight)` for Keras's array adapter, or None to batch here.

        `x` is the cached-batch dict of all rows (inputs and teacher outputs).
        None when the inputs, labels or weights are memory-mapped, or when
        the cached outputs are memory-mapped and larger than the inputs
        (they are read into memory for Keras's adapter).
        """
        sources = [self._x] + [source for source in (self._y, self._sample_weight) if source is not None]
        if any(isinstance(leaf, np.memmap) for source in sources for leaf in source.leaves):
            return None
        if self._arrays is None:
            outputs = keras.tree.flatten(self.cache.output_arrays(self.feature_layers))
            if any(isinstance(output, np.memmap) for output in outputs) and sum(
                output.nbytes for output in outputs
            ) > sum(leaf.nbytes for leaf in self._x.leaves):
                return None
            self._arrays = (
                self._outputs_beside(self._x.gather(slice(None)), _in_memory),
                None if self._y is None else self._y.gather(slice(None)),
                None if self._sample_weight is None else self._sample_weight.gather(slice(None)),
            )
        return self._arrays

    def _aligned(self, name, values):
        if values is None:
            return None
        source = ArraySource(values, name)
        if source.num_rows != self._x.num_rows:
            raise ValueError(f"`{name}` has {source.num_rows} rows but `x` has {self._x.num_rows}.")
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


class CachedBatches(CachedData):
    """A PyDataset's batches, each with the outputs for the rows it held at build time.

    The source's own `on_epoch_end` is not called: its batch `i` must stay the
    batch it was at build time, and this class orders the batches.
    """

    def __init__(self, cache, data_record, dataset, feature_layers, shuffle, seed, workers, max_queue_size):
        super().__init__(cache, feature_layers, shuffle, seed, workers, max_queue_size)
        batch_rows = data_record["batch_rows"]
        if batch_rows is None or dataset.num_batches != len(batch_rows):
            built_from = "arrays" if batch_rows is None else f"{len(batch_rows)} batches"
            raise CacheMismatchError(
                f"The cache was built from {built_from}; this PyDataset has "
                f"{dataset.num_batches} batches. Pass the data as they were "
                "given to TeacherCache.build."
            )
        self._dataset = dataset
        self._data_record = data_record
        self._offsets = np.concatenate([[0], np.cumsum(batch_rows)])
        self._first_row_hashes = data_record["batch_first_row_hashes"]
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
            fingerprints.row_hash([leaf[0] for leaf in leaves]) != self._first_row_hashes[source_index]
        ):
            raise CacheMismatchError(
                f"Batch {source_index} of the PyDataset ({len(leaves[0])} rows) is not "
                f"the batch it gave when the cache was built ({stop - start} rows, "
                "another first row). Give the same batches in the same order."
            )
        sampled = [row for row in self._data_record["sample_rows"] if start <= row < stop]
        fingerprints.compare_sample_hashes(
            self._data_record,
            sampled,
            [fingerprints.row_hash([leaf[row - start] for leaf in leaves]) for row in sampled],
        )
        cached = (self._with_outputs(x, np.arange(start, stop)),)
        if y is None and sample_weight is None:
            return cached
        if sample_weight is None:
            return cached + (y,)
        return cached + (y, sample_weight)


def _in_memory(array):
    # Read once: memory-mapped rows gathered at random in every batch would
    # cost more than the student's own in-memory rows.
    return np.array(array) if isinstance(array, np.memmap) else array


def check_data(distiller, data):
    """Validates `data` for `distiller.fit`/`evaluate` if it carries a cache."""
    if isinstance(data, CachedData):
        data.check_distiller(distiller)
