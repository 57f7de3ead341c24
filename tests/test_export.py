"""Tests of keras_kd.export on the current backend: each format it can write, and refusals."""

import os

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND, make_mlp
from keras_kd import export as kd_export
from keras_kd.distiller import Distiller

# Which backend writes which format (beyond Keras, the optional packages
# named in keras_kd.export: jax2onnx for ONNX on JAX, torch_xla for a
# SavedModel on torch).
CAN_EXPORT = {
    "keras": {"torch", "tensorflow", "jax"},
    "saved_model": {"tensorflow", "jax"} | ({"torch"} if kd_export._installed("torch_xla") else set()),
    "onnx": {"tensorflow", "torch"} | ({"jax"} if kd_export._installed("jax2onnx") else set()),
}


def _small_cnn(name="small_cnn"):
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    hidden = keras.layers.BatchNormalization()(hidden)
    hidden = keras.layers.Flatten()(hidden)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden), name=name)


def _compiled(model):
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.fixture(scope="module")
def trained_cnn_weights():
    """The weights of a small CNN trained one epoch (trained once for the module), and its inputs."""
    keras.utils.set_random_seed(0)
    model = _compiled(_small_cnn())
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 8, 8, 1)).astype("float32")
    model.fit(x, rng.integers(0, 3, size=16), epochs=1, verbose=0)  # Moves the BatchNorm statistics.
    return model.get_weights(), x


@pytest.fixture
def trained_cnn(trained_cnn_weights):
    """A copy of the trained CNN for each test, compiled with Adam's slots as after training; and its inputs."""
    weights, x = trained_cnn_weights
    model = _compiled(_small_cnn())
    model.set_weights(weights)
    model.optimizer.build(model.trainable_variables)
    return model, x


def _run_artifact(format, path, x):
    """Runs the artifact with its own runtime, independently of keras_kd.export."""
    if format == "keras":
        return keras.saving.load_model(path).predict(x, verbose=0)
    if format == "saved_model":
        import tensorflow as tf

        artifact = tf.saved_model.load(path)  # Kept referenced: serve() needs its variables.
        return artifact.serve(x).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize(
    "format",
    [
        "keras",
        pytest.param("saved_model", marks=pytest.mark.slow),
        pytest.param("onnx", marks=pytest.mark.slow),
    ],
)
def test_export_matches_keras_or_names_the_backends_that_can(tmp_path, format, trained_cnn):
    model, x = trained_cnn
    path = str(tmp_path / {"keras": "student.keras", "saved_model": "student", "onnx": "student.onnx"}[format])
    if REQUESTED_BACKEND not in CAN_EXPORT[format]:
        able = ", ".join(sorted(CAN_EXPORT[format]))
        with pytest.raises(ValueError, match=f"cannot export format '{format}'") as error:
            kd_export.export(model, path, format=format, sample_inputs=x)
        assert all(name in str(error.value) for name in able.split(", "))
        assert not os.path.exists(path)
        return
    result = kd_export.export(model, path, format=format, sample_inputs=x)
    assert result.path == path and result.format == format
    assert result.max_abs_difference <= 1e-4
    # A batch size other than the sample's: the artifact keeps a dynamic batch axis.
    other = np.random.default_rng(1).uniform(size=(5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(_run_artifact(format, path, other), model.predict(other, verbose=0), atol=1e-4)
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(path)]  # No temporary left behind.


def test_supported_backends_lists_the_table():
    for format, backends in CAN_EXPORT.items():
        assert set(kd_export.supported_backends(format)) == backends


def test_keras_export_leaves_out_the_optimizer(tmp_path, trained_cnn):
    model, x = trained_cnn
    kd_export.export(model, tmp_path / "student.keras")
    reloaded = keras.saving.load_model(tmp_path / "student.keras")
    assert not reloaded.compiled
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_default_sample_inputs_follow_the_input_shape(tmp_path):
    result = kd_export.export(make_mlp(8), tmp_path / "mlp.keras")
    assert result.max_abs_difference <= 1e-4


def test_a_distiller_is_refused(tmp_path):
    distiller = Distiller(make_mlp(8), make_mlp(4))
    with pytest.raises(TypeError, match=r"distiller\.student"):
        kd_export.export(distiller, tmp_path / "distiller.keras")
    assert not list(tmp_path.iterdir())


def test_a_mismatch_writes_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "student.keras"
    path.write_bytes(b"previous export")
    original = kd_export._LOADERS["keras"]
    monkeypatch.setitem(kd_export._LOADERS, "keras", lambda staged, x: original(staged, x) + 1e-3)
    with pytest.raises(ValueError, match="differ by up to 0.001"):
        kd_export.export(make_mlp(8), path)
    assert path.read_bytes() == b"previous export"
    assert os.listdir(tmp_path) == ["student.keras"]


def test_a_new_saved_model_replaces_the_old_directory(tmp_path, trained_cnn):
    if REQUESTED_BACKEND not in CAN_EXPORT["saved_model"]:
        pytest.skip(f"{REQUESTED_BACKEND} cannot export a SavedModel")
    path = tmp_path / "student"
    path.mkdir()
    (path / "stale.txt").write_text("from an older export")
    model, x = trained_cnn
    kd_export.export(model, path, format="saved_model", sample_inputs=x)
    assert not (path / "stale.txt").exists()
    assert (path / "saved_model.pb").exists()
    assert os.listdir(tmp_path) == ["student"]


@pytest.mark.parametrize(
    "path, format, message",
    [
        ("model.keras", "tflite", "Unknown export format 'tflite'"),
        ("model.onnx", "keras", "ending in .keras"),
        ("model.keras", "onnx", "ending in .onnx"),
        ("model.keras", "saved_model", "is a directory"),
    ],
)
def test_bad_format_or_path_is_refused(tmp_path, path, format, message):
    if format in CAN_EXPORT and REQUESTED_BACKEND not in CAN_EXPORT[format]:
        message = "cannot export"
    with pytest.raises(ValueError, match=message):
        kd_export.export(make_mlp(8), tmp_path / path, format=format)


def test_unknown_input_shape_needs_sample_inputs(tmp_path):
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(inputs)))
    with pytest.raises(ValueError, match="Pass `sample_inputs`"):
        kd_export.export(model, tmp_path / "model.keras")
    result = kd_export.export(model, tmp_path / "model.keras", sample_inputs=np.ones((2, 5, 3), "float32"))
    assert result.max_abs_difference <= 1e-4


def test_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        kd_export.export(make_mlp(8), tmp_path / "student.keras")
    finally:
        os.umask(mask)
    assert (tmp_path / "student.keras").stat().st_mode & 0o777 == 0o644


def test_the_module_is_callable_as_export(tmp_path):
    import keras_kd.export

    result = keras_kd.export(make_mlp(8), tmp_path / "student.keras")
    assert result.format == "keras" and (tmp_path / "student.keras").exists()
