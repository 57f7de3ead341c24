"""Test set-up: one backend per process, chosen by KERAS_BACKEND (as Keras does)."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REQUESTED_BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
os.environ["KERAS_BACKEND"] = REQUESTED_BACKEND

# JAX compiles each new train function, and the tests (and the processes they
# start, which inherit the environment) compile the same few small programs
# many times: JAX's persistent compilation cache, as docs/guides/tuning.md
# recommends for trials, lets each be compiled once per test run. A new folder
# per JAX run, removed at exit, so that no run reads another's.
if REQUESTED_BACKEND == "jax" and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _jax_cache = tempfile.mkdtemp(prefix="keras_kd_tests_jax_cache_")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# torch before tensorflow: the other order can segfault.
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def make_mlp(hidden, num_classes=3, input_dim=8, name=None, batchnorm=True, dropout=0.0, dropout_seed=None):
    """A tiny functional classifier that outputs logits."""
    inputs = keras.Input((input_dim,))
    hidden_units = keras.layers.Dense(hidden, activation="relu")(inputs)
    if batchnorm:
        hidden_units = keras.layers.BatchNormalization()(hidden_units)
    if dropout:
        hidden_units = keras.layers.Dropout(dropout, seed=dropout_seed)(hidden_units)
    logits = keras.layers.Dense(num_classes)(hidden_units)
    return keras.Model(inputs, logits, name=name)


def make_data(rows=64, input_dim=8, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, input_dim)).astype("float32")
    y = rng.integers(0, num_classes, size=rows)
    return x, y


def run_in_backend(backend_name, code, timeout=300):
    """Runs `code` in a fresh Python process on another backend; returns stdout."""
    import subprocess
    import sys

    env = dict(os.environ, KERAS_BACKEND=backend_name, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess on {backend_name} failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout


class ArrayBatches(keras.utils.PyDataset):
    """A PyDataset over arrays; `noise` > 0 makes it augment at random."""

    def __init__(self, x, y, batch_size=8, noise=0.0):
        super().__init__()
        self.x, self.y, self.batch_size, self.noise = x, y, batch_size, noise

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        x = self.x[rows]
        if self.noise:
            x = x + np.random.normal(scale=self.noise, size=x.shape).astype(x.dtype)
        return x, self.y[rows]


def assert_one_line_error(status, stderr, *fragments):
    """The command line failed with its usage status and one `keras-kd ...: error:` line."""
    from keras_kd import cli

    assert status == cli.USAGE_ERROR_STATUS
    assert "Traceback" not in stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("keras-kd"), stderr
    assert ": error: " in last_line
    for fragment in fragments:
        assert fragment in last_line, last_line
