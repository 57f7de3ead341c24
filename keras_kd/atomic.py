"""Atomic writes: a file or a directory appears complete, or not at all.

Every writer in keras_kd (models, caches, reports, tuning journals) goes
through these helpers, so a failure or a kill while writing leaves whatever
was at the destination before intact.
"""

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_file(path, suffix=""):
    """Yields a temporary path beside `path`, renamed to `path` on success.

    A failure (or a kill) while writing leaves any previous `path` intact
    and removes the temporary file. The file gets the permissions a plain
    `open()` would give it.

    Args:
        path: the destination file. Its directory is created if missing.
        suffix: the temporary file's suffix, for writers that check it
            (`keras.Model.save` wants `.keras`).

    Example:

    ```python
    import os, tempfile
    from keras_kd.atomic import atomic_file

    path = os.path.join(tempfile.mkdtemp(), "report.json")
    with atomic_file(path) as temporary:
        with open(temporary, "w") as file:
            file.write("{}")
    assert open(path).read() == "{}"
    ```
    """
    path = os.fspath(path)
    directory, basename = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{basename}.", suffix=suffix, dir=directory)
    os.close(descriptor)
    try:
        yield temporary
        # mkstemp creates the file private (0600).
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """Opens a temporary file beside `path`; it replaces `path` on success.

    Takes `open()`'s `mode` (a writing mode) and keyword arguments.
    """
    with atomic_file(path) as temporary:
        with open(temporary, mode, **kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())


def staging_directory(path):
    """Makes an empty directory beside `path` to build its new contents in."""
    parent, basename = os.path.split(os.path.abspath(os.fspath(path)))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{basename}.partial-", dir=parent)


def replace_directory(staged, path):
    """Moves the finished directory `staged` to `path`.

    An existing directory at `path` is moved aside first (`rename` cannot
    replace a non-empty directory), then deleted once the new one is in place.
    A file or a symbolic link at `path` is replaced.
    """
    path = os.fspath(path)
    if os.path.isdir(path) and not os.path.islink(path):
        parent, basename = os.path.split(os.path.abspath(path))
        retired = tempfile.mkdtemp(prefix=f".{basename}.old-", dir=parent)
        os.rmdir(retired)
        os.replace(path, retired)
        os.replace(staged, path)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, path)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
