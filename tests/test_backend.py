import keras

from conftest import REQUESTED_BACKEND


def test_keras_runs_on_the_requested_backend():
    assert keras.config.backend() == REQUESTED_BACKEND


def test_keras_kd_loads_and_trains_without_its_optional_tools(tmp_path):
    """After Keras, `import keras_kd` registers the serializable classes at once,
    and needs neither keras-tuner nor matplotlib until `tuning`/`plots` are used."""
    from conftest import run_in_backend

    code = f"""
import sys
sys.modules["keras_tuner"] = None   # makes `import keras_tuner` fail
sys.modules["matplotlib"] = None
import numpy as np
import keras
import keras_kd
assert keras.saving.get_registered_object("keras_kd>Distiller") is not None
assert keras.saving.get_registered_object("keras_kd>SoftTargetKL") is not None
def mlp(units):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(units, activation="relu")(inputs)))
distiller = keras_kd.Distiller(mlp(8), mlp(2), alpha=0.5).compile(optimizer="sgd")
x, y = np.random.rand(16, 4).astype("float32"), np.arange(16) % 3
distiller.fit(x, y, epochs=1, verbose=0)
distiller.save({str(tmp_path / "d.keras")!r})
keras.saving.load_model({str(tmp_path / "d.keras")!r}).fit(x, y, epochs=1, verbose=0)
try:
    keras_kd.tuning
except ImportError as error:
    print("tuning:", type(error).__name__)
"""
    output = run_in_backend(REQUESTED_BACKEND, code)
    assert "tuning: ModuleNotFoundError" in output or "tuning: ImportError" in output
