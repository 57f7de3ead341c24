import keras

from conftest import REQUESTED_BACKEND


def test_keras_runs_on_the_requested_backend():
    assert keras.config.backend() == REQUESTED_BACKEND
