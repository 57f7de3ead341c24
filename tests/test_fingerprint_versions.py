"""A cached fit checks an unchanged teacher without reading its weights, and still sees every edit (issue 15)."""

import zlib

import keras
import numpy as np
import pytest

import keras_kd
from conftest import make_data
from keras_kd import backend as kd_backend
from keras_kd.cache import CacheMismatchError, TeacherCache, fingerprints


def mlp(hidden, name):
    return keras_kd.models.mlp_student((8,), num_classes=3, hidden_units=(hidden,), name=name)


def has_versions(model):
    return all(kd_backend.value_version(weight) is not None for weight in model.weights)


@pytest.fixture
def crc_calls(monkeypatch):
    """Counts the CRC-32s the fingerprint computes (one per weight read)."""
    calls, crc32 = [], zlib.crc32

    class CountingZlib:
        @staticmethod
        def crc32(data):
            calls.append(1)
            return crc32(data)

    monkeypatch.setattr(fingerprints, "zlib", CountingZlib)
    return calls


def test_fits_on_a_cache_read_an_unchanged_teacher_once_and_see_an_edit(crc_calls):
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    cache = TeacherCache.build(teacher, x)
    data = cache.dataset(x, y, batch_size=8)
    distiller = keras_kd.Distiller(teacher, mlp(4, "student")).compile(optimizer="sgd")
    distiller.fit(data, epochs=1, verbose=0)
    crc_calls.clear()
    for _ in range(3):
        distiller.fit(data, epochs=1, verbose=0)
        distiller.evaluate(data, verbose=0)
    # TensorFlow has no cheap version of a value: every check reads the weights.
    assert len(crc_calls) == (0 if has_versions(teacher) else 6 * len(teacher.weights))

    kernel = next(layer for layer in teacher.layers if isinstance(layer, keras.layers.Dense)).kernel
    edited = keras.ops.convert_to_numpy(kernel).copy()
    edited[1, 2] = np.nextafter(edited[1, 2], np.inf)  # One element, by one ulp.
    kernel.assign(edited)
    with pytest.raises(CacheMismatchError, match="other weights"):
        distiller.fit(data, epochs=1, verbose=0)
    with pytest.raises(CacheMismatchError, match="other weights"):
        distiller.evaluate(data, verbose=0)


def test_restoring_the_weights_makes_the_cache_usable_again():
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    original = teacher.get_weights()
    cache = TeacherCache.build(teacher, x)
    data = cache.dataset(x, y, batch_size=8)
    distiller = keras_kd.Distiller(teacher, mlp(4, "student")).compile(optimizer="sgd")
    teacher.get_layer("logits").bias.assign(np.ones(3, "float32"))
    with pytest.raises(CacheMismatchError, match="other weights"):
        distiller.fit(data, epochs=1, verbose=0)
    teacher.set_weights(original)
    distiller.fit(data, epochs=1, verbose=0)
    assert fingerprints.teacher_fingerprint(teacher) == cache.teacher_fingerprint


def test_uncached_fits_leave_the_remembered_fingerprint_valid(crc_calls):
    x, y = make_data(32)
    teacher = mlp(16, "teacher")
    data = TeacherCache.build(teacher, x).dataset(x, y, batch_size=8)
    distiller = keras_kd.Distiller(teacher, mlp(4, "student")).compile(optimizer="sgd")
    distiller.fit(data, epochs=1, verbose=0)
    distiller.fit(x, y, batch_size=8, epochs=1, verbose=0)  # The teacher runs in the step, frozen.
    if keras.config.backend() == "jax":  # Its values come back as new arrays, known unchanged.
        assert kd_backend.kept_frozen_values(distiller)
    crc_calls.clear()
    distiller.fit(data, epochs=1, verbose=0)
    assert len(crc_calls) == (0 if has_versions(teacher) else len(teacher.weights))


def test_constant_temperature_and_alpha_are_logged_in_fit_and_evaluate():
    x, y = make_data(32)
    distiller = keras_kd.Distiller(mlp(16, "teacher"), mlp(4, "student"), temperature=3.0, alpha=0.25)
    distiller.compile(optimizer="sgd")
    history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert history["temperature"] == pytest.approx([3.0, 3.0])
    assert history["alpha"] == pytest.approx([0.25, 0.25])
    logs = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["temperature"] == pytest.approx(3.0) and logs["alpha"] == pytest.approx(0.25)
    distiller.temperature.assign(2.0)  # A constant changed by hand is logged from the next fit.
    assert distiller.fit(x, y, batch_size=8, verbose=0).history["temperature"] == pytest.approx([2.0])
