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


def test_every_keras_internal_of_keras_compat_works_on_this_keras():
    """What `keras_kd/backend/_keras_compat.py` reaches into still exists and behaves.

    Run it first when moving Keras's bounds in pyproject.toml.
    """
    import numpy as np

    from conftest import make_data, make_mlp
    from keras_kd import Distiller
    from keras_kd.backend import _keras_compat

    x, y = make_data(rows=16)
    distiller = Distiller(make_mlp(8), make_mlp(4), alpha=0.5).compile(
        optimizer="adam", metrics=["accuracy"], weighted_metrics=["accuracy"]
    )
    logs = distiller.fit(x, y, sample_weight=np.ones(16, "float32"), epochs=1, batch_size=8, verbose=0).history

    tracker = _keras_compat.loss_tracker(distiller)
    assert isinstance(tracker, keras.metrics.Metric) and tracker.name == "loss"
    plain, weighted = _keras_compat.flat_compile_metrics(_keras_compat.compile_metrics(distiller))
    # One entry per model output, each updating that output's metrics.
    assert len(plain) == len(weighted) == 1
    assert all(isinstance(entry, keras.metrics.Metric) for entry in plain + weighted)
    assert "accuracy" in logs and "weighted_accuracy" in logs
    assert float(_keras_compat.scale_loss_for_distribution(keras.ops.convert_to_tensor(2.0))) == 2.0
    assert isinstance(_keras_compat.keras_home(), str)
    assert _keras_compat.metrics_apart_from(distiller, None) == keras.Model.metrics.fget(distiller)
    assert _keras_compat.variables_apart_from(distiller, None) == keras.Model.variables.fget(distiller)
    with keras.StatelessScope():
        assert _keras_compat.in_stateless_scope()
    assert not _keras_compat.in_stateless_scope()
    masked = keras.layers.Embedding(5, 2, mask_zero=True)(keras.ops.convert_to_tensor([[1, 0]]))
    assert keras.ops.convert_to_numpy(_keras_compat.keras_mask(masked)).tolist() == [[True, False]]
    assert _keras_compat.keras_mask(keras.ops.convert_to_tensor([1.0])) is None
    url, file_hash = _keras_compat.resnet50_notop_weights_source("resnet50_notop.h5")
    assert url.startswith("https://") and url.endswith("/resnet50_notop.h5") and len(file_hash) == 32
    if REQUESTED_BACKEND == "jax":
        # Keras's JAX fit still stores each step's state under this name,
        # and the Distiller keeps it a plain dict (untracked).
        stored = []

        class StoredState(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                stored.append(vars(self.model).get("_jax_state"))

        distiller.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[StoredState()])
        assert _keras_compat.PER_STEP_STATE_ATTRIBUTES == {"_jax_state"} and len(stored) == 2
        assert all(type(state) is dict and "trainable_variables" in state for state in stored)
    if REQUESTED_BACKEND == "torch":
        assert str(_keras_compat.torch_device()) in ("cpu", "cuda", "cuda:0", "mps")
    saved_module = distiller.get_compile_config()["optimizer"]["module"]
    assert saved_module == "keras.optimizers"
    assert _keras_compat.public_optimizer_module(f"keras.src.backend.{REQUESTED_BACKEND}.optimizers") == saved_module
