"""The teacher's one pass over a cache's data: batches in, stored arrays out.

`run_teacher` is the only loop that runs the teacher for a cache. What it
runs over is a batch iterable: `RowBatches` gives the rows as they are (and
fingerprints them as they pass); `keras_kd.cache.views.ViewBatches` gives
augmented views of them. What it stores is decided by the cache's output
kind (`keras_kd.cache.kinds`).
"""

import keras
import numpy as np

from keras_kd.cache import files, fingerprints, sources


def run_teacher(feature_extractor, kind, feature_layers, batches, writer):
    """Runs the teacher over `batches` and stores its outputs.

    Args:
        feature_extractor: The teacher, or a model sharing its layers that
            returns `[logits, *features]`.
        kind: The cache's `OutputKind`: the model the teacher runs as, and
            the names and dtypes its outputs are stored in.
        feature_layers: The names of the layers whose features follow the
            logits in the extractor's outputs.
        batches: An iterable of `(inputs, index)`: a batch of teacher inputs
            and where its outputs go in the stored arrays (a slice of rows,
            or rows and a view), with a `leading_shape` attribute: the stored
            arrays' axes before each output's own shape.
        writer: The `files.ArrayWriter` that allocates the stored arrays.
    """
    names = list(kind.array_names) + [files.feature_key(layer) for layer in feature_layers]
    predict, stored = None, None
    for inputs, index in batches:
        if predict is None:
            predict = _batch_predictor(kind.teacher_model(feature_extractor, inputs))
        outputs = [np.asarray(keras.ops.convert_to_numpy(output)) for output in keras.tree.flatten(predict(inputs))]
        if stored is None:
            stored = [
                writer.allocate(name, batches.leading_shape + output.shape[1:], kind.storage_dtype(name, output.dtype))
                for name, output in zip(names, outputs)
            ]
        for array, output in zip(stored, outputs):
            array[index] = output


def _batch_predictor(model):
    """`inputs -> outputs` of the model's compiled inference function."""
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    if strategy is not None and strategy.num_replicas_in_sync > 1:
        # Under tf.distribute, predict_on_batch runs the whole batch on every
        # replica and concatenates the copies; predict splits it instead.
        return lambda inputs: model.predict(inputs, batch_size=len(keras.tree.flatten(inputs)[0]), verbose=0)
    return model.predict_on_batch


class RowBatches:
    """The rows of a source, in batches for the teacher, fingerprinted as they pass.

    Iterating yields `(inputs, rows)`: a batch and the slice of rows it
    fills. A dataset is read a second time here (`sources.DatasetSource`
    counted its rows on the first read), and must give the same rows.

    Attributes:
        leading_shape: `(num_rows,)`.
        data_record: The data's record in the cache's metadata (its
            fingerprint), once every batch has been given; None before.
    """

    def __init__(self, source, batch_size):
        self.source = source
        self.batch_size = batch_size
        self.leading_shape = (source.num_rows,)
        self.data_record = None

    def __iter__(self):
        num_rows = self.source.num_rows
        wanted_rows = fingerprints.sample_rows(num_rows)
        hashes, first_row_hashes, leaf_specs, start = [], [], None, 0
        for batch in self.source.batches(self.batch_size):
            leaves = [np.asarray(leaf) for leaf in keras.tree.flatten(batch)]
            rows = len(leaves[0])
            if start + rows > num_rows:
                raise ValueError(
                    f"The dataset gave more rows on its second read than on its first "
                    f"({num_rows}); it must give the same rows in the same order every time."
                )
            if leaf_specs is None:
                leaf_specs = [{"shape": list(leaf.shape[1:]), "dtype": str(leaf.dtype)} for leaf in leaves]
            yield batch, slice(start, start + rows)
            for row in wanted_rows:
                if start <= row < start + rows:
                    hashes.append(fingerprints.row_hash([leaf[row - start] for leaf in leaves]))
            first_row_hashes.append(fingerprints.row_hash([leaf[0] for leaf in leaves]))
            start += rows
        if start != num_rows:
            raise ValueError(
                f"The dataset gave {start} rows on its second read but {num_rows} on "
                "its first; it must give the same rows in the same order every time."
            )
        record = fingerprints.data_metadata(num_rows, leaf_specs, wanted_rows, hashes)
        if isinstance(self.source, sources.DatasetSource):
            # Lets a dataset's batches be checked one by one as they are read.
            record["batch_rows"] = self.source.batch_rows
            record["batch_first_row_hashes"] = first_row_hashes
        self.data_record = record
