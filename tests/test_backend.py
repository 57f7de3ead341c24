import ast
import pathlib

import keras
import numpy as np
import pytest

from conftest import REQUESTED_BACKEND, make_data, make_mlp
from keras_kd import Distiller
from keras_kd import backend as kd_backend
from keras_kd.backend import _keras_compat, roles


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
    masked = keras.layers.Embedding(5, 2, mask_zero=True)(keras.ops.convert_to_tensor([[1, 0]]))
    assert keras.ops.convert_to_numpy(_keras_compat.keras_mask(masked)).tolist() == [[True, False]]
    assert _keras_compat.keras_mask(keras.ops.convert_to_tensor([1.0])) is None
    url, file_hash = _keras_compat.resnet50_notop_weights_source("resnet50_notop.h5")
    assert url.startswith("https://") and url.endswith("/resnet50_notop.h5") and len(file_hash) == 32
    if REQUESTED_BACKEND == "torch":
        assert str(_keras_compat.torch_device()) in ("cpu", "cuda", "cuda:0", "mps")
    saved_module = distiller.get_compile_config()["optimizer"]["module"]
    assert saved_module == "keras.optimizers"
    assert _keras_compat.public_optimizer_module(f"keras.src.backend.{REQUESTED_BACKEND}.optimizers") == saved_module


def test_every_keras_tuner_internal_of_keras_compat_exists_on_this_keras_tuner():
    """What `_keras_compat` reaches into in keras-tuner (its behaviour: tests/test_tuning.py's resumed grid)."""
    keras_tuner = pytest.importorskip("keras_tuner")

    assert callable(keras_tuner.Tuner._configure_tensorboard_dir)
    oracle = keras_tuner.oracles.GridSearchOracle(objective="val_accuracy", max_trials=2)
    assert callable(oracle._compare) and hasattr(oracle._ordered_ids, "insert")
    assert oracle._populate_next == [] and oracle.end_order == []
    _keras_compat.rebuild_grid_order(oracle)
    assert oracle._populate_next == [] and isinstance(oracle._ordered_ids, type(oracle._ordered_ids))


# ------------------------------------------------------------------ roles and dispatch


def backend_role_classes():
    """{role: (where, method names) of each backend package's class that subclasses it}, read from the source."""
    found = {role: [] for role in (roles.GradientMechanics, roles.WeightVersions)}
    for path in sorted(pathlib.Path(roles.__file__).parent.glob("*/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                role = next(role for role in found if f"roles.{role.__name__}" in bases)
                methods = [item.name for item in node.body if isinstance(item, ast.FunctionDef)]
                found[role].append((f"{path.parent.name}/{path.name}:{node.name}", methods))
    return found


def test_each_backend_class_overrides_only_methods_its_role_declares():
    """Read from every backend package's source, so the other backends' classes are checked too."""
    classes = backend_role_classes()
    undeclared = [
        f"{where}.{method}"
        for role, found in classes.items()
        for where, methods in found
        for method in methods
        if not method.startswith("_") and not hasattr(role, method)
    ]
    assert undeclared == []
    # Every backend takes its gradients its own way.
    assert [where.split("/")[0] for where, _ in classes[roles.GradientMechanics]] == ["jax", "tensorflow", "torch"]


def test_a_misnamed_override_fails_when_its_class_is_created():
    with pytest.raises(TypeError, match=r"defines value_versions, which its role WeightVersions does not declare"):

        class Misnamed(roles.WeightVersions):
            def value_versions(self, variable):
                return None

    class Overriding(roles.WeightVersions):
        def value_version(self, variable):
            return "token"

        def _helper(self):  # A backend's private helper is its own.
            return 1

    assert Overriding().value_version(None) == "token"
    # A subclass of a backend's class is held to the same role.
    with pytest.raises(TypeError, match="WeightVersions does not declare"):

        class Deeper(Overriding):
            def version(self):
                return None


def test_the_roles_are_chosen_once_for_the_running_backend():
    chosen = kd_backend.chosen_roles()
    assert chosen is kd_backend.chosen_roles()
    prefix = {"jax": "Jax", "tensorflow": "TensorFlow", "torch": "Torch"}[REQUESTED_BACKEND]
    assert type(chosen.gradients).__name__ == f"{prefix}GradientMechanics"
    assert isinstance(chosen.gradients, roles.GradientMechanics)
    assert isinstance(chosen.weight_versions, roles.WeightVersions)


def test_the_module_functions_give_the_chosen_roles_results():
    variable = keras.Variable(1.0, trainable=False)
    token = kd_backend.value_version(variable)
    assert kd_backend.same_version(token, kd_backend.value_version(variable)) == (token is not None)
    variable.assign(5.0)
    assert not kd_backend.same_version(token, kd_backend.value_version(variable))


class TeacherWritingDistiller(Distiller):
    """Assigns a teacher weight in each step, as a teacher that updates itself would."""

    def prepare_batch(self, data, training):
        weight = self.teacher.non_trainable_weights[0]
        weight.assign(weight + 1.0)
        return super().prepare_batch(data, training=training)


@pytest.mark.skipif(REQUESTED_BACKEND != "jax", reason="JAX's steps record teacher writes")
def test_jax_records_teacher_writes_in_its_gradient_mechanics_not_on_the_distiller():
    x, y = make_data(rows=16)
    teacher = make_mlp(8)  # BatchNormalization: its moving statistics are teacher weights.
    frozen = Distiller(teacher, make_mlp(4), alpha=0.5).compile(optimizer="sgd")
    frozen.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert kd_backend.kept_frozen_values(frozen)
    written = TeacherWritingDistiller(teacher, make_mlp(4), alpha=0.5).compile(optimizer="sgd")
    written.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not kd_backend.kept_frozen_values(written)
    assert written in kd_backend.chosen_roles().gradients.teacher_written
    assert frozen not in kd_backend.chosen_roles().gradients.teacher_written
