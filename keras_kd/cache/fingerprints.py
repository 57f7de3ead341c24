"""Fingerprints of a teacher (its weights) and of data (shapes and sampled rows).

A cache records both when it is built and compares them whenever it is used,
so that outputs of another teacher, or of other rows, are never fed silently.
"""

import collections
import contextlib
import hashlib
import json
import weakref
import zlib

import keras
import numpy as np

from keras_kd import backend as kd_backend
from keras_kd.cache.errors import CacheMismatchError

# How many rows of the data are hashed into its fingerprint.
SAMPLE_ROWS = 64


def teacher_fingerprint(model):
    """SHA-256 of a model's weights: names, shapes, dtypes and every byte.

    A Distiller checks its teacher at every `fit` on a cache, so a sweep
    would hash every weight once per trial. The fingerprint is therefore
    remembered per model beside a CRC-32 of each weight (far cheaper to
    compute than SHA-256), and recomputed only when a CRC or the list of
    weights changed. A CRC-32 changes with any edit of up to 32 consecutive
    bits, so an in-place edit of any single element (`variable.assign`) is
    always seen; a wider edit goes unseen with probability 2**-32.

    Where the backend proves a weight unchanged without reading it
    (`keras_kd.backend.value_version`: on JAX the same immutable array, on
    torch the same tensor at the same version), not even the CRC is
    computed, and a fit on a cache checks the teacher without reading its
    weights. Any `assign`, `set_weights` or in-place torch op is still seen;
    on torch a write through `tensor.data` or a NumPy view of the tensor is
    not.

    Args:
        model: A `keras.Model` (or layer).

    Returns:
        A hex string; equal for models with equal weights.
    """
    weights = model.weights
    versions = [kd_backend.value_version(weight) for weight in weights]
    remembered = _REMEMBERED.get(model)
    if remembered is not None and _unchanged(remembered, weights, versions):
        return remembered.fingerprint
    values = [(weight, np.ascontiguousarray(keras.ops.convert_to_numpy(weight.value))) for weight in weights]
    checksums = [(id(weight), weight.path, value.shape, value.dtype.str, zlib.crc32(value)) for weight, value in values]
    if remembered is None or remembered.checksums != checksums:
        remembered = _Remembered(checksums, _weights_sha256(values), None)
    _REMEMBERED[model] = remembered._replace(versions=versions)
    return remembered.fingerprint


def follow_unchanged_teacher(model, versions_before):
    """Remembers `model`'s fingerprint for its current value objects.

    For after a fit or evaluate that left the teacher's values as they were
    (`keras_kd.backend.kept_frozen_values`) but handed them back as new
    objects (JAX's trainer): the fingerprint remembered for the values of
    `versions_before` (`weight_versions` taken before) is kept for the new
    ones, so that the next check need not read them. Does nothing unless
    the remembered fingerprint belongs to exactly those values.
    """
    remembered = _REMEMBERED.get(model)
    if remembered is None or remembered.versions is None or versions_before is None:
        return
    weights = model.weights
    if len(weights) != len(versions_before) or not _unchanged(remembered, weights, versions_before):
        return
    _REMEMBERED[model] = remembered._replace(versions=weight_versions(model))


def weight_versions(model):
    """The `keras_kd.backend.value_version` of each of `model`'s weights."""
    return [kd_backend.value_version(weight) for weight in model.weights]


def _unchanged(remembered, weights, versions):
    """Whether `versions` (of `weights`) prove the values of `remembered` unchanged."""
    if remembered.versions is None or len(remembered.versions) != len(weights):
        return False
    return all(
        id(weight) == checksum[0] and kd_backend.same_version(version, old)
        for weight, version, old, checksum in zip(weights, versions, remembered.versions, remembered.checksums)
    )


def _weights_sha256(values):
    """SHA-256 of `(weight, NumPy value)` pairs."""
    digest = hashlib.sha256()
    for weight, value in values:
        digest.update(f"{weight.path}|{value.shape}|{value.dtype}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


# What is remembered of a model: the checksums of its weights, its
# fingerprint, and the value versions the checksums were read from (None
# entries where the backend has none).
_Remembered = collections.namedtuple("_Remembered", ["checksums", "fingerprint", "versions"])

# model -> its `_Remembered`; forgotten with the model.
_REMEMBERED = weakref.WeakKeyDictionary()


def sample_rows(num_rows):
    """The row indices whose bytes enter the data fingerprint (evenly spread)."""
    return sorted({int(row) for row in np.linspace(0, num_rows - 1, min(SAMPLE_ROWS, num_rows)).round()})


def row_hash(leaves):
    """SHA-256 of one row, given as its leaves (one per input array)."""
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()


def data_metadata(num_rows, leaf_specs, rows, hashes):
    """The data's record in a cache's metadata, with its fingerprint (`digest`)."""
    digest = hashlib.sha256(json.dumps([num_rows, leaf_specs, hashes]).encode()).hexdigest()
    return {
        "rows": num_rows,
        "leaves": leaf_specs,
        "sample_rows": rows,
        "sample_hashes": hashes,
        "digest": digest,
        "batch_rows": None,
    }


def describe_leaves(leaf_specs):
    """`"float32(8,), int64()"`: the per-row shapes and dtypes, for messages."""
    return ", ".join(f"{spec['dtype']}{tuple(spec['shape'])}" for spec in leaf_specs)


def check_rows(expected, source):
    """Raises unless an `ArraySource` matches the data record `expected`."""
    if source.num_rows != expected["rows"] or source.leaf_specs() != expected["leaves"]:
        raise CacheMismatchError(
            f"These data are not the data the cache was built from: the cache "
            f"holds {expected['rows']} rows of {describe_leaves(expected['leaves'])}; "
            f"got {source.num_rows} rows of {describe_leaves(source.leaf_specs())}."
        )
    rows = expected["sample_rows"]
    compare_sample_hashes(expected, rows, [row_hash(source.rows(np.array([row]))) for row in rows])


def compare_sample_hashes(expected, rows, hashes):
    """Raises unless the sampled `rows` hash as in the data record `expected`."""
    recorded = dict(zip(expected["sample_rows"], expected["sample_hashes"]))
    changed = [row for row, digest in zip(rows, hashes) if recorded[row] != digest]
    if changed:
        raise CacheMismatchError(
            f"These data differ from the data the cache was built from (rows "
            f"{changed[:5]} changed, among the {len(recorded)} sampled). The "
            "cached teacher outputs would belong to other inputs: rebuild the "
            "cache, or pass the original data in the original order."
        )


@contextlib.contextmanager
def teacher_kept_through(distiller):
    """A context for a Distiller's fit or evaluate, after which a teacher it left unchanged needs no re-reading.

    See `follow_unchanged_teacher`; nothing is remembered after an error.
    """
    versions = weight_versions(distiller.teacher)
    yield
    if kd_backend.kept_frozen_values(distiller):
        follow_unchanged_teacher(distiller.teacher, versions)
