"""Compare a teacher and its students: accuracy, fidelity, calibration, size, speed.

`compare({"teacher": t, "baseline": b, "distilled": s}, (x_test, y_test))`
measures every model on the same data and returns a `Report`, which prints
as markdown, saves as JSON and plots as bars. A list of teachers (an
ensemble, e.g. `distiller.teachers`) in place of a model gives one row per
teacher and one for the ensemble, whose prediction is the target a
`keras_kd.Distiller` of them distils at temperature 1 (by default the
weighted mean of the teachers' softmax). What is measured, per model:

- test accuracy (%);
- fidelity to the teacher: top-1 agreement (%) and the mean
  `KL(teacher || model)` in nats, at temperature 1 (computed with
  `keras_kd.losses.soft_target_kl`, whose `T**2` factor is 1 there);
- expected calibration error (%), with `CALIBRATION_BINS` (15) equal-width
  bins of the top-1 confidence (Guo et al., "On Calibration of Modern Neural
  Networks", ICML 2017);
- parameters, and the size in MB (10**6 bytes) of the `.keras` file of an
  uncompiled copy, so optimizer state does not count;
- latency of `model.predict_on_batch` after warm-up, at each batch size:
  p50 and p95 in ms per batch and per sample, and the throughput in
  samples/s (batch size / p50).

The backend, the device and the software versions are recorded with the
numbers.
"""

import collections.abc
import dataclasses
import json
import os
import platform
import tempfile
import time

import keras
import numpy as np

from keras_kd import ensemble, validation
from keras_kd import export as kd_export
from keras_kd import losses as kd_losses
from keras_kd.backend import _keras_compat

CALIBRATION_BINS = 15
WARMUP_BATCHES = 5
TIMED_BATCHES = 30
PREDICT_BATCH_SIZE = 256


@dataclasses.dataclass
class Report:
    """The measurements of `compare`, with the environment that produced them.

    Attributes:
        models: Model name -> metrics (a dict of plain Python values; see
            `compare`), in the order the models were given.
        teacher: Name of the reference model for fidelity, or `None`.
        environment: Backend, device and versions.
        settings: How the numbers were measured (examples, classes, bins,
            batch sizes, warm-up and timed batches).
    """

    models: dict
    teacher: object
    environment: dict
    settings: dict

    def to_dict(self):
        """The report as nested dicts and lists of plain Python values."""
        return dataclasses.asdict(self)

    def to_json(self, path=None):
        """The report as JSON text; also written to `path` (atomically) if given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            _write_text_atomically(os.fspath(path), text + "\n")
        return text

    @classmethod
    def from_dict(cls, data):
        """The inverse of `to_dict`."""
        missing = [field.name for field in dataclasses.fields(cls) if field.name not in data]
        if missing:
            raise ValueError(f"Not a keras_kd report: the keys {missing} are missing.")
        return cls(**{field.name: data[field.name] for field in dataclasses.fields(cls)})

    @classmethod
    def from_json(cls, path):
        """Reads a report written by `to_json(path)`."""
        with open(path, encoding="utf-8") as file:
            return cls.from_dict(json.load(file))

    def to_markdown(self):
        """Two markdown tables (quality and size; speed) and how they were measured."""
        environment, settings = self.environment, self.settings
        lines = [
            f"Backend {environment['backend']} on {environment['device']}; Keras "
            f"{environment['keras_version']}. {settings['examples']:,} test examples, "
            f"{settings['classes']} classes"
            + (f"; fidelity measured against {self.teacher!r}." if self.teacher else "."),
            *_describe_ensembles(settings.get("ensembles", {})),
            "",
            "| Model | Accuracy (%) | Agreement with teacher (%) | KL to teacher (nats) "
            "| ECE (%) | Parameters | Size (MB) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, metrics in self.models.items():
            lines.append(
                f"| {name} | {metrics['test_accuracy']:.2f} "
                f"| {_optional(metrics['teacher_agreement'], '.2f')} "
                f"| {_optional(metrics['kl_to_teacher'], '.4f')} "
                f"| {metrics['expected_calibration_error']:.2f} "
                f"| {metrics['parameters']:,} | {metrics['size_mb']:.3f} |"
            )
        lines += [
            "",
            "| Model | Batch size | p50 (ms/batch) | p95 (ms/batch) | p50 (ms/sample) | Throughput (samples/s) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, metrics in self.models.items():
            for timing in metrics["latency"]:
                lines.append(
                    f"| {name} | {timing['batch_size']} | {timing['p50_ms']:.3f} "
                    f"| {timing['p95_ms']:.3f} | {timing['p50_ms_per_sample']:.4f} "
                    f"| {timing['throughput']:,.0f} |"
                )
        lines += [
            "",
            f"KL: mean KL(teacher || model) at T=1. ECE: {settings['calibration_bins']} "
            "equal-width confidence bins. Size: the .keras file without optimizer state, "
            f"1 MB = 10^6 bytes. Latency: predict_on_batch after {settings['warmup_batches']} "
            f"warm-up batches, over {settings['timed_batches']} timed batches; "
            "throughput = batch size / p50.",
        ]
        return "\n".join(lines)

    def plot(self, path, **options):
        """Saves the comparison as bar charts to the PNG `path` (see `keras_kd.plots`)."""
        from keras_kd import plots

        return plots.plot_comparison(self, path, **options)


def compare(
    models,
    data,
    *,
    teacher="teacher",
    teacher_weights=None,
    ensemble_target="probabilities",
    batch_sizes=(1, 256),
    calibration_bins=CALIBRATION_BINS,
    warmup_batches=WARMUP_BATCHES,
    timed_batches=TIMED_BATCHES,
    predict_batch_size=PREDICT_BATCH_SIZE,
):
    """Measures each model on `data`; returns a `Report`.

    Args:
        models: A mapping of name -> `keras.Model` (in table order); every
            model outputs logits for the same classes. A
            `keras_kd.Distiller` is refused: pass `distiller.student`. A
            list of teachers (an ensemble: `distiller.teachers`, or
            `distiller.teacher` itself) gives a row per teacher, named by
            the teacher's `name`, then the ensemble's row under its own
            name: the target of those teachers at temperature 1 (so
            `teacher="teacher"` measures fidelity to the ensemble), with
            the parameters, size and latency of all of them together.
        data: `(x, y)`: inputs (an array with a batch axis) and labels
            (class ids of shape `(N,)` or `(N, 1)`, or one-hot `(N, classes)`).
        teacher: Name in `models` (or of a teacher of an ensemble) of the
            reference for agreement and KL, or `None` to skip fidelity.
        teacher_weights: The weights of an ensemble's teachers, as
            `keras_kd.Distiller` takes them (`distiller.teacher_weights`);
            None weighs them equally.
        ensemble_target: How an ensemble combines its teachers, as
            `keras_kd.Distiller` does: `"probabilities"` (the weighted mean
            of their softmax) or `"log_probabilities"`.
        batch_sizes: Batch sizes of the latency measurement. A batch larger
            than the data repeats its rows.
        calibration_bins: Number of equal-width confidence bins of the ECE.
        warmup_batches: Untimed batches run first at each batch size
            (compilation, caches).
        timed_batches: Timed batches at each batch size.
        predict_batch_size: Batch size of the accuracy pass.

    Returns:
        A `Report`. `report.settings["ensembles"]` names each ensemble's
        teachers, weights and target. `report.models[name]` holds `test_accuracy`,
        `teacher_agreement`, `kl_to_teacher` (both `None` without a
        teacher), `expected_calibration_error`, `parameters`, `size_mb` and
        `latency`: one dict per batch size with `batch_size`, `p50_ms`,
        `p95_ms`, `p50_ms_per_sample`, `p95_ms_per_sample` and `throughput`.

    Raises:
        TypeError: if `models` is not a mapping of names to Keras models, or
            holds a Distiller.
        ValueError: for no models, an unknown `teacher` name, an ensemble
            `keras_kd.ensemble.check_teachers` refuses (no teachers, one
            twice, shapes that differ, bad `teacher_weights`), a teacher
            named like another row, `teacher_weights` without an
            ensemble, empty or
            mismatched data, models that output different numbers of classes
            or probabilities instead of logits, labels outside the classes,
            or bad batch sizes or counts.

    Example:

    ```python
    import numpy as np
    import keras_kd

    def mlp(width, name):
        return keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(width,), name=name)

    rng = np.random.default_rng(0)
    x_test, y_test = rng.random((16, 8), dtype="float32"), rng.integers(0, 3, 16)
    report = keras_kd.report.compare(
        {"teacher": mlp(32, "teacher"), "baseline": mlp(8, "baseline"), "distilled": mlp(8, "distilled")},
        (x_test, y_test),
        batch_sizes=(1, 16), timed_batches=3,
    )
    print(report.to_markdown())
    report.plot("comparison.png")
    ```
    """
    models, ensembles = _check_models(models, teacher_weights, ensemble_target)
    if teacher is not None and teacher not in models:
        raise ValueError(
            f"teacher={teacher!r} is not one of the model names {list(models)}; "
            "pass one of them, or teacher=None to skip agreement and KL."
        )
    batch_sizes = _check_counts("batch_sizes", batch_sizes, minimum=1)
    _check_counts("calibration_bins", [calibration_bins], minimum=1)
    _check_counts("warmup_batches", [warmup_batches], minimum=0)
    _check_counts("timed_batches", [timed_batches], minimum=1)
    x, labels = _check_data(data)

    logits = {}
    for name, model in models.items():
        if name in ensembles:
            teachers, weights = ensembles[name]["teachers"], ensembles[name]["weights"]
            stacked = np.stack([logits[member] for member in teachers], axis=-2)
            combined = ensemble.ensemble_logits(stacked, weights, 1.0, ensemble_target)
            logits[name] = keras.ops.convert_to_numpy(combined)
        else:
            logits[name] = _logits(name, model, x, predict_batch_size)
    num_classes = _check_classes(logits, labels)

    results = {}
    for name, model in models.items():
        model_logits = logits[name]
        predictions = np.argmax(model_logits, axis=-1)
        teacher_logits = logits[teacher] if teacher is not None else None
        results[name] = {
            "test_accuracy": 100.0 * float(np.mean(predictions == labels)),
            "teacher_agreement": (
                None
                if teacher_logits is None
                else 100.0 * float(np.mean(predictions == np.argmax(teacher_logits, axis=-1)))
            ),
            "kl_to_teacher": (None if teacher_logits is None else _mean_kl(teacher_logits, model_logits)),
            "expected_calibration_error": 100.0 * expected_calibration_error(model_logits, labels, calibration_bins),
            "parameters": int(model.count_params()),
            "size_mb": saved_size_mb(model),
            "latency": [
                _latency(model, _batch_of(x, batch_size), warmup_batches, timed_batches) for batch_size in batch_sizes
            ],
        }
    settings = {
        "examples": int(len(labels)),
        "classes": num_classes,
        "calibration_bins": int(calibration_bins),
        "kl_temperature": 1.0,
        "batch_sizes": batch_sizes,
        "warmup_batches": int(warmup_batches),
        "timed_batches": int(timed_batches),
        "latency_method": "model.predict_on_batch",
        "ensembles": ensembles,
    }
    return Report(models=results, teacher=teacher, environment=environment(), settings=settings)


def expected_calibration_error(logits, labels, bins=CALIBRATION_BINS):
    """Expected calibration error of `logits`, as a fraction in [0, 1].

    Guo et al., "On Calibration of Modern Neural Networks" (ICML 2017),
    eq. 3: the examples are binned by top-1 confidence into `bins`
    equal-width bins of (0, 1]; ECE is the example-weighted mean over the
    bins of |accuracy - mean confidence|.

    Args:
        logits: Array of shape `(N, classes)`.
        labels: Integer class ids of shape `(N,)`.
        bins: Number of bins.

    Returns:
        A Python float.

    Example:

    ```python
    import numpy as np
    from keras_kd.report import expected_calibration_error

    assert expected_calibration_error(np.array([[0.0, 0.0]]), np.array([0]), bins=2) == 0.5
    ```
    """
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    confidence = probabilities.max(axis=-1)
    correct = np.argmax(logits, axis=-1) == np.asarray(labels)
    # Bin b holds confidences in (b / bins, (b + 1) / bins].
    bin_index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for index in range(bins):
        members = bin_index == index
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def saved_size_mb(model):
    """Size in MB (10**6 bytes) of `model`'s `.keras` file without optimizer state."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        kd_export.save_keras(model, path)
        return os.path.getsize(path) / 1e6


def environment():
    """Backend, device and versions of this process, as plain strings."""
    return {
        "backend": keras.config.backend(),
        "device": _device(),
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "platform": platform.platform(),
    }


def check_inputs_fit(model, x, model_description=None, data_description="the data"):
    """Raises a ValueError unless `model` has one input shaped like the rows of `x`.

    A model whose input shape is unknown (a subclassed model not yet built)
    passes; calling it will tell.

    Args:
        model: A `keras.Model`.
        x: An array with a batch axis.
        model_description: How the message names the model (default: its name).
        data_description: How the message names `x`.

    Raises:
        ValueError: if the model has several inputs, or an input shape that
            differs from `x.shape[1:]` (`None` dimensions match anything).
    """
    model_description = model_description or f"Model {model.name!r}"
    try:
        input_shape = model.input_shape
    except (AttributeError, ValueError):
        return
    if isinstance(input_shape, list):
        raise ValueError(f"{model_description} has {len(input_shape)} inputs; one input array is supported.")
    if not validation.rows_fit_input_shape(x.shape[1:], input_shape):
        raise ValueError(
            f"{model_description} takes inputs of shape {input_shape}, but "
            f"{data_description} has inputs of shape {tuple(x.shape[1:])}."
        )


# ---------------------------------------------------------------- measuring


def _logits(name, model, x, batch_size):
    check_inputs_fit(model, x, f"Model {name!r}")
    try:
        outputs = model.predict(x, batch_size=batch_size, verbose=0)
    except (ValueError, TypeError) as error:
        expected = getattr(model, "input_shape", "unknown")
        raise ValueError(
            f"Model {name!r} cannot take inputs of shape {x.shape} (it expects "
            f"{expected}): {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from error
    if isinstance(outputs, (list, tuple, dict)) or np.ndim(outputs) != 2:
        raise ValueError(
            f"Model {name!r} must output one logits array of shape (N, classes); got "
            f"{type(outputs).__name__} {getattr(outputs, 'shape', '')}."
        )
    outputs = np.asarray(outputs, "float32")
    if np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3):
        raise ValueError(
            f"Model {name!r} seems to output probabilities (non-negative rows that sum "
            "to 1), not logits. Compare the model without its final softmax."
        )
    return outputs


def _mean_kl(teacher_logits, model_logits):
    kl = kd_losses.soft_target_kl(teacher_logits, model_logits, 1.0)
    return float(np.mean(keras.ops.convert_to_numpy(kl)))


def _batch_of(x, batch_size):
    """`batch_size` rows of `x`, repeating rows when `x` has fewer."""
    return x[np.arange(batch_size) % len(x)]


def predict_seconds(model, batch, warmup_batches=5, timed_batches=30):
    """Wall times of `model.predict_on_batch(batch)`, in seconds, after `warmup_batches` untimed calls."""
    for _ in range(warmup_batches):
        model.predict_on_batch(batch)
    seconds = []
    for _ in range(timed_batches):
        start = time.perf_counter()
        model.predict_on_batch(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def _latency(model, batch, warmup_batches, timed_batches):
    seconds = predict_seconds(model, batch, warmup_batches, timed_batches)
    batch_size = len(batch)
    p50_ms, p95_ms = (1e3 * float(value) for value in np.percentile(seconds, [50, 95]))
    return {
        "batch_size": batch_size,
        "p50_ms": p50_ms,
        "p95_ms": p95_ms,
        "p50_ms_per_sample": p50_ms / batch_size,
        "p95_ms_per_sample": p95_ms / batch_size,
        "throughput": batch_size / (p50_ms / 1e3),
    }


def _device():
    backend_name = keras.config.backend()
    accelerator = None
    if backend_name == "torch":
        device = str(_keras_compat.torch_device())
        if device.startswith("cuda"):
            import torch

            accelerator = f"{device} ({torch.cuda.get_device_name(0)})"
        elif device != "cpu":
            accelerator = device
    elif backend_name == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            accelerator = f"{device.platform}:{device.id} ({device.device_kind})"
    elif backend_name == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            accelerator = f"GPU:0 ({details.get('device_name', 'unknown')})"
    return accelerator or f"CPU ({_cpu_name()}, {os.cpu_count()} logical cores)"


def _cpu_name():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# ---------------------------------------------------------------- checking


def _check_models(models, teacher_weights, ensemble_target):
    """`({row name: model}, {ensemble name: its teachers' names, weights, target})`, ensembles expanded."""
    if not isinstance(models, collections.abc.Mapping):
        raise TypeError(
            "`models` must be a mapping of names to keras.Model, e.g. "
            f'{{"teacher": teacher, "distilled": student}}; got {type(models).__name__}.'
        )
    if not models:
        raise ValueError("`models` is empty; give at least one model to measure.")
    rows, ensembles = {}, {}
    for name, model in models.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Model names must be non-empty strings; got {name!r}.")
        if isinstance(model, keras.Model) and ensemble.members(model) is not None:
            model = ensemble.members(model)
        if not isinstance(model, (list, tuple)):
            kd_export.check_exportable(model, action="Compare")
            rows[name] = model
            continue
        try:
            teachers, weights, target = ensemble.check_teachers(model, teacher_weights, ensemble_target)
        except (TypeError, ValueError) as error:
            raise type(error)(f"models[{name!r}]: {error}") from None
        for member in teachers:
            kd_export.check_exportable(member, action="Compare")
            if member.name in models or member.name in rows:
                raise ValueError(
                    f"models[{name!r}] has a teacher named {member.name!r}, like another row; "
                    "give every model and teacher its own name."
                )
            rows[member.name] = member
        ensembles[name] = {"teachers": [member.name for member in teachers], "weights": weights, "target": target}
        rows[name] = ensemble.teacher_ensemble(teachers, name=f"{name}_ensemble")
    if teacher_weights is not None and not ensembles:
        raise ValueError(
            f"teacher_weights={teacher_weights!r} given, but no entry of `models` is a list of teachers (an ensemble)."
        )
    return rows, ensembles


def _check_data(data):
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "`data` must be a pair (x, y) of inputs and labels; got "
            f"{type(data).__name__}{f' of length {len(data)}' if hasattr(data, '__len__') else ''}."
        )
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if x.ndim == 0 or len(x) == 0:
        raise ValueError(f"`data` has no examples (x of shape {x.shape}).")
    if y.ndim not in (1, 2) or len(y) != len(x):
        raise ValueError(f"`data` has {len(x)} inputs but labels of shape {y.shape}; give one label per input.")
    if y.ndim == 2 and y.shape[1] > 1:
        y = np.argmax(y, axis=-1)  # One-hot rows.
    y = y.reshape(len(y))
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.mod(y, 1) == 0):
            raise ValueError("Labels must be integer class ids (or one-hot rows); got non-integer values.")
        y = y.astype("int64")
    return x, y


def _check_classes(logits, labels):
    classes = {name: output.shape[-1] for name, output in logits.items()}
    if len(set(classes.values())) != 1:
        raise ValueError(
            f"The models output different numbers of classes: {classes}. Compare models that predict the same classes."
        )
    num_classes = next(iter(classes.values()))
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"Labels range over [{labels.min()}, {labels.max()}] but the models "
            f"output {num_classes} classes (valid labels: 0 to {num_classes - 1})."
        )
    return int(num_classes)


def _check_counts(name, values, minimum):
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence of integers; got {values!r}.") from None
    if not values or any(
        isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum for value in values
    ):
        raise ValueError(f"`{name}` must hold integers >= {minimum}; got {values!r}.")
    return [int(value) for value in values]


def _describe_ensembles(ensembles):
    return [
        f"{name!r}: the ensemble of {', '.join(record['teachers'])} (weights "
        f"{', '.join(f'{weight:.3g}' for weight in record['weights'])}; the weighted mean of their "
        + ("softmax)." if record["target"] == "probabilities" else "log-probabilities, renormalized).")
        for name, record in ensembles.items()
    ]


def _optional(value, spec):
    return "—" if value is None else format(value, spec)


def _write_text_atomically(path, text):
    with kd_export.atomic_file(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(text)
