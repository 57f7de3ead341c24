"""A cache on disk: one `.npy` file per array plus `metadata.json`, written last.

The metadata records each file's size, shape, dtype and SHA-256, so that a
truncated, replaced or corrupted file is refused when the cache is loaded.
"""

import hashlib
import json
import os

import numpy as np

FORMAT = "keras_kd.TeacherCache"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
LOGITS = "teacher_logits"
_CHUNK_BYTES = 1 << 24


def feature_key(layer):
    """The name under which the features of teacher layer `layer` are stored."""
    return f"feature:{layer}"


def check_writable(path, overwrite):
    """Raises unless a cache may be written at `path`."""
    if not os.path.exists(path):
        return
    if not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace the cache there.")
    if not os.path.isfile(os.path.join(path, METADATA_FILE)):
        raise FileExistsError(
            f"{path!r} exists and is not a teacher cache (no {METADATA_FILE}); "
            "refusing to replace it. Choose another path."
        )


def allocate(directory, name, shape, dtype, metadata):
    """An array to fill: in memory if `directory` is None, else a new `.npy` memory map."""
    if directory is None:
        return np.empty(shape, dtype)
    filename = f"{len(metadata['arrays']):03d}.npy"
    metadata["arrays"][name] = {"file": filename, "shape": list(shape), "dtype": str(np.dtype(dtype))}
    return np.lib.format.open_memmap(os.path.join(directory, filename), mode="w+", dtype=dtype, shape=shape)


class ArrayWriter:
    """The arrays of a cache being built, by name: in memory if `directory` is None, else `.npy` memory maps there.

    Each array allocated is recorded in `metadata` (`allocate`) and kept in
    `arrays`.
    """

    def __init__(self, directory, metadata):
        self.directory = directory
        self.metadata = metadata
        self.arrays = {}

    def allocate(self, name, shape, dtype):
        """A new array to fill, of `shape` and `dtype`, stored as `name`."""
        self.arrays[name] = allocate(self.directory, name, shape, dtype, self.metadata)
        return self.arrays[name]

    def flush(self):
        """Writes the memory-mapped arrays' contents to their files."""
        for array in self.arrays.values():
            if isinstance(array, np.memmap):
                array.flush()


def finish_directory(directory, metadata):
    """Records sizes and checksums, then writes the metadata last."""
    for record in metadata["arrays"].values():
        filename = os.path.join(directory, record["file"])
        record["bytes"] = os.path.getsize(filename)
        record["sha256"] = _file_sha256(filename)
    with open(os.path.join(directory, METADATA_FILE), "w", encoding="utf-8") as file:
        json.dump(metadata, file, indent=1)
        file.flush()
        os.fsync(file.fileno())


def read_metadata(path):
    """The metadata of the cache at `path`, checked for format and version."""
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
    return metadata


def open_array(path, name, record, verify):
    """Memory-maps one array of the cache at `path`, checking it against `record`."""
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


def _file_sha256(filename):
    digest = hashlib.sha256()
    with open(filename, "rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
