"""The data a cache is built from and checked against: arrays or batched datasets."""

import keras
import numpy as np


class ArraySource:
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


class DatasetSource:
    """A PyDataset or tf.data.Dataset read batch by batch, in its own order."""

    def __init__(self, dataset):
        self.dataset = dataset
        first = inputs_of(self._first_batch())
        again = inputs_of(self._first_batch())
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
            yield inputs_of(batch)


def make_source(x):
    """The `ArraySource` or `DatasetSource` that reads `x`."""
    if isinstance(x, keras.utils.PyDataset) or is_tf_dataset(x):
        return DatasetSource(x)
    if x is None:
        raise TypeError("`x` is None; pass the inputs the teacher should see.")
    return ArraySource(x)


def is_tf_dataset(x):
    return type(x).__module__.startswith("tensorflow") and hasattr(x, "as_numpy_iterator")


def inputs_of(batch):
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
