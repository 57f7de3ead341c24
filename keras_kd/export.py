"""Export a trained student for deployment, and check the export.

`export(model, path, format=...)` writes one of three artifacts:

| format          | what it writes                       | backends that can write it            |
|-----------------|--------------------------------------|---------------------------------------|
| `"keras"`       | a `.keras` file (no optimizer state) | torch, tensorflow, jax                |
| `"saved_model"` | a TensorFlow SavedModel directory    | tensorflow, jax (torch: needs torch_xla) |
| `"onnx"`        | an `.onnx` file                      | tensorflow (tf2onnx), torch (torch.onnx) (jax: needs jax2onnx) |

SavedModel and ONNX go through Keras's own `model.export`. After writing,
the artifact is loaded back with the runtime that serves it (Keras in safe
mode, TensorFlow, ONNX Runtime) and run on sample inputs; its outputs must
match the Keras model's within `tolerance` (default 1e-4, absolute), or
nothing is written. The artifact is first written under a temporary name
beside `path` and renamed into place only once it passed that check.
"""

import collections
import importlib.util
import os
import shutil
import sys
import types
import warnings

import keras
import numpy as np

from keras_kd import atomic
from keras_kd._optional import import_optional

# `keras_kd.export.atomic_file` is the shared helper, under the name callers already use.
from keras_kd.atomic import atomic_file

FORMATS = ("keras", "saved_model", "onnx")
DEFAULT_TOLERANCE = 1e-4

# format -> backend -> the module that backend needs beyond Keras (None: none).
_REQUIREMENTS = {
    "keras": {"torch": None, "tensorflow": None, "jax": None},
    "saved_model": {"tensorflow": None, "jax": "tensorflow", "torch": "torch_xla"},
    "onnx": {"tensorflow": "tf2onnx", "torch": None, "jax": "jax2onnx"},
}
# The module that loads the artifact back for the parity check.
_RUNTIMES = {"keras": None, "saved_model": "tensorflow", "onnx": "onnxruntime"}

ExportResult = collections.namedtuple("ExportResult", ["path", "format", "max_abs_difference"])


def supported_backends(format):
    """The backends that can export `format` in this environment.

    Args:
        format: One of `FORMATS`.

    Returns:
        A tuple of backend names, e.g. `("tensorflow", "torch")` for
        `"onnx"` when jax2onnx is not installed.

    Raises:
        ValueError: for an unknown format.
    """
    _check_format(format)
    return tuple(
        backend_name for backend_name, module in _REQUIREMENTS[format].items() if module is None or _installed(module)
    )


def export(model, path, format="keras", sample_inputs=None, *, tolerance=DEFAULT_TOLERANCE):
    """Writes `model` to `path` as `format` and checks the artifact's outputs.

    A `keras_kd.Distiller` is refused: it holds the teacher too. Export
    `distiller.student`, a plain `keras.Model`.

    Args:
        model: A built `keras.Model` that is not a Distiller.
        path: Where to write: a `.keras` file, a SavedModel directory, or an
            `.onnx` file. An existing artifact there is replaced.
        format: `"keras"`, `"saved_model"` or `"onnx"`.
        sample_inputs: Inputs for the parity check, a NumPy array (or what
            `model.predict` takes) with a batch axis. Default: 4 rows drawn
            uniformly from [0, 1) with a fixed seed, in the model's input
            shape (which then must be fully known apart from the batch axis).
        tolerance: Largest absolute difference allowed between the
            artifact's outputs and the Keras model's.

    Returns:
        An `ExportResult(path, format, max_abs_difference)`.

    Raises:
        TypeError: for a Distiller or a non-model.
        ValueError: for an unknown format, a format this backend cannot
            export (the message names the backends that can), a wrong `path`
            suffix, or an artifact whose outputs differ by more than
            `tolerance` (nothing is written then).
        ImportError: if the runtime that checks the artifact
            (tensorflow, onnxruntime) is not installed.

    Example:

    ```python
    import keras
    import keras_kd

    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)])
    result = keras_kd.export.export(student, "student.keras", format="keras")
    assert result.max_abs_difference <= 1e-4
    # format="onnx" (torch, tensorflow) and "saved_model" (tensorflow, jax)
    # are checked the same way, with the runtime that serves them.
    ```
    """
    check_exportable(model)
    _check_format(format)
    _check_backend_can_export(format)
    path = os.fspath(path)
    _check_suffix(path, format)
    runtime = _RUNTIMES[format]
    if runtime is not None and not _installed(runtime):
        raise ImportError(
            f"Checking a {format!r} export needs {runtime}, which is not installed: "
            f"`pip install {runtime}` (or `pip install keras_kd[export]`)."
        )
    sample_inputs = _sample_inputs(model, sample_inputs)
    expected = model.predict(sample_inputs, verbose=0)

    # Written inside a staging directory, under its own name (writers check
    # the suffix); a SavedModel is a directory, so atomic_file cannot serve.
    staging = atomic.staging_directory(path)
    try:
        staged = os.path.join(staging, os.path.basename(os.path.abspath(path)))
        _WRITERS[format](model, staged)
        actual = _LOADERS[format](staged, sample_inputs)
        max_abs_difference = _max_abs_difference(expected, actual)
        if not max_abs_difference <= tolerance:
            raise ValueError(
                f"The {format} export of {model.name!r} does not reproduce the Keras "
                f"model: outputs differ by up to {max_abs_difference:.3g} on the "
                f"sample inputs (tolerance {tolerance:g}). Nothing was written to {path!r}."
            )
        atomic.replace_directory(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(path, format, max_abs_difference)


def check_exportable(model, action="Export"):
    """Refuses what is not a plain model to deploy (a Distiller, a non-model).

    Args:
        model: The object to check.
        action: The verb of the error message's advice, e.g. `"Compare"`.

    Raises:
        TypeError: for a `keras_kd.Distiller` (the message says to use
            `distiller.student`) or anything that is not a `keras.Model`.
    """
    from keras_kd.distiller import Distiller

    if isinstance(model, Distiller):
        raise TypeError(
            f"{model.name!r} is a keras_kd.Distiller, which holds the teacher as well "
            f"as the student. {action} the student alone: `distiller.student`."
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model; got {model!r} of type {type(model).__name__}.")


def inference_copy(model):
    """An uncompiled copy of `model` with the same weights, or `model` itself.

    Saving the copy writes only what inference needs (no optimizer state).
    A model that cannot be rebuilt from its config (some subclassed models)
    is returned as it is.
    """
    try:
        copy = model.__class__.from_config(model.get_config())
        copy.set_weights(model.get_weights())
    except (NotImplementedError, TypeError, ValueError):
        return model
    return copy


def save_keras(model, path):
    """Saves `inference_copy(model)` to the `.keras` file `path`, atomically."""
    with atomic_file(path, suffix=".keras") as temporary:
        inference_copy(model).save(temporary)


# ----------------------------------------------------------------- writers


def _write_saved_model(model, path):
    model.export(path, format="tf_saved_model", verbose=False)


def _write_onnx(model, path):
    with warnings.catch_warnings():
        # torch.onnx's tracer warns about Python ints taken from shapes,
        # which are constants of the exported graph anyway.
        warnings.simplefilter("ignore")
        model.export(path, format="onnx", verbose=False)


_WRITERS = {"keras": save_keras, "saved_model": _write_saved_model, "onnx": _write_onnx}


# ----------------------------------------------------------------- loaders


def _run_keras(path, sample_inputs):
    return keras.saving.load_model(path, safe_mode=True).predict(sample_inputs, verbose=0)


def _run_saved_model(path, sample_inputs):
    import tensorflow as tf

    artifact = tf.saved_model.load(path)
    return _to_numpy(artifact.serve(sample_inputs))


def _run_onnx(path, sample_inputs):
    onnxruntime = import_optional("onnxruntime", "checking an ONNX export")
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    flat_inputs = sample_inputs if isinstance(sample_inputs, (list, tuple)) else [sample_inputs]
    feed = {spec.name: np.asarray(value) for spec, value in zip(session.get_inputs(), flat_inputs)}
    outputs = session.run(None, feed)
    return outputs[0] if len(outputs) == 1 else outputs


_LOADERS = {"keras": _run_keras, "saved_model": _run_saved_model, "onnx": _run_onnx}


# ----------------------------------------------------------------- helpers


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; valid formats: {', '.join(FORMATS)}.")


def _check_backend_can_export(format):
    backend_name = keras.config.backend()
    needed = _REQUIREMENTS[format].get(backend_name, "unsupported")
    if needed is None or (needed != "unsupported" and _installed(needed)):
        return
    able = supported_backends(format)
    requirement = "" if needed == "unsupported" else f" (it would need {needed}, which is not installed)"
    raise ValueError(
        f"The {backend_name} backend cannot export format {format!r} here{requirement}. "
        f"Backends that can: {', '.join(able) or 'none in this environment'}. Save the model "
        f"as .keras and export it from one of those (e.g. `keras-kd export --backend "
        f"{able[0] if able else 'tensorflow'} ...`)."
    )


def _check_suffix(path, format):
    if format == "keras" and not path.endswith(".keras"):
        raise ValueError(f"A 'keras' export needs a path ending in .keras; got {path!r}.")
    if format == "onnx" and not path.endswith(".onnx"):
        raise ValueError(f"An 'onnx' export needs a path ending in .onnx; got {path!r}.")
    if format == "saved_model" and path.endswith((".keras", ".onnx", ".h5")):
        raise ValueError(f"A 'saved_model' export is a directory; got the file name {path!r}.")


def _sample_inputs(model, sample_inputs):
    if sample_inputs is not None:
        # Exported graphs take float32 where Keras would cast float64 itself.
        return keras.tree.map_structure(_float64_to_float32, sample_inputs)
    shapes = [tuple(tensor.shape[1:]) for tensor in model.inputs] if _has_inputs(model) else None
    if not shapes or any(None in shape for shape in shapes):
        raise ValueError(
            f"Cannot make sample inputs for {model.name!r}: its input shape is "
            f"{shapes or 'unknown'}. Pass `sample_inputs`, a batch of real inputs."
        )
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(size=(4, *shape)).astype("float32") for shape in shapes]
    return arrays[0] if len(arrays) == 1 else arrays


def _float64_to_float32(array):
    array = np.asarray(array)
    return array.astype("float32") if array.dtype == np.float64 else array


def _has_inputs(model):
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False


def _max_abs_difference(expected, actual):
    expected_list = expected if isinstance(expected, (list, tuple)) else [expected]
    actual_list = actual if isinstance(actual, (list, tuple)) else [actual]
    if len(expected_list) != len(actual_list):
        return float("inf")
    difference = 0.0
    for want, got in zip(expected_list, actual_list):
        want, got = np.asarray(want, "float64"), np.asarray(got, "float64")
        if want.shape != got.shape:
            return float("inf")
        difference = max(difference, float(np.max(np.abs(want - got), initial=0.0)))
    return difference


def _to_numpy(outputs):
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(output) for output in outputs]
    if isinstance(outputs, dict):
        return [np.asarray(output) for output in outputs.values()]
    return np.asarray(outputs)


def _installed(module):
    return importlib.util.find_spec(module) is not None


class _CallableModule(types.ModuleType):
    """This module, callable: `keras_kd.export(model, path, ...)` runs `export`.

    Importing the submodule `keras_kd.export` binds the name `export` of the
    package to the module, so a package-level *function* of that name would
    be shadowed. Making the module callable lets both spellings work:
    `keras_kd.export(...)` and `keras_kd.export.export(...)`.
    """

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
