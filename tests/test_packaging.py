"""Packaging: the Keras version bound and its warning, the lean install, what ships in saved_models/."""

import os
import re
import shutil
import subprocess
import sys
import venv

import pytest

from conftest import REQUESTED_BACKEND
from keras_kd.backend import _keras_compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dependencies():
    """`[project] dependencies` of pyproject.toml (tomllib is Python 3.11+; we support 3.10)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as file:
        block = re.search(r"^dependencies = \[(.*?)^\]", file.read(), re.MULTILINE | re.DOTALL)
    return re.findall(r'"([^"]+)"', block[1])


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


# --------------------------------------------------------------------------
# Keras versions
# --------------------------------------------------------------------------


def test_pyproject_bounds_keras_to_the_tested_versions():
    (low_major, low_minor), (high_major, high_minor) = _keras_compat.TESTED_KERAS
    keras_requirements = [requirement for requirement in _dependencies() if re.match(r"keras\b", requirement)]
    assert keras_requirements == [f"keras>={low_major}.{low_minor},<{high_major}.{high_minor}"]


def test_the_suite_runs_on_a_tested_keras():
    assert "keras_kd was tested with" not in _import_keras_kd_with_keras_version(None)


@pytest.mark.parametrize("version", ["3.16.0", "3.11.3", "4.0.0.dev2027"])
def test_an_untested_keras_gets_a_warning_at_import(version):
    stderr = _import_keras_kd_with_keras_version(version)
    low, high = _keras_compat.TESTED_KERAS
    assert f"keras_kd was tested with keras>={low[0]}.{low[1]},<{high[0]}.{high[1]}" in stderr
    assert f"Keras {version} is installed" in stderr
    assert "_keras_compat.py" in stderr


def _import_keras_kd_with_keras_version(version):
    """stderr of `import keras_kd` in a process whose Keras metadata says `version`.

    A fake distribution's metadata comes first on the path (none for
    `version=None`: the installed Keras). `import keras_kd` does not import
    Keras, which the script also checks.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        if version is not None:
            metadata = os.path.join(directory, f"keras-{version}.dist-info")
            os.makedirs(metadata)
            with open(os.path.join(metadata, "METADATA"), "w", encoding="utf-8") as file:
                file.write(f"Metadata-Version: 2.1\nName: keras\nVersion: {version}\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([directory, ROOT]))
        code = (
            "import sys, warnings; warnings.simplefilter('always'); import keras_kd; assert 'keras' not in sys.modules"
        )
        return _run([sys.executable, "-c", code], env=env, cwd=ROOT).stderr


# --------------------------------------------------------------------------
# The lean install
# --------------------------------------------------------------------------

LEAN_BACKEND = "jax"  # CPU wheels on PyPI, a small download (torch's can be CUDA builds)
OPTIONAL_MODULES = ("keras_tuner", "tensorflow_datasets", "mlxtend", "sklearn", "matplotlib", "onnx", "onnxruntime")

LEAN_SCRIPT = r"""
import importlib.util, os, sys
import numpy as np
import keras
import keras_kd

assert keras.config.backend() == "jax", keras.config.backend()
assert keras_kd.__file__.startswith(sys.prefix), keras_kd.__file__
missing = [name for name in OPTIONAL_MODULES if importlib.util.find_spec(name) is None]
assert missing == list(OPTIONAL_MODULES), f"installed by the core install: {set(OPTIONAL_MODULES) - set(missing)}"
for other_backend in ("tensorflow", "torch"):
    assert importlib.util.find_spec(other_backend) is None, other_backend

def mlp(units):
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(units, activation="relu")(inputs)))

keras.utils.set_random_seed(0)
x, y = np.random.rand(32, 4).astype("float32"), np.arange(32) % 3
distiller = keras_kd.Distiller(mlp(16), mlp(4), alpha=0.5, temperature=2.0).compile(optimizer="adam", metrics=["accuracy"])
history = distiller.fit(x, y, batch_size=8, epochs=2, verbose=0)
losses = history.history["loss"]
assert len(losses) == 2 and all(np.isfinite(losses)), losses

def import_error(function):
    try:
        function()
    except ImportError as error:
        return str(error)
    raise AssertionError(f"{function} did not raise ImportError")

print("tuning:", import_error(lambda: keras_kd.tuning))
print("datasets:", import_error(lambda: keras_kd.datasets.load_digits()))
print("LEAN INSTALL OK")
"""


@pytest.mark.slow
@pytest.mark.skipif(
    REQUESTED_BACKEND != LEAN_BACKEND,
    reason=f"builds one fresh venv per test command: runs in the {LEAN_BACKEND} process only",
)
def test_the_core_install_distils_without_the_optional_packages(tmp_path):
    """`pip install .` and one backend in a fresh venv: keras_kd distils, the extras stay out.

    Runs only under KERAS_BACKEND=jax (its venv uses jax), so once per
    `./run test`. Needs PyPI (or the local index pip is configured with):
    the versions come from requirements/constraints.txt.
    """
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), source / name)
    shutil.copytree(os.path.join(ROOT, "keras_kd"), source / "keras_kd", ignore=shutil.ignore_patterns("__pycache__"))
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = str(environment / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "KERAS_BACKEND")}
    constraints = os.path.join(ROOT, "requirements", "constraints.txt")
    # Verbose, so that the build backend's warnings (pip hides them otherwise)
    # can be checked; --no-compile: byte-compiling all of JAX would take as
    # long as the install, and the script compiles what it imports.
    install = _run(
        [python, "-m", "pip", "install", "--verbose", "--no-compile", "-c", constraints, LEAN_BACKEND, str(source)],
        env=env,
        timeout=1200,
    )
    build_warnings = [
        line
        for line in (install.stdout + install.stderr).splitlines()
        if "BuildBackendWarning" in line or "SetuptoolsDeprecationWarning" in line
    ]
    assert build_warnings == [], build_warnings
    script = f"OPTIONAL_MODULES = {OPTIONAL_MODULES!r}\n{LEAN_SCRIPT}"
    result = _run([python, "-c", script], env=dict(env, KERAS_BACKEND=LEAN_BACKEND), cwd=tmp_path, timeout=600)
    assert "LEAN INSTALL OK" in result.stdout, result.stdout
    assert "pip install 'keras_kd[tuning]'" in result.stdout
    assert "pip install 'keras_kd[datasets]'" in result.stdout


# --------------------------------------------------------------------------
# saved_models/: what ships
# --------------------------------------------------------------------------


def _git(*arguments, stdin=None):
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, input=stdin)


@pytest.fixture
def tracked_results():
    if shutil.which("git") is None or _git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("needs a git checkout")
    return [path for path in _git("ls-files", "saved_models").stdout.split() if path != "saved_models/README.md"]


def test_every_tracked_result_is_documented_and_not_ignored(tracked_results):
    with open(os.path.join(ROOT, "saved_models", "README.md"), encoding="utf-8") as file:
        readme = file.read()
    assert tracked_results
    for path in tracked_results:
        directory, name = path.split("/")[1], path.split("/")[-1]
        assert f"`{directory}/`" in readme and f"`{name}`" in readme, f"{path} is not listed in saved_models/README.md"
    ignored = _git("check-ignore", "--no-index", "--stdin", stdin="\n".join(tracked_results)).stdout
    assert ignored == "", f"tracked but git-ignored: {ignored}"


def test_outputs_in_saved_models_are_ignored(tracked_results):
    outputs = [
        "saved_models/demo_jax/student.keras",
        "saved_models/tune_temperature_alpha/teacher.keras",
        "saved_models/tune_temperature_alpha/trials/oracle.json",
        "saved_models/a_new_run/results.json",
        "site/index.html",
    ]
    ignored = _git("check-ignore", "--no-index", "--stdin", stdin="\n".join(outputs)).stdout.split()
    assert ignored == outputs
